//! Where things live, per scope: config, state (run records, caches), generated units; and
//! how a file there is replaced whole.

use std::path::{Path, PathBuf};

/// Whether units run under the system manager (root backups) or a user's manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
}

pub fn xdg_config_home() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// Where user scope keeps its state, below the home directory (see [`state_dir`]); the
/// generator writes the same path into the user units.
pub const USER_STATE_DIR: &str = ".local/state/backupctl";

/// The state directory (run records, stage locks, manifests): `$STATE_DIRECTORY` when systemd
/// made it (`StateDirectory=backupctl`, or the user units' `Environment=`), else
/// `/var/lib/backupctl`, or `~/.local/state/backupctl` in user scope.
///
/// User scope does not follow `$XDG_STATE_HOME`: the user units cannot (systemd 252 maps a
/// user unit's `StateDirectory=` to ~/.config, so the generator names `%h/.local/state`), and
/// `run --here`, `status` and the notifier must find the units' run records and share their
/// stage locks whatever a shell has set.
pub fn state_dir(scope: Scope) -> PathBuf {
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured; ours is first.
        if let Some(first) = dirs.to_string_lossy().split(':').next()
            && !first.is_empty()
        {
            return PathBuf::from(first);
        }
    }
    match scope {
        Scope::System => PathBuf::from("/var/lib/backupctl"),
        Scope::User => home().join(USER_STATE_DIR),
    }
}

/// The cache directory (`CacheDirectory=backupctl`): restic's cache and the like.
pub fn cache_dir(scope: Scope) -> PathBuf {
    if let Some(dirs) = std::env::var_os("CACHE_DIRECTORY")
        && let Some(first) = dirs.to_string_lossy().split(':').next()
        && !first.is_empty()
    {
        return PathBuf::from(first);
    }
    match scope {
        Scope::System => PathBuf::from("/var/cache/backupctl"),
        Scope::User => xdg("XDG_CACHE_HOME", ".cache").join("backupctl"),
    }
}

/// Where `generate` writes units when no `--output` is given.
pub fn unit_dir(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/etc/systemd/system"),
        Scope::User => xdg_config_home().join("systemd/user"),
    }
}

/// Whether [`write_atomically`] flushes the data to disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Records that must survive a crash (run records, the metrics file): a rename that
    /// reaches the disk before the data would leave an empty file after a power loss.
    Yes,
    /// Files that are rewritten on the next run anyway, or live on a tmpfs.
    No,
}

/// Writes `data` to a temporary file beside `path` (same filesystem, so the rename is
/// atomic) and renames it over `path`: a reader never sees half a file, and concurrent
/// writers (parallel stages) leave one of their files whole. The temporary name
/// `.NAME.PID.tmp` carries our pid, so writers never share one, and is hidden and ends in
/// `.tmp`, so collectors that read `*.prom` or list a directory skip it. With `mode`, the
/// file gets exactly that mode (not narrowed by the umask). Removed again on failure.
pub fn write_atomically(
    path: &Path,
    data: &[u8],
    fsync: Fsync,
    mode: Option<u32>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.join(name);
    let result = (|| {
        // 0644 at most, whatever the umask: no other user may change what readers see.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary)?;
        if let Some(mode) = mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(data)?;
        if fsync == Fsync::Yes {
            file.sync_all()?;
        }
        std::fs::rename(&temporary, path)?;
        if fsync == Fsync::Yes {
            // The rename is in the directory: without its fsync a power cut can bring back
            // the old file (or none) although the new one's data is on disk.
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Takes an exclusive `flock` on the lock file `path` (created 0644 if missing), waiting at
/// most `wait` for its holder. For writers that take milliseconds: a holder stuck longer
/// (a hung filesystem, a stopped process) must not hold the caller, so past the wait the
/// error is `TimedOut` and the caller skips or fails its write. Polled rather than a
/// blocking `flock`: our signal handlers restart the call, so it could not be interrupted.
pub fn lock_exclusive_within(
    path: &Path,
    wait: std::time::Duration,
) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + wait;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = back;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "another writer held {} for {}s",
                        path.display(),
                        wait.as_secs_f64()
                    ),
                ));
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
}

/// Removes a file and flushes its directory, so that a power cut cannot bring it back; a
/// file that is already gone is no error.
pub fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("/"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Flushes a directory's entries (a file created, renamed or removed in it) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents with mode 0755 at most (a umask of 0 would make
/// them writable by everyone, and then anyone could replace the run records `status` and
/// the metrics report).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

/// Why [`read_regular`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// Reads a regular file whole, at most `limit` bytes. A FIFO, device, socket or directory
/// is refused at once: the open is non-blocking (a FIFO without a writer would block it) and
/// the type is checked on the descriptor before any read (`/dev/zero` never ends).
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let metadata = file.metadata()?;
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("character device")
    } else if kind.is_block_device() {
        Some("block device")
    } else if kind.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    };
    if let Some(what) = what {
        return Err(ReadError::NotRegular(what));
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    // One byte more than allowed tells a file that grew past the limit while read.
    let mut data = Vec::with_capacity(metadata.len() as usize);
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_durable_removal_of_a_missing_file_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("note.json");
        std::fs::write(&path, "{}").unwrap();
        remove_durably(&path).unwrap();
        assert!(!path.exists());
        remove_durably(&path).unwrap();
    }

    /// Regression: the metrics writers' lock was waited for without a bound, so a writer
    /// stuck while holding it held every later stage at its end.
    #[test]
    fn waits_for_a_lock_a_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writers.lock");
        let held = lock_exclusive_within(&path, Duration::ZERO).unwrap();
        let started = Instant::now();
        let error = lock_exclusive_within(&path, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("held"), "{error}");
        drop(held);
        lock_exclusive_within(&path, Duration::ZERO).unwrap();
    }
}
