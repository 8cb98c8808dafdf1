//! A repository other hosts share (the fleet case), where our local lock (`repo_lock`)
//! cannot reach: restic's own lock is in the way. restic 0.14 then fails at once with
//!
//! ```text
//! unable to create lock in backend: repository is already locked exclusively by PID 25443 on vm by root (UID 0, GID 0)
//! lock was created at 2026-12-06 21:15:55 (947.016365ms ago)
//! storage ID 95eb6764
//! the `unlock` command can be used to remove stale locks
//! ```
//!
//! (the text of a real 0.14 lock, "exclusively" only for an exclusive one), without saying
//! whether the lock is stale. [`ForeignLock::stale`] judges it as restic's `unlock` does
//! (`internal/restic/lock.go`, `Lock.Stale`): older than 30 minutes (a live restic refreshes
//! its lock every 5), or made on this host by a process that is gone. A stale lock is
//! removed with `restic unlock` (which removes only stale ones); a live one is waited for,
//! retrying with backoff up to the stage's `lock_wait`. restic ≥ 0.16 waits by itself with
//! `--retry-lock`: when `restic version` says so, that is used instead of our loop.

use std::time::Duration;

/// restic's `staleTimeout`.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The restic lock in the way, as restic's message describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignLock {
    pub exclusive: bool,
    pub pid: u32,
    pub host: String,
    pub user: String,
    /// As restic prints it, `YYYY-MM-DD HH:MM:SS` in restic's local time.
    pub created: String,
    pub age: Option<Duration>,
}

impl ForeignLock {
    /// Reads restic's "repository is already locked" message; `None` when it is not one.
    pub fn parse(stderr: &str) -> Option<ForeignLock> {
        let line = stderr
            .lines()
            .find(|line| line.contains("repository is already locked"))?;
        let rest = line.split("repository is already locked").nth(1)?;
        let exclusive = rest.trim_start().starts_with("exclusively");
        let pid = rest
            .split("PID ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let mut after_on = rest.split(" on ").nth(1)?.split_whitespace();
        let host = after_on.next()?.to_string();
        let user = match (after_on.next(), after_on.next()) {
            (Some("by"), Some(user)) => user.to_string(),
            _ => "?".to_string(),
        };
        let created_line = stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix("lock was created at "));
        let (created, age) = match created_line {
            Some(text) => {
                let (time, age) = text.split_once(" (").unwrap_or((text, ""));
                let age = age.strip_suffix(" ago)").and_then(go_duration);
                (time.to_string(), age)
            }
            None => ("?".to_string(), None),
        };
        Some(ForeignLock {
            exclusive,
            pid,
            host,
            user,
            created,
            age,
        })
    }

    /// Whether restic's `unlock` would remove it (see the module doc); `this_host` is our
    /// host name.
    pub fn stale(&self, this_host: &str) -> bool {
        self.age.is_some_and(|age| age > STALE_AFTER)
            || (self.host == this_host && !crate::repo_lock::alive(self.pid))
    }

    /// `restic PID 25443 on vm (root), exclusive, created at 2026-12-06 21:15:55 (2m ago),
    /// live`.
    pub fn describe(&self, this_host: &str) -> String {
        let age = self
            .age
            .map(|age| format!(" ({} ago)", crate::report::short_duration(age)))
            .unwrap_or_default();
        format!(
            "restic PID {} on {} ({}), {}, created at {}{age}, {}",
            self.pid,
            self.host,
            self.user,
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.created,
            if self.stale(this_host) {
                "stale"
            } else {
                "live"
            }
        )
    }
}

/// A Go `time.Duration` as restic prints it: `75h39m50.869903846s`, `358.3775ms`, `1µs`.
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0_f64;
    let mut rest = text.trim();
    if rest == "0s" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// `(major, minor, patch)` from `restic version`'s `restic 0.14.0 compiled with go1.19.8 on
