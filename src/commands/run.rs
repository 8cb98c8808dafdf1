//! `backupctl run [JOB]`: run a job through systemd and follow it, or with `--here` in this
//! process (no systemd needed: laptops without it, a first try, CI).

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::Cli;
use crate::config::DEFAULT_JOB;
use crate::runner;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job (default: the [job] table's job).
    pub job: Option<String>,
    /// Run the stages in this process instead of starting the units.
    #[arg(long)]
    pub here: bool,
    /// With --here: a stage that is already running (its unit, another `run --here`) is
    /// waited for instead of not started (exit 75).
    #[arg(long, requires = "here")]
    pub wait: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let job = args.job.as_deref().unwrap_or(DEFAULT_JOB);
    super::job(&config, job)?;
    let scope = cli.scope();
    if args.here {
        crate::signals::install()?;
        let report = runner::here::run_job(&config, job, scope, args.wait);
        eprint!("\n{}", runner::here::summary(&report));
        // A stage another run holds: not a failed backup, a run to try again later.
        let busy: Vec<_> = report.busy().collect();
        for busy in &busy {
            eprintln!("backupctl: {busy}");
        }
        return Ok(if report.succeeded() {
            ExitCode::SUCCESS
        } else if !busy.is_empty() && !report.a_required_stage_failed() {
            ExitCode::from(crate::exit::TEMPORARY)
        } else {
            ExitCode::from(crate::exit::FAILED)
        });
    }
    let outcome = runner::systemd::run_job(&config, job, scope, |stage| {
        let status = if stage.status_text.is_empty() {
            String::new()
        } else {
            format!(": {}", stage.status_text)
        };
        println!("{:<16} {}{status}", stage.name, stage.describe());
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let hint = error.hint(scope);
            bail!("{error}\n{hint}");
        }
    };
    for stage in outcome.stages.iter().filter(|s| !s.ran) {
        println!("{:<16} {}", stage.name, stage.describe());
    }
    println!(
        "job {job} {}",
        if outcome.succeeded {
            "succeeded"
        } else {
            "failed (see `journalctl -x` or `backupctl logs`)"
        }
    );
    Ok(if outcome.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}
