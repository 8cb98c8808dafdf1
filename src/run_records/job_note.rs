//! The note of a job run under way: `STATE_DIR/open/jobs/JOB.json`.
//!
//! A stage's own note (`open/STAGE.json`) finds a run the machine did not survive while that
//! stage ran. A cut *between* stages leaves none: the stages before it ended with their
//! records, the ones after it never began, and the job run read as a success with stages
//! "not run". So the first stage of a job run (started by the job unit's start job, not alone
//! and not by `run --here`) notes the job run, durably, with the boot id and the job's stages;
//! `job-finished` (the job unit's `ExecStart=`, reached when the run ended) removes it.
//!
//! A note of an earlier boot is a job run that never ended. Its stages without a record
//! (and without a note of their own: those are recorded as cut by [`super::begin`]) are shown
//! by [`super::read`] as `interrupted` ("never began"), so `status` shows the job's last run
//! as interrupted, and the next job run writes those records ([`begin_job`]) before it
//! replaces the note. Not when a required stage of the run failed: then systemd failed the
//! job's start job and `job-finished` never ran, but the run had ended, failed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    HistoryError, NOT_BEGUN_ERROR, OPEN_DIR, RunRecord, RunResult, append_locked, boot_id,
    open_runs, read_file, writers_lock,
};
use crate::paths::Fsync;

/// A job run under way, as its first stage noted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobNote {
    /// `/proc/sys/kernel/random/boot_id` of the boot the job run began in ([`begin_job`]
    /// sets it).
    #[serde(default)]
    pub boot: String,
    pub job: String,
    pub job_run: String,
    /// RFC 3339: when the stage that wrote the note began.
    pub started: String,
    /// Every stage of the job, as the config had them when the run began.
    pub stages: Vec<NotedStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotedStage {
    pub name: String,
    pub kind: String,
    pub required: bool,
}

fn jobs_dir(dir: &Path) -> PathBuf {
    dir.join(OPEN_DIR).join("jobs")
}

fn note_path(dir: &Path, job: &str) -> PathBuf {
    jobs_dir(dir).join(format!("{job}.json"))
}

