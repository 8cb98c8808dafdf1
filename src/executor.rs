//! The executor: runs one stage (`backupctl stage NAME`, or one step of `run --here`),
//! wrapped in what every stage shares: the journal span with our fields, start / end
//! records with `MESSAGE_ID`s, `STATUS=` lines, the stage lock (one run of a stage at a
//! time), the `when_mounted` check and the run record.

use std::path::Path;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::config::{Config, Stage};
use crate::paths::Scope;
use crate::report::messages;
use crate::report::{Figures, Reporter};
use crate::run_records::{self, RunRecord, RunResult};
use crate::stage_lock::{Busy, Refused, StageLock};
use crate::stages::{Outcome, StageContext, StageError, new_id};

/// How a run of a stage was started, and what it does when the stage is already running.
#[derive(Debug, Clone)]
pub struct Start {
    /// Written into the lock for a refused run to name: the unit, or the command.
    pub by: String,
    /// Wait for the running one to end instead of refusing to start.
    pub wait: bool,
}

impl Start {
    /// `backup@STAGE.service` when systemd runs us (it sets `$INVOCATION_ID`), else `command`.
    pub fn detect(stage: &str, command: &str, wait: bool) -> Start {
        let by = match std::env::var_os("INVOCATION_ID") {
            Some(id) if !id.is_empty() => crate::units::stage_service(stage),
            _ => command.to_string(),
        };
        Start { by, wait }
    }
}

/// The id of this run: systemd's `$INVOCATION_ID` when a unit runs us, else a fresh one.
pub fn run_id() -> String {
    std::env::var("INVOCATION_ID")
        .ok()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(new_id)
}

/// Runs one stage to its end and records it. The returned record says how it went; its
/// `exit_code` is what `backupctl stage` exits with. `job_run` is the run of the whole job
/// this stage belongs to (`crate::job_run`; `run_id` itself when it ran alone).
///
/// Before anything else the stage's lock is taken; when another run holds it (and `start`
/// does not say to wait) nothing runs and nothing is recorded in the run records: the
/// journal has the refusal ([`messages::STAGE_BUSY`]) and the caller gets [`Busy`].
pub fn run_stage(
    config: &Config,
    stage: &Stage,
    scope: Scope,
    run_id: &str,
    job_run: &str,
    report: &Reporter,
    start: &Start,
) -> Result<RunRecord, Busy> {
    let span = tracing::info_span!(
        "stage",
        backupctl_job = %stage.job,
        backupctl_stage = %stage.name,
        backupctl_run = %run_id,
        backupctl_job_run = %job_run,
    );
    let _entered = span.enter();
    let state_dir = crate::paths::state_dir(scope);

    let lock = match lock(&state_dir, stage, scope, start, report) {
        Ok(lock) => Ok(lock),
        Err(Refused::Busy(busy)) => {
            warn!(
                message_id = messages::STAGE_BUSY,
                backupctl_exit_code = crate::exit::TEMPORARY,
                "stage {} not started: {busy}",
                stage.name
            );
            report.status("not started: already running");
            report.finish();
            return Err(busy);
        }
        Err(Refused::Stopped) => Err(StageError::Interrupted),
        Err(Refused::Lock(error)) => Err(StageError::Failed(error_chain(&error))),
    };
    // The run starts once it holds the lock: a `--wait` is not part of its duration.
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let ran = match &lock {
        // Not the stage's own failure, but one all the same: recorded and reported as such.
        Err(StageError::Interrupted) => Ran::Done(Err(StageError::Interrupted)),
        Err(other) => Ran::Done(Err(StageError::Failed(other.to_string()))),
        Ok(lock) => attempt(&StageContext {
            config,
            stage,
            scope,
            state_dir: state_dir.clone(),
            report,
            run_id: run_id.to_string(),
            lock,
        }),
    };
    // To the millisecond: journal fields and the catalog text read `38.712`, not 17 digits.
    let duration = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let (result, exit_code, error, outcome) = conclude(stage, ran, report, clock, duration);
    let memory = crate::cgroup::own_memory();
    let mut warnings = outcome.warnings;
    if let Some(throttled) = memory.as_ref().filter(|m| m.high_events > 0) {
        warnings.push(memory_high_note(throttled));
    }
    let record = RunRecord {
        run: run_id.to_string(),
        job_run: Some(job_run.to_string()),
        job: stage.job.clone(),
        stage: stage.name.clone(),
        kind: stage.spec.name().to_string(),
        started: started_at.to_string(),
        finished: jiff::Timestamp::now().to_string(),
        duration_secs: duration,
        result,
        exit_code,
        error,
        warnings,
        figures: outcome.figures,
        killed_by_limit: None,
        // The stage's cgroup is its unit's: peak and throttling of the tool and its helpers.
        memory,
    };
    report.finish();
    if let Err(problem) = run_records::append(&state_dir, &record) {
        // The backup itself is done (or failed) either way; a lost record must not change that.
        warn!("{problem}");
    }
    // Likewise for the metrics file.
    if let Err(problem) = crate::metrics::update(config, scope) {
        warn!("{problem}");
    }
    // Held until the record is written: the next run starts after this one is on record.
    drop(lock);
    Ok(record)
}

