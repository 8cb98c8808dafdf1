//! What the kernel says of the memory of this process's own cgroup (cgroup v2): how often
//! `memory.high` throttled it, whether the OOM killer ran in it, how long its tasks stalled
//! waiting for memory and its peak. A stage unit's processes share one cgroup, so the
//! executor (at its end) and `stage-ended` (its `ExecStopPost=`, same cgroup) read the
//! figures of the whole stage.
//!
//! Under cgroup v1 (or the hybrid layout, where the memory controller is not on the unified
//! hierarchy) these files do not exist and [`own_memory`] answers `None`: nothing is known.

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

/// `/sys/fs/cgroup` + this process's path on the unified hierarchy (`0::/…`).
fn own_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
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
    fn a_cgroup_without_the_memory_controller_tells_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_memory(dir.path()), None);
    }
}
