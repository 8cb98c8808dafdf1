//! One lock per restic repository on this machine, across stages, jobs, timers and
//! `run --here`: `STATE_DIR/locks/repository-HASH.lock`, held with `flock`, shared by the
//! stages that only add to the repository or read it, exclusive for those that remove from
//! it. A prune timer firing during a backup then waits for the backup instead of failing on
//! restic's own "repository is already locked" (and notifying although nothing is wrong).
//!
//! The modes follow restic 0.14's own locks (`cmd/restic/cmd_*.go`: `lockRepo` is
//! non-exclusive, `lockRepoExclusive` exclusive), so that our lock never refuses what restic
//! would allow, and waits where restic would refuse:
//!
//! | restic command | restic 0.14 lock | our lock |
//! |---|---|---|
//! | `backup` (also a database dump streamed in, `--stdin`) | non-exclusive | shared |
//! | `copy` (source and destination) | non-exclusive, both | shared, both |
//! | `restore`, `snapshots`, `dump`, a drill (`--no-lock`) | non-exclusive (or none) | shared |
//! | `forget` (with or without `--prune`) | exclusive | exclusive |
//! | `prune` | exclusive | exclusive |
//! | `check` (with or without `--read-data`) | exclusive | exclusive |
//! | `unlock` (stale locks only) | none | none: it removes only locks whose holder is gone |
//!
//! A drill reads with `--no-lock` (its unit may not write the repository): our shared lock
//! is what keeps a prune from removing packs under it.
//!
//! The key is the repository's *location*, resolved at run time: the URL or path of
//! `repository`, or the contents of `repository_file` / its credential, normalised
//! ([`normalize`]), so two stages that reach one repository by different spellings (a
//! trailing slash, `local:`, a symlink, credentials in a REST URL) share one lock. Only a
//! hash of it names the file: the location may hold a secret.
//!
//! A stage that needs two modes in turn (a backup, then `forget` for its `keep`) releases
//! its shared lock and then waits for the exclusive one ([`RepositoryLocks::hold`]): never an
//! upgrade in place, which would deadlock two backups that both want to forget.
//!
//! Who holds the lock is written into a sidecar directory, `repository-HASH.holders/PID-STAGE`
//! (stage, job, mode, since), one file per holder since shared holders are many; a waiting
//! stage reads it to say whom it waits for ("waiting for repository /srv/restic, held by
//! stage prune since 03:12"). Files of dead holders are ignored (and removed). The `flock`
//! itself is dropped by the kernel when its holder dies, however it dies.
//!
//! A lock on this machine cannot reach a repository other hosts write to: that case (the
//! fleet) is restic's own lock, which the restic stage retries (`stages::restic::run`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How often a waiting stage tries the lock again (and looks for a stop request).
const WAIT_POLL: Duration = Duration::from_millis(200);

/// How long a stage waits for a repository unless its `lock_wait` says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2 * 3600);

/// How a stage uses a repository (see the table in the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Adds or reads: any number of shared holders at once.
    Shared,
    /// Removes (forget, prune) or needs it still (check): alone.
    Exclusive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shared => "shared",
            Mode::Exclusive => "exclusive",
        }
    }
}

/// Where a repository is, as a stage's config says it; resolved at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A URL or path (`repository = "…"`, a declared repository's location).
    Given(String),
    /// A file holding it (`repository_file`, a credential): read when the stage runs.
    File(PathBuf),
}

