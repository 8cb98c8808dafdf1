//! `status`: what the last run of a job did and what runs now, from two sources that are
//! combined here: the run records in the state directory (`crate::run_records`: durable, exact
//! figures, survive unit garbage collection and reboots) and systemd over D-Bus (`systemd`:
//! live state, `StatusText`, the timer's next elapse, and runs that left no record because
//! they were killed). Without systemd the records alone still answer.
//!
//! The JSON form ([`Status`], `--json`) is an interface: keys are only ever added. Its shape
//! is documented in docs/watching.md.

pub mod repositories;
pub mod systemd;
pub mod table;

use serde::Serialize;

use crate::config::{Config, Stage};
use crate::paths::Scope;
use crate::run_records::{RunRecord, RunResult};
use crate::stages::Purpose;
use systemd::{JobView, UnitView};

/// Version of the JSON shape; raised only if a key ever changes meaning.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: u32,
    pub scope: &'static str,
    pub systemd: SystemdReach,
    pub jobs: Vec<JobStatus>,
    /// The repositories the stages use, with their figures (`repositories`).
    pub repositories: Vec<repositories::RepositoryStatus>,
}

/// Whether systemd could be asked; when not, `error` says why and the unit-side fields are
/// `null`.
#[derive(Debug, Clone, Serialize)]
pub struct SystemdReach {
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub unit: Option<UnitStatus>,
    pub timer: Option<TimerStatus>,
    pub last_run: Option<JobRun>,
    pub stages: Vec<StageStatus>,
}

/// A unit as systemd sees it.
#[derive(Debug, Clone, Serialize)]
pub struct UnitStatus {
    pub name: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimerStatus {
    pub name: String,
    pub active_state: String,
    /// RFC 3339; `null` when the timer is not scheduled (stopped).
    pub next_elapse: Option<String>,
    pub last_trigger: Option<String>,
}

/// One run of the whole job: every stage run with the same `job_run`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    pub id: String,
    /// `running`, `success` (every required stage succeeded or was skipped), `failed` (a
    /// required stage failed), `interrupted` (a stage was stopped).
    pub result: String,
    pub started: Option<String>,
    /// `null` while running.
    pub finished: Option<String>,
    pub duration_secs: Option<f64>,
    /// Stages that failed in this run, required or not: what failed.
    pub failed: Vec<String>,
    /// Stages of the job without a record in this run (a required parent failed, or the
    /// run still goes on).
    pub not_run: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub name: String,
    pub kind: String,
    /// What the stage is for (the table says what a drill's last run verified).
    #[serde(skip)]
    pub purpose: Purpose,
    pub required: bool,
    pub unit: String,
    /// systemd's `ActiveState` / `SubState`; `null` when systemd could not be asked.
    pub state: Option<String>,
    pub sub_state: Option<String>,
    /// The stage's live `STATUS=` line while it runs.
    pub status_text: Option<String>,
    /// `running`, or the last run's result: `success`, `failed`, `skipped`, `interrupted`;
    /// `null` when it never ran.
    pub result: Option<String>,
    /// Why the last run failed.
    pub error: Option<String>,
    /// Why the last run was skipped ("on battery", "metered connection", …).
    pub skip_reason: Option<String>,
    pub warnings: usize,
    /// When the newest successful run finished (RFC 3339).
    pub last_success: Option<String>,
    pub last_duration_secs: Option<f64>,
    /// Bytes the last run added to its destination, when its kind reports it.
    pub bytes_added: Option<u64>,
    /// The last run record, as in runs.jsonl.
    pub last_run: Option<RunRecord>,
    /// The newest run of a `drill` stage that verifies this stage's backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillStatus>,
}

/// The newest restore drill of a backup stage (a run of a `drill` stage naming it).
#[derive(Debug, Clone, Serialize)]
pub struct DrillStatus {
    /// The drill stage.
    pub stage: String,
    /// When it finished (RFC 3339).
    pub finished: String,
    /// `success`, `failed`, `skipped` or `interrupted`.
    pub result: String,
    /// Files it verified.
    pub files: Option<u64>,
    /// Restored files that differed from the backup's record.
    pub mismatches: Option<u64>,
    /// How old the verified backup was when the drill ran.
    pub snapshot_age_secs: Option<u64>,
    /// Database drills: how long loading the dumps took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
}

