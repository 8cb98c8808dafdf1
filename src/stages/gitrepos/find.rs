//! Finding git repositories under a root, in parallel over subdirectories, without ever
//! descending into a `.git` directory or a bare repository: a directory holding `.git` (a
//! directory: an ordinary repository; a file: a submodule or linked worktree) is a
//! repository, and so is a directory that looks like a git dir itself (bare). The walk goes
//! on below a worktree, where nested repositories and submodules live.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use rayon::prelude::*;

use crate::patterns::Matcher;

/// How a repository was found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `DIR/.git` is a directory.
    Worktree,
    /// `DIR/.git` is a file (`gitdir: …`): a submodule or a linked worktree.
    Gitlink,
    /// `DIR` is a git directory itself.
    Bare,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub layout: Layout,
}

/// A directory that is a git directory: `HEAD`, `objects/` and `refs/` (what git checks).
pub fn is_git_dir(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir()
}

/// Every repository under `roots`, sorted by path; problems (directories that could not be
/// opened or read to the end: repositories below them may be missed) are returned beside
/// them.
pub fn find(roots: &[PathBuf], excludes: &Matcher) -> (Vec<Found>, Vec<String>) {
    let problems = Mutex::new(Vec::new());
    let mut found: Vec<Found> = roots
        .par_iter()
        .flat_map(|root| {
            if is_git_dir(root) {
                vec![Found {
                    path: root.clone(),
                    layout: Layout::Bare,
                }]
            } else {
                walk(root, excludes, &problems)
            }
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup_by(|a, b| a.path == b.path);
    (
        found,
        problems.into_inner().unwrap_or_else(|e| e.into_inner()),
    )
}

/// A test makes reading the directory at this path fail after its first entries.
#[cfg(test)]
static FAIL_READDIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// `entries`, with an EIO as the fourth when `dir` is [`FAIL_READDIR`].
#[cfg(test)]
fn failing<'a>(
    entries: impl Iterator<Item = nix::Result<nix::dir::Entry>> + 'a,
    dir: &Path,
) -> impl Iterator<Item = nix::Result<nix::dir::Entry>> + 'a {
    let fail = FAIL_READDIR.lock().unwrap().as_deref() == Some(dir);
    entries.enumerate().map(move |(index, item)| match index {
        3 if fail => Err(nix::errno::Errno::EIO),
        _ => item,
    })
}

fn walk(dir: &Path, excludes: &Matcher, problems: &Mutex<Vec<String>>) -> Vec<Found> {
    if crate::signals::stopped() {
        return Vec::new();
    }
    let problem = |path: &Path, error: nix::errno::Errno| {
        problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!(
                "cannot read {}: {}",
                path.display(),
                std::io::Error::from(error)
            ));
    };
    // nix's directory stream hands out names and readdir's d_type without allocating: most
    // entries of a home directory are files we only pass over.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut listing = match Dir::open(dir, flags, Mode::empty()) {
        Ok(listing) => listing,
        Err(error) => {
            problem(dir, error);
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    let mut subdirs = Vec::new();
    let mut has_head = false;
    let entries = listing.iter();
    #[cfg(test)]
    let entries = failing(entries, dir);
    for item in entries {
        // An error is not skipped over: the rest of the directory, and any repository in
        // it, would be missed without a word (and readdir may fail again at once).
        let item = match item {
            Ok(item) => item,
            Err(error) => {
                problem(dir, error);
                break;
            }
        };
        let name = item.file_name().to_bytes();
        // d_type: no stat per entry, and symlinks stay links. A filesystem that leaves it
        // unknown gets a stat.
        let file_type = match item.file_type() {
            Some(file_type) => file_type,
            None => {
                let path = dir.join(OsStr::from_bytes(name));
                match nix::sys::stat::lstat(&path) {
                    Ok(stat) => match stat.st_mode & libc::S_IFMT {
                        libc::S_IFDIR => Type::Directory,
                        libc::S_IFREG => Type::File,
                        _ => Type::Symlink,
                    },
                    // Gone since it was listed: nothing to find there.
                    Err(nix::errno::Errno::ENOENT) => continue,
                    Err(error) => {
                        problem(&path, error);
                        continue;
                    }
                }
            }
        };
        match name {
            b"." | b".." => {}
            b".git" => match file_type {
                Type::Directory => found.push(Found {
                    path: dir.to_path_buf(),
                    layout: Layout::Worktree,
                }),
                Type::File => found.push(Found {
                    path: dir.to_path_buf(),
                    layout: Layout::Gitlink,
                }),
                _ => {}
            },
            _ => {
                has_head |= name == b"HEAD";
                if file_type == Type::Directory {
                    let path = dir.join(OsStr::from_bytes(name));
                    if !excludes.is_excluded(&path, true) {
                        subdirs.push(path);
                    }
                }
            }
        }
    }
    drop(listing);
    // A bare repository is not descended into. Only a directory with a `HEAD` can be one:
    // the others cost no stat to rule out.
    if has_head && is_git_dir(dir) {
        return vec![Found {
            path: dir.to_path_buf(),
            layout: Layout::Bare,
        }];
    }
    let nested: Vec<Vec<Found>> = subdirs
        .par_iter()
        .map(|sub| walk(sub, excludes, problems))
        .collect();
    found.extend(nested.into_iter().flatten());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_cannot_be_read_to_the_end_is_a_problem() {
        // Tests run as root, which reads a directory whatever its mode: the error is injected
        // instead, as the fourth of `broken`'s nine entries (`.` and `..` included).
        let root = tempfile::tempdir().unwrap();
        let broken = root.path().join("broken");
        for name in ["a", "b", "c", "d", "e", "f"] {
            std::fs::create_dir_all(broken.join(name)).unwrap();
        }
        std::fs::create_dir_all(broken.join("repo/.git")).unwrap();
        std::fs::create_dir_all(root.path().join("fine/.git")).unwrap();
        let roots = [root.path().to_path_buf()];

        let (found, problems) = find(&roots, &Matcher::default());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(problems.is_empty(), "{problems:?}");

        *FAIL_READDIR.lock().unwrap() = Some(broken.clone());
        let (found, problems) = find(&roots, &Matcher::default());
        *FAIL_READDIR.lock().unwrap() = None;
        assert!(found.iter().any(|f| f.path == root.path().join("fine")));
        assert_eq!(
            problems,
            [format!(
                "cannot read {}: {}",
                broken.display(),
                std::io::Error::from(nix::errno::Errno::EIO)
            )]
        );
    }
}
