//! The job run a stage belongs to: one id shared by every stage record of one
//! `systemctl start backup-JOB` (journal field `BACKUPCTL_JOB_RUN`, `job_run` in the run
//! record), so that `backupctl logs --run last` and `status` can tell one run from the next.
//!
//! How a stage learns it (measured under systemd 252): while the stages of a job run, the job
//! unit `backup-JOB.service` is still waiting for them (it is `After=` all of them), so its
//! `InvocationID` is empty (systemd assigns it only when the unit itself starts), but its
//! **queued start job** exists, and every unit of the transaction sees the same one: the
//! `Job` property of the job unit, read over D-Bus from inside the stage. Job ids are
//! counters of one manager, so the id is derived from the boot id, the manager's start time
//! and the job id: unique across reboots and restarts of a user manager. A second
//! `systemctl start` while the job runs merges into the same start job, i.e. the same run —
//! which is what it is. `job-finished`, the job unit's own `ExecStart=`, sees its own start
//! job the same way.
//!
//! Not chosen: an `Environment=` from the generator is fixed per unit file, not per run;
//! the job unit's `InvocationID` is only known after the stages ended.
//!
//! One gap remains and is closed by a note in the state directory: when a required stage
//! fails, systemd fails the job unit's start job at once, while stages on other branches of
//! the graph still run or wait. Those find no start job on the job unit. So each stage that
//! does find it writes `job-run-JOB.json` with the ids of the start jobs queued for the
//! job's stages at that moment (the whole transaction, minus what already finished); a stage
//! without a job-unit start job adopts the note's run when its own start job is listed there.
//! A stage started alone (`systemctl start backup@NAME`) is in no note and is a job run of its
//! own: its `BACKUPCTL_JOB_RUN` is its own invocation id. The note lists the start job of
//! `backup-skips@JOB` too, which runs after every stage, when the job unit's may be long gone.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zbus::Connection;
use zbus_systemd::systemd1::{ManagerProxy, UnitProxy};

use crate::config::Config;
use crate::paths::Scope;
use crate::units::{job_service, skips_service, stage_service};

/// A stage asking systemd must never hang the backup on a stuck bus.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The job run id for the start job `job_id` of the manager identified by `manager`:
/// 128 bits in hex, the shape of an invocation id.
pub fn derive(manager: &str, job_id: u32) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"backupctl job run\0");
    hasher.update(manager.as_bytes());
    hasher.update(b"\0");
    hasher.update(&job_id.to_le_bytes());
    hasher.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The boot id and the manager's start (monotonic µs): one manager instance.
pub async fn manager_identity(manager: &ManagerProxy<'_>) -> zbus::Result<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let started = manager.userspace_timestamp_monotonic().await?;
    Ok(format!("{}-{started}", boot.trim()))
}

/// The start job queued for `unit`, if any (id 0 means none).
pub async fn queued_job(
    connection: &Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
) -> zbus::Result<Option<u32>> {
    let path = match manager.get_unit(unit.to_string()).await {
        Ok(path) => path,
        // Not loaded: certainly nothing queued for it.
        Err(zbus::Error::MethodError(..)) => return Ok(None),
        Err(error) => return Err(error),
    };
    let (id, _) = UnitProxy::builder(connection)
        .path(path)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?
        .job()
        .await?;
    Ok((id != 0).then_some(id))
}

/// The job run of the job's start job queued right now, if one is.
pub async fn current(
    connection: &Connection,
    manager: &ManagerProxy<'_>,
    job: &str,
) -> zbus::Result<Option<String>> {
    let Some(job_id) = queued_job(connection, manager, &job_service(job)).await? else {
        return Ok(None);
    };
    Ok(Some(derive(&manager_identity(manager).await?, job_id)))
}

/// [`current`], asked on a connection of its own (`job-finished`, the job unit's command,
/// sees its own start job); `None` when systemd cannot tell.
pub fn current_in(scope: Scope, job: &str) -> Option<String> {
    zbus::block_on(async {
        let connection = crate::runner::systemd::connect_with_timeout(scope, BUS_TIMEOUT)
            .await
            .ok()?;
        let manager = ManagerProxy::new(&connection).await.ok()?;
        current(&connection, &manager, job).await.ok().flatten()
    })
}

