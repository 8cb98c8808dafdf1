//! Notifications (`[notify]`): what `backupctl notify UNIT` does when systemd starts
//! `backup-notify@UNIT.service` through `OnFailure=`/`OnSuccess=`, and the start ping.
//!
//! Each configured channel gets the event in its own form (see docs/notify.md); each request
//! is bounded by `[notify] timeout`. A channel that fails is logged with
//! `MESSAGE_ID=`[`messages::NOTIFY_FAILED`] and makes the notifier exit 1, so its unit shows
//! as failed too; the unit reported on keeps its own result whatever happens here.
//!
//! Each channel's delivery is its config type's [`Deliver`] impl, in the channel's file here;
//! [`deliver`] iterates the configured channels through a dispatch generated from the list
//! of channels (`crate::config::notify::for_each_channel!`).

pub mod command;
pub mod event;
pub mod healthchecks;
pub mod http;
pub mod journal;
pub mod ntfy;
pub mod secret;
pub mod webhook;

use std::time::Duration;

use tracing::{error, info};

use crate::config::notify::Channel;
use crate::config::{Config, Notify};
use crate::paths::Scope;
use crate::report::messages;
use crate::run_records::{self, RunResult};
pub use event::{Event, EventKind, Subject};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    Send(#[from] http::SendError),
    #[error("{0}")]
    Command(String),
}

/// The outcome systemd reported for the unit, or the one given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitResult {
    pub success: bool,
    /// systemd's word (`success`, `exit-code`, …).
    pub result: String,
    /// The unit's invocation id, when systemd passed it.
    pub invocation: Option<String>,
}

impl UnitResult {
    /// From the variables systemd (≥ 251) sets for units started by `OnFailure=`/`OnSuccess=`.
    pub fn from_env() -> Option<UnitResult> {
        let result = std::env::var("MONITOR_SERVICE_RESULT")
            .ok()
            .filter(|r| !r.is_empty())?;
        Some(UnitResult {
            success: result == "success",
            result,
            invocation: std::env::var("MONITOR_INVOCATION_ID")
                .ok()
                .filter(|id| !id.is_empty()),
        })
    }
}

/// Builds the event about `subject`'s end. Without a result from systemd or the command line
/// (systemd < 251), the run records decide.
pub fn end_event(
    config: &Config,
    scope: Scope,
    subject: &Subject,
    unit: &str,
    given: Option<UnitResult>,
) -> Event {
    let notify = config.notify.as_ref();
    let log_lines = notify.map_or(30, |n| n.log_lines);
    let records = run_records::read(&crate::paths::state_dir(scope)).unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    match subject {
        Subject::Stage(name) => {
            let stage = config.stage(name).expect("subject() checked the stage");
            let invocation = given.as_ref().and_then(|g| g.invocation.clone());
            let record = event::stage_record(&records, name, invocation.as_deref());
            let result = given.unwrap_or_else(|| UnitResult {
                success: record.is_some_and(|r| succeeded(r.result)),
                result: record.map_or("unknown".into(), |r| r.result.as_str().to_string()),
                invocation: None,
            });
            let run = invocation.or_else(|| record.map(|r| r.run.clone()));
            let log = if result.success {
                Vec::new()
            } else {
                let selection = crate::logs::Selection {
                    jobs: vec![stage.job.clone()],
                    stage: Some(name.clone()),
                    // A stage run; the selection would also take it as a job run's id,
                    // which an invocation id never is.
                    run: run.clone(),
                    // As `backupctl logs`: only the records of those who run this job.
                    uids: crate::logs::writers(config, scope, std::slice::from_ref(&stage.job)),
                };
                let mut log = journal::tail(&selection, log_lines);
                if log.is_empty()
                    && let Some(error) = record.and_then(|r| r.error.clone())
                {
                    log.push(error);
                }
                log
            };
            Event {
                event: if result.success {
                    EventKind::Success
                } else {
                    EventKind::Failure
                },
                job: stage.job.clone(),
                stage: Some(name.clone()),
                unit: unit.to_string(),
                result: result.result,
                fails_job: !result.success && stage.required,
                host: event::host(),
                started: record.map(|r| r.started.clone()),
                finished: record.map(|r| r.finished.clone()),
                time: now,
                exit_code: record.map(|r| r.exit_code),
                error: record.and_then(|r| r.error.clone()),
                log,
                run,
            }
        }
        Subject::Job(job) => {
            // This run's records only: an older run's success must not stand in for a stage
            // of this run that left no record (killed, timed out).
            let records = event::newest_job_run(config, job, &records);
            let latest: Vec<_> = config
                .stages_of(job)
                .filter_map(|s| event::stage_record(&records, &s.name, None))
                .collect();
            let result = given.unwrap_or_else(|| {
                let failed = config.stages_of(job).any(|s| {
                    s.required
                        && event::stage_record(&records, &s.name, None)
                            .is_none_or(|r| !succeeded(r.result))
                });
                UnitResult {
                    success: !failed,
                    result: if failed { "failed" } else { "success" }.into(),
                    invocation: None,
                }
            });
            let failed: Vec<String> = latest
                .iter()
                .filter(|r| !succeeded(r.result))
                .map(|r| format!("stage {} {}", r.stage, r.result.as_str()))
                .collect();
            Event {
                event: if result.success {
                    EventKind::Success
                } else {
                    EventKind::Failure
                },
                job: job.clone(),
                stage: None,
                unit: unit.to_string(),
                result: result.result,
                fails_job: !result.success,
                host: event::host(),
                started: latest.iter().map(|r| r.started.clone()).min(),
                finished: Some(now.clone()),
                time: now,
                exit_code: None,
                error: (!result.success && !failed.is_empty()).then(|| failed.join(", ")),
                log: event::job_summary(config, job, &records),
                run: result.invocation,
            }
        }
    }
}

