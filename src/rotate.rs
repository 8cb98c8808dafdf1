//! Rotation of point-in-time snapshots (an rsync stage's `rotate`):
//! an rsync destination that is a btrfs subvolume gets a read-only snapshot after a
//! successful copy when the newest one is at least `every` old; beyond `keep` snapshots the
//! oldest are deleted. A rotation that is not due does nothing at all.
//!
//! Snapshots of `…/docs` live in `…/.snapshots/docs/`, named by their UTC time
//! (`20250520T030000Z`), so that `ls` sorts them and a name says when it was taken.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::btrfs;
use crate::process::ToolError;

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

impl RotateError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RotateError::Io {
            context: context.into(),
            source,
        }
    }
}

const NAME_FORMAT: &str = "%Y%m%dT%H%M%S";

/// The directory holding the snapshots of `destination`.
pub fn snapshot_dir(destination: &Path) -> PathBuf {
    let parent = destination.parent().unwrap_or(Path::new("/"));
    let name = destination
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "root".into());
    parent.join(".snapshots").join(name)
}

pub fn name(at: Timestamp) -> String {
    format!("{}Z", at.to_zoned(TimeZone::UTC).strftime(NAME_FORMAT))
}

pub fn parse_name(name: &str) -> Option<Timestamp> {
    let civil = jiff::civil::DateTime::strptime(NAME_FORMAT, name.strip_suffix('Z')?).ok()?;
    civil.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// A snapshot found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub taken: Timestamp,
    pub path: PathBuf,
}

/// The snapshots of `destination`, oldest first; other entries in the directory are ignored.
pub fn list(destination: &Path) -> Result<Vec<Snapshot>, RotateError> {
    let dir = snapshot_dir(destination);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(RotateError::io(
                format!("cannot list {}", dir.display()),
                error,
            ));
        }
    };
    let mut snapshots: Vec<Snapshot> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let taken = parse_name(entry.file_name().to_str()?)?;
            Some(Snapshot {
                taken,
                path: entry.path(),
            })
        })
        .collect();
    snapshots.sort_by_key(|s| s.taken);
    Ok(snapshots)
}

/// What a rotation will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The name of the snapshot to take, when one is due.
    pub take: Option<String>,
    /// Snapshots to delete, oldest first.
    pub remove: Vec<PathBuf>,
}

/// Decides, without touching anything: a snapshot is due when there is none or the newest
/// is at least `every` old; only then are the oldest beyond `keep` removed.
pub fn plan(existing: &[Snapshot], now: Timestamp, every: Duration, keep: usize) -> Plan {
    let newest = existing.iter().map(|s| s.taken).max();
    let due = newest.is_none_or(|newest| {
        now.duration_since(newest)
            .try_into()
            .is_ok_and(|age: Duration| age >= every)
    });
    let take = name(now);
    if !due
        || existing
            .iter()
            .any(|s| s.path.file_name() == Some(take.as_ref()))
    {
        return Plan::default();
    }
    let total = existing.len() + 1;
    let excess = total.saturating_sub(keep.max(1));
    let mut oldest_first: Vec<&Snapshot> = existing.iter().collect();
    oldest_first.sort_by_key(|s| s.taken);
    Plan {
        take: Some(take),
        remove: oldest_first
            .into_iter()
            .take(excess)
            .map(|s| s.path.clone())
            .collect(),
    }
}

/// Carries out the plan for `destination` (a subvolume). Returns it, for the log.
pub fn apply(
    destination: &Path,
    now: Timestamp,
    every: Duration,
    keep: usize,
) -> Result<Plan, RotateError> {
    let plan = plan(&list(destination)?, now, every, keep);
    if let Some(take) = &plan.take {
        let dir = snapshot_dir(destination);
        std::fs::create_dir_all(&dir)
            .map_err(|error| RotateError::io(format!("cannot create {}", dir.display()), error))?;
        btrfs::snapshot_read_only(destination, &dir.join(take))?;
        for old in &plan.remove {
            btrfs::delete_subvolume(old)?;
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn snapshots(times: &[&str]) -> Vec<Snapshot> {
        times
            .iter()
            .map(|t| Snapshot {
                taken: at(t),
                path: PathBuf::from(format!("/s/.snapshots/docs/{}", name(at(t)))),
            })
            .collect()
    }

    #[test]
    fn names_are_utc_timestamps_that_round_trip() {
        let t = at("2025-05-20T03:00:07Z");
        assert_eq!(name(t), "20250520T030007Z");
        assert_eq!(parse_name("20250520T030007Z"), Some(t));
        assert_eq!(parse_name("notes"), None);
        assert_eq!(parse_name("20250520T030007"), None);
    }

    #[test]
    fn snapshots_live_beside_the_destination() {
        assert_eq!(
            snapshot_dir(Path::new("/run/backupctl/store/nas/docs")),
            Path::new("/run/backupctl/store/nas/.snapshots/docs")
        );
    }

    const WEEK: Duration = Duration::from_secs(168 * 3600);

    #[test]
    fn first_rotation_takes_a_snapshot() {
        let plan = plan(&[], at("2025-05-20T03:00:00Z"), WEEK, 8);
        assert_eq!(plan.take.as_deref(), Some("20250520T030000Z"));
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn rotation_not_yet_due_does_nothing() {
        let existing = snapshots(&["2025-05-14T03:00:00Z"]);
        let plan = plan(&existing, at("2025-05-20T03:00:00Z"), WEEK, 1);
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn due_rotation_removes_the_oldest_beyond_keep() {
        let existing = snapshots(&[
            "2025-04-29T03:00:00Z",
            "2025-05-06T03:00:00Z",
            "2025-05-13T03:00:00Z",
        ]);
        let plan = plan(&existing, at("2025-05-20T03:00:00Z"), WEEK, 2);
        assert_eq!(plan.take.as_deref(), Some("20250520T030000Z"));
        assert_eq!(
            plan.remove,
            vec![existing[0].path.clone(), existing[1].path.clone()]
        );
    }

    #[test]
    fn never_takes_two_snapshots_with_one_name() {
        let existing = snapshots(&["2025-05-20T03:00:00Z"]);
        let plan = plan(&existing, at("2025-05-20T03:00:00Z"), Duration::ZERO, 2);
        assert_eq!(plan, Plan::default());
    }
}
