//! `backupctl status [JOB] [--json]`: the last run of each job and the state of its stages,
//! from the run records and systemd (`crate::status`).

use std::process::ExitCode;

use crate::commands::Context;
use crate::config::ConfigError;
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
    let config = match ctx.config() {
        Ok(config) => config,
        Err(error) => return config_error(ctx, args, error),
    };
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

/// A config that does not load has no job to show: the status is that error, and what it
/// means for the units (only `backupctl-config-error.service` is generated, it fails at
/// boot). The exit code stays a config error's.
fn config_error(ctx: &Context, args: &Args, error: ConfigError) -> anyhow::Result<ExitCode> {
    let unit = crate::units::CONFIG_ERROR_SERVICE;
    let user = if ctx.scope() == crate::paths::Scope::User {
        " --user"
    } else {
        ""
    };
    if args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "config": ctx.config_path(),
            "config_error": error.to_string(),
            "config_error_unit": unit,
            "jobs": [],
        }))? + "\n";
        crate::out::bytes(text.as_bytes())?;
    } else {
        let text = format!(
            "the config does not load: no backup runs. The generator writes only {unit}, which \
             fails at boot with this error (`systemctl{user} status {unit}`); fix the config, \
             then run `systemctl{user} daemon-reload`.\n"
        );
        crate::out::bytes(text.as_bytes())?;
    }
    Err(error.into())
}
