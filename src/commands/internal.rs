//! Verbs the generated units call; hidden from `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nix::unistd::{Gid, Group, Uid, User};

use crate::commands::Context;
use crate::report::messages;
use crate::run_records::{self, RunResult};

/// `job-finished JOB`: the job unit's `ExecStart=`, run once every stage it pulled in is done
/// (systemd only gets here when no required stage failed). Logs the job's summary.
pub fn job_finished(ctx: &Context, job: &str) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    // Our own start job is still running: the same job run the stages saw.
    let job_run = crate::job_run::current_in(ctx.scope(), job);
    let state_dir = crate::paths::state_dir(ctx.scope());
    // Stages skipped by a Condition…= were recorded by `backup-skips@JOB`, which ran before.
    let records = run_records::read(&state_dir).unwrap_or_default();
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
    // The job run ended: a later boot must not take it for one the machine cut.
    if let Err(problem) = run_records::end_job(&state_dir, job) {
        tracing::warn!("{problem}");
    }
    if let Err(problem) = crate::metrics::update(config, ctx.scope()) {
        tracing::warn!("{problem}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `record-skips JOB`: the `ExecStart=` of `backup-skips@JOB.service`, which runs once every
/// stage of the job run has ended, however the job ends (a required stage failed, the job was
/// stopped, or it finished): records the stages systemd skipped by a `Condition…=`. Never
/// fails the unit: a skip it cannot record is still in `systemctl status backup@STAGE`.
pub fn record_skips(ctx: &Context, job: &str) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let state_dir = crate::paths::state_dir(ctx.scope());
    // Started alone: a job run of its own, like a stage started alone.
    let job_run = crate::job_run::for_skips(config, job, ctx.scope(), &state_dir)
        .unwrap_or_else(crate::executor::run_id);
    let records = run_records::read(&state_dir).unwrap_or_default();
    record_condition_skips(config, job, ctx.scope(), &job_run, &records);
    Ok(ExitCode::SUCCESS)
}

/// Stages of this job run that systemd skipped by a `Condition…=` (`on_ac_power`,
/// `when_mounted`): nothing of ours ran for them, so they have no run record yet. Found by
/// their unit's `ConditionResult` (false) and `ConditionTimestamp` (after the stage's newest
/// record); the reason from the failed entry of `Conditions`. Best effort: a bus that does not
/// answer leaves them unrecorded (`systemctl status` still shows the skip).
fn record_condition_skips(
    config: &crate::config::Config,
    job: &str,
    scope: crate::paths::Scope,
    job_run: &str,
    records: &[run_records::RunRecord],
) {
    use zbus_systemd::systemd1::{ManagerProxy, UnitProxy};
    let skipped: Vec<(String, String, u64)> = zbus::block_on(async {
        let connection =
            crate::runner::systemd::connect_with_timeout(scope, std::time::Duration::from_secs(5))
                .await
                .ok()?;
        let manager = ManagerProxy::new(&connection).await.ok()?;
        let mut skipped = Vec::new();
        for stage in config.stages_of(job) {
            let unit = crate::units::stage_service(&stage.name);
            let Ok(path) = manager.get_unit(unit).await else {
                continue;
            };
            let Ok(proxy) = UnitProxy::builder(&connection)
                .path(path)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
            else {
                continue;
            };
            if proxy.condition_result().await.unwrap_or(true) {
                continue;
            }
            let at = proxy.condition_timestamp().await.unwrap_or(0);
            let failed = proxy.conditions().await.unwrap_or_default();
            let reason = failed
                .iter()
                .find(|(.., state)| *state < 0)
                .map_or("condition not met".to_string(), |(kind, _, _, param, _)| {
                    skip_reason(kind, param)
                });
            skipped.push((stage.name.clone(), reason, at));
        }
        Some(skipped)
    })
    .unwrap_or_default();
    for (name, reason, at_usec) in skipped {
        let Some(at) = crate::status::timestamp(at_usec) else {
            continue;
        };
        let recorded_since = records
            .iter()
            .filter(|r| r.stage == name)
            .any(|r| r.finished.as_str() >= at.as_str() || r.job_run.as_deref() == Some(job_run));
        if recorded_since {
            continue;
        }
        if let Some(stage) = config.stage(&name) {
            let run_id = crate::job_run::derive(&name, at_usec as u32);
            crate::executor::record_skip(config, stage, scope, (&run_id, job_run), &reason, &at);
        }
    }
}

/// The words after "skipped: " for a failed entry of a unit's `Conditions` property: the
/// same as the executor's (`executor::Skip::reason`) for the conditions backupctl writes.
fn skip_reason(kind: &str, param: &str) -> String {
    match kind {
        "ConditionACPower" => crate::executor::Skip::OnBattery.reason(),
        "ConditionPathIsMountPoint" => crate::executor::Skip::NotMounted(Path::new(param)).reason(),
        other => format!("{other}={param} not met"),
    }
}

/// `condition STAGE`: the `ExecCondition=` of a stage with `skip_on_metered`. Exit 1 makes
/// systemd skip the stage cleanly; 0 runs it. A config that does not load must not read as
/// "skip" (the stage would vanish without a trace): that is 255, which fails the unit.
pub fn condition(ctx: &Context, stage: &str) -> ExitCode {
    let loaded = ctx
        .config()
        .map_err(anyhow::Error::from)
        .and_then(|config| Ok((config, ctx.stage(stage)?)));
    let (config, stage) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!("condition of stage {stage}: {error:#}");
            return ExitCode::from(255);
        }
    };
    let run_id = crate::executor::run_id();
    let job_run = crate::job_run::for_stage(
        config,
        &stage.job,
        &stage.name,
        ctx.scope(),
        &crate::paths::state_dir(ctx.scope()),
    )
    .unwrap_or_else(|| run_id.clone());
    if crate::executor::condition_holds(config, stage, ctx.scope(), &run_id, &job_run) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `stage-ended STAGE`: the `ExecStopPost=` of every stage unit (`crate::stage_ended`).