fn notes(dir: &Path) -> Vec<JobNote> {
    let Ok(entries) = std::fs::read_dir(jobs_dir(dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect()
}

/// The `interrupted` records a cut job run is owed: one per stage of `note` that has no
/// record of the run in `records` (which hold the stages' own cut notes already); none when
/// a required stage of the run failed (the run ended, failed, before the machine went down).
fn owed(note: &JobNote, records: &[RunRecord]) -> Vec<RunRecord> {
    let of_run = |r: &&RunRecord| r.job_run.as_deref() == Some(note.job_run.as_str());
    let failed_required = records.iter().filter(of_run).any(|r| {
        r.result == RunResult::Failed && note.stages.iter().any(|s| s.name == r.stage && s.required)
    });
    if failed_required {
        return Vec::new();
    }
    note.stages
        .iter()
        .filter(|stage| !records.iter().filter(of_run).any(|r| r.stage == stage.name))
        .map(|stage| RunRecord {
            job_run: Some(note.job_run.clone()),
            error: Some(NOT_BEGUN_ERROR.into()),
            ..RunRecord::new(
                format!("{}-{}", note.job_run, stage.name),
                (&note.job, &stage.name, &stage.kind),
                &note.started,
                RunResult::Interrupted,
            )
        })
        .collect()
}

/// What [`super::read`] adds for the job runs an earlier boot's end cut: the records they
/// are owed, given every record read so far (the file's and the stages' cut notes).
pub(super) fn cut_records(dir: &Path, records: &[RunRecord], boot: &str) -> Vec<RunRecord> {
    notes(dir)
        .iter()
        .filter(|note| note.boot != boot)
        .flat_map(|note| owed(note, records))
        .collect()
}

/// Notes, durably, that the job run of `note` is under way (called by each of its stages as
/// it begins; the first one writes). A note of another job run of an earlier boot is a job
/// run that never ended: the records it is owed are written first, under the writers' lock
/// (stages begin in parallel), and returned, for the journal.
pub fn begin_job(dir: &Path, note: &JobNote) -> Result<Vec<RunRecord>, HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    let path = note_path(dir, &note.job);
    let left: Option<JobNote> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if left.as_ref().is_some_and(|l| l.job_run == note.job_run) {
        return Ok(Vec::new());
    }
    let _lock = writers_lock(dir).map_err(wrap)?;
    let mut written = Vec::new();
    if let Some(cut) = left.filter(|l| l.boot != boot_id()) {
        let mut records = read_file(dir).map_err(wrap)?;
        let boot = boot_id();
        records.extend(
            open_runs(dir)
                .into_iter()
                .filter(|open| open.boot != boot)
                .map(|open| open.record),
        );
        for record in owed(&cut, &records) {
            append_locked(dir, &record)?;
            written.push(record);
        }
    }
    // Another stage of this run may have written it while this one waited for the lock.
    let now: Option<JobNote> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if now.is_none_or(|n| n.job_run != note.job_run) {
        crate::paths::create_dir(&jobs_dir(dir)).map_err(wrap)?;
        let note = JobNote {
            boot: boot_id(),
            ..note.clone()
        };
        let json = serde_json::to_vec(&note).map_err(|e| wrap(e.into()))?;
        crate::paths::write_atomically(&path, &json, Fsync::Yes, None).map_err(wrap)?;
    }
    Ok(written)
}

/// Removes the note of [`begin_job`]: the job run ended (`job-finished`).
pub fn end_job(dir: &Path, job: &str) -> Result<(), HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    crate::paths::remove_durably(&note_path(dir, job)).map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::super::{append, read};
    use super::*;

    fn note(job_run: &str) -> JobNote {
        let stage = |name: &str, required| NotedStage {
            name: name.into(),
            kind: "exec".into(),
            required,
        };
        JobNote {
            boot: String::new(),
            job: "job".into(),
            job_run: job_run.into(),
            started: "2026-01-01T00:00:00Z".into(),
            stages: vec![stage("a", true), stage("b", true), stage("c", false)],
        }
    }

    fn record(stage: &str, job_run: &str, result: RunResult) -> RunRecord {
        RunRecord {
            run: format!("{job_run}-{stage}-ran"),
            job_run: Some(job_run.into()),
            started: "2026-01-01T00:00:01Z".into(),
            ..crate::run_records::sample_record(stage, "exec", result, "2026-01-01T00:00:02Z")
        }
    }

    /// The note as a boot before this one left it.
    fn from_earlier_boot(dir: &Path) {
        let path = note_path(dir, "job");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&boot_id(), "an-earlier-boot")).unwrap();
    }

    fn results(records: &[RunRecord]) -> Vec<(String, String, RunResult)> {
        records
            .iter()
            .map(|r| {
                (
                    r.job_run.clone().unwrap_or_default(),
                    r.stage.clone(),
                    r.result,
                )
            })
            .collect()
    }

    /// The machine went down after stage a of run X ended and before b began: X reads as
    /// interrupted (b and c never began), and the next job run writes those records once.
    #[test]
    fn a_job_run_cut_between_two_stages_is_interrupted_and_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        begin_job(dir.path(), &note("X")).unwrap();
        append(dir.path(), &record("a", "X", RunResult::Success)).unwrap();
        // In the same boot the run is under way (or ended by a failed start job): nothing owed.
        assert_eq!(read(dir.path()).unwrap().len(), 1);
        from_earlier_boot(dir.path());
        let shown = read(dir.path()).unwrap();
        let interrupted = (RunResult::Interrupted, Some(NOT_BEGUN_ERROR.to_string()));
        assert_eq!(
            results(&shown),
            [
                ("X".into(), "a".into(), RunResult::Success),
                ("X".into(), "b".into(), RunResult::Interrupted),
                ("X".into(), "c".into(), RunResult::Interrupted),
            ]
        );
        assert_eq!((shown[1].result, shown[1].error.clone()), interrupted);

        let written = begin_job(dir.path(), &note("Y")).unwrap();
        assert_eq!(written.len(), 2);
        // A second stage of run Y writes nothing more.
        assert!(begin_job(dir.path(), &note("Y")).unwrap().is_empty());
        let file = read_file(dir.path()).unwrap();
        assert_eq!(results(&file), results(&shown));
        assert_eq!(results(&read(dir.path()).unwrap()), results(&shown));
        end_job(dir.path(), "job").unwrap();
        assert!(!note_path(dir.path(), "job").exists());
    }

    /// A stage running at the cut is recorded by its own note; a run whose required stage
    /// failed had ended (failed) before the machine went down, and owes nothing.
    #[test]
    fn a_cut_stage_or_a_failed_run_owes_no_never_begun_record() {
        let dir = tempfile::tempdir().unwrap();
        begin_job(dir.path(), &note("X")).unwrap();
        from_earlier_boot(dir.path());
        let mut records = vec![record("a", "X", RunResult::Interrupted)];
        assert_eq!(
            results(&owed(&note("X"), &records)),
            [
                ("X".into(), "b".into(), RunResult::Interrupted),
                ("X".into(), "c".into(), RunResult::Interrupted),
            ]
        );
        records[0].result = RunResult::Failed;
        assert!(owed(&note("X"), &records).is_empty());
        // A failed optional stage does not end the run.
        let optional_failed = [record("c", "X", RunResult::Failed)];
        assert_eq!(owed(&note("X"), &optional_failed).len(), 2);
        // Ended normally: job-finished removed the note, nothing is owed after a reboot.
        end_job(dir.path(), "job").unwrap();
        append(dir.path(), &record("a", "X", RunResult::Success)).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
    }
}
