//! `rclone`: one-way (`sync`, `copy`) or two-way (`bisync`) transfers between rclone paths
//! (`remote:path` or absolute local paths), e.g. a laptop's folders with a cloud server.
//!
//! rclone's config comes from `config_file` or a systemd credential (`config_credential`,
//! read from `$CREDENTIALS_DIRECTORY`), handed over in `RCLONE_CONFIG`, never in argv.
//! Progress comes from rclone's JSON log (`--use-json-log --stats 1s`): each stats record
//! becomes a `STATUS=` line.
//!
//! bisync (rclone ≥ 1.58; Debian 12 ships 1.60) keeps its listings in the stage's own work
//! directory under the state directory. The first run (no listings yet) is a `--resync`: a
//! union of both sides in which nothing is deleted (for a file on both sides, Path1's copy
//! wins). A file changed on both sides is a conflict: rclone keeps both versions, renamed
//! `NAME..path1` and `NAME..path2`, on both sides; the stage reports each one as a warning.
//! A failed bisync deletes nothing: rclone computes all changes before it applies any, aborts
//! when a side would lose more than `max_delete` percent of its files (or all of them changed),
//! and runs its deletions only after every copy succeeded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Needs, Outcome, SpecError, StageError, StageKind, require_absolute, require_normalized,
};
use crate::process::Command;
use crate::process::ToolError;
use crate::report::{Figures, Progress};
use crate::stages::StageContext;

/// rclone's exit code for "temporary error (one that more retries might fix)".
const TEMPORARY: i32 = 5;
/// The marker rclone 1.60 logs for a file changed on both sides.
const CONFLICT_MARKER: &str = "New or changed in both paths";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Make the destination like the source (deletes in the destination).
    Sync,
    /// Copy new and changed files; never delete.
    Copy,
    /// Two-way: changes on either side reach the other.
    Bisync,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Copy => "copy",
            Mode::Bisync => "bisync",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub mode: Mode,
    /// An rclone path: `remote:path` or an absolute local path (Path1 of a bisync).
    pub source: Spanned<String>,
    /// An rclone path (Path2 of a bisync).
    pub destination: Spanned<String>,
    /// rclone's config file (it may hold credentials: keep it mode 0600).
    pub config_file: Option<Spanned<PathBuf>>,
    /// The name of a systemd credential holding rclone's config (`LoadCredential=NAME:…`).
    pub config_credential: Option<Spanned<String>>,
    /// rclone filter patterns left out (`--exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// bisync: abort when more than this percentage of a side's files would be deleted
    /// (rclone's default: 50).
    pub max_delete: Option<Spanned<u32>>,
    /// bisync: require the `RCLONE_TEST` files on both sides (`--check-access`), so that an
    /// empty mount point is never taken for "everything deleted".
    #[serde(default)]
    pub check_access: bool,
    /// Extra arguments for rclone, placed after the paths.
    #[serde(default)]
    pub args: Vec<String>,
    /// A rate ("1M") or a timetable ("08:00 1M, 19:00 off") for what rclone sends; with
    /// `download_limit` it becomes one `--bwlimit` (rclone's `UP:DOWN` form), a timetable
    /// that rclone itself follows during the run.
    pub upload_limit: Option<crate::bandwidth::Limit>,
    /// The same for what rclone receives.
    pub download_limit: Option<crate::bandwidth::Limit>,
}

/// `remote:path` (a colon before any slash) as opposed to a local path.
pub fn is_remote(location: &str) -> bool {
    location
        .find(':')
        .is_some_and(|colon| colon > 0 && !location[..colon].contains('/'))
}

/// One record of rclone's JSON log.
#[derive(Debug, Deserialize)]
struct LogRecord {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    object: Option<String>,
    stats: Option<Stats>,
}

/// rclone's accounting stats (the fields we use).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Stats {
    pub bytes: u64,
    pub total_bytes: u64,
    pub transfers: u64,
    pub total_transfers: u64,
    pub checks: u64,
    pub deletes: u64,
    pub errors: u64,
    pub eta: Option<f64>,
}

impl Stats {
    pub fn progress(&self) -> Progress {
        Progress {
            percent: (self.total_bytes > 0)
                .then(|| self.bytes as f64 * 100.0 / self.total_bytes as f64),
            bytes_done: Some(self.bytes),
            bytes_total: (self.total_bytes > 0).then_some(self.total_bytes),
            files_done: Some(self.transfers),
            files_total: (self.total_transfers > 0).then_some(self.total_transfers),
            eta: self
                .eta
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64),
            text: None,
        }
    }
}

/// What the stage learns from rclone's log while it runs.
#[derive(Debug, Default)]
pub struct Observed {
    pub stats: Option<Stats>,
    pub conflicts: Vec<String>,
    pub errors: Vec<String>,
    pub needs_resync: bool,
}

