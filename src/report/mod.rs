//! Reporting: progress and results leave a stage through [`Reporter`], which feeds several
//! sinks (sd_notify `STATUS=`, a terminal bar, periodic log lines) so that no stage kind
//! needs to know where its progress goes. Journal records are written with `tracing`
//! (see [`logging`]); run records go to the state directory (see `crate::run_records`).

pub mod dbus;
pub mod logging;
pub mod messages;
mod sd_notify;
pub(crate) mod terminal;

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::out::human_bytes;

/// Figures a stage reports at its end; written as journal fields and into the run record.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_new: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<u64>,
    /// restic: files, directories and blobs of its summary (the D-Bus `BackupComplete`
    /// carries them; restic's names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_unmodified: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirs_new: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirs_changed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirs_unmodified: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_blobs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_blobs: Option<u64>,
    /// restic: seconds the backup took by its own clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Drills: restored files that differ from what was backed up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatches: Option<u64>,
    /// Drills: sampled files skipped because their source changed since the backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
    /// Drills: bytes restored and verified per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_bytes_per_sec: Option<u64>,
    /// Drills: how old the verified backup was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_age_secs: Option<u64>,
    /// Database drills: seconds loading the newest dumps took (the recovery time to plan
    /// with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
}

impl Figures {
    /// What a finished stage did, in a few words for a summary line: "snapshot de93db27,
    /// 12 files, 99.0 KiB added"; "" when the stage reports no figures.
    pub fn summary(&self) -> String {
        let mut words = Vec::new();
        if let Some(id) = &self.snapshot_id {
            words.push(format!("snapshot {id}"));
        }
        if let Some(files) = self.files {
            // Only drills count mismatches: their files are the ones verified.
            let verified = if self.mismatches.is_some() {
                " verified"
            } else {
                ""
            };
            words.push(format!("{files} files{verified}"));
        }
        if let Some(added) = self.bytes_added {
            words.push(format!("{} added", human_bytes(added)));
        }
        if let Some(mismatches) = self.mismatches.filter(|&m| m > 0) {
            words.push(format!("{mismatches} differ"));
        }
        words.join(", ")
    }
}

/// A progress update. Every field is optional: tools report what they know.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Progress {
    /// 0–100.
    pub percent: Option<f64>,
    pub bytes_done: Option<u64>,
    pub bytes_total: Option<u64>,
    pub files_done: Option<u64>,
    pub files_total: Option<u64>,
    pub eta: Option<Duration>,
    /// Free text, e.g. the file being read.
    pub text: Option<String>,
}

impl Progress {
    /// The one-line form used for `STATUS=` and log lines, e.g.
    /// `45% 1.2 GiB/2.6 GiB, 1200/3000 files, ETA 3m20s`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(percent) = self.percent {
            parts.push(format!("{percent:.0}%"));
        }
        match (self.bytes_done, self.bytes_total) {
            (Some(done), Some(total)) => {
                parts.push(format!("{}/{}", human_bytes(done), human_bytes(total)))
            }
            (Some(done), None) => parts.push(human_bytes(done)),
            _ => {}
        }
        match (self.files_done, self.files_total) {
            (Some(done), Some(total)) => parts.push(format!("{done}/{total} files")),
            (Some(done), None) => parts.push(format!("{done} files")),
            _ => {}
        }
        if let Some(eta) = self.eta {
            parts.push(format!("ETA {}", short_duration(eta)));
        }
        if let Some(text) = &self.text {
            parts.push(text.clone());
        }
        parts.join(", ")
    }
}

/// `1h02m`, `3m20s`, `45s`.
pub fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// An error a stage met: an item it could not read (restic's `during`/`item`), or with
/// `during = "stage"` the failure of the whole stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReport {
    pub error: String,
    pub during: String,
    pub item: String,
}

/// Where progress goes. Each sink throttles itself as its medium requires.
pub trait Sink: Send {
    fn progress(&mut self, stage: &str, progress: &Progress);
    fn status(&mut self, stage: &str, text: &str);
    /// The stage's work begins.
    fn started(&mut self, _stage: &str) {}
    /// The stage succeeded with these figures.
    fn completed(&mut self, _stage: &str, _figures: &Figures, _duration: Duration) {}
    fn error(&mut self, _stage: &str, _error: &ErrorReport) {}
    fn finish(&mut self, _stage: &str) {}
}

/// The reporter of one stage run.
pub struct Reporter {
    stage: String,
    sinks: Mutex<Vec<Box<dyn Sink>>>,
}

impl Reporter {
    pub fn new(stage: &str, sinks: Vec<Box<dyn Sink>>) -> Self {
        Reporter {
            stage: stage.to_string(),
            sinks: Mutex::new(sinks),
        }
    }

    /// The sinks that fit where we run: sd_notify under systemd, a bar on a terminal,
    /// otherwise periodic log lines.
    pub fn for_environment(stage: &str) -> Self {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(sink) = sd_notify::NotifySink::from_env() {
            sinks.push(Box::new(sink));
        }
        if terminal::is_terminal() {
            sinks.push(Box::new(terminal::BarSink::new()));
        } else {
            sinks.push(Box::new(terminal::LogSink::new()));
        }
        Reporter::new(stage, sinks)
    }

    /// Adds a sink for the rest of this run (e.g. the D-Bus interface of the stage).
    pub fn add_sink(&self, sink: Box<dyn Sink>) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }

    fn each(&self, mut call: impl FnMut(&mut dyn Sink, &str)) {
        for sink in self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            call(sink.as_mut(), &self.stage);
        }
    }

    pub fn progress(&self, progress: &Progress) {
        self.each(|sink, stage| sink.progress(stage, progress));
    }

    pub fn started(&self) {
        self.each(|sink, stage| sink.started(stage));
    }

    pub fn completed(&self, figures: &Figures, duration: Duration) {
        self.each(|sink, stage| sink.completed(stage, figures, duration));
    }

    pub fn error(&self, error: &ErrorReport) {
        self.each(|sink, stage| sink.error(stage, error));
    }

    /// A phase change ("running rsync", "checking repository"), shown at once.
    pub fn status(&self, text: &str) {
        for sink in self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            sink.status(&self.stage, text);
        }
    }

    pub fn finish(&self) {
        for sink in self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            sink.finish(&self.stage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_shows_what_is_known() {
        let progress = Progress {
            percent: Some(45.2),
            bytes_done: Some(1 << 30),
            bytes_total: Some(2 << 30),
            files_done: Some(12),
            files_total: Some(30),
            eta: Some(Duration::from_secs(200)),
            text: None,
        };
        assert_eq!(
            progress.line(),
            "45%, 1.0 GiB/2.0 GiB, 12/30 files, ETA 3m20s"
        );
        assert_eq!(Progress::default().line(), "");
    }

    #[test]
    fn figures_summary_names_what_is_known() {
        let figures = Figures {
            snapshot_id: Some("de93db27".into()),
            files: Some(2),
            bytes_added: Some(101_376),
            ..Figures::default()
        };
        assert_eq!(
            figures.summary(),
            "snapshot de93db27, 2 files, 99.0 KiB added"
        );
        assert_eq!(Figures::default().summary(), "");
        let drill = Figures {
            files: Some(51),
            mismatches: Some(2),
            ..Figures::default()
        };
        assert_eq!(drill.summary(), "51 files verified, 2 differ");
    }
}