/// The newest run of any drill stage of `config` whose `stage` is `target`.
pub fn last_drill(config: &Config, target: &str, records: &[RunRecord]) -> Option<DrillStatus> {
    let drills: Vec<&str> = config
        .stages
        .iter()
        .filter(|stage| {
            stage.spec.purpose() == Purpose::Drill && stage.spec.reads_backup_of() == Some(target)
        })
        .map(|stage| stage.name.as_str())
        .collect();
    let record = records
        .iter()
        .rev()
        .find(|record| drills.contains(&record.stage.as_str()))?;
    Some(DrillStatus {
        stage: record.stage.clone(),
        finished: record.finished.clone(),
        result: record.result.as_str().to_string(),
        files: record.figures.files,
        mismatches: record.figures.mismatches,
        snapshot_age_secs: record.figures.snapshot_age_secs,
        restore_seconds: record.figures.restore_seconds,
    })
}

/// `µs since the epoch` → RFC 3339; 0 and `u64::MAX` mean "none" to systemd.
pub fn timestamp(usec: u64) -> Option<String> {
    if usec == 0 || usec == u64::MAX {
        return None;
    }
    jiff::Timestamp::from_microsecond(usec as i64)
        .ok()
        .map(|t| t.to_string())
}

/// The job run a record belongs to (records from before job runs existed: their own).
fn run_of(record: &RunRecord) -> &str {
    record.job_run.as_deref().unwrap_or(&record.run)
}

/// The newest run of `job`: the one of the newest record, or the queued one systemd reports.
pub fn last_run(
    stages: &[&Stage],
    records: &[RunRecord],
    job: &str,
    queued: Option<&str>,
) -> Option<JobRun> {
    let newest = records.iter().rev().find(|r| r.job == job).map(run_of);
    let id = queued.or(newest)?;
    let running = queued == Some(id);
    let mine: Vec<&RunRecord> = records
        .iter()
        .filter(|r| r.job == job && run_of(r) == id)
        .collect();
    let parse = |text: &str| text.parse::<jiff::Timestamp>().ok();
    let started = mine.iter().filter_map(|r| parse(&r.started)).min();
    let finished = mine.iter().filter_map(|r| parse(&r.finished)).max();
    let required = |name: &str| stages.iter().any(|s| s.name == name && s.required);
    let result = if running {
        "running"
    } else if mine.iter().any(|r| r.result == RunResult::Interrupted) {
        "interrupted"
    } else if mine
        .iter()
        .any(|r| r.result == RunResult::Failed && required(&r.stage))
    {
        "failed"
    } else {
        "success"
    };
    Some(JobRun {
        id: id.to_string(),
        result: result.into(),
        started: started.map(|t| t.to_string()),
        finished: (!running)
            .then_some(finished)
            .flatten()
            .map(|t| t.to_string()),
        duration_secs: match (started, finished, running) {
            (Some(start), Some(end), false) => {
                let secs = (end - start).total(jiff::Unit::Second).unwrap_or(0.0);
                Some((secs * 1000.0).round() / 1000.0)
            }
            _ => None,
        },
        failed: mine
            .iter()
            .filter(|r| r.result == RunResult::Failed)
            .map(|r| r.stage.clone())
            .collect(),
        not_run: stages
            .iter()
            .filter(|s| !mine.iter().any(|r| r.stage == s.name))
            .map(|s| s.name.clone())
            .collect(),
    })
}

/// µs since the epoch of an RFC 3339 time.
fn usec(text: &str) -> Option<u64> {
    let time = text.parse::<jiff::Timestamp>().ok()?;
    u64::try_from(time.as_microsecond()).ok()
}

/// The stage's unit when its last activation failed without writing a run record (killed by
/// a signal or a timeout, failed in `ExecStartPre=`): systemd knows of that run, the records
/// do not. Not when `last` (the stage's newest record) is of that activation, or began after
/// it ended (a `run --here` since: its record is the newer word).
fn died_without_record<'a>(
    unit: Option<&'a UnitView>,
    last: Option<&RunRecord>,
) -> Option<&'a UnitView> {
    unit.filter(|unit| {
        unit.active_state == "failed"
            && !unit.invocation_id.is_empty()
            && last.is_none_or(|r| {
                r.run != unit.invocation_id
                    && (unit.inactive_enter_usec == 0
                        || usec(&r.started).is_none_or(|start| start < unit.inactive_enter_usec))
            })
    })
}

