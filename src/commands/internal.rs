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
    let records = run_records::read(&crate::paths::state_dir(ctx.scope())).unwrap_or_default();
    // Our own start job is still running: the same job run the stages saw.
    let job_run = crate::job_run::current_in(ctx.scope(), job);
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
    if let Err(problem) = crate::metrics::update(config, ctx.scope()) {
        tracing::warn!("{problem}");
    }
    Ok(ExitCode::SUCCESS)
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
