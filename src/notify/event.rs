//! What a notification is about: a job's start, a job's or stage's end. Built from the unit
//! name systemd hands the notifier (`%I`), the result systemd passes to `OnFailure=`/
//! `OnSuccess=` units (`$MONITOR_SERVICE_RESULT`, `$MONITOR_INVOCATION_ID`, systemd ≥ 251),
//! the run records and the journal. Serialized as is, it is the webhook's JSON body.

use serde::Serialize;

use crate::config::Config;
use crate::run_records::RunRecord;

/// Which moment of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Start,
    Success,
    Failure,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Success => "success",
            EventKind::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `start`, `success` or `failure`.
    pub event: EventKind,
    pub job: String,
    /// Absent when the event is about the job unit.
    pub stage: Option<String>,
    pub unit: String,
    /// systemd's result of the unit (`success`, `exit-code`, `signal`, `timeout`, …), or
    /// `start`.
    pub result: String,
    /// Whether this failure fails the job (a required stage, or the job itself).
    pub fails_job: bool,
    pub host: String,
    /// RFC 3339; of the stage's run, or of the job's earliest stage.
    pub started: Option<String>,
    pub finished: Option<String>,
    /// When the notification was made.
    pub time: String,
    pub exit_code: Option<u8>,
    pub error: Option<String>,
    /// The stage's last journal records (failures), or one line per stage (a job's end).
    pub log: Vec<String>,
    /// The stage unit's invocation id (`BACKUPCTL_RUN` of its journal records).
    pub run: Option<String>,
}

/// The unit a notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Job(String),
    Stage(String),
}

/// `backup-JOB.service` or `backup@STAGE.service`, checked against the config.
pub fn subject(config: &Config, unit: &str) -> Option<Subject> {
    match crate::units::parse_service(unit)? {
        crate::units::Service::Stage(stage) => config
            .stage(stage)
            .map(|stage| Subject::Stage(stage.name.clone())),
        crate::units::Service::Job(job) => {
            config.job(job).map(|job| Subject::Job(job.name.clone()))
        }
    }
}

/// The machine's name, for people who watch many machines.
pub fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

impl Event {
    /// One line for titles and subjects, e.g. `backupctl: stage copy of job job failed on nas`.
    pub fn title(&self) -> String {
        let what = match &self.stage {
            Some(stage) => format!("stage {stage} of job {}", self.job),
            None => format!("job {}", self.job),
        };
        let how = match self.event {
            EventKind::Start => "started",
            EventKind::Success => "succeeded",
            EventKind::Failure => "failed",
        };
        format!("backupctl: {what} {how} on {}", self.host)
    }

    /// The plain-text message: title, result, times, error, log.
    pub fn text(&self) -> String {
        let mut text = self.title();
        text.push('\n');
        if self.event == EventKind::Failure {
            text.push_str(&format!("result: {}", self.result));
            if let Some(code) = self.exit_code {
                text.push_str(&format!(", exit code {code}"));
            }
            text.push('\n');
        }
        if let Some(started) = &self.started {
            text.push_str(&format!("started: {started}\n"));
        }
        if let Some(finished) = &self.finished {
            text.push_str(&format!("finished: {finished}\n"));
        }
        text.push_str(&format!("unit: {}\n", self.unit));
        if let Some(error) = &self.error {
            text.push_str(&format!("error: {error}\n"));
        }
        if !self.log.is_empty() {
            text.push_str("\nlog:\n");
            for line in &self.log {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// The record of a stage's run: the one with id `run` when the id is known (none when that
/// run left no record, e.g. killed at its timeout: an older record would mislead), else the
/// newest.
pub fn stage_record<'a>(
    records: &'a [RunRecord],
    stage: &str,
    run: Option<&str>,
) -> Option<&'a RunRecord> {
    records
        .iter()
        .rev()
        .find(|r| r.stage == stage && run.is_none_or(|run| r.run == run))
}

/// The records of `job`'s newest run: those that carry the job-run id of the newest record of
/// its stages (records written by one `systemctl start backup-JOB`). All records when that one
/// carries none (a stage started alone, records of older versions): the newest per stage then.
pub fn newest_job_run(config: &Config, job: &str, records: &[RunRecord]) -> Vec<RunRecord> {
    let stages: Vec<&str> = config.stages_of(job).map(|s| s.name.as_str()).collect();
    let newest = records
        .iter()
        .filter(|r| stages.contains(&r.stage.as_str()))
        .max_by(|a, b| a.finished.cmp(&b.finished));
    match newest.and_then(|r| r.job_run.as_deref()) {
        Some(run) => records
            .iter()
            .filter(|r| r.job_run.as_deref() == Some(run))
            .cloned()
            .collect(),
        None => records.to_vec(),
    }
}

/// One line per stage of the job from its newest record, e.g.
/// `copy: success in 1.2s, 9 files, 300 B added`.
pub fn job_summary(config: &Config, job: &str, records: &[RunRecord]) -> Vec<String> {
    config
        .stages_of(job)
        .map(|stage| match stage_record(records, &stage.name, None) {
            None => format!("{}: no run recorded", stage.name),
            Some(record) => {
                let mut line = format!(
                    "{}: {} in {:.1}s",
                    stage.name,
                    record.result.as_str(),
                    record.duration_secs
                );
                if let Some(files) = record.figures.files {
                    line.push_str(&format!(", {files} files"));
                }
                if let Some(bytes) = record.figures.bytes_added {
                    line.push_str(&format!(", {} added", crate::out::human_bytes(bytes)));
                }
                if let Some(error) = &record.error {
                    line.push_str(&format!(": {error}"));
                }
                line
            }
        })
        .collect()
}

/// At most `max` bytes of `text`, cut at a character boundary, keeping the end (the log's
/// newest part, whose last line is the stage's failure record). For services that limit a
/// message's size.
pub fn keep_end(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str, job_run: &str, finished: &str) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "run": format!("{stage}-{job_run}"), "job": "job", "stage": stage, "kind": "exec",
            "started": finished, "finished": finished, "duration_secs": 1.0,
            "result": "success", "exit_code": 0, "job_run": job_run,
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_job_run_leaves_older_runs_records_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[stage.copy]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
             [stage.check]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        // Run 2's `copy` died without a record: its run-1 success must not stand in for it.
        let records = vec![
            record("copy", "run-1", "2026-01-01T00:00:01Z"),
            record("check", "run-1", "2026-01-01T00:00:02Z"),
            record("check", "run-2", "2026-01-02T00:00:02Z"),
        ];
        let run = newest_job_run(&config, "job", &records);
        assert_eq!(run.len(), 1);
        assert!(stage_record(&run, "copy", None).is_none());
        assert_eq!(
            job_summary(&config, "job", &run)[0],
            "copy: no run recorded"
        );
    }

    #[test]
    fn keeps_the_end_of_a_long_body() {
        assert_eq!(keep_end("abcdé", 2), "é");
        assert_eq!(keep_end("abc", 5), "abc");
    }
}
