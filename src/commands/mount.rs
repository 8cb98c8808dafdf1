//! `backupctl mount NAME DIR` / `backupctl umount NAME`: a store's files, by hand, for
//! restoring, read-only unless `--read-write`; or, when NAME is a stage whose kind can mount
//! its backup (see `StageKind::MOUNT`), that: a restic stage's repository through restic's
//! FUSE mount. Unmounting closes the store only when nothing else (a running backup) still
//! uses it, and only the layers we opened.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::commands::Context;
use crate::commands::store::{find, require_root};
use crate::outln;
use crate::stages::verbs::MountArgs as StageMountArgs;
use crate::store::{self, Access, State};

#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// A store ([store.NAME] in the config) or a restic stage.
    pub name: String,
    /// Where to mount its files (a store's: created if missing).
    pub dir: PathBuf,
    /// Store: mount writable (default: read-only, so a restore cannot damage the backup).
    #[arg(long)]
    pub read_write: bool,
    /// restic: show every snapshot in the repository, not only this stage's.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// The store ([store.NAME] in the config).
    pub name: String,
}

pub fn mount(ctx: &Context, args: &MountArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    // A store's name wins; a stage whose kind cannot mount is looked up as a store.
    if config.store(&args.name).is_none()
        && let Some(stage) = config.stage(&args.name)
    {
        let request = StageMountArgs {
            dir: args.dir.clone(),
            all: args.all,
        };
        if let Some(result) = stage.spec.mount(&ctx.verb(stage), &request) {
            return result;
        }
    }
    require_root("mounting a store")?;
    let store = find(config, &args.name)?;
    let dir = std::path::absolute(&args.dir)?;
    let access = if args.read_write {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    store::open(store, &dir, access)?;
    outln!(
        "store {} mounted {} at {}; `backupctl umount {}` when done",
        store.name,
        if args.read_write {
            "read-write"
        } else {
            "read-only"
        },
        dir.display(),
        store.name
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn umount(ctx: &Context, args: &UmountArgs) -> anyhow::Result<ExitCode> {
    require_root("unmounting a store")?;
    let config = ctx.config()?;
    let store = find(config, &args.name)?;
    // Every mount we made except the one the store's unit uses for backups.
    let manual: Vec<PathBuf> = State::load(store)?
        .mounts
        .into_iter()
        .filter(|m| *m != store.mount_point())
        .collect();
    if manual.is_empty() {
        outln!(
            "store {} has no mount made by `backupctl mount`",
            store.name
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    store::close(store, Some(&manual))?;
    for dir in &manual {
        outln!("unmounted {}", dir.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
