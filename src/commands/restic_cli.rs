//! The verbs on a restic stage's repository (`snapshots`, `mount`, used by `restore`): restic
//! run with the stage's repository and secrets, filtered to the stage's host, tags and paths.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Cli;
use crate::exit::usage;
use crate::stages::StageKind;
use crate::stages::restic::{Spec, repo};

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
        found => Err(usage(format_args!(
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
        ))),
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

/// `snapshots STAGE` for a restic stage.
pub fn snapshots(cli: &Cli, stage: &str, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let spec = restic_spec(cli, stage)?;
    let mut command = repo::interactive_command(&spec, cli.scope())?;
    command.arg("snapshots");
    if json {
        command.arg("--json");
    }
    if !all {
        command.args(filter_args(&spec));
    }
    exec(command)
}

/// `mount STAGE DIR` for a restic stage: FUSE until Ctrl-C or `umount DIR`.
pub fn mount(cli: &Cli, stage: &str, dir: &std::path::Path, all: bool) -> anyhow::Result<ExitCode> {
    let spec = restic_spec(cli, stage)?;
    if !dir.is_dir() {
        return Err(usage(format_args!(
            "{} is not a directory; create an empty one to mount the repository on",
            dir.display()
        )));
    }
    let mut command = repo::interactive_command(&spec, cli.scope())?;
    command.arg("mount");
    if !all {
        command.args(filter_args(&spec));
    }
    command.arg(dir);
    eprintln!(
        "mounting the repository of stage {stage} on {}; Ctrl-C (or `umount {}`) ends it",
        dir.display(),
        dir.display()
    );
    exec(command)
}
