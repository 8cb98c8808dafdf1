//! What the kernel says of the memory of this process's own cgroup (cgroup v2): how often
//! `memory.high` throttled it, whether the OOM killer ran in it, how long its tasks stalled
//! waiting for memory and its peak. A stage unit's processes share one cgroup, so the
//! executor (at its end) and `stage-ended` (its `ExecStopPost=`, same cgroup) read the
//! figures of the whole stage.
//!
//! Under cgroup v1 (or the hybrid layout, where the memory controller is not on the unified
//! hierarchy) these files do not exist and [`own_memory`] answers `None`: nothing is known.
//!
//! It also tells Go tools (restic, rclone) the memory they live under ([`limit_go_tools`]):
//! Go's collector lets the heap grow to twice what is live before it collects, blind to the
//! cgroup, so under a `memory_high` below that peak the kernel throttles the stage nearly to
//! a halt (measured: README, "Resource limits") where a collector that knew the limit would have
//! collected earlier.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The memory figures of one cgroup, as the run record keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryUse {
    /// `memory.peak` (kernel ≥ 5.19), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    /// `memory.events` `high`: times the cgroup went over `memory_high` and was throttled.
    pub high_events: u64,
    /// `memory.events` `max`: times it hit `memory_max` (reclaim, then the OOM killer).
    pub max_events: u64,
    /// `memory.events` `oom_kill`: processes the OOM killer killed in it.
    pub oom_kills: u64,
    /// `memory.pressure` `some` total: seconds during which some of its tasks waited for
    /// memory (the time `memory_high` throttling cost, with reclaim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_secs: Option<f64>,
}

/// The figures of this process's cgroup, or `None` where cgroup v2 does not tell.
pub fn own_memory() -> Option<MemoryUse> {
    let dir = own_dir()?;
    read_memory(&dir)
}

/// What [`limit_go_tools`] set: the smallest memory limit over this process's cgroup and
/// its parents (the stage's, its job's via the stage, `backup.slice`'s), and `GOMEMLIMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoLimit {
    pub ceiling_bytes: u64,
    pub gomemlimit_bytes: u64,
}

/// Sets `GOMEMLIMIT` in our environment, which every tool we start inherits, to 90 % of the
/// smallest `memory.high`/`memory.max` above us (the rest: page cache, kernel memory and the
/// runtime's own slack), so that restic's and rclone's collectors work harder near the limit
/// instead of the kernel throttling them. Nothing when there is no limit (or cgroup v1), or
/// when `GOMEMLIMIT` is already set (a stage's `environment` wins). Must be called before
/// any thread starts: it changes the process's environment.
pub fn limit_go_tools() -> Option<GoLimit> {
    if std::env::var_os("GOMEMLIMIT").is_some() {
        return None;
    }
    let dir = own_dir()?;
    let ceiling_bytes = memory_ceiling(Path::new(CGROUP_ROOT), &dir)?;
    let limit = GoLimit {
        ceiling_bytes,
        gomemlimit_bytes: ceiling_bytes / 10 * 9,
    };
    // SAFETY: called by `cli::main` before logging, D-Bus or any tool starts: this is the
    // only thread, so no other can read the environment while it changes.
    unsafe { std::env::set_var("GOMEMLIMIT", limit.gomemlimit_bytes.to_string()) };
    Some(limit)
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The smallest `memory.high` or `memory.max` of `dir` and its parents up to `root`
/// ("max" is no limit); `None` when none is set.
fn memory_ceiling(root: &Path, dir: &Path) -> Option<u64> {
    dir.ancestors()
        .take_while(|ancestor| ancestor.starts_with(root))
        .flat_map(|ancestor| ["memory.high", "memory.max"].map(|file| ancestor.join(file)))
        .filter_map(|file| {
            std::fs::read_to_string(file)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .min()
}

/// `/sys/fs/cgroup` + this process's path on the unified hierarchy (`0::/…`).
fn own_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(Path::new(CGROUP_ROOT).join(path.trim_start_matches('/')))
}

fn read_memory(dir: &Path) -> Option<MemoryUse> {
    let events = std::fs::read_to_string(dir.join("memory.events")).ok()?;
    let event = |name: &str| {
        events
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let peak_bytes = std::fs::read_to_string(dir.join("memory.peak"))
        .ok()
        .and_then(|text| text.trim().parse().ok());
    let stalled_secs = std::fs::read_to_string(dir.join("memory.pressure"))
        .ok()
        .and_then(|text| some_total_micros(&text))
        .map(|micros| micros as f64 / 1e6);
    Some(MemoryUse {
        peak_bytes,
        high_events: event("high"),
        max_events: event("max"),
        oom_kills: event("oom_kill"),
        stalled_secs,
    })
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=12345` → 12345 (microseconds).
fn some_total_micros(pressure: &str) -> Option<u64> {
    pressure
        .lines()
        .find(|line| line.starts_with("some "))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_pressure_and_peak() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 17\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("memory.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory.peak"), "1048576\n").unwrap();
        assert_eq!(
            read_memory(dir.path()),
            Some(MemoryUse {
                peak_bytes: Some(1 << 20),
                high_events: 17,
                max_events: 3,
                oom_kills: 1,
                stalled_secs: Some(2.5),
            })
        );
    }

    #[test]
    fn the_ceiling_is_the_smallest_limit_of_the_cgroup_and_its_parents() {
        let root = tempfile::tempdir().unwrap();
        let slice = root.path().join("backup.slice");
        let unit = slice.join("backup@restic.service");
        std::fs::create_dir_all(&unit).unwrap();
        let write = |dir: &Path, file: &str, value: &str| std::fs::write(dir.join(file), value);
        write(root.path(), "memory.max", "1000\n").unwrap(); // above the root: not read
        write(&slice, "memory.high", "max\n").unwrap();
        write(&slice, "memory.max", "2147483648\n").unwrap();
        write(&unit, "memory.high", "67108864\n").unwrap();
        write(&unit, "memory.max", "max\n").unwrap();
        assert_eq!(memory_ceiling(&slice, &unit), Some(64 << 20));
        write(&unit, "memory.high", "max\n").unwrap();
        assert_eq!(memory_ceiling(&slice, &unit), Some(2 << 30));
        write(&slice, "memory.max", "max\n").unwrap();
        assert_eq!(memory_ceiling(&slice, &unit), None);
    }

    #[test]
    fn a_cgroup_without_the_memory_controller_tells_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_memory(dir.path()), None);
    }
}