/// Never fails the unit: what it adds to the record is a report, not part of the run.
pub fn stage_ended(ctx: &Context, stage: &str) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let stage = ctx.stage(stage)?;
    let ended = crate::stage_ended::Ended::from_env();
    crate::stage_ended::record(config, stage, ctx.scope(), &ended);
    Ok(ExitCode::SUCCESS)
}

/// `prepare-paths [--owner USER[:GROUP]] PATH…`: create the directories a stage writes (they
/// must exist before systemd can make them writable in the stage's sandbox), owned by the
/// stage's user when it has one: this runs as root ("+" in `ExecStartPre=`).
///
/// Root walking a path that the stage's user may write into must not be redirected: each
/// component is opened relative to its opened parent with `O_NOFOLLOW`, created with
/// `mkdirat`, and given away with `fchown` on its own descriptor, so a symlink planted in the
/// path (pointing at /etc, say) is refused instead of followed.
pub fn prepare_paths(owner: Option<&str>, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let owner = owner.map(resolve_owner).transpose()?;
    for path in paths {
        create_dirs(path, owner).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` and its missing parents; gives only what it created to `owner`. A symlink
/// on the way is followed only when root made it in a directory only root may change (e.g.
/// /var/run → /run); any other is refused.
fn create_dirs(path: &Path, owner: Option<(Uid, Option<Gid>)>) -> anyhow::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{AtFlags, OFlag, open, openat};
    use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mkdirat};
    use std::path::Component;

    anyhow::ensure!(path.is_absolute(), "the path must be absolute");
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut dir = open("/", flags, Mode::empty()).context("opening /")?;
    let mut walked = PathBuf::from("/");
    for component in path.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                anyhow::bail!("`..` in the path: give it without `..`")
            }
        };
        walked.push(name);
        let opened = match openat(&dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
            Err(Errno::ENOENT) => {
                let created = match mkdirat(&dir, name, Mode::from_bits_truncate(0o777)) {
                    Ok(()) => true,
                    // Made by someone else meanwhile: opened below like any existing one.
                    Err(Errno::EEXIST) => false,
                    Err(error) => {
                        return Err(error)
                            .with_context(|| format!("creating {}", walked.display()));
                    }
                };
                let fd = openat(&dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty())
                    .map_err(|error| refuse_or(error, &walked))?;
                if created && let Some((uid, gid)) = owner {
                    nix::unistd::fchown(&fd, Some(uid), gid).with_context(|| {
                        format!("giving {} to the stage's user", walked.display())
                    })?;
                }
                fd
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let link = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .with_context(|| format!("reading {}", walked.display()))?;
                let parent = fstat(&dir).context("reading a parent directory")?;
                let is_link =
                    SFlag::from_bits_truncate(link.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK;
                anyhow::ensure!(is_link, "{} is not a directory", walked.display());
                let only_root_could_plant_it =
                    link.st_uid == 0 && parent.st_uid == 0 && parent.st_mode & 0o022 == 0;
                if !only_root_could_plant_it {
                    return Err(refuse_or(Errno::ELOOP, &walked));
                }
                openat(&dir, name, flags, Mode::empty())
                    .with_context(|| format!("opening {}", walked.display()))?
            }
            Err(error) => {
                return Err(error).with_context(|| format!("opening {}", walked.display()));
            }
            Ok(fd) => fd,
        };
        dir = opened;
    }
    Ok(())
}

/// The error for a component that is (or became) a symlink we will not follow.
fn refuse_or(error: nix::errno::Errno, path: &Path) -> anyhow::Error {
    use nix::errno::Errno;
    match error {
        Errno::ELOOP | Errno::ENOTDIR => anyhow::anyhow!(
            "refusing to follow the symlink {}: a user other than root could have planted it to \
             make this root process create or chown elsewhere; replace it with a directory, or \
             write the real path in the config",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!("opening {}", path.display())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons `record-skips` gives are the executor's (`run --here`): a skip on battery
    /// reads the same whoever recorded it. systemd's own "on battery" cannot be produced on a
    /// machine without a battery (tests/conditions.rs), so the mapping is held here.
    #[test]
    fn skip_reasons_from_systemds_conditions_are_the_executors() {
        assert_eq!(skip_reason("ConditionACPower", "true"), "on battery");
        assert_eq!(
            skip_reason("ConditionPathIsMountPoint", "/mnt/usb"),
            "/mnt/usb is not mounted"
        );
        assert_eq!(
            skip_reason("ConditionPathExists", "/x"),
            "ConditionPathExists=/x not met"
        );
    }
}
