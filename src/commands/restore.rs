//! `backupctl restore STAGE --target DIR`: restore a snapshot (default: the stage's latest)
//! of a restic stage, whole or some paths of it, into a directory.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::commands::restic_cli::{exec, filter_args, restic_spec};
use crate::stages::restic::repo;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A restic stage of the config.
    pub stage: String,
    /// The snapshot id, or `latest` (the stage's newest snapshot).
    #[arg(long, default_value = "latest", value_name = "ID")]
    pub snapshot: String,
    /// Restore only this path (and what is below it); may be repeated.
    #[arg(long, value_name = "PATH")]
    pub include: Vec<OsString>,
    /// Where to restore; files land under DIR/<their original absolute path>.
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Read the restored files back and compare them with the repository.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let spec = restic_spec(cli, &args.stage)?;
    let mut command = repo::interactive_command(&spec, cli.scope())?;
    command.arg("restore").arg(&args.snapshot);
    if args.snapshot == "latest" {
        command.args(filter_args(&spec));
    }
    command.arg("--target").arg(&args.target);
    for include in &args.include {
        let mut arg = OsString::from("--include=");
        arg.push(include);
        command.arg(arg);
    }
    if args.verify {
        command.arg("--verify");
    }
    exec(command)
}
