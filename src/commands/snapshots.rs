//! `backupctl snapshots STAGE`: a restic stage's snapshots (see `restic_cli`), or the rotated
//! btrfs snapshots of an rsync stage's destination, oldest first. A store that is not open
//! is opened read-only for the listing and closed again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::Cli;
use crate::commands::store::find;
use crate::exit::usage;
use crate::outln;
use crate::stages::StageKind;
use crate::store::{self, Access, rotate};

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
    let spec = match &stage.kind {
        StageKind::Restic(_) => {
            return crate::commands::restic_cli::snapshots(cli, &args.stage, args.all, args.json);
        }
        StageKind::Rsync(spec) => spec,
        _ => {
            return Err(usage(format_args!(
                "stage `{}` keeps no snapshots: restic stages and rsync stages with `rotate` do",
                stage.name
            )));
        }
    };
    let Some(rotate) = &spec.rotate else {
        return Err(usage(format_args!(
            "stage `{}` keeps no snapshots; add rotate = {{ every = \"168h\", keep = 8 }}",
            stage.name
        )));
    };
    let destination = PathBuf::from(spec.destination.get_ref().trim_end_matches('/'));
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
    let rotate = rotate.get_ref();
    outln!(
        "{} snapshot(s) of {} (every {}, keep {}):",
        snapshots.len(),
        destination.display(),
        rotate.every.get_ref(),
        rotate.keep.get_ref()
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
