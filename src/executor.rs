//! The executor: runs one stage (`backupctl stage NAME`, or one step of `run --here`),
//! wrapped in what every stage shares: the journal span with our fields, start / end
//! records with `MESSAGE_ID`s, `STATUS=` lines, the stage lock (one run of a stage at a
//! time), the locks of the restic repositories it uses (`repo_lock`), the `when_mounted`
//! check and the run record.

use std::path::Path;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::config::{Config, Stage};
use crate::paths::Scope;
use crate::repo_lock::{RepositoryLocks, Requester};
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
    let repositories = RepositoryLocks::new(Requester {
        state_dir: state_dir.clone(),
        stage: stage.name.clone(),
        job: stage.job.clone(),
        wait: stage_lock_wait(stage),
    });
    // The run starts once it holds the lock: a `--wait` is not part of its duration.
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let mut notes = Vec::new();
    if lock.is_ok() {
        note_begin(&state_dir, stage, run_id, job_run, &started_at);
        note_job_run(config, &state_dir, stage, run_id, job_run, &started_at);
    }
    let ran = match &lock {
        // Not the stage's own failure, but one all the same: recorded and reported as such.
        Err(StageError::Interrupted) => Ran::Done(Err(StageError::Interrupted)),
        Err(other) => Ran::Done(Err(StageError::Failed(other.to_string()))),
        Ok(lock) => attempt(
            &StageContext {
                config,
                stage,
                scope,
                state_dir: state_dir.clone(),
                report,
                run_id: run_id.to_string(),
                lock,
                repositories: &repositories,
            },
            &mut notes,
        ),
    };
    let skip_reason = match &ran {
        Ran::Skipped(skip) => Some(skip.reason()),
        Ran::Done(_) => None,
    };
    // To the millisecond: journal fields and the catalog text read `38.712`, not 17 digits.
    let duration = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let (result, exit_code, error, outcome) = conclude(stage, ran, report, clock, duration, scope);
    let memory = crate::cgroup::own_memory();
    let mut warnings = outcome.warnings;
    if let Some(throttled) = memory.as_ref().filter(|m| m.high_events > 0) {
        warnings.push(memory_high_note(throttled));
    }
    let record = RunRecord {
        job_run: Some(job_run.to_string()),
        started: started_at.to_string(),
        duration_secs: duration,
        exit_code,
        error,
        warnings,
        figures: outcome.figures,
        skip_reason,
        notes,
        // The stage's cgroup is its unit's: peak and throttling of the tool and its helpers.
        memory,
        ..RunRecord::new(
            run_id,
            (&stage.job, &stage.name, stage.spec.name()),
            &jiff::Timestamp::now().to_string(),
            result,
        )
    };
    report.finish();
    if let Err(problem) = run_records::append(&state_dir, &record) {
        // The backup itself is done (or failed) either way; a lost record must not change that.
        warn!("{problem}");
    } else if let Err(problem) = run_records::end(&state_dir, &stage.name) {
        warn!("{problem}");
    }
    // Likewise for the metrics file.
    if let Err(problem) = crate::metrics::update(config, scope) {
        warn!("{problem}");
    }
    // Held until the record is written: the next run starts after this one is on record.
    drop(repositories);
    drop(lock);
    Ok(record)
}

/// Notes the run's beginning in the state directory (`run_records::begin`), so that a run the
/// machine does not survive is found: the next run records it as interrupted and says so.
fn note_begin(
    state_dir: &Path,
    stage: &Stage,
    run_id: &str,
    job_run: &str,
    started_at: &jiff::Timestamp,
) {
    let record = RunRecord {
        job_run: Some(job_run.to_string()),
        ..RunRecord::new(
            run_id,
            (&stage.job, &stage.name, stage.spec.name()),
            &started_at.to_string(),
            RunResult::Interrupted,
        )
    };
    match run_records::begin(state_dir, &record) {
        Ok(Some(cut)) => warn!(
            "the run of stage {} begun {} never ended (the machine went down during it): \
             recorded as interrupted",
            stage.name, cut.started
        ),
        Ok(None) => {}
        Err(problem) => warn!("{problem}"),
    }
}