impl Location {
    /// The normalised location, the lock's key.
    pub fn resolve(&self) -> Result<String, LockError> {
        match self {
            Location::Given(text) => Ok(normalize(text)),
            Location::File(path) => std::fs::read_to_string(path)
                .map(|text| normalize(&text))
                .map_err(|source| LockError {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// A repository a stage touches, and how ([`crate::stages::StageKind::repositories`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUse {
    /// How messages name it: a declared repository's name, a location without its
    /// credentials, or the file it is read from. Never a secret.
    pub name: String,
    pub location: Location,
    /// The mode the stage starts in; a later step may [`RepositoryLocks::hold`] another.
    pub mode: Mode,
    /// The repository's own `lock_wait` (a declared repository's), for a stage that does
    /// not set one.
    pub wait: Option<Duration>,
}

/// The location as the lock's key: whitespace trimmed, `local:` dropped, a local path made
/// canonical (symlinks resolved when it exists, else `.`, `//` and a trailing `/` removed),
/// a URL without the user and password of its authority and without a trailing `/`.
pub fn normalize(location: &str) -> String {
    let location = location.trim();
    let location = location.strip_prefix("local:").unwrap_or(location);
    if location.starts_with('/') {
        let path = Path::new(location);
        return match path.canonicalize() {
            Ok(path) => path.display().to_string(),
            Err(_) => {
                let parts: Vec<_> = path.components().collect();
                parts.iter().collect::<PathBuf>().display().to_string()
            }
        };
    }
    without_userinfo(location.trim_end_matches('/'))
}

/// `rest:https://user:pass@host/x` → `rest:https://host/x`.
fn without_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|at| at + 3) else {
        return url.to_string();
    };
    let end = url[start..].find('/').map_or(url.len(), |at| start + at);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}

/// A location as messages may show it: without the credentials of a URL.
pub fn display_name(location: &str) -> String {
    without_userinfo(location.trim())
}

/// `STATE_DIR/locks/repository-HASH.lock` for a normalised location.
pub fn path(state_dir: &Path, key: &str) -> PathBuf {
    state_dir
        .join("locks")
        .join(format!("repository-{:016x}.lock", fnv1a(key.as_bytes())))
}

/// FNV-1a, 64 bits: stable across versions and builds (std's hasher is not), which a file
/// name shared by every backupctl on the machine needs; not a secret's protection.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Who holds a repository's lock, as its holder wrote it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub stage: String,
    pub job: String,
    pub mode: Mode,
    /// Local time the lock was taken, `YYYY-MM-DD HH:MM:SS`.
    pub since: String,
}

impl Holder {
    /// `stage prune (job weekly, exclusive) since 03:12`.
    fn describe(&self) -> String {
        let time = self.since.get(11..16).unwrap_or(&self.since);
        format!(
            "stage {} (job {}, {}) since {time}",
            self.stage,
            self.job,
            self.mode.as_str()
        )
    }
}

/// A stage waiting for a repository: what `STATUS=` and the journal say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub name: String,
    pub mode: Mode,
    /// The live holders in the way (empty when none wrote itself down).
    pub holders: Vec<Holder>,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "waiting for repository {}, held by {}",
            self.name,
            held_by(&self.holders)
        )
    }
}

fn held_by(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "a process that did not say who it is".into();
    }
    let named: Vec<_> = holders.iter().map(Holder::describe).collect();
    named.join(" and ")
}

#[derive(Debug, thiserror::Error)]
#[error("cannot lock the repository with {}: {source}", .path.display())]
pub struct LockError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Why a stage did not get its repository.
#[derive(Debug, thiserror::Error)]
pub enum LockFailed {
    #[error(
        "gave up waiting for repository {name} after {} (`lock_wait`): still held by {}; \
         raise the stage's `lock_wait`, or move its timer away from the holder's",
        crate::report::short_duration(*.waited), held_by(.holders)
    )]
    TimedOut {
        name: String,
        waited: Duration,
        holders: Vec<Holder>,
    },
    #[error("stopped while waiting for repository {0}")]
    Stopped(String),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Who asks for a lock, and how long it may wait.
#[derive(Debug, Clone)]
pub struct Requester {
    pub state_dir: PathBuf,
    pub stage: String,
    pub job: String,
    pub wait: Duration,
}

/// A held lock of one repository. Dropping it releases the lock and removes the holder file.
#[derive(Debug)]
pub struct RepositoryLock {
    key: String,
    mode: Mode,
    holder_file: PathBuf,
    _file: Flock<File>,
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.holder_file);
    }
}

impl RepositoryLock {
    /// Takes the lock of `key` in `mode`, waiting up to `who.wait` while others hold it in a
    /// mode that excludes ours; `on_wait` is called when the wait begins and whenever the
    /// holders in the way change. A stop request ends the wait.
    pub fn acquire(
        who: &Requester,
        key: &str,
        name: &str,
        mode: Mode,
        mut on_wait: impl FnMut(&Waiting),
    ) -> Result<RepositoryLock, LockFailed> {
        let path = path(&who.state_dir, key);
        let started = Instant::now();
        let mut told: Option<Vec<Holder>> = None;
        loop {
            let file = crate::stage_lock::open_lock_file(&path).map_err(|source| LockError {
                path: path.clone(),
                source,
            })?;
            let arg = match mode {
                Mode::Shared => FlockArg::LockSharedNonblock,
                Mode::Exclusive => FlockArg::LockExclusiveNonblock,
            };
            match Flock::lock(file, arg) {
                Ok(file) => return Ok(RepositoryLock::held(who, key, mode, file)),
                Err((_, Errno::EWOULDBLOCK)) => {}
                Err((_, errno)) => {
                    return Err(LockError {
                        path,
                        source: errno.into(),
                    }
                    .into());
                }
            }
            let holders = holders(&path, &who.stage);
            if started.elapsed() >= who.wait {
                return Err(LockFailed::TimedOut {
                    name: name.to_string(),
                    waited: started.elapsed(),
                    holders,
                });
            }
            if told.as_ref() != Some(&holders) {
                on_wait(&Waiting {
                    name: name.to_string(),
                    mode,
                    holders: holders.clone(),
                });
                told = Some(holders);
            }
            // Polled rather than a blocking flock: our signal handlers restart the call, so
            // a blocked wait would not notice Ctrl-C or `systemctl stop`.
            if crate::signals::stopped() {
                return Err(LockFailed::Stopped(name.to_string()));
            }
            std::thread::sleep(WAIT_POLL.min(who.wait.saturating_sub(started.elapsed())));
        }
    }

