//! restic locks a run of this host left before the machine went down, seen to before any
//! `restic unlock` of ours.
//!
//! `restic unlock` removes a lock of this host younger than 30 minutes only when no process
//! has its PID, and tells by sending SIGHUP to that PID. After a reboot PIDs start over, and
//! a boot is much like the one before: the PID of the restic that a power cut stopped is
//! often another process's by then (the power-cut campaign found a lock of "PID 623" kept by
//! `unlock` in the next boot, 2 minutes old), so `unlock` keeps the lock, and exclusive
//! operations (`forget`, `prune`, `check`) of the next run fail on it, and the SIGHUP reaches
//! whatever has the PID: another stage's backupctl stopped that way (seed 1207, cut 6), and a
//! dump tool, an rsync or a daemon of the new boot dies or reloads on it.
//!
//! A lock of this host made before this boot began cannot belong to a live process. So,
//! before `unlock`: when every lock of the repository is such a one, `restic unlock
//! --remove-all` removes exactly those; beside other locks, in a local repository, their
//! files are removed one by one; elsewhere (restic has no command that removes one lock)
//! `unlock` does not run until restic calls them stale by their age alone, and the lock wait
//! goes on as for a live lock. A lock of another host, or of this boot, is left to `unlock`.
//! Nothing of this runs once the machine has been up 30 minutes: every lock of an earlier
//! boot is stale by its age then.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::process::Command;

/// restic's `staleTimeout` (0.14 … 0.17): a lock older than this is stale by its age alone,
/// and `restic unlock` removes it without sending anything to its PID.
const RESTIC_STALE_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(30);

/// A lock file as `restic cat lock ID` prints it (restic 0.14 … 0.17).
#[derive(Debug, Deserialize)]
struct LockFile {
    time: String,
    hostname: String,
}

/// A lock of this host made before this boot: its process is gone, whatever has its PID now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Judged {
    /// Of an earlier boot and younger than restic's stale age: `unlock` would probe its PID.
    EarlierBootProbed { stale_at: jiff::Timestamp },
    /// Of an earlier boot, stale by its age: `unlock` removes it without a probe.
    EarlierBootAged,
    /// Another host's, this boot's, or unreadable: left to `unlock`.
    Other,
}

/// Judges the lock `json` (`restic cat lock`) against `host` and this boot's start.
fn judge(json: &str, host: &str, boot: jiff::Timestamp, now: jiff::Timestamp) -> Judged {
    let Ok(lock) = serde_json::from_str::<LockFile>(json) else {
        return Judged::Other;
    };
    let Ok(time) = lock.time.parse::<jiff::Timestamp>() else {
        return Judged::Other;
    };
    if lock.hostname != host || time >= boot {
        return Judged::Other;
    }
    match time.checked_add(RESTIC_STALE_AFTER) {
        Ok(stale_at) if stale_at > now => Judged::EarlierBootProbed { stale_at },
        _ => Judged::EarlierBootAged,
    }
}

/// What is done before `restic unlock`, for the locks judged so.
#[derive(Debug, PartialEq)]
enum Plan {
    /// No lock `unlock` would probe wrongly: it may run.
    Unlock,
    /// Every lock is of an earlier boot: `unlock --remove-all` removes exactly those.
    RemoveAll,
    /// These locks of an earlier boot are removed as files of the local repository.
    RemoveFiles(Vec<PathBuf>),
    /// Locks `unlock` would probe are beside others, and cannot be removed one by one:
    /// no `unlock` until restic calls them stale by their age.
    Hold {
        count: usize,
        until: jiff::Timestamp,
    },
}

/// `local`: the repository's directory, when it is on this machine.
fn plan(locks: &[(String, Judged)], local: Option<&Path>) -> Plan {
    let earlier = |judged: &Judged| *judged != Judged::Other;
    if !locks.is_empty() && locks.iter().all(|(_, judged)| earlier(judged)) {
        return Plan::RemoveAll;
    }
    let probed: Vec<jiff::Timestamp> = locks
        .iter()
        .filter_map(|(_, judged)| match judged {
            Judged::EarlierBootProbed { stale_at } => Some(*stale_at),
            _ => None,
        })
        .collect();
    let Some(until) = probed.iter().max().copied() else {
        return Plan::Unlock;
    };
    if let Some(repository) = local {
        let ids = locks.iter().filter(|(_, judged)| earlier(judged));
        let files = ids.map(|(id, _)| repository.join("locks").join(id));
        return Plan::RemoveFiles(files.collect());
    }
    Plan::Hold {
        count: probed.len(),
        until,
    }
}

