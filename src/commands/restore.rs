//! `backupctl restore STAGE --target DIR`: bring files back from a stage's backup into DIR
//! (never over the live files unless DIR says so). The stage's kind does it, if it can (see
//! `StageKind::RESTORE`): a restic stage restores a snapshot (`--snapshot`, default the
//! stage's latest), a git stage a commit (`--commit`, default the newest). A database stage
//! loads one database's dump into its server (`--database NAME [--into OTHER] [--replace]`),
//! or writes the dump file into `--target DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::commands::Context;
use crate::stages::Capability;
use crate::stages::verbs::RestoreArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage whose backup to restore from (restic, git, or a database stage).
    pub stage: String,
    // The doc comment is the --help text: `<original …>` is a placeholder, not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    /// Where to write the restored files (restic: under DIR/<original absolute path>).
    /// Database stages: write the dump file into DIR instead of loading it.
    #[arg(long, value_name = "DIR", required_unless_present = "database")]
    pub target: Option<PathBuf>,
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
    /// Database stages: the database to restore (or a dump's name, as `snapshots` lists it).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Database stages: load the dump into database OTHER instead (created if missing).
    #[arg(long, value_name = "OTHER", requires = "database")]
    pub into: Option<String>,
    /// Database stages: drop and re-create a target database that is not empty.
    #[arg(long, requires = "database")]
    pub replace: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let stage = ctx.stage(&args.stage)?;
    let request = RestoreArgs {
        target: args.target.clone().unwrap_or_default(),
        snapshot: args.snapshot.clone(),
        commit: args.commit.clone(),
        include: args.include.clone(),
        verify: args.verify,
        database: args.database.clone(),
        into: args.into.clone(),
        replace: args.replace,
    };
    stage
        .spec
        .restore(&ctx.verb(stage), &request)
        .unwrap_or_else(|| Err(crate::commands::unsupported(Capability::Restore, stage)))
}
