//! `backupctl snapshots STAGE`: list the snapshots of a restic stage's repository (those
//! of its host, tags and paths), through restic with the stage's repository and secrets.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::Cli;
use crate::stages::StageKind;
use crate::stages::restic::{Spec, repo};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A restic stage of the config.
    pub stage: String,
    /// Every snapshot in the repository, not only this stage's.
    #[arg(long)]
    pub all: bool,
    /// restic's JSON output, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The restic stage called `name`, or an error listing the restic stages there are.
pub fn restic_spec(cli: &Cli, name: &str) -> anyhow::Result<Spec> {
    let config = cli.load_config()?;
    let restic_stages: Vec<&str> = config
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::Restic(_)))
        .map(|s| s.name.as_str())
        .collect();
    match config.stage(name).map(|s| &s.kind) {
        Some(StageKind::Restic(spec)) => Ok(spec.as_ref().clone()),
        found => bail!(
            "{} `{name}` in {}; its restic stages are: {}",
            if found.is_some() {
                "not a restic stage:"
            } else {
                "no stage"
            },
            config.file.display(),
            if restic_stages.is_empty() {
                "(none)".to_string()
            } else {
                restic_stages.join(", ")
            }
        ),
    }
}

/// `--host`, `--tag` and `--path` options that pick a stage's own snapshots.
pub fn filter_args(spec: &Spec) -> Vec<String> {
    let mut args = spec.selection_args();
    if let Some(paths) = &spec.paths {
        for path in paths.get_ref() {
            args.push("--path".into());
            args.push(path.get_ref().to_string_lossy().into_owned());
        }
    }
    args
}

/// Replaces this process with restic (signals and the terminal go straight to it).
pub fn exec(mut command: std::process::Command) -> anyhow::Result<ExitCode> {
    let error = command.exec();
    Err(error).context("cannot run restic")
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let spec = restic_spec(cli, &args.stage)?;
    let mut command = repo::interactive_command(&spec, cli.scope())?;
    command.arg("snapshots");
    if args.json {
        command.arg("--json");
    }
    if !args.all {
        command.args(filter_args(&spec));
    }
    exec(command)
}
