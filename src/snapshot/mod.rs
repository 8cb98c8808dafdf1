//! Consistent backups from btrfs snapshots, for any stage that reads sources
//! (`snapshot = "btrfs"`): each subvolume holding a source gets a read-only snapshot, the
//! snapshots are bind-mounted over the sources in a private mount namespace, the stage's tool
//! runs there (so the paths it records are the real ones), and the snapshots are deleted.
//!
//! Cleanup is guaranteed as far as a process can guarantee it: snapshots are deleted after
//! success, failure, a stop request (SIGTERM, D-Bus `Stop`) and a panic (drop guard). A run
//! killed with SIGKILL leaves its snapshots; they carry the stage's name
//! (`STEM@backupctl.STAGE.TIMESTAMP`), and the next run of the stage removes them before it
//! takes its own, under a lock file so that two runs never remove each other's.
//!
//! Where a snapshot of subvolume `S` goes: `snapshot_locations[S]` (a path stem), else
//! `snapshot_prefix/<S escaped>`, else next to `S` (`/home` → `/home@backupctl.…`).

pub mod btrfs;
pub mod namespace;

use std::fs::File;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use tracing::{info, warn};

use self::btrfs::BtrfsError;
use self::namespace::NamespaceError;
use crate::process::ToolError;

/// What `snapshot = "…"` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every local source must be on btrfs.
    Btrfs,
    /// Snapshot sources on btrfs, back up the others live (logged).
    Auto,
}

/// A stage's snapshot keys, validated (see `crate::config`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    /// Directory for all snapshots (on the same filesystem as the subvolumes).
    pub prefix: Option<PathBuf>,
    /// Subvolume root → path stem of its snapshot.
    pub locations: IndexMap<PathBuf, PathBuf>,
    /// Runs in the stage's mount namespace before any snapshot is taken.
    pub exec_before: Vec<String>,
}

impl Settings {
    /// The directories snapshots are created in, as far as the config tells without looking
    /// at the disks (→ `ReadWritePaths=` of the unit). Without a prefix or location, a source
    /// is assumed to be its subvolume's root, whose snapshot goes into its parent directory.
    pub fn directories(&self, sources: &[PathBuf]) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .locations
            .values()
            .filter_map(|stem| stem.parent().map(Path::to_path_buf))
            .collect();
        let uncovered = sources
            .iter()
            .any(|source| !self.locations.keys().any(|key| source.starts_with(key)));
        match &self.prefix {
            Some(prefix) if uncovered => dirs.push(prefix.clone()),
            Some(_) => {}
            None => dirs.extend(
                sources
                    .iter()
                    .filter(|source| !self.locations.keys().any(|key| source.starts_with(key)))
                    .filter_map(|source| source.parent().map(Path::to_path_buf)),
            ),
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("exec_before_snapshot failed: {0}")]
    ExecBefore(#[source] ToolError),
    #[error(
        "{0} is not on a btrfs filesystem; with snapshot = \"auto\" such sources are read live"
    )]
    NotBtrfs(PathBuf),
    #[error(
        "cannot create a snapshot in {0}: it is read-only here; under systemd a stage writes only where its config puts snapshots: set `snapshot_prefix` (or `snapshot_locations`) to a directory on the same btrfs filesystem and regenerate the units"
    )]
    ReadOnly(PathBuf),
    #[error("the source {0} does not exist")]
    MissingSource(PathBuf),
    #[error(
        "{0} is the root of the filesystem tree, its snapshot has no place next to it: set `snapshot_prefix` or `snapshot_locations`"
    )]
    NoPlace(PathBuf),
    #[error("another run of stage {stage} holds {lock}; it removes its own snapshots when it ends")]
    Busy { stage: String, lock: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SnapshotError {
    /// A failure that the next run may not meet (another run holds the lock).
    pub fn is_temporary(&self) -> bool {
        matches!(self, SnapshotError::Busy { .. })
    }
}

/// One subvolume to snapshot, and the sources it serves.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    subvolume: PathBuf,
    /// Directory the snapshot is created in.
    directory: PathBuf,
    /// File name stem; the snapshot is `STEM@backupctl.STAGE.TIMESTAMP`.
    stem: String,
    /// Sources inside the subvolume, canonical.
    sources: Vec<PathBuf>,
}

