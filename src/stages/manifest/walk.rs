//! Walking a tree and hashing its files, in parallel on all cores: directories are read
//! concurrently (rayon work stealing over subdirectories), then every regular file whose
//! hash the cache does not have is hashed concurrently. Entries come out sorted by path bytes.
//!
//! A run over an unchanged tree is one `fstatat` per entry and nothing else per entry, so the
//! walk is built around that system call: each directory is opened once, its entries listed
//! with `getdents64` and stated relative to the open directory (no path lookup from the root),
//! no file is opened unless it must be hashed. Entries are sorted per directory and the
//! subtrees merged in path order (`merge`), which leaves no global sort to do.
//!
//! Problems inside the tree (a file that vanished, a directory we may not read) are
//! warnings: a live system changes while we look at it. Only an unreadable root is an error.
//!
//! Directories and files are opened by their path relative to the root's open descriptor
//! (`open_below`), never by a path from the working directory: holding every ancestor open
//! would take one descriptor per level, and trees can be 2000 levels deep. A path longer than
//! the kernel takes (PATH_MAX) is opened a piece at a time, so a tree of any depth is read
//! whole. A directory above an entry may have been swapped for a symlink since its parent
//! listed it: the path then leads out of the tree. Every opened directory and file is checked
//! to be the one listed (`Identity`) before it is read; one that is not is skipped with a
//! warning.

use std::ffi::{CStr, OsStr};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};
use rayon::prelude::*;

use super::cache::{Cache, Stat};
use super::format::{Entry, FileType, Manifest};
use crate::patterns::Matcher;

/// Files at least this big are hashed with memory maps over several threads (blake3's
/// `update_mmap_rayon`); smaller ones are read in one thread, which is faster for them.
const MMAP_THRESHOLD: u64 = 4 << 20;
/// Warnings kept in the outcome; the rest are only counted (a tree can hold millions).
const MAX_WARNINGS: usize = 20;
/// The longest path the kernel resolves in one call, its terminating NUL included
/// (`ENAMETOOLONG` beyond).
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// What a walk skips.
#[derive(Debug, Default)]
pub struct WalkOptions {
    pub excludes: Matcher,
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

/// The result of scanning one tree: its entries in path order, kept in the runs the walk
/// produced them in (gathering 100 000s of entries into one vector would copy them all once
/// more, for nothing when they are only encoded).
pub struct Scan {
    root: PathBuf,
    chunks: Chunks,
    pub warnings: Vec<String>,
    pub problems: u64,
}

impl Scan {
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in path order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten().map(|found| &found.entry)
    }

    /// Stat and hash of every file the next run may take from the cache, in path order.
    pub fn cache_records(&self) -> impl Iterator<Item = (&Stat, &[u8; 32])> {
        self.chunks
            .iter()
            .flatten()
            .filter_map(|found| Some((found.stat.as_ref()?, found.entry.hash.as_ref()?)))
    }

    /// The manifest's bytes ([`super::format`]).
    pub fn encode(&self) -> Vec<u8> {
        super::format::encode(&self.root, self.len(), self.entries())
    }

    /// The entries as a manifest, leaving the scan empty.
    pub fn take_manifest(&mut self) -> Manifest {
        let mut entries = Vec::with_capacity(self.len());
        entries.extend(
            std::mem::take(&mut self.chunks)
                .into_iter()
                .flatten()
                .map(|found| found.entry),
        );
        Manifest {
            root: self.root.clone(),
            entries,
        }
    }
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

/// One entry while scanning: the manifest entry and, for a regular file, what the cache keys
/// on (`None` once the file turned out unreadable or changing while read: not to be cached).
struct Found {
    entry: Entry,
    stat: Option<Stat>,
    /// What it was when listed (`one_file_system` compares a directory's device with the
    /// root's; a directory opened to be read must still be this one).
    id: Identity,
}

/// An entry's device and inode. A descriptor opened by path whose identity is the one stated
/// through the parent's open directory is that entry, not something a symlink swapped in
/// above it leads to: directories cannot be hard-linked, and a file hard-linked elsewhere
/// holds the bytes it holds here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    fn of(stat: &FileStat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

/// Checks that `fd`, just opened by path, is the entry listed as `listed`; the descriptor's
/// status when it is.
fn check_opened(fd: BorrowedFd<'_>, listed: Identity) -> std::io::Result<FileStat> {
    let stat = nix::sys::stat::fstat(fd)?;
    if Identity::of(&stat) != listed {
        return Err(std::io::Error::other(
            "not the entry listed (it or a directory above it was replaced meanwhile, \
             perhaps by a symlink): skipped",
        ));
    }
    Ok(stat)
}

/// A subtree's entries in path order, as runs that are concatenated once at the end (moving
/// entries up the tree level by level would copy each of them once per level).
type Chunks = Vec<Vec<Found>>;

struct Walker<'a> {
    /// The root as given (for messages and excludes) and opened: every entry is opened
    /// relative to `root_fd`, whatever the working directory or the depth.
    root: &'a Path,
    root_fd: BorrowedFd<'a>,
    options: &'a WalkOptions,
    counters: &'a Counters,
    root_dev: u64,
    warnings: Mutex<(Vec<String>, u64)>,
    /// Called with a directory's path relative to the root once it is listed (tests swap
    /// directories there).
    #[cfg(test)]
    listed: Option<&'a ListedHook<'a>>,
}

