//! Temporary files a killed rsync leaves in a local destination.
//!
//! rsync writes each file as `.NAME.XXXXXX` beside its final place and renames it when
//! complete; on SIGTERM it removes the temporary file itself, but SIGKILL (systemctl kill, the
//! OOM killer, a power cut) leaves it behind, and without `--delete` no later run removes it:
//! half a file would stay in the backup for good. So a run marks its start in the state
//! directory and unmarks it when rsync has exited (not when a signal killed rsync alone, as
//! the OOM killer does); a run that finds the mark knows the one before died, and removes the files named like rsync's temporary files that were written
//! since that run started. Files rsync did finish carry their source's mtime (archive mode),
//! so a backed-up file that happens to have such a name is not mistaken for one.
//!
//! A run that is merely still going leaves the same mark and the same files: [`remove`] takes
//! the stage's lock as proof that no other run of the stage is, or it would delete that run's
//! files in the middle of its copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::stage_lock::StageLock;

/// The mark of a run in progress: `STATE_DIR/rsync-STAGE.running`, its mtime the start.
pub struct RunMark {
    path: PathBuf,
}

/// Slack for the comparison of mtimes (clock granularity of the destination's filesystem).
const SLACK: Duration = Duration::from_secs(2);

impl RunMark {
    pub fn path(state_dir: &Path, stage: &str) -> PathBuf {
        state_dir.join(format!("rsync-{stage}.running"))
    }

    /// When the run that left `path` behind started, if one did.
    pub fn left_behind(path: &Path) -> Option<SystemTime> {
        std::fs::metadata(path).ok()?.modified().ok()
    }

    /// Marks the start of this run (the file's mtime is now).
    pub fn set(path: PathBuf) -> std::io::Result<RunMark> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, b"")?;
        Ok(RunMark { path })
    }

    /// rsync has exited (well or not): whatever it left, it left on purpose.
    pub fn clear(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `.NAME.XXXXXX`, as rsync's `get_tmpname` makes them (mkstemp's six letters and digits).
fn is_rsync_temp_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b".") else {
        return false;
    };
    let Some((stem, suffix)) = rest.len().checked_sub(7).map(|i| rest.split_at(i)) else {
        return false;
    };
    !stem.is_empty() && suffix[0] == b'.' && suffix[1..].iter().all(|b| b.is_ascii_alphanumeric())
}

/// Removes rsync temporary files written since `since` under `root`, not crossing into other
/// filesystems or btrfs subvolumes (rotated snapshots are read-only and older anyway).
/// Returns the paths removed. Only under the stage's lock (`_held`): see the module doc.
pub fn remove(_held: &StageLock, root: &Path, since: SystemTime) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    let since = since.checked_sub(SLACK).unwrap_or(since);
    let device = std::fs::symlink_metadata(root)?.dev();
    let mut removed = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if entry.metadata()?.dev() == device {
                    pending.push(entry.path());
                }
            } else if file_type.is_file() && is_rsync_temp_name(entry.file_name().as_bytes()) {
                let written = entry.metadata()?.modified()?;
                if written >= since {
                    std::fs::remove_file(entry.path())?;
                    removed.push(entry.path());
                }
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_rsync_temporary_names() {
        assert!(is_rsync_temp_name(b".big.bin.TB3ngc"));
        assert!(is_rsync_temp_name(b".a.000000"));
        assert!(!is_rsync_temp_name(b"big.bin.TB3ngc"));
        assert!(!is_rsync_temp_name(b"..TB3ngc"));
        assert!(!is_rsync_temp_name(b".big.bin.TB3ng"));
        assert!(!is_rsync_temp_name(b".big.bin-TB3ngc"));
        assert!(!is_rsync_temp_name(b".bashrc"));
    }

    #[test]
    fn removes_only_temporary_files_written_since_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        // A finished file with a temp-like name keeps its source's (old) mtime.
        let finished = root.join("sub/.notes.Ab12Cd");
        std::fs::write(&finished, "backed up").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&finished)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let partial = root.join("sub/.big.bin.TB3ngc");
        std::fs::write(&partial, "half").unwrap();
        let plain = root.join("fresh.txt");
        std::fs::write(&plain, "new").unwrap();

        let state = tempfile::tempdir().unwrap();
        let lock = StageLock::try_acquire(state.path(), "copy", crate::paths::Scope::User, "test")
            .unwrap();
        let removed = remove(&lock, root, SystemTime::now() - Duration::from_secs(60)).unwrap();
        assert_eq!(removed, vec![partial.clone()]);
        assert!(!partial.exists());
        assert!(finished.exists() && plain.exists());
    }

    #[test]
    fn the_mark_tells_a_run_that_died_from_one_that_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = RunMark::path(dir.path(), "copy");
        assert!(RunMark::left_behind(&path).is_none());
        let mark = RunMark::set(path.clone()).unwrap();
        assert!(RunMark::left_behind(&path).is_some());
        mark.clear();
        assert!(RunMark::left_behind(&path).is_none());
    }
}
