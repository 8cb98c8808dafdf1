//! What `restore`, `snapshots` and `mount` do with a restic stage: restic run on the stage's
//! repository with its secrets, filtered to the stage's host, tags and paths, in place of
//! this process (signals and the terminal go straight to it).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::Context;

use super::{Spec, repo};
use crate::exit::usage;
use crate::stages::verbs::{Listing, MountArgs, RestoreArgs, SnapshotsArgs, VerbContext};

/// `restore STAGE`: a snapshot (`--snapshot`, default the stage's latest) into the target.
pub fn restore(spec: &Spec, ctx: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let mut command = repo::interactive_command(spec, ctx.scope)?;
    command.arg("restore").arg(&args.snapshot);
    if args.snapshot == "latest" {
        command.args(spec.own_snapshots_args());
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

/// `snapshots STAGE`: the stage's snapshots (`--all`: the repository's).
pub fn snapshots(spec: &Spec, ctx: &VerbContext, args: &SnapshotsArgs) -> anyhow::Result<Listing> {
    let mut command = repo::interactive_command(spec, ctx.scope)?;
    command.arg("snapshots");
    if args.json {
        command.arg("--json");
    }
    if !args.all {
        command.args(spec.own_snapshots_args());
    }
    exec(command).map(Listing::Done)
}

/// `mount STAGE DIR`: FUSE until Ctrl-C or `umount DIR`.
pub fn mount(spec: &Spec, ctx: &VerbContext, args: &MountArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if !dir.is_dir() {
        return Err(usage(format_args!(
            "{} is not a directory; create an empty one to mount the repository on",
            dir.display()
        )));
    }
    let mut command = repo::interactive_command(spec, ctx.scope)?;
    command.arg("mount");
    if !args.all {
        command.args(spec.own_snapshots_args());
    }
    command.arg(dir);
    eprintln!(
        "mounting the repository of stage {} on {}; Ctrl-C (or `umount {}`) ends it",
        ctx.stage,
        dir.display(),
        dir.display()
    );
    exec(command)
}

/// Replaces this process with restic.
fn exec(mut command: std::process::Command) -> anyhow::Result<ExitCode> {
    let error = command.exec();
    Err(error).context("cannot run restic")
}