/// The note a run throttled by `memory_high` leaves: how often, and how long its tasks
/// waited for memory when the kernel tells (`memory.pressure`).
fn memory_high_note(memory: &crate::cgroup::MemoryUse) -> String {
    let mut note = format!("throttled by memory_high {} time(s)", memory.high_events);
    if let Some(stalled) = memory.stalled_secs {
        note.push_str(&format!(", waiting {stalled:.1} s for memory"));
    }
    note
}

/// What became of a stage that holds its lock.
// One value per stage run, moved once from `attempt` to `conclude`: boxing the outcome
// would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Ran<'a> {
    /// `when_mounted` names this path and nothing is mounted there: the stage did not run.
    Skipped(&'a Path),
    /// The kind ran (or could not start): its outcome or its failure.
    Done(Result<Outcome, StageError>),
}

/// Runs the stage's kind unless its `when_mounted` path is not a mount point, with the start
/// record, the D-Bus sink and the sleep inhibitor around it.
fn attempt<'a>(ctx: &StageContext<'a>) -> Ran<'a> {
    let stage = ctx.stage;
    if let Some(mount) = stage.when_mounted.as_deref().filter(|m| !is_mount_point(m)) {
        return Ran::Skipped(mount);
    }
    let kind = stage.spec.name();
    info!(
        message_id = messages::STAGE_STARTED,
        backupctl_kind = kind,
        "stage {} ({kind}) started",
        stage.name
    );
    if let Some(sink) = crate::report::dbus::DbusSink::connect(ctx.scope, &stage.name) {
        ctx.report.add_sink(Box::new(sink));
    }
    ctx.report.started();
    ctx.report.status(&format!("{kind}: starting"));
    let wanted = ctx
        .config
        .job(&stage.job)
        .is_some_and(|job| job.inhibit_sleep);
    let inhibitor = wanted.then(|| inhibit_sleep(&stage.job));
    let result = run_kind(ctx);
    match inhibitor {
        // A warning of the run (logged with the others when it succeeds).
        Some(Err(problem)) => Ran::Done(match result {
            Ok(mut outcome) => {
                outcome.warnings.push(problem);
                Ok(outcome)
            }
            Err(failure) => {
                warn!("{problem}");
                Err(failure)
            }
        }),
        // The inhibitor (its file descriptor) is released here, after the stage's tool ended.
        _ => Ran::Done(result),
    }
}

/// The end record of a run in the journal and `STATUS=`, and what its run record says: result,
/// exit code, error and outcome.
fn conclude(
    stage: &Stage,
    ran: Ran,
    report: &Reporter,
    clock: Instant,
    duration: f64,
) -> (RunResult, u8, Option<String>, Outcome) {
    match ran {
        Ran::Skipped(mount) => {
            info!(
                message_id = messages::STAGE_SKIPPED,
                "stage {} skipped: {} is not mounted",
                stage.name,
                mount.display()
            );
            report.status(&format!("skipped: {} is not mounted", mount.display()));
            (
                RunResult::Skipped,
                crate::exit::OK,
                None,
                Outcome::default(),
            )
        }
        Ran::Done(Ok(outcome)) => {
            log_success(stage, &outcome, duration);
            report.completed(&outcome.figures, clock.elapsed());
            report.status(&format!(
                "done in {}",
                crate::report::short_duration(clock.elapsed())
            ));
            (RunResult::Success, crate::exit::OK, None, outcome)
        }
        Ran::Done(Err(failure)) => {
            let result = if matches!(failure, StageError::Interrupted) {
                RunResult::Interrupted
            } else {
                RunResult::Failed
            };
            let message = error_chain(&failure);
            error!(
                message_id = messages::STAGE_FAILED,
                backupctl_exit_code = failure.exit_code(),
                backupctl_duration_secs = duration,
                "stage {} failed: {message}",
                stage.name
            );
            report.status(&format!("failed: {message}"));
            report.error(&crate::report::ErrorReport {
                error: message.clone(),
                during: "stage".into(),
                item: String::new(),
            });
            let outcome = Outcome {
                figures: failure.figures().cloned().unwrap_or_default(),
                ..Outcome::default()
            };
            (result, failure.exit_code(), Some(message), outcome)
        }
    }
}