/// How long after a stage of a run ends the next one may begin (record written, process
/// gone, systemd starts the stages after it): a stage that died without a record and began
/// within this of the last recorded run's end was of that run.
const NEXT_STAGE_SLACK_USEC: u64 = 10_000_000;

/// Adds the stages that died without a record (`died_without_record`) to the job's last
/// run, or makes a run of them when they began after the last recorded run ended: without
/// this, a job whose required stage was killed showed the previous run's `success`.
/// Such a run's id is the dead stage's invocation id (a stage run id `logs --run` takes).
fn add_runs_without_records(
    last_run: &mut Option<JobRun>,
    stages: &[&Stage],
    records: &[RunRecord],
    view: &JobView,
) {
    let mut dead: Vec<(&Stage, &UnitView)> = stages
        .iter()
        .filter_map(|stage| {
            let last = records.iter().rev().find(|r| r.stage == stage.name);
            died_without_record(view.stages.get(&stage.name), last).map(|unit| (*stage, unit))
        })
        .filter(|(_, unit)| unit.inactive_exit_usec != 0)
        .collect();
    dead.sort_by_key(|(_, unit)| unit.inactive_exit_usec);
    for (stage, unit) in dead {
        let began = unit.inactive_exit_usec;
        let time = |text: &Option<String>| text.as_deref().and_then(usec);
        let newer_run = match last_run.as_ref() {
            None => true,
            Some(run) if run.result == "running" => false,
            Some(run) => time(&run.finished)
                .is_some_and(|finished| began > finished.saturating_add(NEXT_STAGE_SLACK_USEC)),
        };
        if newer_run {
            let ended = unit.inactive_enter_usec;
            *last_run = Some(JobRun {
                id: unit.invocation_id.clone(),
                result: "success".into(),
                started: timestamp(began),
                finished: timestamp(ended),
                duration_secs: (ended > began)
                    .then(|| ((ended - began) as f64 / 1000.0).round() / 1000.0),
                failed: Vec::new(),
                not_run: stages.iter().map(|s| s.name.clone()).collect(),
            });
        }
        let Some(run) = last_run.as_mut() else {
            continue;
        };
        // A stage that died before the last run began (and has not run since) is not of it.
        if time(&run.started).is_none_or(|started| began < started) {
            continue;
        }
        run.not_run.retain(|name| *name != stage.name);
        if !run.failed.contains(&stage.name) {
            run.failed.push(stage.name.clone());
        }
        if stage.required && run.result == "success" {
            run.result = "failed".into();
        }
    }
}

/// One stage: its newest record, its newest success, and what systemd says now.
pub fn stage_status(
    stage: &Stage,
    records: &[RunRecord],
    unit: Option<&UnitView>,
    scope: Scope,
) -> StageStatus {
    let mine = || records.iter().rev().filter(|r| r.stage == stage.name);
    let last = mine().next();
    let last_success = mine().find(|r| r.result == RunResult::Success);
    let running = unit.is_some_and(UnitView::running);
    let mut result = last.map(|r| r.result.as_str().to_string());
    let mut error = last.and_then(|r| r.error.clone());
    if let Some(unit) = died_without_record(unit, last) {
        result = Some("failed".into());
        error = Some(format!(
            "systemd: {} (no run record; see `systemctl{} status {}`)",
            unit.result,
            if scope == Scope::User { " --user" } else { "" },
            crate::units::stage_service(&stage.name)
        ));
    }
    if running {
        result = Some("running".into());
        error = None;
    }
    StageStatus {
        name: stage.name.clone(),
        kind: stage.spec.name().to_string(),
        purpose: stage.spec.purpose(),
        required: stage.required,
        unit: crate::units::stage_service(&stage.name),
        state: unit.map(|u| u.active_state.clone()),
        sub_state: unit.map(|u| u.sub_state.clone()),
        status_text: unit
            .filter(|u| u.running() && !u.status_text.is_empty())
            .map(|u| u.status_text.clone()),
        skip_reason: last
            .filter(|_| result.as_deref() == Some("skipped"))
            .and_then(|r| r.skip_reason.clone()),
        result,
        error,
        warnings: last.map_or(0, |r| r.warnings.len()),
        last_success: last_success.map(|r| r.finished.clone()),
        last_duration_secs: last.map(|r| r.duration_secs),
        bytes_added: last.and_then(|r| r.figures.bytes_added),
        last_run: last.cloned(),
        last_drill: None,
    }
}