#[cfg(test)]
type ListedHook<'a> = dyn Fn(&[u8]) + Sync + 'a;

impl Walker<'_> {
    fn warn(&self, text: String) {
        let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if warnings.0.len() < MAX_WARNINGS {
            tracing::warn!("{text}");
            warnings.0.push(text);
        }
        warnings.1 += 1;
    }

    /// Reads one directory and, in parallel, its subdirectories: the whole subtree below
    /// `dir` (not `dir` itself) in path order. `rel` is `dir` relative to the root, `listed`
    /// what `dir` was when its parent was read (`None` for the root).
    fn walk_dir(&self, dir: &Path, rel: &[u8], listed: Option<Identity>) -> Chunks {
        if crate::signals::stopped() {
            return Vec::new();
        }
        let mut found = self.read_dir(dir, rel, listed);
        #[cfg(test)]
        if let Some(listed) = &self.listed {
            listed(rel);
        }
        // Every path here starts with `rel/`: compare the names only.
        let prefix = if rel.is_empty() { 0 } else { rel.len() + 1 };
        found.sort_unstable_by(|a, b| a.entry.path[prefix..].cmp(&b.entry.path[prefix..]));
        let mut subdirs: Vec<usize> = (0..found.len())
            .filter(|&i| found[i].entry.file_type == FileType::Dir)
            .filter(|&i| !self.options.one_file_system || found[i].id.dev == self.root_dev)
            .collect();
        // A subtree's paths are `name/…`: it sorts as `name/` among its siblings.
        subdirs.sort_unstable_by(|&a, &b| {
            subtree_key(&found[a].entry.path[prefix..])
                .cmp(subtree_key(&found[b].entry.path[prefix..]))
        });
        let nested: Vec<(usize, Chunks)> = subdirs
            .par_iter()
            .map(|&i| {
                let name = OsStr::from_bytes(&found[i].entry.path[prefix..]);
                (
                    i,
                    self.walk_dir(&dir.join(name), &found[i].entry.path, Some(found[i].id)),
                )
            })
            .collect();
        merge(found, nested, prefix)
    }

    /// This directory's entries, each stated through the open directory; none when `dir` is
    /// not (any more) the directory `listed` (`None`: the root, not checked).
    fn read_dir(&self, dir: &Path, rel: &[u8], listed: Option<Identity>) -> Vec<Found> {
        // A directory swapped for a symlink since we stated it is not followed (the root,
        // opened by [`scan`], is: a source may be a symlink to the tree).
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        // Two descriptors of the one open directory: the stream iterates over one (borrowing
        // it mutably) while each entry is stated through the other.
        // O_NOFOLLOW guards the last component only: a directory above it swapped for a
        // symlink leads elsewhere, which the identity check catches. The root is the source
        // as configured, whatever it leads to (and an automount point, as the source, is
        // stated unmounted and opened mounted).
        let opened = (|| -> std::io::Result<_> {
            let fd = match listed {
                None => self.root_fd.try_clone_to_owned()?,
                Some(listed) => {
                    let fd = open_below(self.root_fd, rel, flags)?;
                    check_opened(fd.as_fd(), listed)?;
                    fd
                }
            };
            Ok((Dir::from_fd(fd.try_clone()?)?, fd))
        })();
        let (mut listing, fd) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                self.warn(format!("cannot read directory {}: {error}", dir.display()));
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        let (mut files, mut bytes) = (0u64, 0u64);
        for item in listing.iter() {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    self.warn(format!(
                        "cannot read directory {}: {}",
                        dir.display(),
                        std::io::Error::from(error)
                    ));
                    break;
                }
            };
            let name = item.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            // Only directories (or what may be one) can be our own output or cache.
            let may_skip = item.file_type() != Some(Type::File) && !self.options.skip.is_empty();
            if (may_skip || !self.options.excludes.is_empty()) && self.left_out(dir, name) {
                continue;
            }
            let stat = match nix::sys::stat::fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Vanished between readdir and lstat: it is not part of the tree any more.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(error) => {
                    self.warn(format!(
                        "cannot stat {}: {}",
                        dir.join(OsStr::from_bytes(name.to_bytes())).display(),
                        std::io::Error::from(error)
                    ));
                    continue;
                }
            };
            let mut path = Vec::with_capacity(rel.len() + 1 + name.to_bytes().len());
            if !rel.is_empty() {
                path.extend_from_slice(rel);
                path.push(b'/');
            }
            path.extend_from_slice(name.to_bytes());
            let child = self.found(dir, path, &stat, || {
                nix::fcntl::readlinkat(&fd, name).map_err(std::io::Error::from)
            });
            if child.stat.is_some() {
                files += 1;
                bytes += child.entry.size;
            }
            found.push(child);
        }
        self.counters
            .entries
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        self.counters.files.fetch_add(files, Ordering::Relaxed);
        self.counters
            .bytes_total
            .fetch_add(bytes, Ordering::Relaxed);
        found
    }

    /// Whether the entry `name` of `dir` is excluded or one of our own directories.
    fn left_out(&self, dir: &Path, name: &CStr) -> bool {
        let path = dir.join(OsStr::from_bytes(name.to_bytes()));
        self.options.skip.contains(&path) || self.options.excludes.is_excluded(&path, false)
    }

    /// The entry for `stat`, found in `dir`; `read_link` gives a symlink's target.
    fn found(
        &self,
        dir: &Path,
        path: Vec<u8>,
        stat: &FileStat,
        read_link: impl FnOnce() -> std::io::Result<std::ffi::OsString>,
    ) -> Found {
        let file_type = FileType::from_mode(stat.st_mode);
        let mut entry = Entry {
            path,
            file_type,
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            // A directory's st_size depends on the filesystem, not on what it holds.
            size: if file_type == FileType::Dir {
                0
            } else {
                stat.st_size as u64
            },
            mtime: stat.st_mtime,
            mtime_nsec: stat.st_mtime_nsec as u32,
            target: None,
            rdev: None,
            hash: None,
        };
        let mut key = None;
        match file_type {
            FileType::Symlink => match read_link() {
                Ok(target) => entry.target = Some(target.into_vec()),
                Err(error) => {
                    self.warn(format!(
                        "cannot read symlink {}: {error}",
                        dir.join(entry.rel_path().file_name().unwrap_or_default())
                            .display()
                    ));
                    entry.target = Some(Vec::new());
                }
            },
            FileType::CharDevice | FileType::BlockDevice => entry.rdev = Some(stat.st_rdev),
            FileType::File => key = Some(stat_of(stat)),
            _ => {}
        }
        Found {
            entry,
            stat: key,
            id: Identity::of(stat),
        }
    }

    /// Hashes one file; `None` (with a warning) when it cannot be read, `Some((hash, stable))`
    /// otherwise, where `stable` says the file did not change while it was read.
    /// `rel` is the file's path relative to the root.
    fn hash_file(&self, rel: &[u8], stat: &Stat) -> Option<([u8; 32], bool)> {
        let result = (|| -> std::io::Result<([u8; 32], bool)> {
            // Not through a symlink put in the file's place since it was stated, nor (the
            // check) one put in place of a directory above it. O_NONBLOCK: a FIFO swapped in
            // would block the open before the check could turn it down; it does nothing to
            // reads of a regular file.
            let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
            let mut file = std::fs::File::from(open_below(self.root_fd, rel, flags)?);
            check_opened(
                file.as_fd(),
                Identity {
                    dev: stat.dev,
                    ino: stat.ino,
                },
            )?;
            let mut hasher = blake3::Hasher::new();
            if stat.size >= MMAP_THRESHOLD {
                // The file just opened, not its path once more (`update_mmap_rayon`): a file
                // renamed into its place meanwhile would be hashed, while the fstat below
                // vouches for this one, and its hash cached under this one's key.
                // SAFETY: the map is only read; a file truncated while mapped may raise
                // SIGBUS, as with any mmap reader (blake3's own included).
                let map = unsafe { memmap2::Mmap::map(&file)? };
                hasher.update_rayon(&map);
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
            let after = stat_of(&nix::sys::stat::fstat(file.as_fd())?);
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
                self.warn(format!(
                    "cannot read {}: {error}",
                    self.root.join(OsStr::from_bytes(rel)).display()
                ));
                None
            }
        }
    }
}