/// The name of a snapshot of ours.
fn snapshot_name(stem: &str, stage: &str, timestamp: &str) -> String {
    format!("{stem}@backupctl.{stage}.{timestamp}")
}

/// Whether `name` is a snapshot `snapshot_name(stem, stage, _)` made (stage names hold no
/// `.`, so `a` never claims the snapshots of `a-b`).
fn is_ours(name: &str, stem: &str, stage: &str) -> bool {
    name.strip_prefix(&snapshot_name(stem, stage, ""))
        .is_some_and(|rest| {
            rest.len() == 16
                && rest.chars().enumerate().all(|(i, c)| match i {
                    8 => c == 'T',
                    15 => c == 'Z',
                    _ => c.is_ascii_digit(),
                })
        })
}

/// `/var/lib` → `var-lib`, `/` → `root`: a subvolume's path as one file name.
fn flat_name(path: &Path) -> String {
    let text = path.to_string_lossy();
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        "root".into()
    } else {
        trimmed.replace('/', "-")
    }
}

/// Where the snapshot of `subvolume` goes: (directory, stem).
fn destination(settings: &Settings, subvolume: &Path) -> Result<(PathBuf, String), SnapshotError> {
    if let Some(stem) = settings.locations.get(subvolume) {
        let directory = stem.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = stem
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| SnapshotError::NoPlace(stem.clone()))?;
        return Ok((directory, name));
    }
    if let Some(prefix) = &settings.prefix {
        return Ok((prefix.clone(), flat_name(subvolume)));
    }
    match (subvolume.parent(), subvolume.file_name()) {
        (Some(parent), Some(name)) => {
            Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
        }
        _ => Err(SnapshotError::NoPlace(subvolume.to_path_buf())),
    }
}

/// Groups the sources by the subvolume that holds them. Sources off btrfs are an error, or
/// with `snapshot = "auto"` a warning (they are read live).
fn plan(
    settings: &Settings,
    sources: &[PathBuf],
    warnings: &mut Vec<String>,
) -> Result<Vec<Place>, SnapshotError> {
    let mut places: Vec<Place> = Vec::new();
    for source in sources {
        // `/src/` (rsync's "the contents of") and `/src` are the same place here.
        let source = &source.components().collect::<PathBuf>();
        if !source.exists() {
            return Err(SnapshotError::MissingSource(source.clone()));
        }
        if !btrfs::is_btrfs(source)? {
            if settings.mode == Mode::Btrfs {
                return Err(SnapshotError::NotBtrfs(source.clone()));
            }
            let warning = format!(
                "{} is not on btrfs: backed up live, without a snapshot",
                source.display()
            );
            warn!("{warning}");
            warnings.push(warning);
            continue;
        }
        let subvolume = btrfs::subvolume_root(source)?;
        let canonical = source.canonicalize().map_err(|e| SnapshotError::Io {
            context: format!("cannot resolve {}", source.display()),
            source: e,
        })?;
        match places.iter_mut().find(|p| p.subvolume == subvolume) {
            Some(place) => place.sources.push(canonical),
            None => {
                let (directory, stem) = destination(settings, &subvolume)?;
                places.push(Place {
                    subvolume,
                    directory,
                    stem,
                    sources: vec![canonical],
                });
            }
        }
    }
    for key in settings.locations.keys() {
        if !places.iter().any(|p| p.subvolume == *key) {
            let warning = format!(
                "snapshot_locations names {}, which is not the subvolume of any source (subvolumes: {})",
                key.display(),
                places
                    .iter()
                    .map(|p| p.subvolume.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            warn!("{warning}");
            warnings.push(warning);
        }
    }
    Ok(places)
}

/// The snapshots and mounts of one run; undone by [`Session::release`], or on drop when a
/// panic skipped that.
struct Session {
    snapshots: Vec<(PathBuf, String)>,
    mounts: Vec<PathBuf>,
}

impl Session {
    /// Unmounts (innermost first) and deletes every snapshot; returns what could not be undone.
    fn release(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        while let Some(target) = self.mounts.pop() {
            if let Err(error) = namespace::unmount(&target) {
                problems.push(error.to_string());
            }
        }
        while let Some((directory, name)) = self.snapshots.pop() {
            match btrfs::delete_subvolume(&directory, &name) {
                Ok(()) => info!("deleted snapshot {}", directory.join(&name).display()),
                Err(error) => problems.push(error.to_string()),
            }
        }
        problems
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for problem in self.release() {
            tracing::error!("{problem}");
        }
    }
}

/// Holds `STATE/snapshot-STAGE.lock` for the run (released by the kernel even on SIGKILL).
fn lock(state_dir: &Path, stage: &str) -> Result<nix::fcntl::Flock<File>, SnapshotError> {
    let path = state_dir.join(format!("snapshot-{stage}.lock"));
    let io = |source| SnapshotError::Io {
        context: format!("cannot open the lock file {}", path.display()),
        source,
    };
    crate::paths::create_dir(state_dir).map_err(io)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        SnapshotError::Busy {
            stage: stage.into(),
            lock: path.clone(),
        }
    })
}

