//! `run --here`: the job's DAG executed in this process, in topological order, with the same
//! executor the units use. A failed required stage stops its dependents, as `Requires=` does
//! under systemd; a failed optional stage does not, as `Wants=` does.

use std::time::Instant;

use crate::config::{Config, Stage};
use crate::dag;
use crate::executor;
use crate::paths::Scope;
use crate::report::{Reporter, messages};
use crate::run_records::{RunRecord, RunResult};

/// How one stage of the job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageEnd {
    Ran(Box<RunRecord>),
    /// Not started because a required stage it depends on did not succeed.
    NotRun {
        because: String,
    },
    /// Not started because another run of it holds its lock.
    Busy(crate::stage_lock::Busy),
}

impl StageEnd {
    /// Whether dependents may start: succeeded or skipped by its condition.
    fn lets_dependents_run(&self) -> bool {
        matches!(self, StageEnd::Ran(r) if matches!(r.result, RunResult::Success | RunResult::Skipped))
    }
}

pub struct JobReport<'a> {
    pub stages: Vec<(&'a Stage, StageEnd)>,
    pub run_id: String,
}

impl JobReport<'_> {
    /// The job succeeds when every required stage succeeded or was skipped by its condition.
    pub fn succeeded(&self) -> bool {
        self.stages
            .iter()
            .all(|(stage, end)| !stage.required || end.lets_dependents_run())
    }

    /// True when a required stage ran and did not succeed (a real failure, not a busy stage
    /// or the stages after it).
    pub fn a_required_stage_failed(&self) -> bool {
        self.stages.iter().any(|(stage, end)| {
            stage.required && matches!(end, StageEnd::Ran(_)) && !end.lets_dependents_run()
        })
    }

    /// The stages that did not start because another run of them was going.
    pub fn busy(&self) -> impl Iterator<Item = &crate::stage_lock::Busy> {
        self.stages.iter().filter_map(|(_, end)| match end {
            StageEnd::Busy(busy) => Some(busy),
            _ => None,
        })
    }
}

/// Runs the job's stages here. `wait`: a stage another run holds waits for it instead of
/// being reported [`StageEnd::Busy`].
pub fn run_job<'a>(config: &'a Config, job: &'a str, scope: Scope, wait: bool) -> JobReport<'a> {
    let (stages, edges) = config.job_graph(job);
    let order = dag::topological(&edges).expect("validated: no cycles");
    let run_id = crate::stages::new_id();
    let started = Instant::now();
    let mut ends: Vec<Option<StageEnd>> = vec![None; stages.len()];
    for index in order {
        let stage = stages[index];
        let blocked = edges[index].iter().find(|&&parent| {
            stages[parent].required
                && !ends[parent]
                    .as_ref()
                    .is_some_and(StageEnd::lets_dependents_run)
        });
        let end = match blocked {
            Some(&parent) => {
                tracing::warn!(
                    "stage {} not run: required stage {} did not succeed",
                    stage.name,
                    stages[parent].name
                );
                StageEnd::NotRun {
                    because: format!("{} did not succeed", stages[parent].name),
                }
            }
            None if crate::signals::stopped() => StageEnd::NotRun {
                because: "stopped".into(),
            },
            None => {
                let report = Reporter::for_environment(&stage.name);
                let start = executor::Start {
                    by: "backupctl run --here".into(),
                    wait,
                };
                match executor::run_stage(config, stage, scope, &run_id, &run_id, &report, &start) {
                    Ok(record) => StageEnd::Ran(Box::new(record)),
                    Err(busy) => StageEnd::Busy(busy),
                }
            }
        };
        ends[index] = Some(end);
    }
    let report = JobReport {
        stages: stages
            .into_iter()
            .zip(ends.into_iter().map(|e| e.expect("every stage visited")))
            .collect(),
        run_id,
    };
    let failed_optional = report
        .stages
        .iter()
        .filter(|(stage, end)| {
            !stage.required && matches!(end, StageEnd::Ran(r) if r.result == RunResult::Failed)
        })
        .count();
    tracing::info!(
        message_id = messages::JOB_FINISHED,
        backupctl_job = job,
        backupctl_failed_optional = failed_optional,
        backupctl_run = %report.run_id,
        backupctl_job_run = %report.run_id,
        "job {job} {} in {:.1}s",
        if report.succeeded() { "succeeded" } else { "failed" },
        started.elapsed().as_secs_f64()
    );
    report
}

/// The summary table printed at the end of `run --here`.
pub fn summary(report: &JobReport) -> String {
    let width = report
        .stages
        .iter()
        .map(|(s, _)| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:<8} {:<11} {:>9}  DETAIL\n",
        "STAGE", "KIND", "RESULT", "TIME"
    );
    for (stage, end) in &report.stages {
        let (result, time, detail) = match end {
            StageEnd::Ran(record) => {
                let result = match record.result {
                    RunResult::Success if !record.warnings.is_empty() => "warning",
                    RunResult::Success => "success",
                    RunResult::Failed => "failed",
                    RunResult::Skipped => "skipped",
                    RunResult::Interrupted => "interrupted",
                };
                let detail = record
                    .error
                    .clone()
                    .or_else(|| record.warnings.first().cloned())
                    .unwrap_or_else(|| record.figures.summary());
                (result, format!("{:.1}s", record.duration_secs), detail)
            }
            StageEnd::NotRun { because } => ("not run", "-".into(), because.clone()),
            StageEnd::Busy(busy) => ("busy", "-".into(), busy.to_string()),
        };
        let optional = if stage.required { "" } else { " (may fail)" };
        let line = format!(
            "{:<width$}  {:<8} {:<11} {:>9}  {detail}{optional}",
            stage.name,
            stage.spec.name(),
            result,
            time
        );
        // No trailing blanks where a stage has no detail.
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