/// `inhibit_sleep = true`: a logind inhibitor lock ("block" on sleep and idle) for the run of
/// the stage, taken over D-Bus rather than by wrapping `ExecStart=` in `systemd-inhibit`, so
/// the units stay the same and the stage's own process holds it: logind keeps the lock while
/// the returned file descriptor is open, and a killed stage releases it with its death. When
/// it cannot be taken (no logind, as in containers; polkit refuses) the stage runs anyway with
/// a warning: a backup that ran unprotected beats one that did not run.
fn inhibit_sleep(job: &str) -> Result<zbus::OwnedFd, String> {
    let why = format!("backup {job}");
    let result: zbus::Result<zbus::OwnedFd> = zbus::block_on(async {
        let connection = zbus::connection::Builder::system()
            .method_timeout(std::time::Duration::from_secs(10))
            .build()
            .await?;
        let reply = connection
            .call_method(
                Some("org.freedesktop.login1"),
                "/org/freedesktop/login1",
                Some("org.freedesktop.login1.Manager"),
                "Inhibit",
                &("sleep:idle", "backupctl", why.as_str(), "block"),
            )
            .await?;
        reply.body().deserialize::<zbus::OwnedFd>()
    });
    match result {
        Ok(fd) => {
            info!("holding a logind inhibitor lock: no sleep or idle action while the stage runs");
            Ok(fd)
        }
        Err(error) => Err(format!(
            "inhibit_sleep: cannot keep the system from sleeping during the stage (logind's \
                 Inhibit on the system bus: {error}); the stage ran without it"
        )),
    }
}

/// Takes the stage's lock, waiting for it when `start` says so (saying once that it waits).
fn lock(
    state_dir: &Path,
    stage: &Stage,
    scope: Scope,
    start: &Start,
    report: &Reporter,
) -> Result<StageLock, Refused> {
    if !start.wait {
        return StageLock::try_acquire(state_dir, &stage.name, scope, &start.by);
    }
    StageLock::acquire_waiting(state_dir, &stage.name, scope, &start.by, |busy| {
        // Once, to the journal or the terminal (stderr outside systemd), and as the unit's
        // STATUS= so that `systemctl status` says why it has not begun.
        let waiting = format!("{}; waiting for it to end", busy.running());
        info!("{waiting}");
        report.status(&waiting);
    })
}

/// Checks the secret files the stage reads before its tool reads them, hello or not. A
/// credential systemd loaded is read from `$CREDENTIALS_DIRECTORY` instead, and exempt.
fn check_secrets(stage: &Stage) -> Result<(), StageError> {
    let needs = stage.spec.needs();
    for path in &needs.secrets {
        let loaded = needs.credentials.iter().any(|(name, file)| {
            file == path
                && std::env::var_os("CREDENTIALS_DIRECTORY")
                    .is_some_and(|dir| Path::new(&dir).join(name).exists())
        });
        if !loaded {
            crate::secret_file::check(path)
                .map_err(|error| StageError::Preflight(error.to_string()))?;
        }
    }
    // What the stage runs or feeds its tool by path: only its user and root may change it.
    let cleanup = stage
        .cleanup
        .as_deref()
        .and_then(crate::needs::program_path);
    for path in needs.trusted.iter().chain(&cleanup) {
        crate::trust::check(path, "the file", crate::trust::Reader::current())
            .map_err(|error| StageError::Preflight(error.to_string()))?;
    }
    Ok(())
}

/// Runs the stage's kind, inside snapshots of its sources when the stage asks for them.
fn run_kind(ctx: &StageContext) -> Result<Outcome, StageError> {
    check_secrets(ctx.stage)?;
    let sources = ctx.stage.spec.needs().sources;
    let Some(settings) = ctx.stage.snapshot.as_ref().filter(|_| !sources.is_empty()) else {
        return ctx.stage.spec.run(ctx);
    };
    let (result, warnings) =
        crate::snapshot::around(settings, &sources, &ctx.stage.name, &ctx.state_dir, || {
            ctx.stage.spec.run(ctx)
        })?;
    result.map(|mut outcome| {
        outcome.warnings.splice(0..0, warnings);
        outcome
    })
}

fn log_success(stage: &Stage, outcome: &Outcome, duration: f64) {
    let Figures {
        files,
        files_new,
        files_changed,
        bytes_read,
        bytes_added,
        snapshot_id,
        // A drill's own figures are on its own journal line (BACKUPCTL_DRILL_*).
        ..
    } = &outcome.figures;
    for warning in &outcome.warnings {
        warn!(message_id = messages::STAGE_WARNED, "{warning}");
    }
    info!(
        message_id = messages::STAGE_SUCCEEDED,
        backupctl_duration_secs = duration,
        backupctl_files = *files,
        backupctl_files_new = *files_new,
        backupctl_files_changed = *files_changed,
        backupctl_bytes_read = *bytes_read,
        backupctl_bytes_added = *bytes_added,
        backupctl_snapshot_id = snapshot_id.as_deref(),
        backupctl_warnings = outcome.warnings.len(),
        "stage {} succeeded in {duration:.1}s{}",
        stage.name,
        if outcome.warnings.is_empty() {
            String::new()
        } else {
            format!(" with {} warning(s)", outcome.warnings.len())
        }
    );
}

/// The error and its causes on one line, as people read them in the journal.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True when `path` is a mount point, from `/proc/self/mountinfo` (device numbers would miss
/// bind mounts of the same filesystem).
pub fn is_mount_point(path: &Path) -> bool {
    path.canonicalize()
        .is_ok_and(|path| crate::mounts::is_mount_point(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_mount_point_and_a_fresh_dir_is_not() {
        assert!(is_mount_point(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()));
        assert!(!is_mount_point(Path::new("/does/not/exist")));
    }
}
