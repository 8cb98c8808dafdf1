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

use crate::stages::manifest::exclude::Excludes;

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

/// Every repository under `roots`, sorted by path; problems (unreadable directories) are
/// returned beside them.
pub fn find(roots: &[PathBuf], excludes: &Excludes) -> (Vec<Found>, Vec<String>) {
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

fn walk(dir: &Path, excludes: &Excludes, problems: &Mutex<Vec<String>>) -> Vec<Found> {
    if crate::signals::stopped() {
        return Vec::new();
    }
    // nix's directory stream hands out names and readdir's d_type without allocating: most
    // entries of a home directory are files we only pass over.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut listing = match Dir::open(dir, flags, Mode::empty()) {
        Ok(listing) => listing,
        Err(error) => {
            problems
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!(
                    "cannot read {}: {}",
                    dir.display(),
                    std::io::Error::from(error)
                ));
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    let mut subdirs = Vec::new();
    let mut has_head = false;
    for item in listing.iter().flatten() {
        let name = item.file_name().to_bytes();
        // d_type: no stat per entry, and symlinks stay links. A filesystem that leaves it
        // unknown gets a stat.
        let file_type = match item.file_type() {
            Some(file_type) => file_type,
            None => match nix::sys::stat::lstat(&dir.join(OsStr::from_bytes(name))) {
                Ok(stat) => match stat.st_mode & libc::S_IFMT {
                    libc::S_IFDIR => Type::Directory,
                    libc::S_IFREG => Type::File,
                    _ => Type::Symlink,
                },
                Err(_) => continue,
            },
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
                    if !excludes.is_excluded(&path) {
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
