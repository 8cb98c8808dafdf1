//! Run records: one JSON line per stage run in `STATE_DIR/runs.jsonl`, appended under a lock
//! (stages of one job may run in parallel) and trimmed to the newest records when it grows
//! (keeping each stage's newest record and newest success, however old).
//! `status` reads them beside systemd's own view; scripts may too (the format is stable).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::paths::Fsync;
use crate::report::Figures;

const FILE_NAME: &str = "runs.jsonl";
const LOCK_NAME: &str = "runs.lock";
/// Past this size the file is rewritten with the newest [`KEEP_RECORDS`] records.
const MAX_BYTES: u64 = 4 << 20;
const KEEP_RECORDS: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Success,
    Failed,
    Skipped,
    Interrupted,
}

impl RunResult {
    pub const ALL: [RunResult; 4] = [
        RunResult::Success,
        RunResult::Failed,
        RunResult::Skipped,
        RunResult::Interrupted,
    ];

    /// The word in the records (and in `status`, the metrics' `result` label, notifications).
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failed => "failed",
            RunResult::Skipped => "skipped",
            RunResult::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `$INVOCATION_ID` of the stage's unit, or an id made by `run --here`.
    pub run: String,
    /// The job run this stage run belongs to (`BACKUPCTL_JOB_RUN`, see `crate::job_run`);
    /// absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_run: Option<String>,
    pub job: String,
    pub stage: String,
    pub kind: String,
    /// RFC 3339 timestamps.
    pub started: String,
    pub finished: String,
    pub duration_secs: f64,
    pub result: RunResult,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub figures: Figures,
    /// The limit that killed the run (`memory_max = 2G`), when one did (`Result=oom-kill`);
    /// written by `stage-ended`, the unit's `ExecStopPost=` (see `crate::stage_ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_by_limit: Option<String>,
    /// The stage's cgroup memory figures (peak, `memory_high` throttling), where cgroup v2
    /// tells them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::cgroup::MemoryUse>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the run record in {}: {source}", .dir.display())]
pub struct HistoryError {
    dir: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Appends one record. The directory is created if needed.
pub fn append(dir: &Path, record: &RunRecord) -> Result<(), HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    crate::paths::create_dir(dir).map_err(wrap)?;
    // 0644 at most, whatever the umask (`run --here` has no unit UMask=): status and the
    // metrics believe these records, so no other user may write them.
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(dir.join(LOCK_NAME))
        .map_err(wrap)?;
    let _lock =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, errno)| wrap(errno.into()))?;
    let path = dir.join(FILE_NAME);
    let mut line = serde_json::to_string(record).map_err(|e| wrap(e.into()))?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&path)
        .map_err(wrap)?;
    file.write_all(line.as_bytes()).map_err(wrap)?;
    file.sync_data().map_err(wrap)?;
    if file.metadata().map_err(wrap)?.len() > MAX_BYTES {
        trim(&path).map_err(wrap)?;
    }
    Ok(())
}

/// Replaces the newest record of run `run` with what `change` makes of it, under the lock;
/// `false` when there is none (the run ended before writing one). `stage-ended` uses it to
/// add what only systemd knows (the run was killed by a limit) to the executor's record.
pub fn amend(
    dir: &Path,
    run: &str,
    change: impl FnOnce(&mut RunRecord),
) -> Result<bool, HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    crate::paths::create_dir(dir).map_err(wrap)?;
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(dir.join(LOCK_NAME))
        .map_err(wrap)?;
    let _lock =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, errno)| wrap(errno.into()))?;
    let path = dir.join(FILE_NAME);
    let mut lines: Vec<String> = match File::open(&path) {
        Ok(file) => BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(wrap)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(wrap(error)),
    };
    let found = lines.iter_mut().rev().find_map(|line| {
        let record = serde_json::from_str::<RunRecord>(line).ok()?;
        (record.run == run).then_some((line, record))
    });
    let Some((line, mut record)) = found else {
        return Ok(false);
    };
    change(&mut record);
    *line = serde_json::to_string(&record).map_err(|e| wrap(e.into()))?;
    let mut text = lines.join("\n");
    text.push('\n');
    crate::paths::write_atomically(&path, text.as_bytes(), Fsync::Yes, None).map_err(wrap)?;
    Ok(true)
}

