//! The messages of `restic backup --json` (one JSON object per line), as typed structs, and
//! their translation into our [`Progress`] and [`Figures`].
//!
//! restic 0.14 omits fields that are zero, so every number defaults to 0; unknown message
//! types (`verbose_status`) and unknown fields (added by later restic versions) are ignored.

use std::time::Duration;

use serde::Deserialize;

use crate::report::{Figures, Progress};

/// One line of `restic backup --json` output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum Message {
    Status(Status),
    Summary(Summary),
    Error(ErrorMessage),
    #[serde(other)]
    Other,
}

/// A progress update (restic prints them at `RESTIC_PROGRESS_FPS`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Status {
    pub seconds_elapsed: u64,
    pub seconds_remaining: u64,
    /// 0.0–1.0.
    pub percent_done: f64,
    pub total_files: u64,
    pub files_done: u64,
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub error_count: u64,
    pub current_files: Vec<String>,
}

/// The last message of a successful backup.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Seconds.
    pub total_duration: f64,
    pub snapshot_id: String,
}

/// A file restic could not read (printed on stderr; the backup goes on).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ErrorMessage {
    /// restic 0.14 marshals Go errors as `{}`, later versions as `{"message": …}`.
    pub error: ErrorDetail,
    pub during: String,
    pub item: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub message: String,
}

impl Message {
    /// Parses one output line; `None` for lines that are not restic JSON messages.
    pub fn parse(line: &str) -> Option<Message> {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str(line).ok()
    }
}

impl Status {
    pub fn progress(&self) -> Progress {
        let known = |n: u64| (n > 0).then_some(n);
        Progress {
            percent: Some((self.percent_done * 100.0).clamp(0.0, 100.0)),
            bytes_done: Some(self.bytes_done),
            bytes_total: known(self.total_bytes),
            files_done: Some(self.files_done),
            files_total: known(self.total_files),
            eta: known(self.seconds_remaining).map(Duration::from_secs),
            text: None,
        }
    }
}

impl Summary {
    pub fn figures(&self) -> Figures {
        Figures {
            files: Some(self.total_files_processed),
            files_new: Some(self.files_new),
            files_changed: Some(self.files_changed),
            files_unmodified: Some(self.files_unmodified),
            dirs_new: Some(self.dirs_new),
            dirs_changed: Some(self.dirs_changed),
            dirs_unmodified: Some(self.dirs_unmodified),
            data_blobs: Some(self.data_blobs),
            tree_blobs: Some(self.tree_blobs),
            total_duration: Some(self.total_duration),
            bytes_read: Some(self.total_bytes_processed),
            bytes_added: Some(self.data_added),
            snapshot_id: (!self.snapshot_id.is_empty()).then(|| self.snapshot_id.clone()),
            ..Figures::default()
        }
    }
}

