//! `backupctl restore STAGE --target DIR`: bring files back from a stage's backup into DIR
//! (never over the live files unless DIR says so). Dispatches on the stage's kind: a restic
//! stage restores a snapshot (`--snapshot`, default the stage's latest), a git stage a commit
//! (`--commit`, default the newest).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::commands::restic_cli::{exec, filter_args, restic_spec};
use crate::outln;
use crate::stages::StageKind;
use crate::stages::restic::repo;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage whose backup to restore from (restic or git).
    pub stage: String,
    /// Where to write the restored files (restic: under DIR/<original absolute path>).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// restic: the snapshot id, or `latest` (the stage's newest snapshot).
    #[arg(long, default_value = "latest", value_name = "ID")]
    pub snapshot: String,
    /// git: the commit to restore from.
    #[arg(long, value_name = "C", default_value = "HEAD")]
    pub commit: String,
    /// Restore only this path (and what is below it); may be repeated.
    #[arg(long, value_name = "PATH")]
    pub include: Vec<String>,
    /// restic: read the restored files back and compare them with the repository.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let stage = super::stage(&config, &args.stage)?;
    match &stage.kind {
        StageKind::Git(spec) => {
            let files = spec.restore(&args.commit, &args.include, &args.target)?;
            outln!(
                "restored {files} file(s) from {} into {}",
                args.commit,
                args.target.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        StageKind::Restic(_) => restore_restic(cli, args),
        other => Err(crate::exit::usage(format_args!(
            "`restore` works on restic and git stages; `{}` is a {} stage",
            stage.name,
            other.name()
        ))),
    }
}

fn restore_restic(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
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
