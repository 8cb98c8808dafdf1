//! `backupctl notify [--start] UNIT`: report on a unit through the `[notify]` channels. What
//! `backup-notify@UNIT.service` runs when systemd routes a unit's failure or success to it
//! (`OnFailure=`/`OnSuccess=`), and `backup-notify-start@JOB.service` for the start ping; by
//! hand, with `--result`, it tries the channels. Exit 0 when every channel delivered, 1 when
//! one did not (logged with its `MESSAGE_ID`): the unit reported on is never affected.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::commands::Context;
use crate::exit::{Class, Classify, usage};
use crate::notify::{self, Subject, UnitResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The unit to report on: backup-JOB.service or backup@STAGE.service.
    pub unit: String,
    /// Send the job's start ping (healthchecks' URL/start) instead of its result.
    #[arg(long)]
    pub start: bool,
    /// The unit's result, when systemd did not pass it ($MONITOR_SERVICE_RESULT, systemd ≥ 251).
    #[arg(long, value_enum, conflicts_with = "start")]
    pub result: Option<ResultArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResultArg {
    Success,
    Failure,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let Some(settings) = config.notify.as_ref() else {
        return Err(usage(format_args!(
            "{} has no [notify] table, so there is nothing to notify: add one (see \
             docs/notify.md), or, if a notifier unit ran this, it is left from an older config: \
             `backupctl generate` removes it",
            config.file.display()
        )));
    };
    let subject = notify::event::subject(config, &args.unit)
        .with_context(|| {
            format!(
                "`{}` is not a unit of this config: expected backup-JOB.service or \
             backup@STAGE.service of a job or stage it has (after renaming one, run \
             `backupctl generate`)",
                args.unit
            )
        })
        .classify(Class::Usage)?;
    let event = if args.start {
        let Subject::Job(job) = &subject else {
            return Err(usage(
                "--start needs the job unit (backup-JOB.service), not a stage's",
            ));
        };
        notify::start_event(job, &args.unit)
    } else {
        let given = match args.result {
            Some(ResultArg::Success) => Some(UnitResult {
                success: true,
                result: "success".into(),
                invocation: None,
            }),
            Some(ResultArg::Failure) => Some(UnitResult {
                success: false,
                result: "failed".into(),
                invocation: None,
            }),
            None => UnitResult::from_env(),
        };
        let result_known = given.is_some();
        let event = notify::end_event(config, ctx.scope(), &subject, &args.unit, given);
        // systemd also starts the job's OnFailure= unit when the job never ran because a
        // required stage failed ("dependency"), and then passes no result. That failure was
        // reported, with its log, by the stage's own notifier: once is enough.
        if let Subject::Job(job) = &subject
            && !result_known
            && event.event == notify::EventKind::Failure
        {
            tracing::info!(
                backupctl_job = %job,
                "job {job} did not run: {}; reported by the stages' notifiers",
                event.error.as_deref().unwrap_or("a required stage did not succeed")
            );
            return Ok(ExitCode::SUCCESS);
        }
        event
    };
    let failures = notify::deliver(settings, &event);
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}
