//! Verbs the generated units call; hidden from `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nix::unistd::{Gid, Group, Uid, User};

use crate::cli::Cli;
use crate::history::{self, RunResult};
use crate::report::messages;

/// `job-finished JOB`: the job unit's `ExecStart=`, run once every stage it pulled in is done
/// (systemd only gets here when no required stage failed). Logs the job's summary.
pub fn job_finished(cli: &Cli, job: &str) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let records = history::read(&crate::paths::state_dir(cli.scope())).unwrap_or_default();
    // Our own start job is still running: the same job run the stages saw.
    let job_run = crate::job_run::current_in(cli.scope(), job);
    let mut lines = Vec::new();
    let mut failed_optional = 0;
    for stage in config.stages_of(job) {
        let last = records.iter().rev().find(|r| {
            r.stage == stage.name && r.job == job && (job_run.is_none() || r.job_run == job_run)
        });
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
        backupctl_job_run = job_run.as_deref(),
        backupctl_failed_optional = failed_optional,
        "job {job} finished: {}",
        lines.join(", ")
    );
    if let Err(problem) = crate::metrics::update(&config, cli.scope()) {
        tracing::warn!("{problem}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `prepare-paths [--owner USER[:GROUP]] PATH…`: create the directories a stage writes (they
/// must exist before systemd can make them writable in the stage's sandbox), owned by the
/// stage's user when it has one: this runs as root ("+" in `ExecStartPre=`).
pub fn prepare_paths(owner: Option<&str>, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let owner = owner.map(resolve_owner).transpose()?;
    for path in paths {
        let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        if let Some((uid, gid)) = owner {
            // Only what we created: an existing parent keeps its owner.
            for created in missing {
                nix::unistd::chown(created, Some(uid), gid)
                    .with_context(|| format!("giving {} to the stage's user", created.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve_owner(owner: &str) -> anyhow::Result<(Uid, Option<Gid>)> {
    let (user, group) = match owner.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (owner, None),
    };
    let user = User::from_name(user)?.with_context(|| format!("no user `{user}`"))?;
    let gid = match group {
        Some(group) => {
            Group::from_name(group)?
                .with_context(|| format!("no group `{group}`"))?
                .gid
        }
        None => user.gid,
    };
    Ok((user.uid, Some(gid)))
}
