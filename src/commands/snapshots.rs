//! `backupctl snapshots STAGE`: the snapshots a stage keeps, if its kind keeps any (see
//! `StageKind::SNAPSHOTS`): a restic stage's lists its own; for the rotated btrfs snapshots of
//! an rsync stage's destination it says where they are and they are listed here, oldest first. A store that is not open
//! is opened read-only for the listing and closed again.

use std::path::Path;
use std::process::ExitCode;

use crate::commands::Context;
use crate::commands::store::find;
use crate::outln;
use crate::rotate;
use crate::stages::Capability;
use crate::stages::verbs::{Listing, SnapshotsArgs};
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

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let stage = ctx.stage(&args.stage)?;
    let request = SnapshotsArgs {
        all: args.all,
        json: args.json,
    };
    let listing = stage
        .spec
        .snapshots(&ctx.verb(stage), &request)
        .unwrap_or_else(|| Err(crate::commands::unsupported(Capability::Snapshots, stage)))?;
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
            let store = find(config, name)?;
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