/// Rewrites the file with its newest records (temporary file + rename: never half a file),
/// and of the older ones each stage's newest record and newest success: `status` and the
/// metrics show those, and a stage that runs monthly beside an hourly job would otherwise
/// lose them (shown as never run).
fn trim(path: &Path) -> std::io::Result<()> {
    /// What deciding needs of a record.
    #[derive(Deserialize)]
    struct Key {
        stage: String,
        result: RunResult,
    }
    let lines: Vec<String> = BufReader::new(File::open(path)?)
        .lines()
        .collect::<Result<_, _>>()?;
    let cut = lines.len().saturating_sub(KEEP_RECORDS);
    let mut last = HashSet::new();
    let mut success = HashSet::new();
    let mut keep = vec![false; lines.len()];
    for (index, line) in lines.iter().enumerate().rev() {
        let key = serde_json::from_str::<Key>(line).ok();
        let newest = key.as_ref().is_some_and(|k| last.insert(k.stage.clone()));
        let newest_success = key
            .as_ref()
            .is_some_and(|k| k.result == RunResult::Success && success.insert(k.stage.clone()));
        keep[index] = index >= cut || newest || newest_success;
    }
    let mut kept = String::new();
    for (line, _) in lines.iter().zip(&keep).filter(|(_, keep)| **keep) {
        kept.push_str(line);
        kept.push('\n');
    }
    crate::paths::write_atomically(path, kept.as_bytes(), Fsync::Yes, None)
}

/// All readable records, oldest first. A missing file is an empty history; a damaged line
/// (e.g. a crash mid-write on a full disk) is skipped.
pub fn read(dir: &Path) -> std::io::Result<Vec<RunRecord>> {
    let file = match File::open(dir.join(FILE_NAME)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str) -> RunRecord {
        RunRecord {
            run: "r1".into(),
            job_run: None,
            job: "job".into(),
            stage: stage.into(),
            kind: "exec".into(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: "2026-01-01T00:00:01Z".into(),
            duration_secs: 1.0,
            result: RunResult::Success,
            exit_code: 0,
            error: None,
            warnings: vec![],
            figures: Figures::default(),
            killed_by_limit: None,
            memory: None,
        }
    }

    #[test]
    fn result_words_are_the_records_words() {
        for result in RunResult::ALL {
            assert_eq!(
                serde_json::to_string(&result).unwrap(),
                format!("\"{}\"", result.as_str())
            );
        }
    }

    #[test]
    fn trimming_keeps_each_stages_newest_record_and_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut text = String::new();
        let mut push = |record: RunRecord| {
            text.push_str(&serde_json::to_string(&record).unwrap());
            text.push('\n');
        };
        // A monthly stage: a success, then a failure, long before the hourly stage's records.
        push(record("monthly"));
        push(RunRecord {
            result: RunResult::Failed,
            ..record("monthly")
        });
        push(record("hourly"));
        for _ in 0..KEEP_RECORDS {
            push(record("hourly"));
        }
        std::fs::write(&path, text).unwrap();
        trim(&path).unwrap();
        let records = read(dir.path()).unwrap();
        assert_eq!(records.len(), KEEP_RECORDS + 2);
        assert_eq!(
            (records[0].result, records[1].result),
            (RunResult::Success, RunResult::Failed)
        );
        assert!(records[2..].iter().all(|r| r.stage == "hourly"));
    }

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &record("a")).unwrap();
        append(dir.path(), &record("b")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap()
            .write_all(b"{broken\n")
            .unwrap();
        let records = read(dir.path()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.stage.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
