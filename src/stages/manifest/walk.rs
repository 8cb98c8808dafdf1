//! Walking a tree and hashing its files, in parallel on all cores: directories are read
//! concurrently (rayon work stealing over subdirectories), then every regular file whose
//! hash the cache does not have is hashed concurrently. Entries come out sorted by path bytes.
//!
//! Problems inside the tree (a file that vanished, a directory we may not read) are
//! warnings: a live system changes while we look at it. Only an unreadable root is an error.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::cache::{Cache, Stat};
use super::exclude::Excludes;
use super::format::{Entry, FileType, Manifest};

/// Files at least this big are hashed with memory maps over several threads (blake3's
/// `update_mmap_rayon`); smaller ones are read in one thread, which is faster for them.
const MMAP_THRESHOLD: u64 = 4 << 20;
/// Warnings kept in the outcome; the rest are only counted (a tree can hold millions).
const MAX_WARNINGS: usize = 20;

/// What a walk skips.
#[derive(Debug, Default)]
pub struct WalkOptions {
    pub excludes: Excludes,
    /// Do not descend into directories on other filesystems.
    pub one_file_system: bool,
    /// Absolute paths never entered (our own output and cache, when inside a source).
    pub skip: Vec<PathBuf>,
}

/// Live counters, read by the progress reporter while the walk runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub entries: AtomicU64,
    pub files: AtomicU64,
    pub files_hashed: AtomicU64,
    pub bytes_hashed: AtomicU64,
    /// Bytes of all regular files found so far (the total to hash on a first run).
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
}

/// The result of scanning one tree.
#[derive(Debug)]
pub struct Scan {
    pub manifest: Manifest,
    /// Stat and hash of every regular file, for the next run's cache.
    pub cache_records: Vec<(Stat, [u8; 32])>,
    pub warnings: Vec<String>,
    pub problems: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read {}: {source}", .path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("stopped by a signal")]
    Interrupted,
}

/// One entry while scanning: the manifest entry and, for files, what the cache keys on.
struct Found {
    entry: Entry,
    stat: Option<Stat>,
}

struct Walker<'a> {
    options: &'a WalkOptions,
    counters: &'a Counters,
    root_dev: u64,
    warnings: Mutex<(Vec<String>, u64)>,
}

impl Walker<'_> {
    fn warn(&self, text: String) {
        let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if warnings.0.len() < MAX_WARNINGS {
            tracing::warn!("{text}");
            warnings.0.push(text);
        }
        warnings.1 += 1;
    }

    /// Reads one directory and, in parallel, its subdirectories.
    fn walk_dir(&self, dir: &Path, rel: &[u8]) -> Vec<Found> {
        if crate::signals::stopped() {
            return Vec::new();
        }
        let reader = match std::fs::read_dir(dir) {
            Ok(reader) => reader,
            Err(error) => {
                self.warn(format!("cannot read directory {}: {error}", dir.display()));
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        let mut subdirs = Vec::new();
        for item in reader {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    self.warn(format!("cannot read directory {}: {error}", dir.display()));
                    break;
                }
            };
            let name = item.file_name();
            let path = item.path();
            if self.options.skip.contains(&path) || self.options.excludes.is_excluded(&path) {
                continue;
            }
            // fstatat() on the open directory: no path lookup from the root for every entry.
            let metadata = match item.metadata() {
                Ok(metadata) => metadata,
                // Vanished between readdir and lstat: it is not part of the tree any more.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    self.warn(format!("cannot stat {}: {error}", path.display()));
                    continue;
                }
            };
            let mut child_rel = Vec::with_capacity(rel.len() + 1 + name.len());
            if !rel.is_empty() {
                child_rel.extend_from_slice(rel);
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(name.as_bytes());
            let child = self.found(&path, child_rel, &metadata);
            if child.entry.file_type == FileType::Dir
                && (!self.options.one_file_system || metadata.dev() == self.root_dev)
            {
                subdirs.push((path, child.entry.path.clone()));
            }
            found.push(child);
        }
        let nested: Vec<Vec<Found>> = subdirs
            .par_iter()
            .map(|(path, rel)| self.walk_dir(path, rel))
            .collect();
        found.extend(nested.into_iter().flatten());
        found
    }

    fn found(&self, path: &Path, rel: Vec<u8>, metadata: &Metadata) -> Found {
        let file_type = FileType::from_mode(metadata.mode());
        self.counters.entries.fetch_add(1, Ordering::Relaxed);
        let mut entry = Entry {
            path: rel,
            file_type,
            mode: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
            // A directory's st_size depends on the filesystem, not on what it holds.
            size: if file_type == FileType::Dir {
                0
            } else {
                metadata.size()
            },
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec() as u32,
            target: None,
            rdev: None,
            hash: None,
        };
        let mut stat = None;
        match file_type {
            FileType::Symlink => match std::fs::read_link(path) {
                Ok(target) => entry.target = Some(target.into_os_string().into_vec()),
                Err(error) => {
                    self.warn(format!("cannot read symlink {}: {error}", path.display()));
                    entry.target = Some(Vec::new());
                }
            },
            FileType::CharDevice | FileType::BlockDevice => entry.rdev = Some(metadata.rdev()),
            FileType::File => {
                self.counters.files.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_total
                    .fetch_add(metadata.size(), Ordering::Relaxed);
                stat = Some(stat_of(metadata));
            }
            _ => {}
        }
        Found { entry, stat }
    }

    /// Hashes one file; `None` (with a warning) when it cannot be read, `Some((hash, stable))`
    /// otherwise, where `stable` says the file did not change while it was read.
    fn hash_file(&self, path: &Path, stat: &Stat) -> Option<([u8; 32], bool)> {
        let result = (|| -> std::io::Result<([u8; 32], bool)> {
            let mut file = std::fs::File::open(path)?;
            let mut hasher = blake3::Hasher::new();
            if stat.size >= MMAP_THRESHOLD {
                hasher.update_mmap_rayon(path)?;
            } else {
                // One read for most small files; `update_reader` would add a 64 KiB memset.
                let mut buffer = [0u8; 64 * 1024];
                loop {
                    match file.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => {
                            hasher.update(&buffer[..n]);
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(error),
                    }
                }
            }
            let after = stat_of(&file.metadata()?);
            Ok((*hasher.finalize().as_bytes(), after == *stat))
        })();
        match result {
            Ok(done) => {
                self.counters.files_hashed.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_hashed
                    .fetch_add(stat.size, Ordering::Relaxed);
                Some(done)
            }
            Err(error) => {
                self.warn(format!("cannot read {}: {error}", path.display()));
                None
            }
        }
    }
}

