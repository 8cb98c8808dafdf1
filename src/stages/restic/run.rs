//! One run of a restic stage: the operation's restic commands, the cures for a missing
//! repository and stale locks, retries of a remote repository's temporary failures, and
//! the error people read (`describe`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fleet;
use super::json;
use super::repo::{self, Failure};
use super::spec::{Operation, Spec};
use crate::process::{Command, ToolError};
use crate::repo_lock::Mode;
use crate::report::Figures;
use crate::stages::{Outcome, StageContext, StageError};

/// restic backup: "snapshot created, but some source files could not be read".
const INCOMPLETE: i32 = 3;
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// The backoff while another host's restic holds the repository: 5 s, doubling, at most 2 min.
const FOREIGN_LOCK_FIRST_DELAY: Duration = Duration::from_secs(5);
const FOREIGN_LOCK_MAX_DELAY: Duration = Duration::from_secs(120);

/// A wait for restic's lock held elsewhere (see [`Runner::wait_for_foreign_lock`]).
struct ForeignWait {
    deadline: std::time::Instant,
    limit: Duration,
    delay: Duration,
    /// restic ≥ 0.16 waits itself (`--retry-lock`); one more attempt is all we make.
    retry_lock: bool,
    /// How many times it waited already.
    waits: u32,
    host: String,
}
/// restic prints JSON status lines at 60 per second by default; two are plenty.
const PROGRESS_FPS: &str = "2";

/// The stage's operation, retried on temporary failures; a run killed last time is cured
/// first.
pub(super) fn run(spec: &Spec, ctx: &StageContext) -> Result<Outcome, StageError> {
    run_with(spec, ctx, Vec::new(), &[], &|runner| runner.operation())
}