/// Sees to the locks of this host made before this boot (see the module's doc), and says
/// whether `restic unlock` may run now. `restic` makes a restic command for the repository
/// with the given arguments; `local` is the repository's directory when it is on this
/// machine. Best effort: a lock that cannot be read is left to `unlock`.
pub fn ready_for_unlock<'a>(
    restic: impl Fn(Vec<OsString>) -> Command<'a>,
    local: Option<&Path>,
) -> bool {
    let Some(boot) = crate::machine::boot_time() else {
        return true;
    };
    let now = jiff::Timestamp::now();
    if boot
        .checked_add(RESTIC_STALE_AFTER)
        .is_ok_and(|aged| aged <= now)
    {
        return true;
    }
    let no_lock = |args: &[&str]| -> Vec<OsString> {
        args.iter()
            .map(OsString::from)
            .chain(["--no-lock".into()])
            .collect()
    };
    let mut ids = Vec::new();
    let listed = restic(no_lock(&["list", "locks"]))
        .on_line(|line| ids.push(line.trim().to_string()))
        .run();
    ids.retain(|id| !id.is_empty());
    if listed.is_err() || ids.is_empty() {
        return true;
    }
    let host = super::fleet::hostname();
    let judged: Vec<(String, Judged)> = ids
        .into_iter()
        .map(|id| {
            let mut json = String::new();
            let read = restic(no_lock(&["cat", "lock", &id]))
                .on_line(|line| json.push_str(line))
                .run();
            let judged = match read {
                Ok(_) => judge(&json, &host, boot, now),
                Err(_) => Judged::Other,
            };
            (id, judged)
        })
        .collect();
    match plan(&judged, local) {
        Plan::Unlock => true,
        Plan::RemoveAll => {
            tracing::warn!(
                "{} restic lock(s) of this host made before this boot are left (their process \
                 is gone, whatever has their PID now); removing them",
                judged.len()
            );
            if let Err(error) = restic(vec!["unlock".into(), "--remove-all".into()]).run() {
                tracing::warn!("removing the locks of an earlier boot failed: {error}");
            }
            true
        }
        Plan::RemoveFiles(files) => {
            tracing::warn!(
                "{} restic lock(s) of this host made before this boot are left beside {} \
                 other(s); removing their files",
                files.len(),
                judged.len() - files.len(),
            );
            let mut removed = true;
            for file in files {
                if let Err(error) = crate::paths::remove_durably(&file) {
                    tracing::warn!("cannot remove {}: {error}", file.display());
                    removed = false;
                }
            }
            removed
        }
        Plan::Hold { count, until } => {
            tracing::warn!(
                "{count} restic lock(s) of this host made before this boot are left beside \
                 other locks; `restic unlock` would send SIGHUP to whatever has their PIDs \
                 now, so it waits until restic calls them stale by their age ({until})"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock the campaign found, as restic 0.14 wrote it (local time with its offset).
    const LOCK: &str = r#"{"time":"2026-12-07T00:51:13.93762089+00:00","exclusive":false,"hostname":"guest","username":"root","pid":623,"uid":0,"gid":0}"#;

    fn at(time: &str) -> jiff::Timestamp {
        time.parse().unwrap()
    }

    #[test]
    fn a_lock_of_this_host_from_before_this_boot_is_dead_whatever_its_pid() {
        let boot = at("2026-12-07T00:52:00Z");
        let now = at("2026-12-07T00:53:00Z");
        assert_eq!(
            judge(LOCK, "guest", boot, now),
            Judged::EarlierBootProbed {
                stale_at: at("2026-12-07T01:21:13.93762089Z")
            }
        );
        // restic calls it stale by its age 30 minutes after it was made: no probe then.
        let later = at("2026-12-07T01:21:14Z");
        assert_eq!(judge(LOCK, "guest", boot, later), Judged::EarlierBootAged);
        // Another host's lock may be live: left alone.
        assert_eq!(judge(LOCK, "other", boot, now), Judged::Other);
        // Made in this boot: `restic unlock` judges it by its PID.
        let earlier_boot = at("2026-12-07T00:50:00Z");
        assert_eq!(judge(LOCK, "guest", earlier_boot, now), Judged::Other);
        assert_eq!(judge("not json", "guest", boot, now), Judged::Other);
        assert!(crate::machine::boot_time().is_some_and(|t| t < jiff::Timestamp::now()));
    }

    #[test]
    fn unlock_never_probes_a_pid_of_an_earlier_boot() {
        let stale_at = at("2026-12-07T01:21:00Z");
        let probed = Judged::EarlierBootProbed { stale_at };
        let lock = |id: &str, judged| (id.to_string(), judged);
        // None, or none of an earlier boot: unlock as restic does.
        let repository = Some(Path::new("/srv/restic"));
        assert_eq!(plan(&[], repository), Plan::Unlock);
        assert_eq!(plan(&[lock("a", Judged::Other)], None), Plan::Unlock);
        // Only locks of an earlier boot: all of them go, wherever the repository is.
        let only = [lock("a", probed), lock("b", Judged::EarlierBootAged)];
        assert_eq!(plan(&only, None), Plan::RemoveAll);
        // Beside a live one: one by one in a local repository …
        let mixed = [
            lock("a", probed),
            lock("b", Judged::Other),
            lock("c", Judged::EarlierBootAged),
        ];
        assert_eq!(
            plan(&mixed, repository),
            Plan::RemoveFiles(vec![
                "/srv/restic/locks/a".into(),
                "/srv/restic/locks/c".into()
            ])
        );
        // … and elsewhere no unlock until restic calls them stale by their age.
        assert_eq!(
            plan(&mixed, None),
            Plan::Hold {
                count: 1,
                until: stale_at
            }
        );
        // Those stale by age are no risk: unlock removes them without a probe.
        let aged = [lock("b", Judged::Other), lock("c", Judged::EarlierBootAged)];
        assert_eq!(plan(&aged, None), Plan::Unlock);
    }
}