/// Deletes snapshots a killed run of this stage left in the places of this run.
fn remove_leftovers(places: &[Place], stage: &str) -> Result<(), SnapshotError> {
    for place in places {
        let entries = match std::fs::read_dir(&place.directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SnapshotError::Io {
                    context: format!("cannot list {}", place.directory.display()),
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_ours(&name, &place.stem, stage) && btrfs::is_subvolume(&entry.path()) {
                btrfs::delete_subvolume(&place.directory, &name)?;
                warn!(
                    "deleted snapshot {} left by an earlier run that did not end cleanly",
                    entry.path().display()
                );
            }
        }
    }
    Ok(())
}

/// Runs `work` with consistent sources: on a thread of its own, in a private mount namespace
/// where each source shows its snapshot. Returns what `work` returned and warnings (sources
/// read live, snapshots that could not be deleted).
pub fn around<T: Send>(
    settings: &Settings,
    sources: &[PathBuf],
    stage: &str,
    state_dir: &Path,
    work: impl FnOnce() -> T + Send,
) -> Result<(T, Vec<String>), SnapshotError> {
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn_scoped(scope, || {
                span.in_scope(|| in_namespace(settings, sources, stage, state_dir, work))
            })
            .map_err(|source| SnapshotError::Io {
                context: "cannot start the snapshot thread".into(),
                source,
            })?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn in_namespace<T>(
    settings: &Settings,
    sources: &[PathBuf],
    stage: &str,
    state_dir: &Path,
    work: impl FnOnce() -> T,
) -> Result<(T, Vec<String>), SnapshotError> {
    let _lock = lock(state_dir, stage)?;
    namespace::enter_private()?;
    if let Some((program, args)) = settings.exec_before.split_first() {
        crate::process::Command::new(program)
            .args(args)
            .run()
            .map_err(SnapshotError::ExecBefore)?;
    }
    let mut warnings = Vec::new();
    let places = plan(settings, sources, &mut warnings)?;
    remove_leftovers(&places, stage)?;

    // All snapshots first, in quick succession, so that they show one moment.
    let timestamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut session = Session {
        snapshots: Vec::new(),
        mounts: Vec::new(),
    };
    for place in &places {
        let name = snapshot_name(&place.stem, stage, &timestamp);
        btrfs::snapshot_read_only(&place.subvolume, &place.directory, &name).map_err(|error| {
            match error {
                BtrfsError::Io { source, .. } if source.raw_os_error() == Some(libc::EROFS) => {
                    SnapshotError::ReadOnly(place.directory.clone())
                }
                error => error.into(),
            }
        })?;
        info!(
            "snapshot {} of {} created",
            place.directory.join(&name).display(),
            place.subvolume.display()
        );
        session.snapshots.push((place.directory.clone(), name));
    }
    // Then the bind mounts, outer paths first so that nested sources end up on top.
    let mut binds: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (place, (directory, name)) in places.iter().zip(&session.snapshots) {
        for source in &place.sources {
            let inside = source
                .strip_prefix(&place.subvolume)
                .expect("a source lies in its subvolume");
            binds.push((directory.join(name).join(inside), source.clone()));
        }
    }
    binds.sort_by_key(|(_, target)| target.components().count());
    for (from, target) in binds {
        // Already shown by a bind of the same snapshot further up.
        let covered = session.mounts.iter().any(|mounted| {
            target.starts_with(mounted)
                && places
                    .iter()
                    .any(|p| target.starts_with(&p.subvolume) && mounted.starts_with(&p.subvolume))
        });
        if covered {
            continue;
        }
        namespace::bind(&from, &target)?;
        session.mounts.push(target);
    }

    let result = work();

    for problem in session.release() {
        tracing::error!("{problem}");
        warnings.push(format!("{problem}; the next run of this stage deletes it"));
    }
    Ok((result, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_its_own_snapshot_names() {
        let name = snapshot_name("home", "offsite", "20261122T064110Z");
        assert_eq!(name, "home@backupctl.offsite.20261122T064110Z");
        assert!(is_ours(&name, "home", "offsite"));
        assert!(!is_ours(&name, "home", "off"));
        assert!(!is_ours(&name, "hom", "offsite"));
        assert!(!is_ours(
            "home@backupctl.offsite-2.20261122T064110Z",
            "home",
            "offsite"
        ));
        assert!(!is_ours("home@backupctl.offsite.latest", "home", "offsite"));
    }

    #[test]
    fn places_snapshots_by_location_prefix_or_next_to_the_subvolume() {
        let mut settings = Settings {
            mode: Mode::Btrfs,
            prefix: None,
            locations: IndexMap::new(),
            exec_before: vec![],
        };
        assert_eq!(
            destination(&settings, Path::new("/home")).unwrap(),
            (PathBuf::from("/"), "home".into())
        );
        assert!(destination(&settings, Path::new("/")).is_err());
        settings.prefix = Some("/mnt/snapshots".into());
        assert_eq!(
            destination(&settings, Path::new("/var/lib")).unwrap(),
            (PathBuf::from("/mnt/snapshots"), "var-lib".into())
        );
        assert_eq!(
            destination(&settings, Path::new("/")).unwrap(),
            (PathBuf::from("/mnt/snapshots"), "root".into())
        );
        settings
            .locations
            .insert("/var/lib".into(), "/var-lib".into());
        assert_eq!(
            destination(&settings, Path::new("/var/lib")).unwrap(),
            (PathBuf::from("/"), "var-lib".into())
        );
    }

    #[test]
    fn unit_directories_follow_the_settings() {
        let sources = [PathBuf::from("/home"), PathBuf::from("/var/lib/app")];
        let mut settings = Settings {
            mode: Mode::Btrfs,
            prefix: None,
            locations: IndexMap::new(),
            exec_before: vec![],
        };
        assert_eq!(
            settings.directories(&sources),
            [PathBuf::from("/"), PathBuf::from("/var/lib")]
        );
        settings
            .locations
            .insert("/var/lib".into(), "/snapshots/var-lib".into());
        settings.prefix = Some("/srv/snap".into());
        assert_eq!(
            settings.directories(&sources),
            [PathBuf::from("/snapshots"), PathBuf::from("/srv/snap")]
        );
    }
}
