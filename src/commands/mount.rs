//! `backupctl mount NAME DIR` / `backupctl umount NAME`: the store's files, by hand, for
//! restoring. Read-only unless `--read-write`. Unmounting closes the store only when nothing
//! else (a running backup) still uses it, and only the layers we opened.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::commands::store::{find, require_root};
use crate::store::{self, Access, State};

#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The store ([store.NAME] in the config).
    pub name: String,
    /// Where to mount its files (created if missing).
    pub dir: PathBuf,
    /// Mount writable (default: read-only, so a restore cannot damage the backup).
    #[arg(long)]
    pub read_write: bool,
}

#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// The store ([store.NAME] in the config).
    pub name: String,
}

pub fn mount(cli: &Cli, args: &MountArgs) -> anyhow::Result<ExitCode> {
    require_root("mounting a store")?;
    let config = cli.load_config()?;
    let store = find(&config, &args.name)?;
    let dir = std::path::absolute(&args.dir)?;
    let access = if args.read_write {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    store::open(store, &dir, access)?;
    println!(
        "store {} mounted {} at {}; `backupctl umount {}` when done",
        store.name,
        if args.read_write {
            "read-write"
        } else {
            "read-only"
        },
        dir.display(),
        store.name
    );
    Ok(ExitCode::SUCCESS)
}

pub fn umount(cli: &Cli, args: &UmountArgs) -> anyhow::Result<ExitCode> {
    require_root("unmounting a store")?;
    let config = cli.load_config()?;
    let store = find(&config, &args.name)?;
    // Every mount we made except the one the store's unit uses for backups.
    let manual: Vec<PathBuf> = State::load(store)?
        .mounts
        .into_iter()
        .filter(|m| *m != store.mount_point())
        .collect();
    if manual.is_empty() {
        println!(
            "store {} has no mount made by `backupctl mount`",
            store.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    store::close(store, Some(&manual))?;
    for dir in &manual {
        println!("unmounted {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