/// What a stage writes for stages that start after the job's start job is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    manager: String,
    job_run: String,
    /// Start jobs of the job's stages queued or running when the note was written.
    jobs: Vec<u32>,
}

fn note_path(state_dir: &Path, job: &str) -> std::path::PathBuf {
    state_dir.join(format!("job-run-{job}.json"))
}

/// The job run of the stage `stage` of `job`, asked from inside its unit; `None` when
/// systemd cannot tell (no bus, stage started alone). Never fails: the stage then counts as
/// a job run of its own.
pub fn for_stage(
    config: &Config,
    job: &str,
    stage: &str,
    scope: Scope,
    state_dir: &Path,
) -> Option<String> {
    for_unit(config, job, &stage_service(stage), scope, state_dir)
}

/// The job run that `backup-skips@JOB` (`record-skips`) ends: found like a stage's, its own
/// start job being in the note's list when a required stage failed or the job was stopped.
pub fn for_skips(config: &Config, job: &str, scope: Scope, state_dir: &Path) -> Option<String> {
    for_unit(config, job, &skips_service(job), scope, state_dir)
}

/// [`for_stage`] for the unit `own` of the job's transaction.
fn for_unit(
    config: &Config,
    job: &str,
    own: &str,
    scope: Scope,
    state_dir: &Path,
) -> Option<String> {
    let result = zbus::block_on(async {
        let connection = crate::runner::systemd::connect_with_timeout(scope, BUS_TIMEOUT)
            .await
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let manager = ManagerProxy::new(&connection).await?;
        let identity = manager_identity(&manager).await?;
        if let Some(job_id) = queued_job(&connection, &manager, &job_service(job)).await? {
            let job_run = derive(&identity, job_id);
            let units: Vec<String> = config
                .stages_of(job)
                .map(|s| stage_service(&s.name))
                .chain([skips_service(job)])
                .collect();
            let jobs = manager
                .list_jobs()
                .await?
                .into_iter()
                .filter(|(_, unit, kind, ..)| kind == "start" && units.contains(unit))
                .map(|(id, ..)| id)
                .collect();
            let note = Note {
                manager: identity,
                job_run: job_run.clone(),
                jobs,
            };
            write_note(&note_path(state_dir, job), &note);
            return Ok(Some(job_run));
        }
        // The job's start job is gone (a required stage failed) or there never was one.
        let Some(own) = queued_job(&connection, &manager, own).await? else {
            return Ok(None);
        };
        let note = std::fs::read(note_path(state_dir, job))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Note>(&bytes).ok());
        Ok::<_, zbus::Error>(
            note.filter(|n| n.manager == identity && n.jobs.contains(&own))
                .map(|n| n.job_run),
        )
    });
    result.unwrap_or_else(|error| {
        tracing::debug!("cannot ask systemd for the job run: {error}");
        None
    })
}

/// Written whole: parallel stages write the same note.
fn write_note(path: &Path, note: &Note) {
    let written = serde_json::to_vec(note)
        .map_err(std::io::Error::from)
        .and_then(|bytes| {
            if let Some(parent) = path.parent() {
                crate::paths::create_dir(parent)?;
            }
            crate::paths::write_atomically(path, &bytes, crate::paths::Fsync::No, None)
        });
    if let Err(error) = written {
        tracing::debug!("cannot write {}: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_manager_and_job_and_look_like_invocation_ids() {
        let id = derive("boot-1", 36);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, derive("boot-1", 36));
        assert_ne!(id, derive("boot-1", 37));
        assert_ne!(id, derive("boot-2", 36));
    }

    #[test]
    fn notes_are_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let note = Note {
            manager: "m".into(),
            job_run: "r".into(),
            jobs: vec![3, 4],
        };
        let path = note_path(dir.path(), "job");
        write_note(&path, &note);
        let back: Note = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, note);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
