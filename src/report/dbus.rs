//! The D-Bus interface of a running stage: progress signals in typed form
//! (`BackupStarted`, `Progress`, `BackupComplete`, `Error`) and a `Stop` method that ends the
//! stage as `systemctl stop` does. On the system bus for system units, the session bus in
//! user scope; `backupctl watch` is its subscriber.
//!
//! Names (policy: `units/io.github.backupctl.conf`): each stage owns
//! `io.github.backupctl.stage.<label>` and serves `/io/github/backupctl/stage/<label>` with
//! the interface `io.github.backupctl.Stage1`; `<label>` is the stage name with `-` (and a
//! leading digit) escaped as `_XX`, systemd's bus label escaping.
//!
//! A bus that is absent or refuses us never fails a backup: the sink is then simply missing.

// The signals carry many arguments, and the interface macro generates emitters with them.
#![allow(clippy::too_many_arguments)]

use std::time::{Duration, Instant};

use zbus::Connection;
use zbus::object_server::SignalEmitter;

use super::{ErrorReport, Figures, Progress, Sink};
use crate::paths::Scope;

/// The project's reverse-DNS name; bus names and the interface start with it.
pub const PROJECT: &str = "io.github.backupctl";
pub const INTERFACE: &str = "io.github.backupctl.Stage1";
/// `Progress` signals are sent at most this often (restic reports many times a second).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// `nightly-2` → `nightly_2d2`, `1st` → `_31st`: a stage name as a bus name / object path element.
pub fn label(stage: &str) -> String {
    let mut out = String::with_capacity(stage.len());
    for (index, byte) in stage.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (byte.is_ascii_digit() && index > 0) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// The inverse of [`label`]; `None` for text that no stage name gives.
pub fn unlabel(label: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(label.len());
    let mut rest = label.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

pub fn bus_name(stage: &str) -> String {
    format!("{PROJECT}.stage.{}", label(stage))
}

pub fn object_path(stage: &str) -> String {
    format!("/io/github/backupctl/stage/{}", label(stage))
}

/// The stage an object path of ours names.
pub fn stage_of_path(path: &str) -> Option<String> {
    unlabel(path.strip_prefix("/io/github/backupctl/stage/")?)
}

/// The object a stage serves: its `Stop` method and the declarations of its signals.
struct StageObject;

#[zbus::interface(name = "io.github.backupctl.Stage1")]
impl StageObject {
    /// Ends the stage as `systemctl stop` does: the tool is stopped, snapshots are deleted.
    fn stop(&self) {
        tracing::warn!("stop requested over D-Bus");
        crate::signals::request_stop();
    }

    #[zbus(signal)]
    async fn backup_started(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        seconds_elapsed: u64,
        seconds_remaining: u64,
        percent_done: f64,
        total_files: u64,
        files_done: u64,
        total_bytes: u64,
        bytes_done: u64,
        error_count: u64,
        current_files: Vec<String>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn backup_complete(
        emitter: &SignalEmitter<'_>,
        files_new: u64,
        files_changed: u64,
        files_unmodified: u64,
        dirs_new: u64,
        dirs_changed: u64,
        dirs_unmodified: u64,
        data_blobs: i64,
        tree_blobs: i64,
        data_added: u64,
        total_files_processed: u64,
        total_bytes_processed: u64,
        total_duration: f64,
        snapshot_id: &str,
        dry_run: bool,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn error(
        emitter: &SignalEmitter<'_>,
        error: &str,
        during: &str,
        item: &str,
    ) -> zbus::Result<()>;
}

/// `BackupComplete`'s arguments from a stage's figures. Figures are looked up by restic's
/// summary names first (so that figures a stage adds under those names flow through), then by
/// backupctl's own; unknown counts are 0. A restic stage's figures hold its whole summary, so
/// every argument is restic's own count; `dry_run` is always false (no stage runs dry).
#[derive(Debug, Clone, PartialEq)]
pub struct Complete {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: i64,
    pub tree_blobs: i64,
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub total_duration: f64,
    pub snapshot_id: String,
    pub dry_run: bool,
}

impl Complete {
    pub fn from_figures(figures: &Figures, duration: Duration) -> Self {
        let map = match serde_json::to_value(figures) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let number = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| map.get(*name)?.as_u64())
                .unwrap_or(0)
        };
        Complete {
            files_new: number(&["files_new"]),
            files_changed: number(&["files_changed"]),
            files_unmodified: number(&["files_unmodified"]),
            dirs_new: number(&["dirs_new"]),
            dirs_changed: number(&["dirs_changed"]),
            dirs_unmodified: number(&["dirs_unmodified"]),
            data_blobs: number(&["data_blobs"]) as i64,
            tree_blobs: number(&["tree_blobs"]) as i64,
            data_added: number(&["data_added", "bytes_added"]),
            total_files_processed: number(&["total_files_processed", "files"]),
            total_bytes_processed: number(&["total_bytes_processed", "bytes_read"]),
            total_duration: map
                .get("total_duration")
                .and_then(|v| v.as_f64())
                .unwrap_or(duration.as_secs_f64()),
            snapshot_id: figures.snapshot_id.clone().unwrap_or_default(),
            dry_run: map
                .get("dry_run")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }
    }
}

/// Sends a stage's events on the bus while it runs.
pub struct DbusSink {
    connection: Option<Connection>,
    path: String,
    started: Instant,
    last_progress: Option<Instant>,
}

impl DbusSink {
    /// Connects to the scope's bus and takes the stage's name; `None` (logged) when no bus
    /// answers. A name we may not own (policy, another run) leaves the signals on our unique
    /// name, which `watch` follows as well.
    pub fn connect(scope: Scope, stage: &str) -> Option<Self> {
        let path = object_path(stage);
        let builder = || match scope {
            Scope::System => zbus::connection::Builder::system(),
            Scope::User => zbus::connection::Builder::session(),
        };
        let with_name = zbus::block_on(async {
            builder()
                .name(bus_name(stage))
                .serve_at(path.as_str(), StageObject)
                .build()
                .await
        });
        let connection = match with_name {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!("D-Bus: cannot own {}: {error}", bus_name(stage));
                let anonymous = zbus::block_on(async {
                    builder().serve_at(path.as_str(), StageObject).build().await
                });
                match anonymous {
                    Ok(connection) => {
                        tracing::warn!(
                            "D-Bus: cannot own {}: {error}; signals are sent without it",
                            bus_name(stage)
                        );
                        connection
                    }
                    Err(error) => {
                        tracing::debug!("D-Bus: no bus, no signals: {error}");
                        return None;
                    }
                }
            }
        };
        Some(DbusSink {
            connection: Some(connection),
            path,
            started: Instant::now(),
            last_progress: None,
        })
    }

    /// Runs one emission; a failed one is logged at debug level and otherwise ignored.
    fn emit<'a, F, Fut>(&'a self, send: F)
    where
        F: FnOnce(SignalEmitter<'a>) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<()>>,
    {
        let Some(connection) = &self.connection else {
            return;
        };
        let result = SignalEmitter::new(connection, self.path.as_str())
            .and_then(|emitter| zbus::block_on(send(emitter)));
        if let Err(error) = result {
            tracing::debug!("D-Bus: signal not sent: {error}");
        }
    }
}

impl Sink for DbusSink {
    fn started(&mut self, _stage: &str) {
        self.started = Instant::now();
        self.emit(|emitter| async move { StageObject::backup_started(&emitter).await });
    }

    fn progress(&mut self, _stage: &str, progress: &Progress) {
        if self
            .last_progress
            .is_some_and(|last| last.elapsed() < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_progress = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs();
        let progress = progress.clone();
        self.emit(|emitter| async move {
            StageObject::progress(
                &emitter,
                elapsed,
                progress.eta.map(|eta| eta.as_secs()).unwrap_or(0),
                // A fraction, as restic's `percent_done`.
                progress.percent.map(|p| p / 100.0).unwrap_or(0.0),
                progress.files_total.unwrap_or(0),
                progress.files_done.unwrap_or(0),
                progress.bytes_total.unwrap_or(0),
                progress.bytes_done.unwrap_or(0),
                0,
                progress.text.into_iter().collect(),
            )
            .await
        });
    }

    fn status(&mut self, _stage: &str, _text: &str) {}

    fn completed(&mut self, _stage: &str, figures: &Figures, duration: Duration) {
        let c = Complete::from_figures(figures, duration);
        self.emit(|emitter| async move {
            StageObject::backup_complete(
                &emitter,
                c.files_new,
                c.files_changed,
                c.files_unmodified,
                c.dirs_new,
                c.dirs_changed,
                c.dirs_unmodified,
                c.data_blobs,
                c.tree_blobs,
                c.data_added,
                c.total_files_processed,
                c.total_bytes_processed,
                c.total_duration,
                &c.snapshot_id,
                c.dry_run,
            )
            .await
        });
    }

    fn error(&mut self, _stage: &str, error: &ErrorReport) {
        let error = error.clone();
        self.emit(|emitter| async move {
            StageObject::error(&emitter, &error.error, &error.during, &error.item).await
        });
    }

    fn finish(&mut self, _stage: &str) {
        // Releases the name: the stage is gone from the bus.
        self.connection = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_valid_name_elements_and_reversible() {
        for (stage, expected) in [
            ("offsite", "offsite"),
            ("nightly-2", "nightly_2d2"),
            ("1st", "_31st"),
            ("a_b", "a_5fb"),
        ] {
            assert_eq!(label(stage), expected);
            assert_eq!(unlabel(expected).as_deref(), Some(stage));
            zbus::names::BusName::try_from(bus_name(stage)).unwrap();
            zbus::ObjectPath::try_from(object_path(stage)).unwrap();
        }
        assert_eq!(
            stage_of_path("/io/github/backupctl/stage/nightly_2d2").as_deref(),
            Some("nightly-2")
        );
    }

    #[test]
    fn complete_falls_back_to_backupctls_names_for_other_kinds() {
        let figures = Figures {
            files: Some(12),
            files_new: Some(3),
            bytes_read: Some(4096),
            bytes_added: Some(100),
            snapshot_id: Some("abc".into()),
            ..Figures::default()
        };
        let complete = Complete::from_figures(&figures, Duration::from_millis(1500));
        assert_eq!(complete.total_files_processed, 12);
        assert_eq!(complete.files_new, 3);
        assert_eq!(complete.files_changed, 0);
        assert_eq!(complete.total_bytes_processed, 4096);
        assert_eq!(complete.data_added, 100);
        assert_eq!(complete.total_duration, 1.5);
        assert_eq!(complete.snapshot_id, "abc");
    }
}