/// Whether a run record counts as a success when systemd did not say (systemd < 251). An
/// interrupted run (stopped, exit code 130) failed its unit in systemd's eyes, so it does here.
fn succeeded(result: RunResult) -> bool {
    matches!(result, RunResult::Success | RunResult::Skipped)
}

/// The start event of a job.
pub fn start_event(job: &str, unit: &str) -> Event {
    let now = jiff::Timestamp::now().to_string();
    Event {
        event: EventKind::Start,
        job: job.to_string(),
        stage: None,
        unit: unit.to_string(),
        result: "start".into(),
        fails_job: false,
        host: event::host(),
        started: Some(now.clone()),
        finished: None,
        time: now,
        exit_code: None,
        error: None,
        log: Vec::new(),
        run: None,
    }
}

/// What a channel's delivery gets besides the event.
pub struct Context {
    pub http: http::Http,
    /// `[notify] timeout`: bound of one request (and of the command).
    pub timeout: Duration,
    /// `[notify] on_success`.
    pub on_success: bool,
}

/// A channel's delivery, implemented by each channel's config type (`crate::config::notify`)
/// in its file here.
pub trait Deliver {
    /// Whether the channel reports `event`. By default as a channel for people: every
    /// failure, successes only when `on_success` asks for them, starts never (those are for
    /// the pings).
    fn wants(&self, event: &Event, context: &Context) -> bool {
        match event.event {
            EventKind::Start => false,
            EventKind::Success => context.on_success,
            EventKind::Failure => true,
        }
    }

    /// Sends `event`, bounded by `context.timeout`.
    fn send(&self, event: &Event, context: &Context) -> Result<(), ChannelError>;
}

/// Generates [`deliverer`] from the list of channels.
macro_rules! dispatch {
    ($($variant:ident($ty:path)),* $(,)?) => {
        /// The delivery of a configured channel.
        fn deliverer(channel: &Channel) -> &dyn Deliver {
            match channel {
                $(Channel::$variant(c) => c,)*
            }
        }
    };
}
crate::config::notify::for_each_channel!(dispatch);

/// Sends `event` through every channel that reports it. Returns how many failed (each one
/// logged with `NOTIFY_FAILED`).
pub fn deliver(notify: &Notify, event: &Event) -> usize {
    let context = Context {
        http: http::Http::new(notify.timeout.0),
        timeout: notify.timeout.0,
        on_success: notify.on_success,
    };
    // All are sent, then all logged.
    let attempts: Vec<(&str, Result<(), ChannelError>)> = notify
        .channels()
        .filter(|channel| deliverer(channel).wants(event, &context))
        .map(|channel| (channel.name(), deliverer(channel).send(event, &context)))
        .collect();
    let mut failures = 0;
    for (channel, outcome) in attempts {
        match outcome {
            Ok(()) => info!(
                backupctl_job = %event.job,
                backupctl_notify_channel = channel,
                backupctl_notify_unit = %event.unit,
                "notified {channel} of {} ({})",
                event.unit,
                event.event.as_str()
            ),
            Err(problem) => {
                failures += 1;
                error!(
                    message_id = messages::NOTIFY_FAILED,
                    backupctl_job = %event.job,
                    backupctl_notify_channel = channel,
                    backupctl_notify_unit = %event.unit,
                    "notification of {} through {channel} failed: {problem}",
                    event.unit
                );
            }
        }
    }
    failures
}
