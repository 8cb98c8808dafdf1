//! `backupctl stage NAME`: run one stage; the `ExecStart=` of `backup@.service`.

use std::process::ExitCode;

use crate::commands::Context;
use crate::executor;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage name (the instance name of backup@NAME.service).
    pub name: String,
    /// When the stage is already running, wait for that run to end instead of exiting 75 (the
    /// stage units always wait: a timer run queues behind a manual one).
    #[arg(long)]
    pub wait: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    // First of all: a shutdown reaching the stage while it reads its config must be a stop
    // it records, not the default action of SIGTERM, which leaves a noted run that the next
    // boot can only read as cut by the machine (docs/reliability.md).
    crate::signals::install()?;
    let config = ctx.config()?;
    let stage = ctx.stage(&args.name)?;
    let report = Reporter::for_environment(&stage.name);
    let run_id = executor::run_id();
    // Only a unit belongs to a job run systemd knows of; by hand, the stage is a run of its own.
    let job_run = std::env::var_os("INVOCATION_ID")
        .and_then(|_| {
            crate::job_run::for_stage(
                config,
                &stage.job,
                &stage.name,
                ctx.scope(),
                &crate::paths::state_dir(ctx.scope()),
            )
        })
        .unwrap_or_else(|| run_id.clone());
    let start = executor::Start::detect(&stage.name, "backupctl stage", args.wait);
    match executor::run_stage(
        config,
        stage,
        ctx.scope(),
        &run_id,
        &job_run,
        &report,
        &start,
    ) {
        Ok(record) => Ok(ExitCode::from(record.exit_code)),
        Err(busy) => {
            // Under systemd the journal has it already (STAGE_BUSY); by hand, say it here.
            if std::env::var_os("INVOCATION_ID").is_none() {
                eprintln!("backupctl: {busy}");
            }
            Ok(ExitCode::from(crate::exit::TEMPORARY))
        }
    }
}
