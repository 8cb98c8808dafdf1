//! Finding git repositories under a root, in parallel over subdirectories, without ever
//! descending into a `.git` directory or a bare repository: a directory holding `.git` (a
//! directory: an ordinary repository; a file: a submodule or linked worktree) is a
//! repository, and so is a directory that looks like a git dir itself (bare). The walk goes
//! on below a worktree, where nested repositories and submodules live.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    let reader = match std::fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(error) => {
            problems
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("cannot read {}: {error}", dir.display()));
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    let mut subdirs = Vec::new();
    for item in reader.flatten() {
        // `file_type` comes from readdir's d_type: no stat per entry, and symlinks stay links.
        let Ok(file_type) = item.file_type() else {
            continue;
        };
        let path = item.path();
        if item.file_name() == ".git" {
            if file_type.is_dir() {
                found.push(Found {
                    path: dir.to_path_buf(),
                    layout: Layout::Worktree,
                });
            } else if file_type.is_file() {
                found.push(Found {
                    path: dir.to_path_buf(),
                    layout: Layout::Gitlink,
                });
            }
            continue;
        }
        if file_type.is_dir() && !excludes.is_excluded(&path) {
            subdirs.push(path);
        }
    }
    let nested: Vec<Vec<Found>> = subdirs
        .par_iter()
        .map(|sub| {
            if is_git_dir(sub) {
                vec![Found {
                    path: sub.clone(),
                    layout: Layout::Bare,
                }]
            } else {
                walk(sub, excludes, problems)
            }
        })
        .collect();
    found.extend(nested.into_iter().flatten());
    found
}
