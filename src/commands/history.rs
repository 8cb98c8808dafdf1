//! `backupctl history STAGE [PATH]`: the versions a stage's backup holds, newest first
//! (for a `git` stage: the commits that touched PATH). The stage's kind does it, if it can
//! (see `StageKind::HISTORY`).

use std::process::ExitCode;

use crate::cli::Cli;
use crate::stages::verbs::{HistoryArgs, VerbContext};

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

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let stage = super::stage(&config, &args.stage)?;
    let ctx = VerbContext {
        stage: &stage.name,
        scope: cli.scope(),
    };
    let request = HistoryArgs {
        path: args.path.clone(),
        json: args.json,
    };
    stage.kind.history(&ctx, &request).unwrap_or_else(|| {
        Err(crate::exit::usage(format_args!(
            "`history` does not know {} stages yet (stage `{}`)",
            stage.kind.name(),
            stage.name
        )))
    })
}