    fn held(who: &Requester, key: &str, mode: Mode, file: Flock<File>) -> RepositoryLock {
        let pid = std::process::id();
        let holder_file =
            holders_dir(&path(&who.state_dir, key)).join(format!("{pid}-{}", who.stage));
        let since = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S");
        let text = format!(
            "pid={pid}\nstage={}\njob={}\nmode={}\nsince={since}\n",
            who.stage,
            who.job,
            mode.as_str()
        );
        // Best effort: a holder that cannot write it down still holds the lock; a waiting
        // stage then says the holder did not say who it is.
        if let Some(dir) = holder_file.parent()
            && crate::paths::create_dir(dir).is_ok()
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            let _ = std::fs::write(&holder_file, text);
            let _ = std::fs::set_permissions(&holder_file, std::fs::Permissions::from_mode(0o644));
        }
        RepositoryLock {
            key: key.to_string(),
            mode,
            holder_file,
            _file: file,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
}

fn holders_dir(lock: &Path) -> PathBuf {
    lock.with_extension("holders")
}

/// The live holders of a lock (their files; those of dead processes are removed), oldest
/// first, `stage` of this process (the one asking) left out.
pub fn holders(lock: &Path, stage: &str) -> Vec<Holder> {
    let Ok(entries) = std::fs::read_dir(holders_dir(lock)) else {
        return Vec::new();
    };
    let mut found: Vec<Holder> = entries
        .flatten()
        .filter_map(|entry| {
            let holder = read_holder(&entry.path())?;
            if holder.pid == std::process::id() && holder.stage == stage {
                return None;
            }
            if !alive(holder.pid) {
                let _ = std::fs::remove_file(entry.path());
                return None;
            }
            Some(holder)
        })
        .collect();
    found.sort_by(|a, b| (&a.since, a.pid, &a.stage).cmp(&(&b.since, b.pid, &b.stage)));
    found
}

fn read_holder(file: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(file).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some(Holder {
        pid: field("pid")?.parse().ok()?,
        stage: field("stage")?,
        job: field("job")?,
        mode: match field("mode")?.as_str() {
            "exclusive" => Mode::Exclusive,
            _ => Mode::Shared,
        },
        since: field("since")?,
    })
}

/// Whether a process lives: signal 0 reaches it, or it exists as another user's.
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == Errno::EPERM,
    }
}

/// The repository locks a stage run holds, by key; what the executor takes before the
/// stage's kind runs and what a step that needs another mode changes.
#[derive(Debug)]
pub struct RepositoryLocks {
    who: Requester,
    held: Mutex<Vec<RepositoryLock>>,
}

impl RepositoryLocks {
    /// No lock held yet.
    pub fn new(who: Requester) -> RepositoryLocks {
        RepositoryLocks {
            who,
            held: Mutex::new(Vec::new()),
        }
    }

    /// Who asks, and how long it may wait.
    pub fn requester(&self) -> &Requester {
        &self.who
    }

    /// Holds the repository of `used` in `used.mode` for the rest of the run: nothing when
    /// it is held so already (or exclusively); otherwise a held lock is released first and
    /// the new mode waited for (see the module doc). Several repositories are taken in the
    /// order of their keys by the executor, so two stages never wait for each other.
    pub fn hold(
        &self,
        used: &RepositoryUse,
        on_wait: impl FnMut(&Waiting),
    ) -> Result<(), LockFailed> {
        let key = used.location.resolve()?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = held.iter().position(|lock| lock.key == key) {
            if held[at].mode >= used.mode {
                return Ok(());
            }
            held.remove(at);
        }
        let lock = RepositoryLock::acquire(&self.who, &key, &used.name, used.mode, on_wait)?;
        held.push(lock);
        Ok(())
    }

