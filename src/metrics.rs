//! The Prometheus text file (`[metrics] textfile`) for node_exporter's textfile collector:
//! per stage of each job, the last run's time, duration, result and figures, and the time of
//! the last success, all from the run records (`crate::run_records`). Rewritten after each stage
//! and when a job ends; always whole (temporary file in the same directory + rename), so the
//! collector never reads half a file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::paths::{self, Fsync, Scope};
use crate::run_records::{self, RunRecord, RunResult};

mod repositories;

#[derive(Debug, thiserror::Error)]
#[error("cannot write the metrics file {}: {source}", .path.display())]
pub struct MetricsError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Rewrites the metrics file from the run records, when `[metrics]` is configured. Writers
/// (parallel stages, the job's end) take turns on a lock in the state directory, so that the
/// last rename always carries the newest records.
pub fn update(config: &Config, scope: Scope) -> Result<(), MetricsError> {
    let Some(metrics) = &config.metrics else {
        return Ok(());
    };
    let wrap = |source| MetricsError {
        path: metrics.textfile.clone(),
        source,
    };
    let state = crate::paths::state_dir(scope);
    crate::paths::create_dir(&state).map_err(wrap)?;
    let _lock = paths::lock_exclusive_within(&state.join("metrics.lock"), LOCK_WAIT)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::TimedOut => std::io::Error::new(
                error.kind(),
                format!(
                    "{error}; skipped, the next stage or job end rewrites it \
                     (a backupctl process stuck writing the file?)"
                ),
            ),
            _ => error,
        })
        .map_err(wrap)?;
    let records = run_records::read(&state).map_err(wrap)?;
    let schedules = Schedules::of(config);
    let mut text = render(config, &records, &schedules, jiff::Timestamp::now());
    // The figures are a view: unreadable ones leave their families out, not the file.
    let figures = crate::repository_figures::read_all(&state).unwrap_or_else(|error| {
        tracing::warn!("cannot read the repositories' figures: {error}");
        Vec::new()
    });
    text.push_str(&repositories::render(config, &figures, &records));
    write_atomically(&metrics.textfile, &text).map_err(wrap)
}

/// The longest gap each scheduled job's timer leaves between runs (see `crate::schedule`).
pub struct Schedules(Vec<(String, std::time::Duration)>);

impl Schedules {
    pub fn of(config: &Config) -> Self {
        Schedules(
            config
                .jobs
                .iter()
                .filter_map(|job| {
                    let gap = crate::schedule::longest_gap(job.schedule.as_deref()?)?;
                    Some((job.name.clone(), gap))
                })
                .collect(),
        )
    }
}

/// How long a writer waits for the one before it (a write takes milliseconds). A stage
/// writes the file before it exits and its unit has no start timeout by default, so a
/// writer hung on the lock's holder (a stuck filesystem, a stopped process) would hold the
/// stage, its job and every later run; past this wait the write is skipped instead.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// One stage's sample, read off its last run record (`None`: the record has no such figure).
type SampleOf = fn(&RunRecord) -> Option<String>;

/// The families with one sample per stage, read off its last run record: name, help, value.
const LAST_RUN: &[(&str, &str, SampleOf)] = &[
    (
        "backupctl_stage_last_run_timestamp_seconds",
        "When the stage's last run ended (Unix time).",
        |r| seconds(&r.finished),
    ),
    (
        "backupctl_stage_last_duration_seconds",
        "How long the stage's last run took.",
        |r| Some(r.duration_secs.to_string()),
    ),
    (
        "backupctl_stage_last_exit_code",
        "The exit code of the stage's last run (0 ok, 1 failed, 3 preflight, 75 temporary, 130 stopped).",
        |r| Some(r.exit_code.to_string()),
    ),
    (
        "backupctl_stage_last_added_bytes",
        "Bytes the stage's last run added to its destination or repository.",
        |r| r.figures.bytes_added.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_read_bytes",
        "Bytes the stage's last run read.",
        |r| r.figures.bytes_read.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_files",
        "Files the stage's last run processed.",
        |r| r.figures.files.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_new_files",
        "New files the stage's last run found.",
        |r| r.figures.files_new.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_changed_files",
        "Changed files the stage's last run found.",
        |r| r.figures.files_changed.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_mismatched_files",
        "Drills: restored files of the last run that differed from what was backed up.",
        |r| r.figures.mismatches.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_verified_backup_age_seconds",
        "Drills: how old the backup the last run verified was.",
        |r| r.figures.snapshot_age_secs.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_restore_seconds",
        "Database drills: how long the last run took to load the newest dumps (the recovery time).",
        |r| r.figures.restore_seconds.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_killed_by_limit",
        "1 when the stage's last run was killed by its memory limit (memory_max), else 0.",
        |r| Some(u8::from(r.killed_by_limit.is_some()).to_string()),
    ),
    (
        "backupctl_stage_last_memory_peak_bytes",
        "The peak memory of the stage's last run (its cgroup's memory.peak; cgroup v2).",
        |r| r.memory.as_ref()?.peak_bytes.map(|v| v.to_string()),
    ),
    (
        "backupctl_stage_last_memory_high_events",
        "How often the stage's last run went over memory_high and was throttled (memory.events high).",
        |r| r.memory.as_ref().map(|m| m.high_events.to_string()),
    ),
    (
        "backupctl_stage_last_memory_stall_seconds",
        "Seconds some task of the stage's last run waited for memory (memory.pressure some total): the time memory_high throttling cost.",
        |r| r.memory.as_ref()?.stalled_secs.map(|v| v.to_string()),
    ),
];

