//! `backupctl history STAGE [PATH]`: the versions a stage's backup holds, newest first
//! (for a `git` stage: the commits that touched PATH). Dispatches on the stage's kind.

use std::process::ExitCode;

use crate::cli::Cli;
use crate::outln;
use crate::stages::StageKind;

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
    match &stage.kind {
        StageKind::Git(spec) => {
            let entries = spec.history(args.path.as_deref())?;
            for entry in &entries {
                if args.json {
                    outln!("{}", serde_json::to_string(entry)?)?;
                } else {
                    outln!("{}  {}  {}", &entry.commit[..12], entry.date, entry.subject)?;
                }
            }
            if entries.is_empty() && !args.json {
                eprintln!(
                    "no commits touched {}",
                    args.path.as_deref().unwrap_or("the backup")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(crate::exit::usage(format_args!(
            "`history` does not know {} stages yet (stage `{}`)",
            other.name(),
            stage.name
        ))),
    }
}