/// Notes the job run this stage belongs to (`run_records::begin_job`), so that a run the
/// machine did not survive between two stages is found too. Not for a stage run alone or by
/// `run --here` (its job run is its own run): no `job-finished` would end the note.
fn note_job_run(
    config: &Config,
    state_dir: &Path,
    stage: &Stage,
    run_id: &str,
    job_run: &str,
    started_at: &jiff::Timestamp,
) {
    if job_run == run_id {
        return;
    }
    let note = run_records::JobNote {
        boot: String::new(),
        job: stage.job.clone(),
        job_run: job_run.to_string(),
        started: started_at.to_string(),
        stages: config
            .stages_of(&stage.job)
            .map(|s| run_records::NotedStage {
                name: s.name.clone(),
                kind: s.spec.name().to_string(),
                required: s.required,
            })
            .collect(),
    };
    match run_records::begin_job(state_dir, &note) {
        Ok(owed) if !owed.is_empty() => warn!(
            "the run of job {} begun {} never ended (the machine went down during it): \
             stage(s) {} recorded as interrupted (never began)",
            stage.job,
            owed[0].started,
            owed.iter()
                .map(|r| r.stage.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(_) => {}
        Err(problem) => warn!("{problem}"),
    }
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
    /// A condition of the stage does not hold: it did not run.
    Skipped(Skip<'a>),
    /// The kind ran (or could not start): its outcome or its failure.
    Done(Result<Outcome, StageError>),
}

/// Why a stage was skipped: a condition of its own that does not hold now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip<'a> {
    /// `when_mounted` names this path and nothing is mounted there.
    NotMounted(&'a Path),
    /// `on_ac_power` and the machine runs on battery.
    OnBattery,
    /// `skip_on_metered` and NetworkManager says the connection is metered (or guesses so).
    Metered,
}

impl Skip<'_> {
    /// The words after "skipped: " in the journal, `STATUS=`, the run record and `status`.
    pub fn reason(&self) -> String {
        match self {
            Skip::NotMounted(mount) => format!("{} is not mounted", mount.display()),
            Skip::OnBattery => "on battery".into(),
            Skip::Metered => "metered connection".into(),
        }
    }
}

/// The condition of `stage` that does not hold now, if any, in the order systemd checks
/// them (its `Condition…=` lines, then the `ExecCondition=`). A note goes into `notes` when
/// NetworkManager could not be asked: the stage then runs, and its record says so.
pub fn unmet_condition<'a>(stage: &'a Stage, notes: &mut Vec<String>) -> Option<Skip<'a>> {
    if let Some(mount) = stage.when_mounted.as_deref().filter(|m| !is_mount_point(m)) {
        return Some(Skip::NotMounted(mount));
    }
    if stage.conditions.on_ac_power && !crate::machine::on_ac_power() {
        return Some(Skip::OnBattery);
    }
    if stage.conditions.skip_on_metered {
        match crate::machine::metered() {
            metered if metered.skips() => return Some(Skip::Metered),
            crate::machine::Metered::Absent(why) => notes.push(format!(
                "skip_on_metered: NetworkManager could not be asked ({why}); ran without \
                 knowing whether the connection is metered"
            )),
            _ => {}
        }
    }
    None
}

/// The `ExecCondition=` of a stage with `skip_on_metered` (`backupctl condition STAGE`):
/// false when the stage must be skipped, after writing the skip's run record (systemd then
/// never runs `ExecStart=`, which writes every other record).
pub fn condition_holds(
    config: &Config,
    stage: &Stage,
    scope: Scope,
    run_id: &str,
    job_run: &str,
) -> bool {
    if !stage.conditions.skip_on_metered || !crate::machine::metered().skips() {
        return true;
    }
    let now = jiff::Timestamp::now().to_string();
    record_skip(
        config,
        stage,
        scope,
        (run_id, job_run),
        &Skip::Metered.reason(),
        &now,
    );
    false
}

/// Records a skip that no `backupctl stage` saw (its `ExecStart=` never ran): the journal's
/// skip record, the run record at `at` (RFC 3339) and the metrics. `ids` is the run and its
/// job run.
pub fn record_skip(
    config: &Config,
    stage: &Stage,
    scope: Scope,
    (run_id, job_run): (&str, &str),
    reason: &str,
    at: &str,
) {
    let _entered = tracing::info_span!(
        "stage",
        backupctl_job = %stage.job,
        backupctl_stage = %stage.name,
        backupctl_run = %run_id,
        backupctl_job_run = %job_run,
    )
    .entered();
    info!(
        message_id = messages::STAGE_SKIPPED,
        "stage {} skipped: {reason}", stage.name
    );
    let record = RunRecord {
        job_run: Some(job_run.to_string()),
        skip_reason: Some(reason.to_string()),
        ..RunRecord::new(
            run_id,
            (&stage.job, &stage.name, stage.spec.name()),
            at,
            RunResult::Skipped,
        )
    };
    let state_dir = crate::paths::state_dir(scope);
    if let Err(problem) = run_records::append(&state_dir, &record) {
        warn!("{problem}");
    }
    if let Err(problem) = crate::metrics::update(config, scope) {
        warn!("{problem}");
    }
}