/// `backupctl_stage_last_skipped`'s samples: the stages whose last run was skipped, labelled
/// with why.
fn skips(last: &[(&str, &str, &RunRecord)]) -> Vec<(String, String)> {
    last.iter()
        .filter(|(_, _, record)| record.result == RunResult::Skipped)
        .map(|(job, stage, record)| {
            let reason = record.skip_reason.as_deref().unwrap_or("condition");
            (labels(job, stage, &[("reason", reason)]), "1".to_string())
        })
        .collect()
}

/// The whole text file, written at `now`.
pub fn render(
    config: &Config,
    records: &[RunRecord],
    schedules: &Schedules,
    now: jiff::Timestamp,
) -> String {
    // The newest record of every configured stage (stages removed from the config are gone).
    let last: Vec<(&str, &str, &RunRecord)> = config
        .stages
        .iter()
        .filter_map(|stage| {
            let record = records.iter().rev().find(|r| r.stage == stage.name)?;
            Some((stage.job.as_str(), stage.name.as_str(), record))
        })
        .collect();
    let last_success = |stage: &str| {
        records
            .iter()
            .rev()
            .find(|r| r.stage == stage && r.result == RunResult::Success)
    };
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(String, String)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let each = |value: &SampleOf| -> Vec<(String, String)> {
        last.iter()
            .filter_map(|(job, stage, record)| Some((labels(job, stage, &[]), value(record)?)))
            .collect()
    };

    family(
        "backupctl_metrics_written_timestamp_seconds",
        "When backupctl last wrote this file (Unix time): alert rules tell a stale file by it.",
        vec![(
            String::new(),
            (now.as_millisecond() as f64 / 1000.0).to_string(),
        )],
    );
    family(
        "backupctl_job_schedule_interval_seconds",
        "The longest time the job's timer leaves between two runs (OnCalendar=, as systemd computes it).",
        schedules
            .0
            .iter()
            .map(|(job, gap)| {
                (
                    format!("backup_job=\"{}\"", escape_label(job)),
                    gap.as_secs().to_string(),
                )
            })
            .collect(),
    );
    family(
        "backupctl_stage_info",
        "Every configured stage, with its kind and purpose (preflight, backup, maintenance, check, drill).",
        config
            .stages
            .iter()
            .map(|stage| {
                (
                    labels(
                        &stage.job,
                        &stage.name,
                        &[
                            ("kind", stage.spec.name()),
                            ("purpose", stage.spec.purpose().as_str()),
                        ],
                    ),
                    "1".to_string(),
                )
            })
            .collect(),
    );
    family(
        "backupctl_stage_last_success_timestamp_seconds",
        "When the stage last ended successfully (Unix time).",
        last.iter()
            .filter_map(|(job, stage, _)| {
                let success = last_success(stage)?;
                Some((labels(job, stage, &[]), seconds(&success.finished)?))
            })
            .collect(),
    );
    family(
        "backupctl_stage_last_result",
        "The result of the stage's last run: 1 for the result it had, 0 for the others.",
        last.iter()
            .flat_map(|(job, stage, record)| {
                RunResult::ALL.iter().map(move |result| {
                    (
                        labels(job, stage, &[("result", result.as_str())]),
                        u8::from(record.result == *result).to_string(),
                    )
                })
            })
            .collect(),
    );
    family(
        "backupctl_stage_last_skipped",
        "1 when the stage's last run was skipped by a condition, with the reason (\"on battery\", \"metered connection\", \"PATH is not mounted\").",
        skips(&last),
    );
    for (name, help, value) in LAST_RUN {
        family(name, help, each(value));
    }
    out
}

/// One family: HELP, TYPE and its samples (`labels`, value); nothing when it has none.
fn write_family(out: &mut String, name: &str, help: &str, samples: &[(String, String)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// `backup_job="…",stage="…"` plus extra labels, values escaped. Not `job`: Prometheus
/// gives every scraped series the `job` of its scrape target (node_exporter's), and would
/// rename ours to `exported_job`.
fn labels(job: &str, stage: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![("backup_job", job), ("stage", stage)];
    pairs.extend_from_slice(extra);
    pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label values: backslash, double quote and newline are escaped (the text format's rules).
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text: backslash and newline are escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// An RFC 3339 time as Unix seconds with milliseconds.
fn seconds(time: &str) -> Option<String> {
    let time: jiff::Timestamp = time.parse().ok()?;
    Some(format!("{:.3}", time.as_millisecond() as f64 / 1000.0))
}

/// Mode 0644: node_exporter runs as its own user; metrics are not secret. The temporary
/// name `.NAME.PID.tmp` is one the collector ignores (it reads only `*.prom`).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    paths::write_atomically(path, text.as_bytes(), Fsync::Yes, Some(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
    }

    #[test]
    fn converts_times_to_unix_seconds() {
        assert_eq!(
            seconds("2026-01-01T00:00:00.5Z").as_deref(),
            Some("1767225600.500")
        );
        assert_eq!(seconds("yesterday"), None);
    }

    #[test]
    fn writes_atomically_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backupctl.prom");
        write_atomically(&path, "x 1\n").unwrap();
        write_atomically(&path, "x 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
    }
}
