//! `backupctl history STAGE [PATH]`: the versions a stage's backup holds, newest first
//! (for a `git` stage: the commits that touched PATH). The stage's kind does it, if it can
//! (see `StageKind::HISTORY`).

use std::process::ExitCode;

use crate::commands::Context;
use crate::stages::Capability;
use crate::stages::verbs::HistoryArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage whose backup to look into.
    pub stage: String,
    /// Only versions that touched this path (a path in the backup, or a source path).
    pub path: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let stage = ctx.stage(&args.stage)?;
    let request = HistoryArgs {
        path: args.path.clone(),
        json: args.json,
    };
    stage
        .spec
        .history(&ctx.verb(stage), &request)
        .unwrap_or_else(|| Err(crate::commands::unsupported(Capability::History, stage)))
}
