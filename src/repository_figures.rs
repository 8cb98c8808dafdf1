//! Repository figures: what a repository holds (snapshot count, newest snapshot per host,
//! its size) and which stages use it in which role, one JSON file per repository in
//! `STATE_DIR/repositories/`. Stages that reach a repository write them after their run
//! (they hold its password; `status` and `metrics`, which only read, may not); `status` and
//! `metrics` read them back beside the run records, which give the last successful check
//! and prune.
//!
//! A repository is known by its location as the stage resolves it, with any password of a
//! URL hidden (`rest:https://user:***@host/`): the same location from two stages (or two
//! jobs) is one repository. The file name is that location made safe plus a hash of it.
//!
//! How each figure is obtained and when it is refreshed is the stage's business
//! (docs/repository-figures.md); this module only keeps them durable: read-modify-write
//! under a lock (two stages of one repository may end together), each write whole
//! (`paths::write_atomically`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::paths::Fsync;

const DIR_NAME: &str = "repositories";
const LOCK_NAME: &str = ".lock";
/// Writers take milliseconds; a stuck one must not hold a stage's end for long.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a stage does to a repository: `check` and `prune` stages give the repository its
/// last check and prune (from their run records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Adds snapshots (a backup, a copy into it).
    Backup,
    /// Removes snapshots without pruning data.
    Forget,
    /// Removes unreferenced data (`forget --prune`, `prune`).
    Prune,
    /// Checks the repository's integrity.
    Check,
    /// Only reads (a restore drill).
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Backup => "backup",
            Role::Forget => "forget",
            Role::Prune => "prune",
            Role::Check => "check",
            Role::Read => "read",
        }
    }
}

/// The snapshots in the repository when they were last listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshots {
    /// When they were listed (RFC 3339).
    pub refreshed: String,
    pub count: u64,
    /// The newest snapshot's time (RFC 3339) per host name.
    pub newest_by_host: BTreeMap<String, String>,
}

/// The repository's size when it was last measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    /// When they were measured (RFC 3339).
    pub refreshed: String,
    /// Bytes the repository's unique data takes as stored (deduplicated, compressed).
    pub stored_bytes: u64,
    /// Bytes all snapshots would take restored (what the data is without deduplication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_bytes: Option<u64>,
}

/// Everything known of one repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The location, any password hidden ([`display_location`]).
    pub repository: String,
    /// The stages that used it, by name, with what they do to it.
    #[serde(default)]
    pub stages: BTreeMap<String, Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Snapshots>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<Sizes>,
}

/// A location as it may be shown and stored: the password of a URL's user part hidden.
pub fn display_location(location: &str) -> String {
    let location = location.trim();
    let Some(scheme_end) = location.find("://") else {
        return location.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &location[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => {
            let user = &authority[..authority[..at].find(':').unwrap_or(at)];
            format!("{}{user}:***{}", &location[..authority_start], &rest[at..])
        }
        _ => location.to_string(),
    }
}

/// The file of a repository (its displayed location made safe, plus a hash of it so that
/// two locations made alike stay apart).
fn file_of(state_dir: &Path, repository: &str) -> PathBuf {
    let safe: String = repository
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    // FNV-1a: stable across releases (std's hasher is not), no crate for 10 lines.
    let hash = repository.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    state_dir
        .join(DIR_NAME)
        .join(format!("{safe}-{hash:016x}.json"))
}

/// Changes the figures of the repository at `location` (a new file when it has none):
/// read, `change`, written whole, under the writers' lock.
pub fn update(
    state_dir: &Path,
    location: &str,
    change: impl FnOnce(&mut Figures),
) -> std::io::Result<()> {
    let repository = display_location(location);
    let dir = state_dir.join(DIR_NAME);
    crate::paths::create_dir(&dir)?;
    let _lock = crate::paths::lock_exclusive_within(&dir.join(LOCK_NAME), LOCK_WAIT)?;
    let path = file_of(state_dir, &repository);
    let mut figures = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Figures::default(),
        Err(error) => return Err(error),
    };
    figures.repository = repository;
    change(&mut figures);
    let text = serde_json::to_vec_pretty(&figures).map_err(std::io::Error::other)?;
    // 0644 as the run records: figures are not secret, and node_exporter's user or a
    // monitoring script may read them.
    crate::paths::write_atomically(&path, &text, Fsync::Yes, Some(0o644))
}

/// Every repository's figures, sorted by location; a file that does not parse is left out
/// (with a warning), not an error: the figures are a view, not a record of truth.
pub fn read_all(state_dir: &Path) -> std::io::Result<Vec<Figures>> {
    let dir = state_dir.join(DIR_NAME);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut all = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        match serde_json::from_slice::<Figures>(&std::fs::read(&path)?) {
            Ok(figures) => all.push(figures),
            Err(error) => tracing::warn!("ignoring {}: {error}", path.display()),
        }
    }
    all.sort_by(|a, b| a.repository.cmp(&b.repository));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_password_of_a_url_and_nothing_else() {
        assert_eq!(
            display_location("rest:https://host-a:s3cret@backup.example.net:8000/fleet"),
            "rest:https://host-a:***@backup.example.net:8000/fleet"
        );
        assert_eq!(
            display_location("rest:https://backup.example.net/fleet"),
            "rest:https://backup.example.net/fleet"
        );
        assert_eq!(
            display_location("sftp:user@host:/srv/restic"),
            "sftp:user@host:/srv/restic"
        );
        assert_eq!(display_location("/srv/restic\n"), "/srv/restic");
    }

    #[test]
    fn keeps_each_repositorys_figures_and_merges_changes() {
        let dir = tempfile::tempdir().unwrap();
        update(dir.path(), "/srv/a", |f| {
            f.stages.insert("home".into(), Role::Backup);
        })
        .unwrap();
        update(dir.path(), "/srv/b", |f| {
            f.stages.insert("check".into(), Role::Check);
        })
        .unwrap();
        update(dir.path(), "/srv/a", |f| {
            f.stages.insert("prune".into(), Role::Prune);
            f.sizes = Some(Sizes {
                refreshed: "2026-01-01T00:00:00Z".into(),
                stored_bytes: 10,
                restore_bytes: None,
            });
        })
        .unwrap();
        let all = read_all(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].repository, "/srv/a");
        assert_eq!(
            all[0].stages.keys().collect::<Vec<_>>(),
            ["home", "prune"],
            "the second write kept the first one's stage"
        );
        assert_eq!(all[0].sizes.as_ref().unwrap().stored_bytes, 10);
        assert_eq!(all[1].stages["check"], Role::Check);
    }

    #[test]
    fn the_password_never_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        update(dir.path(), "rest:http://u:hunter2@h/r", |_| {}).unwrap();
        for entry in std::fs::read_dir(dir.path().join(DIR_NAME)).unwrap() {
            let path = entry.unwrap().path();
            assert!(!path.to_string_lossy().contains("hunter2"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