impl Observed {
    /// Takes one stderr line; returns the progress to show, if it was a stats record.
    pub fn take(&mut self, line: &str) -> Option<Progress> {
        let Ok(record) = serde_json::from_str::<LogRecord>(line) else {
            // rclone prints its final fatal error as plain text.
            if !line.trim().is_empty() {
                tracing::warn!("rclone: {line}");
                self.errors.push(strip_log_prefix(line).to_string());
            }
            return None;
        };
        if let Some(stats) = record.stats {
            let progress = stats.progress();
            self.stats = Some(stats);
            return Some(progress);
        }
        let msg = record.msg.trim();
        if msg.contains(CONFLICT_MARKER)
            && let Some((_, path)) = msg.rsplit_once(" - ")
        {
            self.conflicts.push(path.trim().to_string());
        }
        if msg.contains("Must run --resync") {
            self.needs_resync = true;
        }
        match record.level.as_str() {
            "error" | "critical" | "fatal" => {
                tracing::warn!("rclone: {msg}");
                self.errors.push(msg.to_string());
            }
            "warning" if msg.contains("EXPERIMENTAL") || msg.contains("Config file") => {
                tracing::debug!("rclone: {msg}")
            }
            "warning" | "notice" => tracing::info!("rclone: {msg}"),
            // One record per file copied: kept out of the journal unless debugging.
            _ if record.object.is_some() => tracing::debug!(
                "rclone: {msg}: {}",
                record.object.as_deref().unwrap_or_default()
            ),
            _ => tracing::info!("rclone: {msg}"),
        }
        None
    }
}

/// `2025/01/01 03:00:00 Failed to bisync: …` → `Failed to bisync: …`.
fn strip_log_prefix(line: &str) -> &str {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(date), Some(time), Some(rest)) if date.contains('/') && time.contains(':') => rest,
        _ => line,
    }
}

impl Spec {
    fn locations(&self) -> [&Spanned<String>; 2] {
        [&self.source, &self.destination]
    }

    /// The local paths the stage may write: the destination, and for bisync the source too.
    fn local_writes(&self) -> Vec<PathBuf> {
        let writable: &[&Spanned<String>] = match self.mode {
            Mode::Bisync => &[&self.source, &self.destination],
            Mode::Sync | Mode::Copy => &[&self.destination],
        };
        writable
            .iter()
            .map(|l| l.get_ref())
            .filter(|l| !is_remote(l))
            .map(PathBuf::from)
            .collect()
    }

