//! restic locks a run of this host left before the machine went down.
//!
//! `restic unlock` removes a lock of this host only when no process has its PID. After a
//! reboot PIDs start over, and a boot is much like the one before: the PID of the restic
//! that a power cut stopped is often taken again by then (the power-cut campaign found a
//! lock of "PID 623" kept by `unlock` in the next boot, 2 minutes old; restic calls it stale
//! only after 30 minutes), and exclusive operations (`forget`, `prune`, `check`) of the next
//! run fail on it. A lock of this host made before this boot began cannot belong to a live
//! process: when every lock of the repository is such a one, `restic unlock --remove-all`
//! removes exactly those. A lock of another host, or of this boot, is left to `unlock` and
//! the lock wait: `--remove-all` would take it too.
//!
//! This runs *before* `restic unlock`: restic tells whether a lock's process lives by
//! sending SIGHUP to its PID, and in this boot that PID is another process's — the campaign
//! (seed 1207, cut 6) saw one stage's `unlock` stop another stage's backupctl that way.
//! Removed first, the locks of an earlier boot are never probed.

use std::ffi::OsString;

use serde::Deserialize;

use crate::process::Command;

/// A lock file as `restic cat lock ID` prints it (restic 0.14 … 0.17).
#[derive(Debug, Deserialize)]
struct LockFile {
    time: String,
    hostname: String,
}

/// Whether the lock `json` (`restic cat lock`) was made on `host` before `boot` (when this
/// boot began): its process is gone, whatever process has its PID now. Unreadable: no.
pub fn made_before_this_boot(json: &str, host: &str, boot: jiff::Timestamp) -> bool {
    serde_json::from_str::<LockFile>(json).is_ok_and(|lock| {
        lock.hostname == host && lock.time.parse::<jiff::Timestamp>().is_ok_and(|t| t < boot)
    })
}

/// After a run cut by the machine going down (before `restic unlock`): the locks of this
/// host made before this boot, whose PID `unlock` would probe (and often find taken again),
/// when they are all the repository holds.
/// `restic` makes a restic command for the repository with the given arguments. Best
/// effort: what is left is waited for or reported as before.
pub fn remove_left_before_this_boot<'a>(restic: impl Fn(Vec<OsString>) -> Command<'a>) {
    let Some(boot) = crate::machine::boot_time() else {
        return;
    };
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
        return;
    }
    let host = super::fleet::hostname();
    let all_left_before_this_boot = ids.iter().all(|id| {
        let mut json = String::new();
        restic(no_lock(&["cat", "lock", id]))
            .on_line(|line| json.push_str(line))
            .run()
            .is_ok()
            && made_before_this_boot(&json, &host, boot)
    });
    if !all_left_before_this_boot {
        return;
    }
    tracing::warn!(
        "{} restic lock(s) of this host made before this boot are left (their process is \
         gone, whatever has their PID now); removing them",
        ids.len()
    );
    if let Err(error) = restic(vec!["unlock".into(), "--remove-all".into()]).run() {
        tracing::warn!("removing the locks of an earlier boot failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock the campaign found, as restic 0.14 wrote it (local time with its offset).
    const LOCK: &str = r#"{"time":"2026-12-07T00:51:13.93762089+00:00","exclusive":false,"hostname":"guest","username":"root","pid":623,"uid":0,"gid":0}"#;

    #[test]
    fn a_lock_of_this_host_from_before_this_boot_is_dead_whatever_its_pid() {
        let boot: jiff::Timestamp = "2026-12-07T00:52:00Z".parse().unwrap();
        assert!(made_before_this_boot(LOCK, "guest", boot));
        // Another host's lock may be live: left alone.
        assert!(!made_before_this_boot(LOCK, "other", boot));
        // Made in this boot: `restic unlock` judges it by its PID.
        let earlier_boot: jiff::Timestamp = "2026-12-07T00:50:00Z".parse().unwrap();
        assert!(!made_before_this_boot(LOCK, "guest", earlier_boot));
        assert!(!made_before_this_boot("not json", "guest", boot));
        assert!(crate::machine::boot_time().is_some_and(|t| t < jiff::Timestamp::now()));
    }
}
