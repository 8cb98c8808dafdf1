//! `backupctl snapshots STAGE`: the rotated snapshots of a stage's destination, oldest first.
//! A store that is not open is opened read-only for the listing and closed again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::Cli;
use crate::commands::store::find;
use crate::stages::StageKind;
use crate::store::{self, Access, rotate};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A stage with `rotate = { every, keep }`.
    pub stage: String,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let stage = config
        .stage(&args.stage)
        .with_context(|| format!("no stage `{}` in {}", args.stage, config.file.display()))?;
    let StageKind::Rsync(spec) = &stage.kind else {
        bail!(
            "stage `{}` is not an rsync stage; only rsync stages rotate snapshots",
            stage.name
        );
    };
    let Some(rotate) = &spec.rotate else {
        bail!(
            "stage `{}` keeps no snapshots; add rotate = {{ every = \"168h\", keep = 8 }}",
            stage.name
        );
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
    println!(
        "{} snapshot(s) of {} (every {}, keep {}):",
        snapshots.len(),
        destination.display(),
        rotate.every.get_ref(),
        rotate.keep.get_ref()
    );
    for snapshot in &snapshots {
        let name = snapshot
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        println!("{name}  {}", snapshot.taken);
    }
    Ok(ExitCode::SUCCESS)
}