/// Runs `operation` against `spec`'s repository the way a restic stage runs its own: a run
/// killed last time is cured first, temporary failures are retried, a missing repository is
/// created (`init = true`, with `init_args`) and stale locks removed. `extra_env` goes to
/// every restic command besides the repository's (a copy stage's source repository).
pub(in crate::stages) fn run_with(
    spec: &Spec,
    ctx: &StageContext,
    extra_env: Vec<(OsString, OsString)>,
    init_args: &[&str],
    operation: &dyn Fn(&Runner) -> Result<Outcome, StageError>,
) -> Result<Outcome, StageError> {
    let mut env = repo::environment(spec, ctx.scope)?;
    env.extend(extra_env);
    let runner = Runner {
        spec,
        ctx,
        env,
        init_args,
        retry_lock: std::cell::RefCell::new(None),
    };
    let marker = RunMarker::new(&ctx.state_dir, &ctx.stage.name);
    // Part of the first attempt, so retried like it: after a power cut the catch-up run
    // starts as the machine boots, often before a remote repository can be reached.
    let mut unlock_first = marker.left_by_a_killed_run();
    if unlock_first {
        tracing::warn!(
            "the previous run of this stage did not finish; removing stale restic locks"
        );
    }
    let mut delay = spec.retry_delay();
    let mut attempt = 0;
    loop {
        marker.set();
        let result = if unlock_first {
            runner.cure("unlock").and_then(|()| {
                unlock_first = false;
                operation(&runner)
            })
        } else {
            operation(&runner)
        };
        // A stopped restic removes its own lock (SIGINT), unless the stop's timeout killed
        // it: after a stop the marker stays, and the next run unlocks what is left.
        // An unlock that failed leaves the marker, so that the next run unlocks again.
        if !unlock_first && !matches!(result, Err(StageError::Interrupted)) {
            marker.clear();
        }
        match result {
            Err(StageError::Temporary(message)) if attempt < spec.retries() => {
                attempt += 1;
                tracing::warn!(
                    "{message}; retry {attempt} of {} in {}",
                    spec.retries(),
                    crate::report::short_duration(delay)
                );
                ctx.report.status(&format!(
                    "restic: repository unreachable, retry {attempt} in {}",
                    crate::report::short_duration(delay)
                ));
                sleep_unless_stopped(delay)?;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            other => {
                super::figures::after_run(spec, ctx, &runner.env, other.is_ok());
                return other;
            }
        }
    }
}

/// Waits, but returns at once (as interrupted) when a stop is requested.
fn sleep_unless_stopped(duration: Duration) -> Result<(), StageError> {
    let end = std::time::Instant::now() + duration;
    while std::time::Instant::now() < end {
        if crate::signals::stopped() {
            return Err(StageError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A file in the state directory that exists while restic runs for a stage: found at the
/// next start, it means the last run was killed (SIGKILL, power loss) and may have left
/// stale locks. Cheaper than running `restic unlock` (which derives the key) every time.
struct RunMarker {
    path: PathBuf,
}

impl RunMarker {
    fn new(state_dir: &Path, stage: &str) -> Self {
        RunMarker {
            path: state_dir.join("restic-running").join(stage),
        }
    }

    fn left_by_a_killed_run(&self) -> bool {
        self.path.exists()
    }

    fn set(&self) {
        // Best effort: without the marker only the automatic unlock of a later run is lost.
        if let Some(dir) = self.path.parent() {
            let _ = crate::paths::create_dir(dir);
        }
        // Durably, before restic runs: restic's local backend fsyncs the lock it writes, so
        // after a power cut the lock would outlive a marker still in the page cache.
        let pid = std::process::id().to_string();
        let _ = crate::paths::write_atomically(
            &self.path,
            pid.as_bytes(),
            crate::paths::Fsync::Yes,
            None,
        );
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs the restic commands of one stage run.
pub(in crate::stages) struct Runner<'a> {
    spec: &'a Spec,
    ctx: &'a StageContext<'a>,
    env: Vec<(OsString, OsString)>,
    /// Arguments of the `restic init` that creates a missing repository.
    init_args: &'a [&'a str],
    /// `--retry-lock=…`, once a lock was met and restic is ≥ 0.16 (see `fleet`).
    retry_lock: std::cell::RefCell<Option<String>>,
}

impl Runner<'_> {
    fn operation(&self) -> Result<Outcome, StageError> {
        match self.spec.operation {
            Operation::Backup => {
                let outcome = self.backup()?;
                if self.spec.keep.is_some() {
                    // restic's forget locks exclusively: our lock too, the backup's shared
                    // one released first (see `repo_lock`).
                    if let Some(used) = self.spec.repository_use(Mode::Exclusive) {
                        self.ctx.hold_repository(&used)?;
                    }
                    self.ctx
                        .report
                        .status("restic: applying retention (forget)");
                    self.restic("forget", self.spec.forget_arguments(false), &[])?;
                }
                Ok(outcome)
            }
            Operation::Forget => {
                self.ctx
                    .report
                    .status("restic: applying retention (forget)");
                self.restic("forget", self.spec.forget_arguments(false), &[])?;
                Ok(Outcome::default())
            }
            Operation::Prune => {
                self.ctx.report.status("restic: pruning");
                let args = if self.spec.keep.is_some() {
                    self.spec.forget_arguments(true)
                } else {
                    vec!["prune".to_string()]
                };
                self.restic("prune", args, &[])?;
                Ok(Outcome::default())
            }
            Operation::Check => {
                self.ctx.report.status("restic: checking the repository");
                self.restic("check", self.spec.check_arguments(), &[])?;
                Ok(Outcome::default())
            }
        }
    }

    fn backup(&self) -> Result<Outcome, StageError> {
        self.ctx.report.status("restic: backing up");
        let mut figures = Figures::default();
        let mut summary = None;
        let mut warnings = Vec::new();
        let finished = self.run_with_recovery("backup", |runner| {
            let mut command = runner.command(self.spec.backup_arguments());
            // The backup itself (`stdin_from`) or the list of paths (`files_from_command`):
            // restic ends without a snapshot unless the command exited 0.
            let producer = self.spec.stdin_from.as_ref();
            if let Some(argv) = producer.or(self.spec.files_from_command.as_ref()) {
                // A new run of the command for each attempt: the last one's output is gone.
                let producer =
                    crate::process::Producer::spawn(argv.get_ref(), &self.ctx.stage.environment)?;
                command = command.stdin_from(producer);
            }
            command
                .env("RESTIC_PROGRESS_FPS", PROGRESS_FPS)
                .ok_codes(&[INCOMPLETE])
                .on_line(|line| match json::Message::parse(line) {
                    Some(json::Message::Status(status)) => {
                        self.ctx.report.progress(&status.progress())
                    }
                    Some(json::Message::Summary(found)) => summary = Some(found),
                    Some(json::Message::Error(error)) => {
                        tracing::warn!("{}", error.describe())
                    }
                    Some(json::Message::Other) => {}
                    None => self.ctx.log_output(line),
                })
                .on_stderr(|line| match json::Message::parse(line) {
                    Some(json::Message::Error(error)) => {
                        tracing::warn!("{}", error.describe())
                    }
                    _ => tracing::warn!("restic: {line}"),
                })
                .run()
                .map_err(StageError::from)
        })?;
        if let Some(summary) = &summary {
            figures = summary.figures();
            tracing::info!(
                backupctl_restic_duration_secs = summary.total_duration,
                backupctl_dirs_new = summary.dirs_new,
                backupctl_dirs_changed = summary.dirs_changed,
                backupctl_files_unmodified = summary.files_unmodified,
                "restic: snapshot {} saved: {} new, {} changed, {} unmodified files, {} added",
                summary.snapshot_id,
                summary.files_new,
                summary.files_changed,
                summary.files_unmodified,
                crate::out::human_bytes(summary.data_added),
            );
        }
        if finished.code == INCOMPLETE {
            warnings.push(format!(
                "restic saved snapshot {} but could not read some files (exit 3); see the warnings above",
                figures.snapshot_id.as_deref().unwrap_or("?")
            ));
        }
        Ok(Outcome { warnings, figures })
    }

    /// A restic command with this stage's repository, options and environment.
    /// The stage's bandwidth limits at the time the command starts.
    fn command(&self, args: Vec<OsString>) -> Command<'_> {
        let command = repo::command(self.spec, &self.env, &self.ctx.stage.environment)
            .args(self.spec.limit_args(crate::bandwidth::now()));
        match self.retry_lock.borrow().as_ref() {
            Some(retry) => command.arg(retry).args(args),
            None => command.args(args),
        }
    }

    /// A plain restic command whose output goes to the journal.
    pub(in crate::stages) fn restic(
        &self,
        what: &str,
        args: Vec<String>,
        ok_codes: &[i32],
    ) -> Result<crate::process::Finished, StageError> {
        self.restic_seeing(what, args, ok_codes, &|_| {})
    }

    /// [`Self::restic`], with each line of its output shown to `see` as well.
    pub(in crate::stages) fn restic_seeing(
        &self,
        what: &str,
        args: Vec<String>,
        ok_codes: &[i32],
        see: &dyn Fn(&str),
    ) -> Result<crate::process::Finished, StageError> {
        let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
        self.run_with_recovery(what, |runner| {
            runner
                .command(args.clone())
                .ok_codes(ok_codes)
                .on_line(|line| {
                    see(line);
                    runner.ctx.log_output(line)
                })
                .on_stderr(log_stderr)
                .tail_skips(repo::is_stack_frame)
                .run()
                .map_err(StageError::from)
        })
    }

    /// Runs `attempt`, and on the failures that have a cure applies it once and runs it
    /// again: no repository yet (with `init = true`) → `restic init`; locked → `restic
    /// unlock` (stale locks only). What remains becomes a clear [`StageError`].
    fn run_with_recovery<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut(&Self) -> Result<T, StageError>,
    ) -> Result<T, StageError> {
        let mut cured = Vec::new();
        let mut foreign: Option<ForeignWait> = None;
        loop {
            let stderr = match attempt(self) {
                Err(StageError::Tool(ToolError::Failed { stderr, .. })) => stderr,
                other => return other,
            };
            let failure = repo::classify(&stderr);
            match failure {
                Failure::Missing if self.spec.init && !cured.contains(&failure) => {
                    tracing::info!("no restic repository at the location yet; creating it");
                    self.ctx.report.status("restic: creating the repository");
                    self.cure("init")?;
                }
                Failure::Locked if !cured.contains(&failure) => {
                    tracing::warn!("the repository is locked; removing stale locks");
                    self.cure("unlock")?;
                }
                Failure::Locked => {
                    let wait = foreign.get_or_insert_with(|| self.foreign_wait());
                    self.wait_for_foreign_lock(what, wait, &stderr)?;
                }
                _ => return Err(describe(what, failure, &stderr, self.spec.init)),
            }
            cured.push(failure);
        }
    }

    /// The first time restic's own lock is in the way after `unlock` (the fleet case, see
    /// `fleet`): when the wait ends, and whether restic ≥ 0.16 waits by itself.
    fn foreign_wait(&self) -> ForeignWait {
        let limit = self.ctx.repositories.requester().wait;
        let version = Command::new(self.spec.program())
            .arg("version")
            .output()
            .ok()
            .and_then(|out| fleet::version(&out));
        let retry_lock = version.is_some_and(fleet::has_retry_lock);
        if retry_lock {
            *self.retry_lock.borrow_mut() = Some(fleet::retry_lock_argument(limit));
        }
        ForeignWait {
            deadline: std::time::Instant::now() + limit,
            limit,
            delay: FOREIGN_LOCK_FIRST_DELAY,
            retry_lock,
            waits: 0,
            host: fleet::hostname(),
        }
    }

    /// Waits before the next attempt on a repository locked by restic elsewhere, saying who
    /// holds it and whether that lock is live or stale (a stale one is removed); fails once
    /// the stage's `lock_wait` is spent.
    fn wait_for_foreign_lock(
        &self,
        what: &str,
        wait: &mut ForeignWait,
        stderr: &str,
    ) -> Result<(), StageError> {
        let name = self
            .spec
            .repository_use(Mode::Shared)
            .map_or_else(|| "?".into(), |used| used.name);
        let holder = fleet::ForeignLock::parse(stderr);
        let described = holder.as_ref().map_or_else(
            || "restic's lock (no details)".to_string(),
            |lock| lock.describe(&wait.host),
        );
        let now = std::time::Instant::now();
        // With `--retry-lock`, restic has waited the whole limit already.
        if (wait.retry_lock && wait.waits > 0) || now >= wait.deadline {
            return Err(StageError::LockWait(format!(
                "restic {what}: gave up waiting for repository {name} after {} (`lock_wait`): still locked by {described}; raise the stage's `lock_wait`, or find that restic on its host",
                crate::report::short_duration(wait.limit)
            )));
        }
        let delay = wait.delay.min(wait.deadline - now);
        let waiting = format!(
            "waiting for repository {name}, locked by {described}; retry in {}",
            crate::report::short_duration(delay)
        );
        tracing::info!(
            message_id = crate::report::messages::REPOSITORY_WAIT,
            backupctl_repository = %name,
            backupctl_lock_holders = %described,
            "{waiting}"
        );
        self.ctx.report.status(&waiting);
        if holder.is_some_and(|lock| lock.stale(&wait.host)) {
            self.cure("unlock")?;
        }
        if !wait.retry_lock {
            sleep_unless_stopped(delay)?;
        }
        wait.delay = (wait.delay * 2).min(FOREIGN_LOCK_MAX_DELAY);
        wait.waits += 1;
        Ok(())
    }

    /// `restic init` or `restic unlock`: the cures [`Self::run_with_recovery`] applies (and a
    /// stage killed last time starts with).
    fn cure(&self, verb: &str) -> Result<(), StageError> {
        // The locks of an earlier boot first: `restic unlock` would send SIGHUP to each one's
        // PID, which belongs to another process in this boot (see boot_locks).
        if verb == "unlock"
            && !super::boot_locks::ready_for_unlock(
                |args| self.command(args),
                self.spec.local_repository().as_deref(),
            )
        {
            return Ok(());
        }
        let mut args: Vec<OsString> = vec![verb.into()];
        if verb == "init" {
            args.extend(self.init_args.iter().map(OsString::from));
        }
        let result = self
            .command(args)
            .on_line(|line| self.ctx.log_output(line))
            .on_stderr(log_stderr)
            .tail_skips(repo::is_stack_frame)
            .run();
        match result {
            Ok(_) => Ok(()),
            Err(ToolError::Failed { stderr, .. }) => Err(describe(
                verb,
                repo::classify(&stderr),
                &stderr,
                self.spec.init,
            )),
            Err(other) => Err(other.into()),
        }
    }
}

/// restic's stderr goes to the journal as warnings, but for the frames of a Go stack trace
/// (kept at debug level: nothing a reader can act on).
fn log_stderr(line: &str) {
    if repo::is_stack_frame(line) {
        tracing::debug!("restic: {line}");
    } else {
        tracing::warn!("restic: {line}");
    }
}

/// The error people read in the journal and `backupctl status`.
fn describe(what: &str, failure: Failure, stderr: &str, init: bool) -> StageError {
    let detail = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    match failure {
        Failure::Unreachable => StageError::Temporary(format!(
            "restic {what}: cannot reach the repository: {detail}"
        )),
        Failure::Locked => StageError::Temporary(format!(
            "restic {what}: the repository is locked by another restic process that is still running: {detail}"
        )),
        Failure::Forbidden => StageError::Failed(format!(
            "restic {what}: the repository refused to delete (403 Forbidden); an append-only \
             endpoint (`rclone serve restic --append-only`, rest-server --append-only) takes \
             backups only: run forget and prune through one with full access (docs/fleet.md): {detail}"
        )),
        Failure::Missing if !init => StageError::Failed(format!(
            "restic {what}: there is no repository at the configured location; create it with `restic init` or set `init = true` in the stage: {detail}"
        )),
        _ => StageError::Failed(format!("restic {what} failed: {detail}")),
    }
}