/// Opens `rel`, a path below the directory `base` (`/`-separated names, no `.` or `..`), with
/// `flags`. A path too long for one call is opened a piece at a time: each piece as long as
/// the kernel takes, ending at a `/`, opened as a directory relative to the previous one
/// (O_NOFOLLOW, like the last component; the caller's identity check covers the rest).
/// Within PATH_MAX, as nearly every path is, this is the one `openat`.
fn open_below(base: BorrowedFd<'_>, rel: &[u8], flags: OFlag) -> std::io::Result<OwnedFd> {
    let mut held: Option<OwnedFd> = None;
    let mut rest = rel;
    while rest.len() >= PATH_MAX {
        // Names are at most 255 bytes: a piece of PATH_MAX bytes holds a `/`.
        let cut = rest[..PATH_MAX]
            .iter()
            .rposition(|&b| b == b'/')
            .ok_or(nix::errno::Errno::ENAMETOOLONG)?;
        let dir = held.as_ref().map_or(base, |fd| fd.as_fd());
        let next = nix::fcntl::openat(
            dir,
            &rest[..cut],
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        held = Some(next);
        rest = &rest[cut + 1..];
    }
    let dir = held.as_ref().map_or(base, |fd| fd.as_fd());
    Ok(nix::fcntl::openat(dir, rest, flags, Mode::empty())?)
}

/// What a subtree sorts as among its siblings: its directory's name followed by `/`.
fn subtree_key(name: &[u8]) -> impl Iterator<Item = &u8> + Clone {
    name.iter().chain(b"/")
}

/// One directory's entries (sorted by name) and its subdirectories' subtrees (sorted by
/// [`subtree_key`]) in path order: a subtree goes before the first entry whose name sorts
/// after `name/`. Names of `-` or `.` sort between a directory and its contents
/// (`a`, `a-b`, `a.c`, `a/x`), so a subtree need not follow its directory's entry.
fn merge(found: Vec<Found>, nested: Vec<(usize, Chunks)>, prefix: usize) -> Chunks {
    if nested.iter().all(|(_, chunks)| chunks.is_empty()) {
        return vec![found];
    }
    let names: Vec<Vec<u8>> = nested
        .iter()
        .map(|(i, _)| found[*i].entry.path[prefix..].to_vec())
        .collect();
    let mut subtrees = names
        .into_iter()
        .zip(nested.into_iter().map(|(_, chunks)| chunks))
        .peekable();
    let mut out = Vec::new();
    let mut run = Vec::with_capacity(found.len());
    for item in found {
        let name = &item.entry.path[prefix..];
        while let Some((_, chunks)) = subtrees.next_if(|(dir, _)| subtree_key(dir).lt(name.iter()))
        {
            if !run.is_empty() {
                out.push(std::mem::take(&mut run));
            }
            out.extend(chunks);
        }
        run.push(item);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out.extend(subtrees.flat_map(|(_, chunks)| chunks));
    out
}

/// What the cache keys on, from a file's status.
pub fn stat_of(stat: &FileStat) -> Stat {
    Stat {
        dev: stat.st_dev,
        ino: stat.st_ino,
        size: stat.st_size as u64,
        mtime: stat.st_mtime,
        mtime_nsec: stat.st_mtime_nsec as u32,
        ctime: stat.st_ctime,
        ctime_nsec: stat.st_ctime_nsec as u32,
    }
}

/// Scans `root`: every entry below it (not following symlinks), hashes of regular files
/// (from the cache where unchanged), sorted by path. `cache` is asked for the cache once the
/// walk is done, so that it can be read meanwhile.
pub fn scan<'c>(
    root: &Path,
    options: &WalkOptions,
    cache: impl FnOnce() -> &'c Cache,
    counters: &Counters,
) -> Result<Scan, WalkError> {
    let metadata = nix::sys::stat::stat(root).map_err(|error| WalkError::Root {
        path: root.to_path_buf(),
        source: error.into(),
    })?;
    if FileType::from_mode(metadata.st_mode) != FileType::Dir {
        return Err(WalkError::NotADirectory(root.to_path_buf()));
    }
    // Deep trees recurse deeply: give the workers room (paths can be 2000 levels deep).
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(64 << 20)
        .thread_name(|i| format!("manifest-{i}"))
        .build()
        .expect("a thread pool");
    // Opened once: every entry is opened relative to it, never by a path from the working
    // directory (which a deep tree's paths outgrow).
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|error| WalkError::Root {
        path: root.to_path_buf(),
        source: error.into(),
    })?;
    let walker = Walker {
        root,
        root_fd: root_fd.as_fd(),
        options,
        counters,
        root_dev: metadata.st_dev,
        warnings: Mutex::new((Vec::new(), 0)),
        #[cfg(test)]
        listed: None,
    };
    let mut chunks = pool.install(|| walker.walk_dir(root, b"", None));
    if crate::signals::stopped() {
        return Err(WalkError::Interrupted);
    }
    // The root entry is a directory: its st_size is not recorded, like any directory's.
    let root_entry = walker.found(root, Vec::new(), &metadata, || unreachable!("a directory"));
    counters.entries.fetch_add(1, Ordering::Relaxed);
    chunks.insert(0, vec![root_entry]);

    // The cache is in path order, like the walk: one pass, mostly sequential reads.
    let cache = cache();
    let mut lookup = cache.lookup();
    let mut bytes_cached = 0;
    for found in chunks.iter_mut().flatten() {
        if let Some(stat) = &found.stat
            && let Some(hash) = lookup.get(stat)
        {
            found.entry.hash = Some(hash);
            bytes_cached += stat.size;
        }
    }
    counters
        .bytes_done
        .fetch_add(bytes_cached, Ordering::Relaxed);

    pool.install(|| {
        chunks
            .par_iter_mut()
            .flat_map(|chunk| chunk.par_iter_mut())
            .for_each(|found| {
                let Some(stat) = found.stat else { return };
                if found.entry.hash.is_some() || crate::signals::stopped() {
                    return;
                }
                // Unreadable: recorded with an all-zero hash, never cached.
                let (hash, cacheable) = walker
                    .hash_file(&found.entry.path, &stat)
                    .unwrap_or_default();
                counters.bytes_done.fetch_add(stat.size, Ordering::Relaxed);
                found.entry.hash = Some(hash);
                if !cacheable {
                    found.stat = None;
                }
            })
    });
    if crate::signals::stopped() {
        return Err(WalkError::Interrupted);
    }
    let (warnings, problems) = walker
        .warnings
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(Scan {
        root: root.to_path_buf(),
        chunks,
        warnings,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtrees_merge_in_path_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        // `-` and `.` sort before `/`, so `a-b` and `a.c` come between `a` and `a/x`.
        for path in ["a/x", "a/y/z", "a-b", "a.c", "b/c", "b0", "c"] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, path.as_os_str().as_bytes()).unwrap();
        }
        std::fs::create_dir(dir.path().join("a/empty")).unwrap();
        let empty = Cache::default();
        let mut scan = scan(
            dir.path(),
            &WalkOptions::default(),
            || &empty,
            &Counters::default(),
        )
        .unwrap();
        let encoded = scan.encode();
        let manifest = scan.take_manifest();
        assert_eq!(manifest.encode(), encoded);
        let paths: Vec<&[u8]> = manifest.entries.iter().map(|e| e.path.as_slice()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(paths.len(), 12, "{paths:?}");
        assert!(manifest.entries.iter().all(|e| {
            (e.file_type == FileType::File) == (e.hash.is_some() && e.hash != Some([0; 32]))
        }));
    }

    #[test]
    fn cache_serves_unchanged_files_and_never_a_rewritten_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        for name in ["a", "b", "c"] {
            std::fs::write(dir.path().join(name), name.repeat(100)).unwrap();
            let file = std::fs::File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        let run = |cache: &Cache| {
            let counters = Counters::default();
            let scan = scan(dir.path(), &WalkOptions::default(), || cache, &counters).unwrap();
            let hashed = counters.files_hashed.load(Ordering::Relaxed);
            (scan, hashed)
        };
        // Written a while after the files' ctime, so none of them is racy.
        let later = jiff::Timestamp::now().as_second() + 10;
        let (first, hashed) = run(&Cache::default());
        assert_eq!(hashed, 3);
        let cache = Cache::from_bytes(super::super::cache::encode(first.cache_records(), later));
        let (second, hashed) = run(&cache);
        assert_eq!(hashed, 0, "an unchanged tree is read from the cache");
        assert_eq!(second.encode(), first.encode());
        assert!(cache.is_encoding_of(second.cache_records(), later));

        // Same size, same mtime, different bytes: only the ctime tells.
        std::fs::write(dir.path().join("b"), "B".repeat(100)).unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("b"))
            .unwrap();
        file.set_modified(old).unwrap();
        let (third, hashed) = run(&cache);
        assert_eq!(hashed, 1);
        assert_ne!(third.encode(), first.encode());
        assert_eq!(
            third.entries().find(|e| e.path == b"b").unwrap().hash,
            Some(*blake3::hash("B".repeat(100).as_bytes()).as_bytes())
        );
    }

    #[test]
    fn big_files_are_hashed_through_a_map_of_the_opened_file() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..MMAP_THRESHOLD + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("big"), &data).unwrap();
        let empty = Cache::default();
        let scan = scan(
            dir.path(),
            &WalkOptions::default(),
            || &empty,
            &Counters::default(),
        )
        .unwrap();
        let big = scan.entries().find(|e| e.path == b"big").unwrap();
        assert_eq!(big.hash, Some(*blake3::hash(&data).as_bytes()));
    }

    fn open_dir(path: &Path) -> OwnedFd {
        nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    /// A tree `src/a/b/mine` and, outside it, `outside/b/secret`.
    fn tree_and_outside() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, data) in [("src/a/b/mine", "mine"), ("outside/b/secret", "secret")] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, data).unwrap();
        }
        dir
    }

    /// Moves `src/a` away and puts a symlink to `outside` in its place: `src/a/b` now leads
    /// to `outside/b`.
    fn swap_for_symlink(dir: &Path) {
        std::fs::rename(dir.join("src/a"), dir.join("src/moved")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), dir.join("src/a")).unwrap();
    }

    #[test]
    fn a_directory_above_swapped_for_a_symlink_is_not_descended_into() {
        let dir = tree_and_outside();
        let root = dir.path().join("src");
        let metadata = nix::sys::stat::stat(&root).unwrap();
        let options = WalkOptions::default();
        let counters = Counters::default();
        // `a` is listed (with `b` in it, stated through `a`'s descriptor), then swapped
        // before `a/b` is opened by its path.
        let root_fd = open_dir(&root);
        let walker = Walker {
            root: &root,
            root_fd: root_fd.as_fd(),
            options: &options,
            counters: &counters,
            root_dev: metadata.st_dev,
            warnings: Mutex::new((Vec::new(), 0)),
            listed: Some(&|rel: &[u8]| {
                if rel == b"a" {
                    swap_for_symlink(dir.path());
                }
            }),
        };
        let chunks = walker.walk_dir(&root, b"", None);
        let paths: Vec<&[u8]> = chunks.iter().flatten().map(|f| &f.entry.path[..]).collect();
        assert_eq!(paths, [&b"a"[..], b"a/b"], "nothing from outside the tree");
        let (warnings, problems) = walker.warnings.into_inner().unwrap();
        assert_eq!(problems, 1);
        assert!(
            warnings[0].starts_with(&format!(
                "cannot read directory {}: not the entry listed",
                root.join("a/b").display()
            )),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_file_under_a_directory_swapped_for_a_symlink_is_not_hashed() {
        let dir = tree_and_outside();
        let mine = dir.path().join("src/a/b/mine");
        let listed = stat_of(&nix::sys::stat::lstat(&mine).unwrap());
        let options = WalkOptions::default();
        let counters = Counters::default();
        let root = dir.path().join("src");
        let root_fd = open_dir(&root);
        let walker = Walker {
            root: &root,
            root_fd: root_fd.as_fd(),
            options: &options,
            counters: &counters,
            root_dev: listed.dev,
            warnings: Mutex::new((Vec::new(), 0)),
            listed: None,
        };
        assert!(walker.hash_file(b"a/b/mine", &listed).is_some());
        // `src/a/b/mine` now opens `outside/b/mine`: another file, of the same size.
        std::fs::write(dir.path().join("outside/b/mine"), "MINE").unwrap();
        swap_for_symlink(dir.path());
        assert_eq!(walker.hash_file(b"a/b/mine", &listed), None);
        let (warnings, problems) = walker.warnings.into_inner().unwrap();
        assert_eq!(problems, 1);
        assert!(
            warnings[0].starts_with(&format!("cannot read {}: not the entry", mine.display())),
            "{warnings:?}"
        );
    }

    /// Makes the directory `name` in `dir` and opens it.
    fn make_dir_at(dir: &OwnedFd, name: &[u8]) -> OwnedFd {
        nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)).unwrap();
        nix::fcntl::openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap()
    }

    /// Writes the file `name` in `dir`, holding its name.
    fn write_at(dir: &OwnedFd, name: &[u8]) {
        let fd = nix::fcntl::openat(
            dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::io::Write::write_all(&mut std::fs::File::from(fd), name).unwrap();
    }

    #[test]
    fn paths_around_and_past_path_max_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        // 15 levels of 255-byte names: 3839 bytes. Below them, paths of 4095 bytes (the
        // longest one call takes), 4096 and 4097 (opened in two pieces), and 8 KiB further.
        let mut bottom = open_dir(dir.path());
        for level in 0..15u8 {
            let name = [b'a' + level; 255];
            bottom = make_dir_at(&bottom, &name);
        }
        write_at(&bottom, &[b'f'; 255]);
        let shorter = make_dir_at(&bottom, &[b's'; 254]);
        write_at(&shorter, b"f");
        let mut longer = make_dir_at(&bottom, &[b't'; 255]);
        write_at(&longer, b"f");
        for level in 0..40u8 {
            longer = make_dir_at(&longer, &[b'A' + level; 200]);
        }
        write_at(&longer, b"deepest");
        let empty = Cache::default();
        let scan = scan(
            dir.path(),
            &WalkOptions::default(),
            || &empty,
            &Counters::default(),
        )
        .unwrap();
        assert_eq!((scan.problems, &scan.warnings[..]), (0, &[][..]));
        // The root, 15 levels, 4 files, 2 directories and 40 levels below one of them.
        assert_eq!(scan.len(), 1 + 15 + 4 + 2 + 40);
        let files: Vec<&Entry> = scan
            .entries()
            .filter(|e| e.file_type == FileType::File)
            .collect();
        let mut lengths: Vec<usize> = files.iter().map(|e| e.path.len()).collect();
        lengths.sort_unstable();
        assert_eq!(lengths, [4095, 4096, 4097, 4097 + 40 * 201 + 6]);
        for file in files {
            let name = file.path.rsplit(|&b| b == b'/').next().unwrap();
            assert_eq!(file.hash, Some(*blake3::hash(name).as_bytes()));
        }
    }

    #[test]
    fn one_file_system_stops_at_mount_points() {
        use std::os::unix::fs::MetadataExt;
        // /dev usually has filesystems mounted on it (pts, shm): a tree we need not build.
        let root = Path::new("/dev");
        let Ok(root_dev) = std::fs::metadata(root).map(|m| m.dev()) else {
            return;
        };
        let mounts: Vec<Vec<u8>> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.path()
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir() && m.dev() != root_dev)
            })
            .map(|e| e.file_name().as_bytes().to_vec())
            .collect();
        if mounts.is_empty() {
            return;
        }
        let empty = Cache::default();
        let paths = |one_file_system: bool| -> Vec<Vec<u8>> {
            let options = WalkOptions {
                one_file_system,
                ..WalkOptions::default()
            };
            let scan = scan(root, &options, || &empty, &Counters::default()).unwrap();
            scan.entries().map(|e| e.path.clone()).collect()
        };
        let inside = |paths: &[Vec<u8>], mount: &[u8]| {
            paths
                .iter()
                .any(|p| p.len() > mount.len() && p.starts_with(mount) && p[mount.len()] == b'/')
        };
        let confined = paths(true);
        let everything = paths(false);
        for mount in &mounts {
            assert!(confined.contains(mount), "the mount point itself is listed");
            assert!(!inside(&confined, mount), "nothing below a mount point");
        }
        assert!(mounts.iter().any(|mount| inside(&everything, mount)));
    }
}
