//! `backupctl restore STAGE --target DIR [--commit C] [--include PATH…]`: bring files back
//! from a stage's backup into DIR (never over the live files unless DIR says so).
//! Dispatches on the stage's kind.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::cli::Cli;
use crate::stages::StageKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage whose backup to restore from.
    pub stage: String,
    /// Where to write the restored files (created if missing).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// The version to restore (a `git` stage: a commit; default: the newest).
    #[arg(long, value_name = "C", default_value = "HEAD")]
    pub commit: String,
    /// Restore only these paths (repeatable; a path in the backup, or a source path).
    #[arg(long, value_name = "PATH")]
    pub include: Vec<String>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let Some(stage) = config.stage(&args.stage) else {
        bail!("no stage `{}` in {}", args.stage, config.file.display());
    };
    match &stage.kind {
        StageKind::Git(spec) => {
            let files = spec.restore(&args.commit, &args.include, &args.target)?;
            println!(
                "restored {files} file(s) from {} into {}",
                args.commit,
                args.target.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        other => bail!(
            "`restore` does not know {} stages yet (stage `{}`)",
            other.name(),
            stage.name
        ),
    }
}