/// What the cache keys on, from a file's metadata.
pub fn stat_of(metadata: &Metadata) -> Stat {
    Stat {
        dev: metadata.dev(),
        ino: metadata.ino(),
        size: metadata.size(),
        mtime: metadata.mtime(),
        mtime_nsec: metadata.mtime_nsec() as u32,
        ctime: metadata.ctime(),
        ctime_nsec: metadata.ctime_nsec() as u32,
    }
}

/// Scans `root`: every entry below it (not following symlinks), hashes of regular files
/// (from `cache` where unchanged), sorted by path.
pub fn scan(
    root: &Path,
    options: &WalkOptions,
    cache: &Cache,
    counters: &Counters,
) -> Result<Scan, WalkError> {
    let metadata = std::fs::metadata(root).map_err(|source| WalkError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(WalkError::NotADirectory(root.to_path_buf()));
    }
    // Deep trees recurse deeply: give the workers room (paths can be 2000 levels deep).
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(64 << 20)
        .thread_name(|i| format!("manifest-{i}"))
        .build()
        .expect("a thread pool");
    let walker = Walker {
        options,
        counters,
        root_dev: metadata.dev(),
        warnings: Mutex::new((Vec::new(), 0)),
    };
    let mut found = pool.install(|| {
        let mut found = vec![walker.found(root, Vec::new(), &metadata)];
        // The root entry is a directory: its st_size is not recorded, like any directory's.
        found.extend(walker.walk_dir(root, b""));
        found
    });
    if crate::signals::stopped() {
        return Err(WalkError::Interrupted);
    }
    found.par_sort_unstable_by(|a, b| a.entry.path.cmp(&b.entry.path));

    let cache_records: Vec<(Stat, [u8; 32])> = pool.install(|| {
        found
            .par_iter_mut()
            .filter_map(|item| {
                let stat = item.stat?;
                if crate::signals::stopped() {
                    return None;
                }
                let (hash, cacheable) = match cache.get(&stat) {
                    Some(hash) => (hash, true),
                    None => {
                        let path = root.join(OsStr::from_bytes(&item.entry.path));
                        // Unreadable: recorded with an all-zero hash, never cached.
                        walker.hash_file(&path, &stat).unwrap_or_default()
                    }
                };
                counters.bytes_done.fetch_add(stat.size, Ordering::Relaxed);
                item.entry.hash = Some(hash);
                cacheable.then_some((stat, hash))
            })
            .collect()
    });
    if crate::signals::stopped() {
        return Err(WalkError::Interrupted);
    }
    let (warnings, problems) = walker
        .warnings
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(Scan {
        manifest: Manifest {
            root: root.to_path_buf(),
            entries: found.into_iter().map(|item| item.entry).collect(),
        },
        cache_records,
        warnings,
        problems,
    })
}
