//! `stage-ended STAGE`: the `ExecStopPost=` of every stage unit, run by systemd after the
//! stage's process is gone, with what systemd saw of its end (`$SERVICE_RESULT`,
//! `$EXIT_CODE`, `$EXIT_STATUS`).
//!
//! It exists for the end the executor cannot report itself: a stage killed by its memory
//! limit (`Result=oom-kill`). The kernel's OOM killer kills the largest process of the
//! cgroup (the tool, or the executor itself under a small limit) and systemd then stops the
//! unit (`OOMPolicy=stop`), so the executor wrote "interrupted" or "failed" with no reason,
//! or nothing at all. Here the run's record is amended (or written) to say which limit
//! killed it, with a journal record whose catalog entry says what to do; `status`, the
//! notification (which reads the record) and the metrics follow from the record.

use crate::config::{Config, Stage};
use crate::paths::Scope;
use crate::report::messages;
use crate::run_records::{self, RunRecord, RunResult};

/// What systemd tells an `ExecStopPost=` command of the main process's end.
#[derive(Debug, Clone)]
pub struct Ended {
    /// `$SERVICE_RESULT`: `success`, `exit-code`, `signal`, `timeout`, `oom-kill`, …
    pub service_result: String,
    /// `$EXIT_CODE` (`exited`, `killed`, `dumped`) and `$EXIT_STATUS`.
    pub exit_code: Option<String>,
    pub exit_status: Option<String>,
    /// `$INVOCATION_ID`: the run id of the executor's record.
    pub run: String,
}

impl Ended {
    /// From the environment systemd sets for `ExecStopPost=`.
    pub fn from_env() -> Ended {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Ended {
            service_result: var("SERVICE_RESULT").unwrap_or_else(|| "success".into()),
            exit_code: var("EXIT_CODE"),
            exit_status: var("EXIT_STATUS"),
            run: crate::executor::run_id(),
        }
    }
}

/// The limit a stage killed by the OOM killer ran into, as the config spells it:
/// `memory_max = 2G`, or the slice's when the stage has none of its own.
pub fn memory_limit(config: &Config, stage: &Stage) -> Option<String> {
    if let Some(max) = stage.limits.memory_max {
        return Some(format!("memory_max = {}", max.as_systemd()));
    }
    if let Some(max) = config.slice.memory_max {
        return Some(format!(
            "memory_max = {} of {} ([slice])",
            max.as_systemd(),
            crate::units::SLICE
        ));
    }
    None
}

/// The reason shown in `status`, the record and the notification.
pub fn killed_message(limit: Option<&str>) -> String {
    match limit {
        Some(limit) => format!("killed: memory limit {limit} reached"),
        None => "killed: out of memory (the kernel's OOM killer; no memory_max of backupctl applies to this stage)".into(),
    }
}

/// Records what systemd saw: for an OOM kill, the run's record says so and the journal gets
/// [`messages::STAGE_LIMIT_KILLED`]. Any other end was recorded by the executor already.
pub fn record(config: &Config, stage: &Stage, scope: Scope, ended: &Ended) {
    if ended.service_result != "oom-kill" {
        return;
    }
    let limit = memory_limit(config, stage);
    let message = killed_message(limit.as_deref());
    let memory = crate::cgroup::own_memory();
    let state_dir = crate::paths::state_dir(scope);
    let amend = |record: &mut RunRecord| {
        if let Some(earlier) = record.error.take() {
            record.warnings.push(format!("before the kill: {earlier}"));
        }
        record.result = RunResult::Failed;
        record.exit_code = crate::exit::FAILED;
        record.error = Some(message.clone());
        record.killed_by_limit = Some(limit.clone().unwrap_or_else(|| "out of memory".into()));
        if memory.is_some() {
            record.memory = memory.clone();
        }
    };
    let amended = run_records::amend(&state_dir, &ended.run, amend);
    match amended {
        Ok(true) => {}
        // The executor itself was killed before it wrote its record: this is the record.
        Ok(false) => {
            let mut record = RunRecord {
                job_run: crate::job_run::for_stage(config, &stage.job, &stage.name, scope, &state_dir),
                warnings: vec![
                    "the stage was killed before it could write its record; its start time is unknown".into(),
                ],
                ..RunRecord::new(
                    ended.run.clone(),
                    (&stage.job, &stage.name, stage.spec.name()),
                    &jiff::Timestamp::now().to_string(),
                    RunResult::Failed,
                )
            };
            amend(&mut record);
            if let Err(problem) = run_records::append(&state_dir, &record) {
                tracing::warn!("{problem}");
            }
        }
        Err(problem) => tracing::warn!("{problem}"),
    }
    tracing::error!(
        message_id = messages::STAGE_LIMIT_KILLED,
        backupctl_job = %stage.job,
        backupctl_stage = %stage.name,
        backupctl_run = %ended.run,
        backupctl_limit = limit.as_deref().unwrap_or("none"),
        backupctl_exit_code = crate::exit::FAILED,
        "stage {} {message} (systemd: result {}, {} {})",
        stage.name,
        ended.service_result,
        ended.exit_code.as_deref().unwrap_or("-"),
        ended.exit_status.as_deref().unwrap_or("-"),
    );
    if let Err(problem) = crate::metrics::update(config, scope) {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_limit_as_the_config_spells_it() {
        assert_eq!(
            killed_message(Some("memory_max = 2G")),
            "killed: memory limit memory_max = 2G reached"
        );
        assert!(killed_message(None).contains("OOM killer"));
    }
}
