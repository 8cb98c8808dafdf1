//! `backupctl mount STAGE DIR`: mount a restic stage's repository with FUSE to browse its
//! snapshots (`DIR/snapshots/…`, `DIR/hosts/…`); runs until Ctrl-C or `umount DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::cli::Cli;
use crate::commands::snapshots::{exec, filter_args, restic_spec};
use crate::stages::restic::repo;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A restic stage of the config.
    pub stage: String,
    /// An existing, empty directory.
    pub dir: PathBuf,
    /// Show every snapshot in the repository, not only this stage's.
    #[arg(long)]
    pub all: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let spec = restic_spec(cli, &args.stage)?;
    if !args.dir.is_dir() {
        bail!(
            "{} is not a directory; create an empty one to mount the repository on",
            args.dir.display()
        );
    }
    let mut command = repo::interactive_command(&spec, cli.scope())?;
    command.arg("mount");
    if !args.all {
        command.args(filter_args(&spec));
    }
    command.arg(&args.dir);
    eprintln!(
        "mounting the repository of stage {} on {}; Ctrl-C (or `umount {}`) ends it",
        args.stage,
        args.dir.display(),
        args.dir.display()
    );
    exec(command)
}
