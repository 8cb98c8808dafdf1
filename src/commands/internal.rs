//! Verbs the generated units call; hidden from `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Cli;
use crate::history::{self, RunResult};
use crate::report::messages;

/// `job-finished JOB`: the job unit's `ExecStart=`, run once every stage it pulled in is done
/// (systemd only gets here when no required stage failed). Logs the job's summary.
pub fn job_finished(cli: &Cli, job: &str) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let records = history::read(&crate::paths::state_dir(cli.scope())).unwrap_or_default();
    let mut lines = Vec::new();
    let mut failed_optional = 0;
    for stage in config.stages_of(job) {
        let last = records
            .iter()
            .rev()
            .find(|r| r.stage == stage.name && r.job == job);
        let result = last.map_or("no record", |r| match r.result {
            RunResult::Success => "succeeded",
            RunResult::Failed => "failed",
            RunResult::Skipped => "skipped",
            RunResult::Interrupted => "interrupted",
        });
        if last.is_some_and(|r| r.result == RunResult::Failed) && !stage.required {
            failed_optional += 1;
        }
        lines.push(format!("{} {result}", stage.name));
    }
    tracing::info!(
        message_id = messages::JOB_FINISHED,
        backupctl_job = job,
        backupctl_failed_optional = failed_optional,
        "job {job} finished: {}",
        lines.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// `prepare-paths PATH…`: create the directories a stage writes (they must exist before
/// systemd can make them writable in the stage's sandbox).
pub fn prepare_paths(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    for path in paths {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
