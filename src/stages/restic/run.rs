//! One run of a restic stage: the operation's restic commands, the cures for a missing
//! repository and stale locks, retries of a remote repository's temporary failures, and
//! the error people read (`describe`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::json;
use super::repo::{self, Failure};
use super::spec::{Operation, Spec};
use crate::process::{Command, ToolError};
use crate::report::Figures;
use crate::stages::{Outcome, StageContext, StageError};

/// restic backup: "snapshot created, but some source files could not be read".
const INCOMPLETE: i32 = 3;
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// restic prints JSON status lines at 60 per second by default; two are plenty.
const PROGRESS_FPS: &str = "2";

/// The stage's operation, retried on temporary failures; a run killed last time is cured
/// first.
pub(super) fn run(spec: &Spec, ctx: &StageContext) -> Result<Outcome, StageError> {
    let env = repo::environment(spec, ctx.scope)?;
    let runner = Runner { spec, ctx, env };
    let marker = RunMarker::new(&ctx.state_dir, &ctx.stage.name);
    if marker.left_by_a_killed_run() {
        tracing::warn!(
            "the previous run of this stage did not finish; removing stale restic locks"
        );
        runner.cure("unlock")?;
    }
    let mut delay = spec.retry_delay();
    let mut attempt = 0;
    loop {
        marker.set();
        let result = runner.operation();
        marker.clear();
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
            other => return other,
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
struct Runner<'a> {
    spec: &'a Spec,
    ctx: &'a StageContext<'a>,
    env: Vec<(OsString, OsString)>,
}

impl Runner<'_> {
    fn operation(&self) -> Result<Outcome, StageError> {
        match self.spec.operation {
            Operation::Backup => {
                let outcome = self.backup()?;
                if self.spec.keep.is_some() {
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
    fn command(&self, args: Vec<OsString>) -> Command<'_> {
        repo::command(self.spec, &self.env, &self.ctx.stage.environment).args(args)
    }

    /// A plain restic command whose output goes to the journal.
    fn restic(
        &self,
        what: &str,
        args: Vec<String>,
        ok_codes: &[i32],
    ) -> Result<crate::process::Finished, StageError> {
        let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
        self.run_with_recovery(what, |runner| {
            runner
                .command(args.clone())
                .ok_codes(ok_codes)
                .on_line(|line| runner.ctx.log_output(line))
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
                _ => return Err(describe(what, failure, &stderr, self.spec.init)),
            }
            cured.push(failure);
        }
    }

    /// `restic init` or `restic unlock`: the cures [`Self::run_with_recovery`] applies (and a
    /// stage killed last time starts with).
    fn cure(&self, verb: &str) -> Result<(), StageError> {
        let result = self
            .command(vec![verb.into()])
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