    fn config_path(&self) -> Result<Option<PathBuf>, StageError> {
        if let Some(file) = &self.config_file {
            return Ok(Some(file.get_ref().clone()));
        }
        let Some(name) = &self.config_credential else {
            return Ok(None);
        };
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
            StageError::Preflight(format!(
                "`config_credential = \"{}\"` needs systemd's $CREDENTIALS_DIRECTORY: run the \
                 stage from its unit with LoadCredential={}:PATH (see the README)",
                name.get_ref(),
                name.get_ref()
            ))
        })?;
        Ok(Some(Path::new(&dir).join(name.get_ref())))
    }

    /// bisync's listings and lock live here, one directory per stage.
    fn workdir(ctx: &StageContext) -> PathBuf {
        ctx.state_dir.join("rclone-bisync").join(&ctx.stage.name)
    }

    /// Arguments after `rclone MODE SOURCE DESTINATION`, without the bisync-only ones.
    pub fn common_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--use-json-log", "--stats", "1s", "--verbose"]
            .map(String::from)
            .to_vec();
        args.extend(
            self.exclude
                .iter()
                .flat_map(|p| ["--exclude".into(), p.clone()]),
        );
        if self.mode == Mode::Bisync {
            if let Some(percent) = &self.max_delete {
                args.push("--max-delete".into());
                args.push(percent.get_ref().to_string());
            }
            if self.check_access {
                args.push("--check-access".into());
            }
        }
        if let Some(limit) = crate::bandwidth::rclone_bwlimit(
            self.upload_limit.as_ref(),
            self.download_limit.as_ref(),
        ) {
            args.push(format!("--bwlimit={limit}"));
        }
        args.extend(self.args.iter().cloned());
        args
    }

    /// Prepares bisync's work directory: says whether this is the first run (→ `--resync`),
    /// clears a lock left by a run that was killed, refuses to go on after a critical error.
    fn prepare_bisync(&self, workdir: &Path) -> Result<bool, StageError> {
        std::fs::create_dir_all(workdir)
            .map_err(|e| StageError::io(format!("cannot create {}", workdir.display()), e))?;
        let names: Vec<String> = std::fs::read_dir(workdir)
            .map_err(|e| StageError::io(format!("cannot read {}", workdir.display()), e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for lock in names.iter().filter(|n| n.ends_with(".lck")) {
            let path = workdir.join(lock);
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            let alive = pid
                .trim()
                .parse::<u32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return Err(StageError::Temporary(format!(
                    "another bisync of this stage is running (pid {}, lock {})",
                    pid.trim(),
                    path.display()
                )));
            }
            tracing::warn!(
                "removing the lock of an earlier bisync that did not finish: {}",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
        if names.iter().any(|n| n.ends_with(".lst-err")) {
            return Err(StageError::Failed(format!(
                "an earlier bisync stopped with a critical error, so rclone no longer trusts its \
                 listings; compare both sides, then remove {} to let the next run start over \
                 with a resync (a union of both sides: nothing is deleted)",
                workdir.display()
            )));
        }
        Ok(!names.iter().any(|n| n.ends_with(".lst")))
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "rclone";
    const BANDWIDTH_KEYS: &'static [&'static str] = &["upload_limit", "download_limit"];

    fn bandwidth(&self) -> Vec<crate::bandwidth::Applied<'_>> {
        crate::bandwidth::Applied::upload_and_download(
            self.upload_limit.as_ref(),
            self.download_limit.as_ref(),
            "rclone",
            crate::bandwidth::MidRun::Follows,
        )
    }

    fn validate(&self) -> Result<(), SpecError> {
        for location in self.locations() {
            let text = location.get_ref();
            if !is_remote(text) && !text.starts_with('/') {
                return Err(SpecError::invalid(
                    Some(location.span()),
                    format!("`{text}` is neither an absolute path nor an rclone remote:path"),
                    "write local paths in full, starting with /, or name a remote, e.g. \"server:sync/sig\"",
                ));
            }
            if !is_remote(text) {
                let key = if std::ptr::eq(location, &self.source) {
                    "source"
                } else {
                    "destination"
                };
                require_normalized(location.span(), text, key)?;
            }
        }
        if let Some(file) = &self.config_file {
            require_absolute(std::slice::from_ref(file), "config_file")?;
            if let Some(credential) = &self.config_credential {
                return Err(SpecError::invalid(
                    Some(credential.span()),
                    "give either `config_file` or `config_credential`, not both",
                    "remove one of them",
                ));
            }
        }
        if self.mode != Mode::Bisync {
            if let Some(max) = &self.max_delete {
                return Err(SpecError::invalid(
                    Some(max.span()),
                    "`max_delete` applies to `mode = \"bisync\"` only",
                    "for sync, pass rclone's own limit: args = [\"--max-delete\", \"100\"]",
                ));
            }
            if self.check_access {
                return Err(SpecError::invalid(
                    Some(self.source.span()),
                    "`check_access` applies to `mode = \"bisync\"` only",
                    "remove it, or use mode = \"bisync\"",
                ));
            }
        }
        if let Some(max) = &self.max_delete
            && *max.get_ref() > 100
        {
            return Err(SpecError::invalid(
                Some(max.span()),
                "`max_delete` is a percentage (0–100)",
                "e.g. max_delete = 50",
            ));
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        let remote = self.locations().iter().any(|l| is_remote(l.get_ref()));
        Needs {
            writes: self.local_writes(),
            network: remote,
            tools: vec!["rclone"],
            secrets: self
                .config_file
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
            remotes: self
                .locations()
                .iter()
                .map(|l| l.get_ref())
                .filter(|l| is_remote(l))
                .cloned()
                .collect(),
            capabilities: vec![],
            trusted: vec![],
            // `config_credential` names a credential the admin provides with LoadCredential=.
            credentials: vec![],
            sources: vec![],
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        for path in self.local_writes() {
            std::fs::create_dir_all(&path)
                .map_err(|e| StageError::io(format!("cannot create {}", path.display()), e))?;
        }
        let mut command = Command::new("rclone")
            .arg(self.mode.as_str())
            .arg(self.source.get_ref())
            .arg(self.destination.get_ref())
            .args(self.common_args());
        let mut resync = false;
        if self.mode == Mode::Bisync {
            let workdir = Self::workdir(ctx);
            resync = self.prepare_bisync(&workdir)?;
            command = command.arg("--workdir").arg(&workdir);
            if resync {
                tracing::info!(
                    "first bisync of this stage: resync (a union of both sides, nothing deleted)"
                );
                command = command.arg("--resync");
            }
        }
        let config = self.config_path()?;
        if let Some(config) = &config {
            command = command.env("RCLONE_CONFIG", config);
        }
        if resync {
            // A first sync may meet a side that does not exist yet (a new folder on the
            // server). Later runs do not create it: then a missing side is an error.
            for side in self
                .locations()
                .into_iter()
                .map(|l| l.get_ref())
                .filter(|l| is_remote(l))
            {
                let mut mkdir = Command::new("rclone").arg("mkdir").arg(side);
                if let Some(config) = &config {
                    mkdir = mkdir.env("RCLONE_CONFIG", config);
                }
                mkdir
                    .envs(&ctx.stage.environment)
                    .on_stderr(|line| tracing::info!("rclone mkdir: {line}"))
                    .run()?;
            }
        }
        ctx.report.status(&format!(
            "rclone: {}{}",
            self.mode.as_str(),
            if resync { " (first run: resync)" } else { "" }
        ));
        let mut observed = Observed::default();
        let result = command
            .envs(&ctx.stage.environment)
            .on_line(|line| ctx.log_output(line))
            .on_stderr(|line| {
                if let Some(progress) = observed.take(line) {
                    ctx.report.progress(&progress);
                }
            })
            .run();
        if let Err(error) = result {
            return Err(match error {
                ToolError::Failed { code, .. } => {
                    let mut message = format!(
                        "rclone {} failed (exit code {code}): {}",
                        self.mode.as_str(),
                        if observed.errors.is_empty() {
                            "see the journal".to_string()
                        } else {
                            observed.errors.join("; ")
                        }
                    );
                    if observed.needs_resync {
                        message.push_str(&format!(
                            "; remove {} to let the next run resync",
                            Self::workdir(ctx).display()
                        ));
                    }
                    if code == TEMPORARY {
                        StageError::Temporary(message)
                    } else {
                        StageError::Failed(message)
                    }
                }
                other => other.into(),
            });
        }
        let stats = observed.stats.clone().unwrap_or_default();
        let warnings = observed
            .conflicts
            .iter()
            .map(|path| {
                format!(
                    "conflict: {path} changed on both sides; both versions are kept on both \
                     sides, as {path}..path1 (from {}) and {path}..path2 (from {})",
                    self.source.get_ref(),
                    self.destination.get_ref()
                )
            })
            .collect();
        Ok(Outcome {
            warnings,
            figures: Figures {
                files_changed: Some(stats.transfers),
                bytes_added: Some(stats.bytes),
                ..Figures::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_remotes() {
        assert!(is_remote("server:sync/sig"));
        assert!(is_remote("b2:bucket"));
        assert!(!is_remote("/home/sig/Sync"));
        assert!(!is_remote("/data/with:colon"));
        assert!(!is_remote(":local"));
    }

    #[test]
    fn turns_json_stats_into_progress() {
        let mut observed = Observed::default();
        let progress = observed
            .take(
                r#"{"level":"info","msg":"\nTransferred: ...","stats":{"bytes":512,"totalBytes":2048,"transfers":1,"totalTransfers":4,"checks":0,"deletes":0,"errors":0,"eta":3}}"#,
            )
            .unwrap();
        assert_eq!(progress.percent, Some(25.0));
        assert_eq!(progress.line(), "25%, 512 B/2.0 KiB, 1/4 files, ETA 3s");
        assert_eq!(observed.stats.unwrap().transfers, 1);
    }

    #[test]
    fn collects_conflicts_and_errors() {
        let mut observed = Observed::default();
        for line in [
            r#"{"level":"warning","msg":"- WARNING  New or changed in both paths        - notes/todo.md","source":"bisync/deltas.go:201"}"#,
            r#"{"level":"warning","msg":"- Path1    Renaming Path1 copy                 - /a/notes/todo.md..path1"}"#,
            r#"{"level":"error","msg":"Bisync aborted. Must run --resync to recover."}"#,
            "2026/11/22 06:48:42 Failed to bisync: all files were changed",
        ] {
            assert_eq!(observed.take(line), None);
        }
        assert_eq!(observed.conflicts, ["notes/todo.md"]);
        assert!(observed.needs_resync);
        assert_eq!(
            observed.errors,
            [
                "Bisync aborted. Must run --resync to recover.",
                "Failed to bisync: all files were changed"
            ]
        );
    }

    #[test]
    fn bisync_writes_both_local_sides() {
        let spec: Spec = toml::from_str(
            r#"
            mode = "bisync"
            source = "/home/sig/Sync"
            destination = "server:sync/sig"
            config_file = "/home/sig/.config/rclone/rclone.conf"
            max_delete = 25
            "#,
        )
        .unwrap();
        spec.validate().unwrap();
        let needs = spec.needs();
        assert_eq!(needs.writes, [PathBuf::from("/home/sig/Sync")]);
        assert!(needs.network);
        assert_eq!(needs.remotes, ["server:sync/sig"]);
        assert!(
            spec.common_args()
                .ends_with(&["--max-delete".into(), "25".into()])
        );
    }

    #[test]
    fn max_delete_is_for_bisync() {
        let spec: Spec = toml::from_str(
            r#"
            mode = "sync"
            source = "/a"
            destination = "/b"
            max_delete = 10
            "#,
        )
        .unwrap();
        assert!(spec.validate().is_err());
    }
}
