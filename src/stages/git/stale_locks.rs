//! git's lock files a power cut left in the stage's repositories.
//!
//! git takes a lock by creating `NAME.lock` (`index.lock`, `HEAD.lock`, `refs/heads/B.lock`,
//! `packed-refs.lock`, `config.lock`) and renames it over `NAME` when done. With the stage's
//! `core.fsync` the lock file reaches the disk too, so a cut between the two left it there,
//! and every later run failed ("cannot lock ref 'HEAD': Unable to create
//! '…/.git/HEAD.lock': File exists", power-cut campaign, seed 20261206) until someone removed
//! it by hand. A lock file older than this boot cannot belong to a live git process: those
//! are removed before the stage runs git. One of this boot is left (a git of someone else may
//! hold it; git's own message then says what to do).

use std::path::{Path, PathBuf};

/// Removes the `*.lock` files of the git directory `git_dir` (its top level and `refs/`)
/// last changed before `boot`; returns what was removed.
pub fn remove_left_before(git_dir: &Path, boot: jiff::Timestamp) -> Vec<PathBuf> {
    let mut found = Vec::new();
    collect(git_dir, false, &mut found);
    collect(&git_dir.join("refs"), true, &mut found);
    found
        .into_iter()
        .filter(|lock| {
            let changed = std::fs::symlink_metadata(lock).and_then(|m| m.modified());
            changed.is_ok_and(|time| jiff::Timestamp::try_from(time).is_ok_and(|time| time < boot))
        })
        .filter(|lock| std::fs::remove_file(lock).is_ok())
        .collect()
}

fn collect(dir: &Path, recurse: bool, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && recurse {
            collect(&path, true, found);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "lock") {
            found.push(path);
        }
    }
}

/// [`remove_left_before`] this boot, saying in the journal what it removed.
pub fn remove_left_before_this_boot(git_dir: &Path) {
    let Some(boot) = crate::machine::boot_time() else {
        return;
    };
    for lock in remove_left_before(git_dir, boot) {
        tracing::warn!(
            "removed {}: a git lock left by a run the machine did not survive",
            lock.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_from_before_this_boot_are_removed_and_newer_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path();
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        let old = [
            git.join("HEAD.lock"),
            git.join("index.lock"),
            git.join("refs/heads/main.lock"),
        ];
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for lock in &old {
            let file = std::fs::File::create(lock).unwrap();
            file.set_modified(before).unwrap();
        }
        let fresh = git.join("packed-refs.lock");
        std::fs::write(&fresh, "").unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let boot = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
        let mut removed = remove_left_before(git, boot);
        removed.sort();
        let mut expected = old.to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(fresh.exists() && git.join("HEAD").exists());
        assert!(old.iter().all(|lock| !lock.exists()));
    }
}
