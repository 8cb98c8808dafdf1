//! `backupctl status [JOB] [--json]`: the last run of each job and the state of its stages,
//! from the run records and systemd (`crate::status`).

use std::process::ExitCode;

use crate::commands::Context;
use crate::status;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The JSON shape (stable, keys are only added) is described in \
docs/watching.md. Without an answer from systemd the run records are shown alone and \
`systemd.reachable` is false."
)]
pub struct Args {
    /// Only this job (default: every job of the config).
    pub job: Option<String>,
    /// Print JSON for scripts instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let jobs: Vec<&str> = match &args.job {
        Some(job) => vec![ctx.job(job)?.name.as_str()],
        None => config.jobs.iter().map(|j| j.name.as_str()).collect(),
    };
    let status = status::gather(config, &jobs, ctx.scope());
    let text = if args.json {
        serde_json::to_string_pretty(&status)? + "\n"
    } else {
        let color = crate::report::terminal::stdout_color();
        status::table::render(&status, color)
    };
    crate::out::bytes(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
