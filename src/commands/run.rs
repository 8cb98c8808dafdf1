//! `backupctl run [JOB]`: run a job through systemd and follow it, or with `--here` in this
//! process (no systemd needed: laptops without it, a first try, CI).

use std::process::ExitCode;

use anyhow::anyhow;

use crate::commands::Context;
use crate::config::DEFAULT_JOB;
use crate::exit::Class;
use crate::outln;
use crate::runner;

#[derive(Debug, clap::Args)]
pub struct Args {
    // The doc comment is the --help text: `[job]` is the config table, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
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

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let job = args.job.as_deref().unwrap_or(DEFAULT_JOB);
    ctx.job(job)?;
    let scope = ctx.scope();
    if args.here {
        // No sandbox here, so these work; say that the units would not see them.
        for warning in crate::generator::sandbox::warnings(config) {
            eprintln!("warning: {warning}");
        }
        crate::signals::install()?;
        let report = runner::here::run_job(config, job, scope, args.wait);
        eprint!("\n{}", runner::here::summary(&report));
        // A stage another run holds: not a failed backup, a run to try again later.
        let busy: Vec<_> = report.busy().collect();
        for busy in &busy {
            eprintln!("backupctl: {busy}");
        }
        return Ok(if report.succeeded() {
            ExitCode::SUCCESS
        } else if crate::signals::stopped() {
            ExitCode::from(crate::exit::INTERRUPTED)
        } else if !busy.is_empty() && !report.a_required_stage_failed() {
            ExitCode::from(crate::exit::TEMPORARY)
        } else {
            ExitCode::from(crate::exit::FAILED)
        });
    }
    let outcome = runner::systemd::run_job(config, job, scope, |stage| {
        let status = if stage.status_text.is_empty() {
            String::new()
        } else {
            format!(": {}", stage.status_text)
        };
        // The job goes on, and `run` reports its result, whether or not anyone still reads
        // the progress lines: a closed stdout is ignored here (and only here).
        let _ = outln!("{:<16} {}{status}", stage.name, stage.describe());
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let hint = error.hint(scope);
            // Units that are not loaded: nothing ran, the setup is to be fixed (2).
            let class = match error {
                runner::systemd::SystemdError::Start { .. } => Class::Usage,
                _ => Class::Failed,
            };
            return Err(crate::exit::classified(class, anyhow!("{error}\n{hint}")));
        }
    };
    let mut lines = String::new();
    for stage in outcome.stages.iter().filter(|s| !s.ran) {
        lines.push_str(&format!("{:<16} {}\n", stage.name, stage.describe()));
    }
    lines.push_str(&format!(
        "job {job} {}\n",
        if outcome.succeeded {
            "succeeded"
        } else {
            "failed (see `journalctl -x` or `backupctl logs`)"
        }
    ));
    let _ = crate::out::bytes(lines.as_bytes());
    Ok(if outcome.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}