/// Runs the stage's kind unless one of its conditions does not hold, with the start
/// record, the D-Bus sink and the sleep inhibitor around it.
fn attempt<'a>(ctx: &StageContext<'a>, notes: &mut Vec<String>) -> Ran<'a> {
    let stage = ctx.stage;
    if let Some(skip) = unmet_condition(stage, notes) {
        return Ran::Skipped(skip);
    }
    for note in notes.iter() {
        info!("{note}");
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
    scope: Scope,
) -> (RunResult, u8, Option<String>, Outcome) {
    match ran {
        Ran::Skipped(skip) => {
            let reason = skip.reason();
            info!(
                message_id = messages::STAGE_SKIPPED,
                "stage {} skipped: {reason}", stage.name,
            );
            report.status(&format!("skipped: {reason}"));
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
            let result = failed_result(&failure, crate::signals::stopped());
            let exit_code = match result {
                RunResult::Interrupted => crate::exit::INTERRUPTED,
                _ => failure.exit_code(),
            };
            let mut message = error_chain(&failure);
            if result == RunResult::Interrupted && manager_stopping(scope) {
                message =
                    format!("{message}: stopped by a shutdown (the service manager is stopping)");
            }
            error!(
                message_id = messages::STAGE_FAILED,
                backupctl_exit_code = exit_code,
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
            (result, exit_code, Some(message), outcome)
        }
    }
}

/// The result of a failed run: `interrupted` when it was stopped, whatever error the stop
/// made of it. A stage kind may wrap its tool's end in an error of its own (the sqlite stage
/// made "copying …: interrupted" a failure), and then a poweroff during it read as a failed
/// backup, not as stopped by the shutdown.
fn failed_result(failure: &StageError, stop_requested: bool) -> RunResult {
    if stop_requested || matches!(failure, StageError::Interrupted) {
        RunResult::Interrupted
    } else {
        RunResult::Failed
    }
}

/// Whether the service manager is shutting down (`systemctl is-system-running` says
/// `stopping`): a stage stopped then was stopped by a poweroff or reboot (a logout, for a
/// user manager), not by `systemctl stop`. Asked only for an interrupted run, for at most 2 s.
fn manager_stopping(scope: Scope) -> bool {
    let mut command = std::process::Command::new("systemctl");
    if scope == Scope::User {
        command.arg("--user");
    }
    let Ok(mut child) = command
        .arg("is-system-running")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    for _ in 0..40 {
        if let Ok(Some(_)) = child.try_wait() {
            let mut state = String::new();
            use std::io::Read as _;
            let _ = child
                .stdout
                .take()
                .map(|mut out| out.read_to_string(&mut state));
            return state.trim() == "stopping";
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
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
    // In the order of their keys, so that two stages never each hold what the other waits for.
    for used in crate::repo_lock::merged(ctx.stage.spec.repositories()) {
        ctx.hold_repository(&used)?;
    }
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

/// How long the stage waits for a repository's lock: its own `lock_wait`, else the longest
/// its declared repositories set, else [`crate::repo_lock::DEFAULT_WAIT`].
fn stage_lock_wait(stage: &crate::config::Stage) -> std::time::Duration {
    let declared = stage
        .spec
        .repositories()
        .into_iter()
        .filter_map(|used| used.wait);
    stage
        .lock_wait
        .map(|wait| wait.0)
        .or_else(|| declared.max())
        .unwrap_or(crate::repo_lock::DEFAULT_WAIT)
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

    /// A poweroff during the sqlite stage's copy was recorded as a failure ("copying …"), so
    /// the record never said "stopped by a shutdown": a stopped run is interrupted, whatever
    /// error its kind made of the stop.
    #[test]
    fn a_run_that_fails_after_its_stop_was_requested_is_interrupted() {
        let wrapped = StageError::Failed("copying /srv/db/app.db: sqlite3 was interrupted".into());
        assert_eq!(failed_result(&wrapped, true), RunResult::Interrupted);
        assert_eq!(failed_result(&wrapped, false), RunResult::Failed);
        assert_eq!(
            failed_result(&StageError::Interrupted, false),
            RunResult::Interrupted
        );
    }
}