/// Combines the records and systemd's view (`None`: systemd could not be asked) of one job.
pub fn job_status(
    config: &Config,
    job: &str,
    records: &[RunRecord],
    view: Option<&JobView>,
    scope: Scope,
) -> JobStatus {
    let stages: Vec<&Stage> = config.stages_of(job).collect();
    let mut last_run = last_run(
        &stages,
        records,
        job,
        view.and_then(|v| v.queued_run.as_deref()),
    );
    if let (Some(run), Some(view)) = (last_run.as_mut(), view)
        && run.result == "running"
        && run.started.is_none()
    {
        // No stage has finished yet: the run began when its first stage started.
        run.started = view
            .stages
            .values()
            .filter(|u| u.running())
            .map(|u| u.inactive_exit_usec)
            .min()
            .and_then(timestamp);
    }
    if let Some(view) = view {
        add_runs_without_records(&mut last_run, &stages, records, view);
    }
    JobStatus {
        name: job.to_string(),
        unit: view.map(|v| UnitStatus {
            name: crate::units::job_service(job),
            load_state: v.job.load_state.clone(),
            active_state: v.job.active_state.clone(),
            sub_state: v.job.sub_state.clone(),
            result: v.job.result.clone(),
        }),
        timer: view.and_then(|v| v.timer.as_ref()).map(|t| TimerStatus {
            name: crate::units::job_timer(job),
            active_state: t.active_state.clone(),
            next_elapse: timestamp(t.next_elapse_usec),
            last_trigger: timestamp(t.last_trigger_usec),
        }),
        last_run,
        stages: stages
            .iter()
            .map(|stage| {
                let mut status = stage_status(
                    stage,
                    records,
                    view.and_then(|v| v.stages.get(&stage.name)),
                    scope,
                );
                status.last_drill = last_drill(config, &stage.name, records);
                status
            })
            .collect(),
    }
}

