//! `backupctl snapshots STAGE`: the snapshots a stage keeps, if its kind keeps any (see
//! `StageKind::SNAPSHOTS`): a restic stage's lists its own; for the rotated btrfs snapshots of
//! an rsync stage's destination it says where they are and they are listed here, oldest first. A store that is not open
//! is opened read-only for the listing and closed again.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::commands::store::find;
use crate::exit::usage;
use crate::outln;
use crate::rotate;
use crate::stages::verbs::{Listing, SnapshotsArgs, VerbContext};
use crate::stages::{self, Capability};
use crate::store::{self, Access};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A restic stage, or an rsync stage with `rotate = { every, keep }`.
    pub stage: String,
    /// restic: every snapshot in the repository, not only this stage's.
    #[arg(long)]
    pub all: bool,
    /// restic: restic's JSON output, for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let stage = super::stage(&config, &args.stage)?;
    let ctx = VerbContext {
        stage: &stage.name,
        scope: cli.scope(),
    };
    let request = SnapshotsArgs {
        all: args.all,
        json: args.json,
    };
    let listing = stage.kind.snapshots(&ctx, &request).unwrap_or_else(|| {
        Err(usage(format_args!(
            "stage `{}` keeps no snapshots: {} stages do",
            stage.name,
            stages::that_can(Capability::Snapshots)
        )))
    })?;
    let (destination, every, keep) = match listing {
        Listing::Done(code) => return Ok(code),
        Listing::Rotated {
            destination,
            every,
            keep,
        } => (destination, every, keep),
    };
    let snapshots = match &stage.store {
        None => rotate::list(&destination)?,
        Some(name) => {
            let store = find(&config, name)?;
            if store::is_mount_point(&store.mount_point()) {
                rotate::list(&destination)?
            } else {
                // Look through a private read-only mount, then close what we opened.
                let dir = Path::new(crate::config::store::RUN_DIR).join(format!(
                    "list-{}-{}",
                    store.name,
                    std::process::id()
                ));
                store::open(store, &dir, Access::ReadOnly)?;
                let relative = destination
                    .strip_prefix(store.mount_point())
                    .expect("store destinations are inside the store");
                let listed = rotate::list(&dir.join(relative));
                store::close(store, Some(&[dir]))?;
                listed?
            }
        }
    };
    outln!(
        "{} snapshot(s) of {} (every {every}, keep {keep}):",
        snapshots.len(),
        destination.display(),
    )?;
    for snapshot in &snapshots {
        let name = snapshot
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        outln!("{name}  {}", snapshot.taken)?;
    }
    Ok(ExitCode::SUCCESS)
}
