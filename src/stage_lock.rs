//! One run of a stage at a time: `STATE_DIR/locks/STAGE.lock`, held with `flock` by the unit
//! (`backupctl stage`) and by `run --here` alike for the whole run of the stage.
//!
//! Two runs of one stage would trample each other (rsync's run B removing run A's partial
//! files as "left by a killed run", two restic backups racing on one cache). The lock is an
//! `flock`, not a pid file: the kernel drops it when its holder dies, however it dies, so a
//! `kill -9` never leaves a stale lock. The file itself is never removed (removing a lock file
//! while another process waits on it would let two runs lock two different files).
//!
//! After locking, the holder writes who it is (pid, start time, unit or command) into the
//! file, so that a refused run can say whom it waits for.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::paths::Scope;

/// How often a waiting run tries the lock again (and looks for a stop request).
const WAIT_POLL: Duration = Duration::from_millis(200);

/// The held lock of one stage. Dropping it releases the lock.
#[derive(Debug)]
pub struct StageLock {
    file: Flock<File>,
}

/// Who holds a lock, as its holder wrote it down.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub pid: u32,
    /// Local time, `YYYY-MM-DD HH:MM:SS`.
    pub started: String,
    /// `backup@copy.service`, or the command that took it (`backupctl run --here`).
    pub by: String,
}

/// The stage is being run by someone else.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}; {}", running(.stage, .holder), help(.stage, .holder, *.scope))]
pub struct Busy {
    pub stage: String,
    /// Unknown when the holder could not write it (yet, or not allowed to).
    pub holder: Option<Holder>,
    pub scope: Scope,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot lock the stage with {}: {source}", .path.display())]
pub struct LockError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Why a run of the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A stop was requested while waiting for the lock.
    #[error("stopped while waiting for the stage's lock")]
    Stopped,
}

impl Busy {
    /// Who runs the stage, without the advice: for a run that is waiting already.
    pub fn running(&self) -> String {
        running(&self.stage, &self.holder)
    }
}

fn running(stage: &str, holder: &Option<Holder>) -> String {
    let holder = match holder {
        Some(h) => format!("pid {}, started {} by {}", h.pid, h.started, h.by),
        None => "holder unknown".into(),
    };
    format!("stage `{stage}` is already running ({holder})")
}

fn help(stage: &str, holder: &Option<Holder>, scope: Scope) -> String {
    let unit = crate::units::stage_service(stage);
    let user = if scope == Scope::User { " --user" } else { "" };
    match holder {
        Some(h) if h.by == unit => {
            format!("wait for it (`--wait`) or stop it with systemctl{user} stop {unit}")
        }
        Some(h) => format!("wait for it (`--wait`) or stop it with kill {}", h.pid),
        None => format!(
            "wait for it (`--wait`), or find it with systemctl{user} status {unit} or pgrep -a backupctl"
        ),
    }
}

/// `STATE_DIR/locks/STAGE.lock`.
pub fn path(state_dir: &Path, stage: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{stage}.lock"))
}

impl StageLock {
    /// Takes the lock of `stage` without waiting: [`Refused::Busy`] when another run holds it.
    /// `by` says how this run was started, for the message a refused run prints.
    pub fn try_acquire(
        state_dir: &Path,
        stage: &str,
        scope: Scope,
        by: &str,
    ) -> Result<StageLock, Refused> {
        let path = path(state_dir, stage);
        let file = open(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(StageLock::held(file, by)),
            Err((_, Errno::EWOULDBLOCK)) => Err(Refused::Busy(Busy {
                stage: stage.to_string(),
                holder: read_holder(&path),
                scope,
            })),
            Err((_, errno)) => Err(LockError {
                path,
                source: errno.into(),
            }
            .into()),
        }
    }