/// linux/amd64`.
pub fn version(output: &str) -> Option<(u32, u32, u32)> {
    let word = output.split_whitespace().nth(1)?;
    let mut parts = word.split(['.', '-']).map(|part| part.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// restic 0.16 added `--retry-lock`.
pub fn has_retry_lock(version: (u32, u32, u32)) -> bool {
    version >= (0, 16, 0)
}

/// The global option that has restic ≥ 0.16 wait `remaining` for a lock itself, in whole
/// seconds (restic parses a Go duration).
pub fn retry_lock_argument(remaining: Duration) -> String {
    format!("--retry-lock={}s", remaining.as_secs().max(1))
}

/// This host's name, as restic writes it into its locks.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by restic 0.14.0 for a backup (non-exclusive) and a check (exclusive).
    const SHARED: &str = "unable to create lock in backend: repository is already locked by PID 25386 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-06 21:15:54 (358.3775ms ago)\nstorage ID 7629ad66\nthe `unlock` command can be used to remove stale locks\n";
    const EXCLUSIVE: &str = "unable to create lock in backend: repository is already locked exclusively by PID 25443 on build-7 by sig (UID 1000, GID 1000)\nlock was created at 2026-12-06 21:15:55 (75h39m50.869903846s ago)\nstorage ID 95eb6764\nthe `unlock` command can be used to remove stale locks\n";

    #[test]
    fn reads_restic_0_14_lock_messages() {
        let shared = ForeignLock::parse(SHARED).unwrap();
        assert_eq!(
            shared,
            ForeignLock {
                exclusive: false,
                pid: 25386,
                host: "vm".into(),
                user: "root".into(),
                created: "2026-12-06 21:15:54".into(),
                age: Some(Duration::from_secs_f64(0.3583775)),
            }
        );
        let exclusive = ForeignLock::parse(EXCLUSIVE).unwrap();
        assert!(exclusive.exclusive);
        assert_eq!(exclusive.host, "build-7");
        assert_eq!(exclusive.user, "sig");
        assert_eq!(exclusive.age.unwrap().as_secs(), 75 * 3600 + 39 * 60 + 50);
        assert_eq!(ForeignLock::parse("Fatal: wrong password"), None);
    }

    #[test]
    fn tells_a_live_lock_from_a_stale_one_as_restic_unlock_does() {
        let mut lock = ForeignLock::parse(SHARED).unwrap();
        // Another host, fresh: live whatever its pid.
        assert!(!lock.stale("elsewhere"));
        assert!(
            lock.describe("elsewhere").ends_with("(0s ago), live"),
            "{}",
            lock.describe("elsewhere")
        );
        // Older than restic's 30 minutes: stale, wherever it was made.
        lock.age = Some(Duration::from_secs(31 * 60));
        assert!(lock.stale("elsewhere"));
        // This host, fresh: live while its process lives.
        lock.age = Some(Duration::from_secs(1));
        lock.pid = std::process::id();
        assert!(!lock.stale("vm"));
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        lock.pid = gone.id();
        gone.wait().unwrap();
        assert!(lock.stale("vm"));
        assert!(lock.describe("vm").starts_with(&format!(
            "restic PID {} on vm (root), shared, created at 2026-12-06 21:15:54",
            gone.id()
        )));
    }

    #[test]
    fn reads_go_durations_and_restic_versions() {
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("2m3s"), Some(Duration::from_secs(123)));
        assert_eq!(go_duration("12µs"), Some(Duration::from_micros(12)));
        assert_eq!(go_duration("soon"), None);
        let v014 = version("restic 0.14.0 compiled with go1.19.8 on linux/amd64").unwrap();
        assert_eq!(v014, (0, 14, 0));
        assert!(!has_retry_lock(v014));
        assert!(has_retry_lock(
            version("restic 0.16.4 compiled with go1.22").unwrap()
        ));
        assert!(has_retry_lock(
            version("restic 0.17.0-dev (compiled manually)").unwrap()
        ));
        assert_eq!(
            retry_lock_argument(Duration::from_secs(7200)),
            "--retry-lock=7200s"
        );
    }
}
