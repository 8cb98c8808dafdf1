//! Run records: one JSON line per stage run in `STATE_DIR/runs.jsonl`, appended under a lock
//! (stages of one job may run in parallel) and trimmed to the newest records when it grows
//! (keeping each stage's newest record and newest success, however old).
//! `status` reads them beside systemd's own view; scripts may too (the format is stable).
//!
//! A record is written when a run ends, so a run the machine did not survive (power cut,
//! crash, reset) would leave none and vanish from `status`. Each run therefore first notes
//! itself in `STATE_DIR/open/STAGE.json` (durably, with the boot id) and removes the note
//! after its record: a note of an earlier boot is a run that was cut. [`read`] shows it as
//! `interrupted`, and the stage's next run turns it into a record of its own ([`begin`]).
//! A job run cut between two stages is found by the job run's own note ([`job_note`]).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::paths::Fsync;
use crate::report::Figures;

mod job_note;
pub use job_note::{JobNote, NotedStage, begin_job, end_job};

const FILE_NAME: &str = "runs.jsonl";
const LOCK_NAME: &str = "runs.lock";
/// One note per running stage: `open/STAGE.json`.
const OPEN_DIR: &str = "open";
/// The error of a run found cut.
const CUT_ERROR: &str = "the run ended without a record: the machine went down during it \
    (power cut, crash or reset)";
/// The error of a stage of a cut job run that had not begun (see [`job_note`]).
const NOT_BEGUN_ERROR: &str = "never began: the machine went down during its job run, before \
    this stage's turn (power cut, crash or reset)";
/// The error of a run that ended without a record in this boot.
const KILLED_ERROR: &str = "the run ended without a record: its process was killed (SIGKILL?)";
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
    /// Why a skipped run did not run: "on battery", "metered connection", "/mnt/usb is not
    /// mounted".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// What the run wants known that is neither a warning nor an error (NetworkManager could
    /// not be asked whether the connection is metered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The limit that killed the run (`memory_max = 2G`), when one did (`Result=oom-kill`);
    /// written by `stage-ended`, the unit's `ExecStopPost=` (see `crate::stage_ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_by_limit: Option<String>,
    /// The stage's cgroup memory figures (peak, `memory_high` throttling), where cgroup v2
    /// tells them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::cgroup::MemoryUse>,
}

impl RunRecord {
    /// A record of run `run` of stage `stage` (of `job`, a `kind` stage) that began and ended
    /// at `at` with `result` and that result's exit code; no job run, duration, error,
    /// warnings, figures or notes. Every writer starts here and sets what it knows, so a new
    /// field is added in one place.
    pub fn new(
        run: impl Into<String>,
        (job, stage, kind): (&str, &str, &str),
        at: &str,
        result: RunResult,
    ) -> RunRecord {
        RunRecord {
            run: run.into(),
            job_run: None,
            job: job.into(),
            stage: stage.into(),
            kind: kind.into(),
            started: at.into(),
            finished: at.into(),
            duration_secs: 0.0,
            result,
            exit_code: match result {
                RunResult::Success | RunResult::Skipped => crate::exit::OK,
                RunResult::Failed => crate::exit::FAILED,
                RunResult::Interrupted => crate::exit::INTERRUPTED,
            },
            error: None,
            warnings: Vec::new(),
            figures: Figures::default(),
            skip_reason: None,
            notes: Vec::new(),
            killed_by_limit: None,
            memory: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the run record in {}: {source}", .dir.display())]
pub struct HistoryError {
    dir: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The directory created if needed and the writers' lock taken: one writer of `runs.jsonl`
/// at a time, whether it appends or rewrites.
fn writers_lock(dir: &Path) -> std::io::Result<Flock<File>> {
    crate::paths::create_dir(dir)?;
    // 0644 at most, whatever the umask (`run --here` has no unit UMask=): status and the
    // metrics believe these records, so no other user may write them.
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(dir.join(LOCK_NAME))?;
    Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, errno)| errno.into())
}

/// Appends one record. The directory is created if needed.
pub fn append(dir: &Path, record: &RunRecord) -> Result<(), HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    let _lock = writers_lock(dir).map_err(wrap)?;
    append_locked(dir, record)
}

/// [`append`] with the writers' lock already held.
fn append_locked(dir: &Path, record: &RunRecord) -> Result<(), HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    let path = dir.join(FILE_NAME);
    let mut line = serde_json::to_string(record).map_err(|e| wrap(e.into()))?;
    line.push('\n');
    // A new file's name must reach the disk too (the directory's fsync), or a crash loses it.
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&path)
        .map_err(wrap)?;
    // A power cut mid-append can leave a torn last line (no newline): the next record starts
    // on a line of its own, or it would be glued to the torn one and unreadable too.
    if ends_torn(&path).map_err(wrap)? {
        line.insert(0, '\n');
    }
    file.write_all(line.as_bytes()).map_err(wrap)?;
    file.sync_data().map_err(wrap)?;
    if created {
        crate::paths::sync_dir(dir).map_err(wrap)?;
    }
    if file.metadata().map_err(wrap)?.len() > MAX_BYTES {
        trim(&path).map_err(wrap)?;
    }
    Ok(())
}