    /// Releases `used`'s repository, when held: a stage that holds two and needs one of them
    /// exclusively next (a copy's retention on its target) lets the other go first, so that
    /// two copies in opposite directions never each hold what the other waits for.
    pub fn release(&self, used: &RepositoryUse) {
        let Ok(key) = used.location.resolve() else {
            return;
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|lock| lock.key != key);
    }

    /// The mode `used`'s repository is held in, if it is.
    pub fn mode_of(&self, used: &RepositoryUse) -> Option<Mode> {
        let key = used.location.resolve().ok()?;
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .find(|lock| lock.key == key)
            .map(|lock| lock.mode)
    }
}

/// The uses of a stage merged by location (the strongest mode of each) and sorted by key,
/// the order in which the executor takes them; uses whose location cannot be read yet come
/// last, to fail when taken.
pub fn merged(uses: Vec<RepositoryUse>) -> Vec<RepositoryUse> {
    let mut keyed: Vec<(Option<String>, RepositoryUse)> = Vec::new();
    for used in uses {
        let key = used.location.resolve().ok();
        match keyed.iter_mut().find(|(k, _)| k.is_some() && *k == key) {
            Some((_, existing)) => existing.mode = existing.mode.max(used.mode),
            None => keyed.push((key, used)),
        }
    }
    keyed.sort_by(|a, b| match (&a.0, &b.0) {
        (Some(a), Some(b)) => a.cmp(b),
        (a, b) => b.is_some().cmp(&a.is_some()),
    });
    keyed.into_iter().map(|(_, used)| used).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(dir: &Path, stage: &str, wait: Duration) -> Requester {
        Requester {
            state_dir: dir.to_path_buf(),
            stage: stage.into(),
            job: "nightly".into(),
            wait,
        }
    }

    fn used(location: &str, mode: Mode) -> RepositoryUse {
        RepositoryUse {
            name: display_name(location),
            location: Location::Given(location.into()),
            mode,
            wait: None,
        }
    }

    /// Runs `f` in another process-like holder: a thread, whose lock is its own open file.
    fn held(dir: &Path, stage: &str, mode: Mode) -> RepositoryLocks {
        let locks = RepositoryLocks::new(requester(dir, stage, Duration::ZERO));
        locks
            .hold(&used("/srv/restic", mode), |_| {
                panic!("{stage} had to wait")
            })
            .unwrap();
        locks
    }

    #[test]
    fn locations_that_reach_one_repository_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&repo, &link).unwrap();
        let canonical = repo.canonicalize().unwrap().display().to_string();
        for spelling in [
            format!("{}/", repo.display()),
            format!("local:{}", repo.display()),
            format!("{}\n", link.display()),
            format!("{}/./", repo.display()),
        ] {
            assert_eq!(normalize(&spelling), canonical, "{spelling:?}");
        }
        assert_eq!(normalize("/not/there//x/"), "/not/there/x");
        assert_eq!(
            normalize("rest:https://sig:secret@backup.example:8000/laptop/"),
            "rest:https://backup.example:8000/laptop"
        );
        assert_eq!(display_name("rest:http://a:b@h/x"), "rest:http://h/x");
        assert_eq!(normalize("sftp:nas:/srv/restic/"), "sftp:nas:/srv/restic");
        assert_ne!(path(dir.path(), "a"), path(dir.path(), "b"));
        // The file name holds a hash, never the location.
        let name = path(dir.path(), "rest:https://h/x").display().to_string();
        assert!(name.ends_with(".lock") && !name.contains("https"), "{name}");
    }

    #[test]
    fn a_location_file_is_read_when_the_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repository");
        std::fs::write(&file, "s3:s3.example/bucket/\n").unwrap();
        let location = Location::File(file.clone());
        assert_eq!(location.resolve().unwrap(), "s3:s3.example/bucket");
        std::fs::remove_file(&file).unwrap();
        let error = location.resolve().unwrap_err().to_string();
        assert!(error.contains(&file.display().to_string()), "{error}");
    }

    #[test]
    fn shared_holders_run_together_and_an_exclusive_one_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let backup = held(dir.path(), "backup", Mode::Shared);
        let _other_backup = held(dir.path(), "laptop", Mode::Shared);
        // A prune gives up after its wait, naming both holders.
        let prune =
            RepositoryLocks::new(requester(dir.path(), "prune", Duration::from_millis(300)));
        let mut told = Vec::new();
        let error = prune
            .hold(&used("/srv/restic/", Mode::Exclusive), |waiting| {
                told.push(waiting.to_string())
            })
            .unwrap_err();
        assert_eq!(
            told.len(),
            1,
            "says it waits once while the holders stay: {told:?}"
        );
        assert!(
            told[0].starts_with("waiting for repository /srv/restic/, held by stage backup (job nightly, shared) since "),
            "{}",
            told[0]
        );
        let message = error.to_string();
        assert!(
            message.starts_with("gave up waiting for repository /srv/restic/ after "),
            "{message}"
        );
        assert!(
            message.contains("stage backup (job nightly, shared)"),
            "{message}"
        );
        assert!(
            message.contains("and stage laptop (job nightly, shared)"),
            "{message}"
        );
        assert!(
            message.contains("raise the stage's `lock_wait`"),
            "{message}"
        );
        drop(backup);
        drop(_other_backup);
        // Free: taken at once, and its holder file names it while held, not after.
        let prune = held(dir.path(), "prune", Mode::Exclusive);
        let lock = path(dir.path(), &normalize("/srv/restic"));
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        let holders_dir = holders_dir(&lock);
        assert_eq!(std::fs::read_dir(&holders_dir).unwrap().count(), 1);
        // A shared holder now waits for the exclusive one.
        let late = RepositoryLocks::new(requester(dir.path(), "late", Duration::from_millis(200)));
        assert!(matches!(
            late.hold(&used("/srv/restic", Mode::Shared), |_| {}),
            Err(LockFailed::TimedOut { .. })
        ));
        drop(prune);
        assert_eq!(std::fs::read_dir(&holders_dir).unwrap().count(), 0);
    }

    #[test]
    fn a_waiting_stage_gets_the_lock_when_the_holder_ends() {
        let dir = tempfile::tempdir().unwrap();
        let backup = held(dir.path(), "backup", Mode::Shared);
        // The holder ends once the prune says it waits: a fixed sleep let a loaded machine
        // release it before the prune asked, and then nothing waited.
        let (waiting, told) = std::sync::mpsc::channel();
        let releaser = std::thread::spawn(move || {
            told.recv().unwrap();
            drop(backup);
        });
        let prune = RepositoryLocks::new(requester(dir.path(), "prune", Duration::from_secs(60)));
        let mut waited = 0;
        prune
            .hold(&used("/srv/restic", Mode::Exclusive), |_| {
                waited += 1;
                let _ = waiting.send(());
            })
            .unwrap();
        releaser.join().unwrap();
        assert_eq!(waited, 1);
        assert_eq!(
            prune.mode_of(&used("/srv/restic", Mode::Shared)),
            Some(Mode::Exclusive)
        );
    }

    #[test]
    fn a_stage_moves_from_shared_to_exclusive_without_waiting_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        let stage = RepositoryLocks::new(requester(dir.path(), "backup", Duration::ZERO));
        let repo = used("/srv/restic", Mode::Shared);
        stage.hold(&repo, |_| panic!("waited for nobody")).unwrap();
        let exclusive = RepositoryUse {
            mode: Mode::Exclusive,
            ..repo.clone()
        };
        stage
            .hold(&exclusive, |_| panic!("waited for itself"))
            .unwrap();
        assert_eq!(stage.mode_of(&repo), Some(Mode::Exclusive));
        // Asking for less than it holds keeps what it holds.
        stage.hold(&repo, |_| panic!("waited")).unwrap();
        assert_eq!(stage.mode_of(&repo), Some(Mode::Exclusive));
        // Released, another stage takes it at once.
        stage.release(&repo);
        assert_eq!(stage.mode_of(&repo), None);
        held(dir.path(), "prune", Mode::Exclusive);
    }

    #[test]
    fn uses_are_merged_by_location_and_taken_in_key_order() {
        let uses = vec![
            used("/srv/b", Mode::Shared),
            used("/srv/a/", Mode::Shared),
            used("local:/srv/b", Mode::Exclusive),
        ];
        let merged = merged(uses);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].name, "/srv/a/");
        assert_eq!(
            (merged[1].name.as_str(), merged[1].mode),
            ("/srv/b", Mode::Exclusive)
        );
    }

    #[test]
    fn holders_of_dead_processes_are_not_named() {
        let dir = tempfile::tempdir().unwrap();
        let lock = path(dir.path(), "/srv/restic");
        let holders = holders_dir(&lock);
        std::fs::create_dir_all(&holders).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        let text = format!("pid={pid}\nstage=old\njob=j\nmode=shared\nsince=2026-01-01 03:12:00\n");
        std::fs::write(holders.join(pid.to_string()), text).unwrap();
        assert_eq!(super::holders(&lock, "new"), Vec::new());
        assert!(!holders.join(pid.to_string()).exists(), "removed");
    }
}
