//! `backupctl coverage [--json] [ROOT…]`: what under the roots no stage backs up, and the
//! sources a stage names that do not exist (`crate::coverage`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::Context;
use crate::coverage;
use crate::exit::Classify;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A stage covers its local sources minus its excludes (rsync and \
restic patterns, restic's exclude_caches). Listed: the top-most directories and files no stage \
covers, largest first, with their size as `du` counts it (allocated blocks, hard links once), \
their file count and why (not under any source, excluded by a stage's pattern, CACHEDIR.TAG); \
then the sources that do not exist. The stages' destinations and `[coverage] ignore` are never \
listed. The JSON shape (keys are only added) is in README.md, \"backupctl coverage\".\n\n\
Exit codes: 0 everything is covered; 1 something is not covered or a source is missing; 2 usage \
or config error."
)]
pub struct Args {
    /// The directories to check (default: `[coverage] roots`, else /home /etc /srv /var/lib
    /// /root, or $HOME with --user).
    #[arg(value_name = "ROOT")]
    pub roots: Vec<PathBuf>,
    /// Print JSON for scripts instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Walk into other file systems mounted below a root (default: stay on each root's).
    #[arg(long)]
    pub cross_file_systems: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let section = config.coverage.clone().unwrap_or_default();
    let roots = if !args.roots.is_empty() {
        for root in &args.roots {
            if !root.is_absolute() || !root.exists() {
                return Err(crate::exit::usage(format!(
                    "{}: not an existing absolute path; give the directories to check, e.g. /home",
                    root.display()
                )));
            }
        }
        args.roots.clone()
    } else if !section.roots.is_empty() {
        section.roots.clone()
    } else {
        // The defaults that this machine has.
        coverage::default_roots(ctx.scope())
            .into_iter()
            .filter(|root| root.exists())
            .collect()
    };
    let options = coverage::Options {
        roots,
        ignore: section.ignore.clone(),
        cross_file_systems: args.cross_file_systems,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    let progress = |entries: u64| {
        if let Some(bar) = &bar {
            bar.set_message(format!("checking coverage: {entries} entries"));
            bar.tick();
        }
    };
    let report = coverage::scan(config, &options, &progress).classify(crate::exit::Class::Usage)?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    for error in &report.errors {
        eprintln!("warning: {}: {}", error.path.display(), error.error);
    }
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        coverage::render(&report)
    };
    crate::out::bytes(text.as_bytes())?;
    Ok(if report.fully_covered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}