/// The status of `jobs`: records from the scope's state directory, systemd when it answers.
pub fn gather(config: &Config, jobs: &[&str], scope: Scope) -> Status {
    let state_dir = crate::paths::state_dir(scope);
    let records = crate::run_records::read(&state_dir).unwrap_or_else(|error| {
        tracing::warn!(
            "cannot read the run records in {}: {error}; showing systemd's view only \
             (system scope's records may need root; your own jobs are `--user`)",
            state_dir.display()
        );
        Vec::new()
    });
    let (views, reach) = match systemd::read(config, jobs, scope) {
        Ok(views) => (
            Some(views),
            SystemdReach {
                reachable: true,
                error: None,
            },
        ),
        Err(error) => (
            None,
            SystemdReach {
                reachable: false,
                error: Some(error.to_string()),
            },
        ),
    };
    Status {
        version: JSON_VERSION,
        scope: match scope {
            Scope::System => "system",
            Scope::User => "user",
        },
        systemd: reach,
        jobs: jobs
            .iter()
            .enumerate()
            .map(|(index, job)| {
                job_status(
                    config,
                    job,
                    &records,
                    views.as_ref().and_then(|v| v.get(index)),
                    scope,
                )
            })
            .collect(),
        repositories: repositories::of(
            config,
            &crate::repository_figures::read_all(&state_dir).unwrap_or_else(|error| {
                tracing::warn!("cannot read the repositories' figures: {error}");
                Vec::new()
            }),
            &records,
            jiff::Timestamp::now(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str, job_run: &str, result: RunResult, second: u32) -> RunRecord {
        RunRecord {
            run: format!("{stage}-{job_run}"),
            job_run: Some(job_run.into()),
            started: format!("2026-01-01T00:00:{second:02}Z"),
            ..crate::run_records::sample_record(
                stage,
                "exec",
                result,
                &format!("2026-01-01T00:00:{:02}Z", second + 1),
            )
        }
    }

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
             [stage.b]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
             [stage.c]\nkind = \"exec\"\nrequired = false\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        Config::load(&path).unwrap()
    }

    #[test]
    fn a_backup_stage_knows_its_newest_drill() {
        let config = crate::config::parse(
            std::path::Path::new("/c.toml"),
            "[stage.home]\nkind = \"rsync\"\nsources = [\"/home/\"]\ndestination = \"/b\"\n\
             [stage.other]\nkind = \"rsync\"\nsources = [\"/srv/\"]\ndestination = \"/c\"\n\
             [stage.drill-home]\nkind = \"drill\"\nstage = \"home\"\n\
             [stage.drill-other]\nkind = \"drill\"\nstage = \"other\"\n",
        )
        .unwrap();
        let mut newest = record("drill-home", "r2", RunResult::Failed, 20);
        newest.figures.files = Some(7);
        let records = [
            record("drill-home", "r1", RunResult::Success, 0),
            newest,
            record("drill-other", "r3", RunResult::Success, 30),
            record("home", "r4", RunResult::Success, 40),
        ];
        let drill = last_drill(&config, "home", &records).unwrap();
        assert_eq!(drill.stage, "drill-home");
        assert_eq!(drill.result, "failed");
        assert_eq!(drill.finished, "2026-01-01T00:00:21Z");
        assert_eq!(drill.files, Some(7));
        assert!(last_drill(&config, "drill-home", &records).is_none());
    }

    #[test]
    fn the_last_run_is_the_newest_records_run_and_names_what_failed() {
        let config = config();
        let stages: Vec<&Stage> = config.stages_of("job").collect();
        let records = [
            record("a", "r1", RunResult::Success, 0),
            record("b", "r1", RunResult::Success, 2),
            record("c", "r1", RunResult::Success, 4),
            record("a", "r2", RunResult::Failed, 10),
        ];
        let run = last_run(&stages, &records, "job", None).unwrap();
        assert_eq!(run.id, "r2");
        assert_eq!(run.result, "failed");
        assert_eq!(run.failed, ["a"]);
        assert_eq!(run.not_run, ["b", "c"]);
        assert_eq!(run.started.as_deref(), Some("2026-01-01T00:00:10Z"));
        assert_eq!(run.finished.as_deref(), Some("2026-01-01T00:00:11Z"));
        assert_eq!(run.duration_secs, Some(1.0));
    }

    #[test]
    fn an_optional_failure_leaves_the_job_successful_but_is_named() {
        let config = config();
        let stages: Vec<&Stage> = config.stages_of("job").collect();
        let records = [
            record("a", "r1", RunResult::Success, 0),
            record("b", "r1", RunResult::Success, 2),
            record("c", "r1", RunResult::Failed, 4),
        ];
        let run = last_run(&stages, &records, "job", None).unwrap();
        assert_eq!(run.result, "success");
        assert_eq!(run.failed, ["c"]);
        assert!(run.not_run.is_empty());
        assert_eq!(run.duration_secs, Some(5.0));
    }

    #[test]
    fn a_queued_run_is_running_and_has_no_end() {
        let config = config();
        let stages: Vec<&Stage> = config.stages_of("job").collect();
        let records = [
            record("a", "r1", RunResult::Success, 0),
            record("a", "r2", RunResult::Success, 10),
        ];
        let run = last_run(&stages, &records, "job", Some("r2")).unwrap();
        assert_eq!(run.result, "running");
        assert_eq!(run.finished, None);
        assert_eq!(run.not_run, ["b", "c"]);
        assert!(last_run(&stages, &[], "job", None).is_none());
    }

    /// A stage unit that failed in invocation `id`, active from `began` to `ended` (seconds
    /// into 2026-01-01, as in `record`).
    fn died(id: &str, began: u64, ended: u64) -> UnitView {
        let base = usec("2026-01-01T00:00:00Z").unwrap();
        UnitView {
            active_state: "failed".into(),
            result: "signal".into(),
            invocation_id: id.into(),
            inactive_exit_usec: base + began * 1_000_000,
            inactive_enter_usec: base + ended * 1_000_000,
            ..UnitView::default()
        }
    }

    fn view(stages: &[(&str, UnitView)]) -> JobView {
        JobView {
            stages: stages
                .iter()
                .map(|(name, unit)| (name.to_string(), unit.clone()))
                .collect(),
            ..JobView::default()
        }
    }

    #[test]
    fn a_required_stage_killed_after_the_first_fails_the_run_it_belongs_to() {
        let config = config();
        // r2: a succeeded (10–11 s), then b began and was killed before its record.
        let records = [
            record("a", "r1", RunResult::Success, 0),
            record("b", "r1", RunResult::Success, 2),
            record("c", "r1", RunResult::Success, 4),
            record("a", "r2", RunResult::Success, 10),
        ];
        let view = view(&[("b", died("b-killed", 11, 13))]);
        let status = job_status(&config, "job", &records, Some(&view), Scope::System);
        let run = status.last_run.unwrap();
        assert_eq!(run.id, "r2");
        assert_eq!(run.result, "failed");
        assert_eq!(run.failed, ["b"]);
        assert_eq!(run.not_run, ["c"]);
    }

    #[test]
    fn a_run_whose_first_stage_was_killed_is_the_last_run_not_the_one_before() {
        let config = config();
        let records = [
            record("a", "r1", RunResult::Success, 0),
            record("b", "r1", RunResult::Success, 2),
            record("c", "r1", RunResult::Success, 4),
        ];
        let view = view(&[("a", died("a-killed", 50, 52))]);
        let status = job_status(&config, "job", &records, Some(&view), Scope::System);
        let run = status.last_run.unwrap();
        assert_eq!(run.id, "a-killed");
        assert_eq!(run.result, "failed");
        assert_eq!(run.started.as_deref(), Some("2026-01-01T00:00:50Z"));
        assert_eq!(run.finished.as_deref(), Some("2026-01-01T00:00:52Z"));
        assert_eq!(run.duration_secs, Some(2.0));
        assert_eq!(run.failed, ["a"]);
        assert_eq!(run.not_run, ["b", "c"]);
    }

    #[test]
    fn a_stage_killed_in_an_earlier_run_or_run_here_since_leaves_the_last_run_alone() {
        let config = config();
        // b was killed in the run of 0–5 s and has not run since; r2 failed at a on its own.
        let records = [
            record("a", "r1", RunResult::Success, 0),
            record("a", "r2", RunResult::Failed, 30),
        ];
        let b_dead = view(&[("b", died("b-killed", 2, 3))]);
        let status = job_status(&config, "job", &records, Some(&b_dead), Scope::System);
        let run = status.last_run.unwrap();
        assert_eq!(run.id, "r2");
        assert_eq!(run.failed, ["a"]);
        assert_eq!(status.stages[1].result.as_deref(), Some("failed"));
        // c failed under systemd, then succeeded under `run --here`: the record is newer.
        let records = [record("c", "here", RunResult::Success, 40)];
        let c_dead = view(&[("c", died("c-killed", 20, 21))]);
        let status = job_status(&config, "job", &records, Some(&c_dead), Scope::System);
        assert_eq!(status.stages[2].result.as_deref(), Some("success"));
        assert_eq!(status.last_run.unwrap().failed, Vec::<String>::new());
    }

    #[test]
    fn a_stage_killed_without_a_record_is_failed_by_systemds_word() {
        let config = config();
        let records = [record("a", "r1", RunResult::Success, 0)];
        let unit = UnitView {
            active_state: "failed".into(),
            result: "timeout".into(),
            invocation_id: "other".into(),
            ..UnitView::default()
        };
        let status = stage_status(
            config.stage("a").unwrap(),
            &records,
            Some(&unit),
            Scope::System,
        );
        assert_eq!(status.result.as_deref(), Some("failed"));
        assert_eq!(
            status.error.unwrap(),
            "systemd: timeout (no run record; see `systemctl status backup@a.service`)"
        );
        assert_eq!(status.last_success.as_deref(), Some("2026-01-01T00:00:01Z"));
        let status = stage_status(config.stage("b").unwrap(), &records, None, Scope::User);
        assert_eq!(status.result, None);
        assert_eq!(status.state, None);
    }
}