/// Whether the file's last byte is not a newline (a record torn by a crash); an empty or
/// missing file is not torn.
fn ends_torn(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
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
    let _lock = writers_lock(dir).map_err(wrap)?;
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

/// All readable records, oldest first, then the runs cut by an earlier boot's end (see
/// [`begin`]) as `interrupted`. A missing file is an empty history; a damaged line (a crash
/// mid-write) is skipped.
pub fn read(dir: &Path) -> std::io::Result<Vec<RunRecord>> {
    let mut records = read_file(dir)?;
    let boot = boot_id();
    for open in open_runs(dir) {
        if open.boot != boot && !records.iter().any(|r| r.run == open.record.run) {
            records.push(open.record);
        }
    }
    let cut_jobs = job_note::cut_records(dir, &records, &boot);
    records.extend(cut_jobs);
    Ok(records)
}

/// The records in the file alone.
fn read_file(dir: &Path) -> std::io::Result<Vec<RunRecord>> {
    match File::open(dir.join(FILE_NAME)) {
        Ok(file) => Ok(BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// The note of a running stage: its record-to-be, marked interrupted until it ends.
#[derive(Debug, Serialize, Deserialize)]
struct OpenRun {
    /// `/proc/sys/kernel/random/boot_id` of the boot the run began in.
    boot: String,
    record: RunRecord,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

fn open_path(dir: &Path, stage: &str) -> PathBuf {
    dir.join(OPEN_DIR).join(format!("{stage}.json"))
}

fn open_runs(dir: &Path) -> Vec<OpenRun> {
    let Ok(entries) = std::fs::read_dir(dir.join(OPEN_DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect()
}

/// Notes, durably, that the run of `record` (its stage's lock held) begins. A note left by an
/// earlier run of the stage is a run that never ended (the machine went down, or the stage was
/// killed): it is recorded as `interrupted` first and returned, for the journal.
pub fn begin(dir: &Path, record: &RunRecord) -> Result<Option<RunRecord>, HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    let path = open_path(dir, &record.stage);
    let left = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<OpenRun>(&bytes).ok())
        .map(|open| RunRecord {
            // In this boot, the machine did not go down: the stage's process was killed.
            error: (open.boot == boot_id())
                .then(|| KILLED_ERROR.to_string())
                .or(open.record.error),
            ..open.record
        });
    let recorded = |run: &str| read_file(dir).is_ok_and(|all| all.iter().any(|r| r.run == run));
    let left = left.filter(|cut| !recorded(&cut.run));
    if let Some(cut) = &left {
        append(dir, cut)?;
    }
    crate::paths::create_dir(&dir.join(OPEN_DIR)).map_err(wrap)?;
    let open = OpenRun {
        boot: boot_id(),
        record: RunRecord {
            result: RunResult::Interrupted,
            exit_code: crate::exit::INTERRUPTED,
            error: Some(CUT_ERROR.into()),
            ..record.clone()
        },
    };
    let json = serde_json::to_vec(&open).map_err(|e| wrap(e.into()))?;
    crate::paths::write_atomically(&path, &json, Fsync::Yes, None).map_err(wrap)?;
    Ok(left)
}

/// Removes the note of [`begin`] once the run's record is written.
pub fn end(dir: &Path, stage: &str) -> Result<(), HistoryError> {
    let wrap = |source| HistoryError {
        dir: dir.to_path_buf(),
        source,
    };
    crate::paths::remove_durably(&open_path(dir, stage)).map_err(wrap)
}

/// A record of a `kind` stage finished at `finished` (job "job"), for the tests of the
/// modules that read records. The kind is the caller's, since kind names belong to
/// `src/stages/` (tests/layering.rs).
#[cfg(test)]
pub(crate) fn sample_record(
    stage: &str,
    kind: &str,
    result: RunResult,
    finished: &str,
) -> RunRecord {
    RunRecord {
        duration_secs: 1.0,
        ..RunRecord::new(
            format!("{stage}-{finished}"),
            ("job", stage, kind),
            finished,
            result,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str) -> RunRecord {
        RunRecord {
            run: "r1".into(),
            started: "2026-01-01T00:00:00Z".into(),
            ..sample_record(stage, "exec", RunResult::Success, "2026-01-01T00:00:01Z")
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

    /// A run whose note of an earlier boot is left (the machine went down during it) reads
    /// as interrupted, and the stage's next run records it once.
    #[test]
    fn a_run_cut_by_a_power_loss_is_interrupted_and_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let cut = RunRecord {
            run: "cut".into(),
            ..record("a")
        };
        begin(dir.path(), &cut).unwrap();
        // The note as an earlier boot left it.
        let path = open_path(dir.path(), "a");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&boot_id(), "an-earlier-boot")).unwrap();
        let shown = read(dir.path()).unwrap();
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].run.as_str(), shown[0].result),
            ("cut", RunResult::Interrupted)
        );

        let next = RunRecord {
            run: "next".into(),
            ..record("a")
        };
        let found = begin(dir.path(), &next)
            .unwrap()
            .expect("the cut run is found");
        assert_eq!(found.run, "cut");
        // While the next run runs: the cut one on record, the running one not shown.
        let during = read(dir.path()).unwrap();
        assert_eq!(
            during
                .iter()
                .map(|r| (r.run.as_str(), r.result))
                .collect::<Vec<_>>(),
            [("cut", RunResult::Interrupted)]
        );
        append(dir.path(), &next).unwrap();
        end(dir.path(), "a").unwrap();
        assert!(!path.exists());
        let after = read(dir.path()).unwrap();
        assert_eq!(
            after
                .iter()
                .map(|r| (r.run.as_str(), r.result))
                .collect::<Vec<_>>(),
            [
                ("cut", RunResult::Interrupted),
                ("next", RunResult::Success)
            ]
        );
    }

    /// A power cut during an append leaves half a line without its newline: the next record
    /// must still be readable, not glued to the torn half.
    #[test]
    fn a_record_after_a_torn_line_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &record("a")).unwrap();
        let whole = serde_json::to_string(&record("torn")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap()
            .write_all(&whole.as_bytes()[..whole.len() / 2])
            .unwrap();
        append(dir.path(), &record("b")).unwrap();
        let records = read(dir.path()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.stage.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
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