impl ErrorMessage {
    /// `cannot read /path (during archival): reason`.
    pub fn describe(&self) -> String {
        let mut text = format!("cannot back up {}", self.item);
        if !self.during.is_empty() {
            text.push_str(&format!(" (during {})", self.during));
        }
        if !self.error.message.is_empty() {
            text.push_str(&format!(": {}", self.error.message));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as restic 0.14 prints them.
    const STATUS_START: &str =
        r#"{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":3000000}"#;
    const STATUS: &str = r#"{"message_type":"status","seconds_elapsed":4,"seconds_remaining":12,"percent_done":0.25,"total_files":400,"files_done":100,"total_bytes":4000000,"bytes_done":1000000,"current_files":["/src/a"]}"#;
    const SUMMARY: &str = r#"{"message_type":"summary","files_new":1,"files_changed":2,"files_unmodified":3,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":3,"tree_blobs":2,"data_added":3000844,"total_files_processed":6,"total_bytes_processed":3000000,"total_duration":0.268501564,"snapshot_id":"a5ad6ac8"}"#;
    const ERROR: &str =
        r#"{"message_type":"error","error":{},"during":"archival","item":"/src/secret"}"#;

    #[test]
    fn parses_status_lines_into_progress() {
        let Some(Message::Status(status)) = Message::parse(STATUS) else {
            panic!("not a status");
        };
        let progress = status.progress();
        assert_eq!(progress.percent, Some(25.0));
        assert_eq!(
            (progress.bytes_done, progress.bytes_total),
            (Some(1_000_000), Some(4_000_000))
        );
        assert_eq!(
            (progress.files_done, progress.files_total),
            (Some(100), Some(400))
        );
        assert_eq!(progress.eta, Some(Duration::from_secs(12)));

        let Some(Message::Status(status)) = Message::parse(STATUS_START) else {
            panic!("not a status");
        };
        assert_eq!(status.progress().eta, None, "0 s remaining means unknown");
    }

    #[test]
    fn parses_the_summary_into_figures() {
        let Some(Message::Summary(summary)) = Message::parse(SUMMARY) else {
            panic!("not a summary");
        };
        let figures = summary.figures();
        assert_eq!(figures.files, Some(6));
        assert_eq!(figures.files_new, Some(1));
        assert_eq!(figures.files_changed, Some(2));
        assert_eq!(figures.bytes_read, Some(3_000_000));
        assert_eq!(figures.bytes_added, Some(3_000_844));
        assert_eq!(figures.snapshot_id.as_deref(), Some("a5ad6ac8"));
        assert!((summary.total_duration - 0.2685).abs() < 1e-3);
    }

    #[test]
    fn parses_errors_and_ignores_other_lines() {
        let Some(Message::Error(error)) = Message::parse(ERROR) else {
            panic!("not an error");
        };
        assert_eq!(
            error.describe(),
            "cannot back up /src/secret (during archival)"
        );
        assert_eq!(
            Message::parse(r#"{"message_type":"verbose_status","action":"new"}"#),
            Some(Message::Other)
        );
        assert_eq!(Message::parse("Fatal: unable to open config file"), None);
        assert_eq!(Message::parse("{not json"), None);
    }

    /// Issue 21: `BackupComplete` had 7 arguments always 0. Each argument now equals
    /// restic's own summary field, from a real `restic backup --json` run.
    #[test]
    fn backup_complete_carries_restics_own_summary() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
        std::fs::create_dir_all(&base).expect("target/tmp");
        let dir = tempfile::Builder::new()
            .prefix("restic-summary-")
            .tempdir_in(base)
            .expect("scratch directory");
        let source = dir.path().join("source");
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::write(source.join("a"), "a").unwrap();
        std::fs::write(source.join("sub/b"), "bb").unwrap();
        let restic = |args: &[&str]| {
            let output = std::process::Command::new("restic")
                .args(args)
                .env("RESTIC_REPOSITORY", dir.path().join("repo"))
                .env("RESTIC_PASSWORD", "pw")
                .output()
                .expect("this test needs restic: run scripts/setup-deps");
            assert!(output.status.success(), "restic {args:?}: {output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        restic(&["init", "--quiet"]);
        let source_arg = source.to_str().unwrap();
        restic(&["backup", "--json", source_arg]);
        // A second run: unmodified files and directories are counted too.
        std::fs::write(source.join("c"), "ccc").unwrap();
        let out = restic(&["backup", "--json", source_arg]);
        let line = out
            .lines()
            .find(|line| line.contains("\"message_type\":\"summary\""))
            .expect("a summary line");
        let raw: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(Message::Summary(summary)) = Message::parse(line) else {
            panic!("not parsed as a summary: {line}");
        };
        let complete = crate::report::dbus::Complete::from_figures(
            &summary.figures(),
            std::time::Duration::from_secs(999),
        );
        let n = |name: &str| {
            raw[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} in {raw}"))
        };
        assert_eq!(complete.files_new, n("files_new"));
        assert_eq!(complete.files_changed, n("files_changed"));
        assert_eq!(complete.files_unmodified, n("files_unmodified"));
        assert_eq!(complete.dirs_new, n("dirs_new"));
        assert_eq!(complete.dirs_changed, n("dirs_changed"));
        assert_eq!(complete.dirs_unmodified, n("dirs_unmodified"));
        assert_eq!(complete.data_blobs, n("data_blobs") as i64);
        assert_eq!(complete.tree_blobs, n("tree_blobs") as i64);
        assert_eq!(complete.data_added, n("data_added"));
        assert_eq!(complete.total_files_processed, n("total_files_processed"));
        assert_eq!(complete.total_bytes_processed, n("total_bytes_processed"));
        assert_eq!(
            complete.total_duration,
            raw["total_duration"].as_f64().unwrap()
        );
        assert_eq!(complete.snapshot_id, raw["snapshot_id"].as_str().unwrap());
        assert!(!complete.dry_run);
        // The second run saw one new file and the two old ones unchanged: nonzero counts
        // that were 0 before.
        assert_eq!(complete.files_new, 1);
        assert_eq!(complete.files_unmodified, 2);
        assert!(complete.dirs_changed > 0 && complete.tree_blobs > 0);
    }
}