    /// Takes the lock of `stage`, waiting for the run holding it to end; `on_wait` is called
    /// once, with who holds it, when it must wait. A stop request ends the wait.
    pub fn acquire_waiting(
        state_dir: &Path,
        stage: &str,
        scope: Scope,
        by: &str,
        on_wait: impl FnOnce(&Busy),
    ) -> Result<StageLock, Refused> {
        let mut on_wait = Some(on_wait);
        loop {
            match StageLock::try_acquire(state_dir, stage, scope, by) {
                Err(Refused::Busy(busy)) => {
                    if let Some(say) = on_wait.take() {
                        say(&busy);
                    }
                }
                other => return other,
            }
            // Polled rather than a blocking flock: our signal handlers restart the call, so a
            // blocked wait would not notice Ctrl-C or `systemctl stop`.
            if crate::signals::stopped() {
                return Err(Refused::Stopped);
            }
            std::thread::sleep(WAIT_POLL);
        }
    }

    fn held(mut file: Flock<File>, by: &str) -> StageLock {
        let started = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S").to_string();
        let text = format!("pid={}\nstarted={started}\nby={by}\n", std::process::id());
        // Best effort: a holder that may not write the file (it was created by another user)
        // still holds the lock; the refused run then says the holder is unknown.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()));
        StageLock { file }
    }

    /// The lock file's descriptor, to show it is held (for tests and debugging).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open(path: &Path) -> Result<File, LockError> {
    open_lock_file(path).map_err(|source| LockError {
        path: path.to_path_buf(),
        source,
    })
}

/// Opens (creating) a lock file, this one's or a repository's (`repo_lock`). Readable by all
/// and the directory searchable: the unit of a system-scope job may run as `user = "…"`
/// while `run --here` runs as root, and both must reach the same file (`flock` needs only a
/// descriptor, which read access gives).
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let dir = path.parent().expect("a lock path has a directory");
    if !dir.is_dir() {
        crate::paths::create_dir(dir)?;
        // Units run with UMask=0077; the other side may be another user.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW);
    match options
        .clone()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
    {
        Ok(file) => {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
            Ok(file)
        }
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => options.open(path),
        Err(error) => Err(error),
    }
}

/// What the holder wrote into the lock file; `None` when it wrote nothing (yet).
fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some(Holder {
        pid: field("pid")?.parse().ok()?,
        started: field("started")?,
        by: field("by")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_and_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held =
            StageLock::try_acquire(dir.path(), "copy", Scope::User, "backup@copy.service").unwrap();
        let Err(Refused::Busy(busy)) =
            StageLock::try_acquire(dir.path(), "copy", Scope::User, "backupctl run --here")
        else {
            panic!("the second lock was granted");
        };
        let holder = busy.holder.clone().expect("the holder wrote itself down");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.by, "backup@copy.service");
        let message = busy.to_string();
        assert!(
            message.starts_with(&format!(
                "stage `copy` is already running (pid {}, started ",
                std::process::id()
            )),
            "{message}"
        );
        assert!(
            message.ends_with("stop it with systemctl --user stop backup@copy.service"),
            "{message}"
        );
        // Another stage is not affected; the lock is free again once dropped.
        StageLock::try_acquire(dir.path(), "other", Scope::User, "x").unwrap();
        drop(held);
        StageLock::try_acquire(dir.path(), "copy", Scope::User, "x").unwrap();
    }

    #[test]
    fn a_waiting_run_gets_the_lock_when_the_holder_ends() {
        let dir = tempfile::tempdir().unwrap();
        let held = StageLock::try_acquire(dir.path(), "copy", Scope::User, "first").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let mut told = 0;
        let lock = StageLock::acquire_waiting(dir.path(), "copy", Scope::User, "second", |busy| {
            told += 1;
            assert_eq!(busy.holder.as_ref().unwrap().by, "first");
        })
        .unwrap();
        releaser.join().unwrap();
        assert_eq!(told, 1, "says once that it waits");
        assert!(read_holder(&path(dir.path(), "copy")).is_some_and(|h| h.by == "second"));
        drop(lock);
    }
}
