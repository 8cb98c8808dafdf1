//! Shared test helpers: the binary under test, temporary trees, required tools, and the real
//! systemd user manager (started through `scripts/systemd-sandbox`); golden files
//! ([`golden`], `BLESS`), the one path placeholder `@ROOT@` ([`placeholder`]) and jobs
//! installed in the user manager ([`installed`]) in their own modules.

#![allow(dead_code)]

pub mod btrfs;
pub mod golden;
pub mod http;
pub mod installed;
pub mod mariadb;
pub mod network_manager;
pub mod placeholder;
pub mod postgres;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (for scripts and fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The backupctl binary built for this test run.
pub fn backupctl_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backupctl"))
}

/// A `backupctl` command with a clean logging environment.
pub fn backupctl() -> Command {
    let mut command = Command::new(backupctl_path());
    command
        .env_remove("BACKUPCTL_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    command
}

/// rsync's temporary file `.NAME.XXXXXX` in `dest` once it holds bytes: a copy of NAME is
/// under way (and, after a SIGKILL, what a killed run left behind).
pub fn rsync_partial_file(dest: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!(".{name}.");
    std::fs::read_dir(dest)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                && p.metadata().is_ok_and(|m| m.len() > 0)
        })
}

/// Waits until rsync's temporary file `.big.bin.XXXXXX` in `dest` has bytes: the copy is
/// under way. With `running`, fails the test if that process ended first.
#[track_caller]
pub fn wait_for_partial_file(
    dest: &Path,
    mut running: Option<&mut std::process::Child>,
) -> PathBuf {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(partial) = rsync_partial_file(dest, "big.bin") {
            return partial;
        }
        if let Some(child) = running.as_deref_mut()
            && let Some(status) = child.try_wait().unwrap()
        {
            panic!("the run ended ({status}) before its copy was seen under way");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rsync wrote no temporary file into {} within 60 s",
            dest.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The run records in the file `runs` (a `runs.jsonl`), oldest first; none when there is
/// no file yet. A line that is not a record fails the test.
#[track_caller]
pub fn read_run_records(runs: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", runs.display())))
        .collect()
}

/// `backupctl --user --config CONFIG` with its state and cache in DIR (so tests never share
/// run records or locks), and none of the notifier's or a unit's environment inherited.
pub fn backupctl_user(dir: &Path, config: &Path) -> Command {
    let mut command = backupctl();
    command
        .env("STATE_DIRECTORY", dir.join("state/backupctl"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("MONITOR_SERVICE_RESULT")
        .env_remove("MONITOR_INVOCATION_ID")
        .env_remove("CREDENTIALS_DIRECTORY")
        .arg("--user")
        .arg("--config")
        .arg(config);
    command
}

/// `backupctl --user --config DIR/config.toml` with its state and cache in DIR (see
/// [`backupctl_user`]).
pub fn backupctl_in(dir: &Path) -> Command {
    backupctl_user(dir, &dir.join("config.toml"))
}

/// A loopback TCP port that was free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command and returns its output (panics only when it cannot be started).
pub fn run(command: &mut Command) -> Output {
    // ETXTBSY: a binary a test has just copied (tests/util/installed.rs) is still open for
    // writing in a child that another test thread forked meanwhile, until that child execs.
    // It passes in milliseconds.
    const TEXT_FILE_BUSY: i32 = 26;
    let mut attempts = 0;
    loop {
        match command.output() {
            Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.unwrap_or_else(|e| panic!("cannot run {command:?}: {e}")),
        }
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Fails the test (never skips it) when a tool the test needs is not installed.
#[track_caller]
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}`, which is not installed: run scripts/setup-deps"
    );
}

/// A fresh temporary directory, removed at the end of the test. Under target/tmp, not /tmp:
/// the units' `PrivateTmp=` hides /tmp, and `check`/`generate` refuse configs there.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("backupctl-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory")
}

/// Writes a file, creating parent directories.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, contents).unwrap();
}

/// `len` pseudo-random bytes, the same in every run (xorshift): incompressible, so that
/// rsync's `--bwlimit` paces a copy and restic packs them as they are.
pub fn incompressible_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `size` random bytes from /dev/urandom (different in every run, so nothing deduplicates
/// against an earlier one) written to `path`; returns them.
pub fn random_file(path: &Path, size: usize) -> Vec<u8> {
    use std::io::Read;
    let mut data = vec![0u8; size];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    write(path, &data);
    data
}

/// Writes `root/config.toml` with the placeholder `@ROOT@` replaced by `root` (see
/// [`placeholder`]) and returns its path.
pub fn write_config(root: &Path, text: &str) -> PathBuf {
    let path = root.join("config.toml");
    write(&path, placeholder::expand(text, root));
    path
}

/// Writes a secret file (password, token, URL with a key) with mode 0600, as every stage
/// that reads one demands.
pub fn write_secret(path: &Path, contents: impl AsRef<[u8]>) {
    write(path, contents);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// What `generate` and the systemd generator write for a config that does not load: the
/// error unit, its `.wants/` link and the list of generated files, no unit of a job.
pub fn assert_only_the_config_error_unit(dir: &Path) {
    let mut written: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("no units written to {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let wants = written
        .iter()
        .filter(|name| name.ends_with(".target.wants"));
    assert_eq!(wants.count(), 1, "{written:?}");
    written.retain(|name| !name.ends_with(".target.wants"));
    assert_eq!(
        written,
        [".backupctl-generated", "backupctl-config-error.service"],
        "in {}",
        dir.display()
    );
}

/// Compares two trees byte for byte (contents, modes, symlinks, empty dirs) with
/// `diff --no-dereference -r` plus a mode/type listing; panics with the difference.
#[track_caller]
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(expected)
        .arg(actual)
        .output()
        .expect("diff");
    assert!(
        diff.status.success(),
        "trees differ:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    assert_eq!(
        tree_listing(expected),
        tree_listing(actual),
        "modes or types differ"
    );
}

/// `relative-path type mode` for every entry, sorted (what diff does not compare).
pub fn tree_listing(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args(["-printf", "%p %y %m\n"])
        .current_dir(root)
        .output()
        .expect("find");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// The environment that reaches the real systemd user manager, starting it (journald, the
/// user manager, its session bus) once per test run with `scripts/systemd-sandbox start`.
pub fn systemd_user_env() -> &'static [(String, String)] {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let script = repo_root().join("scripts/systemd-sandbox");
        let output = Command::new(&script)
            .arg("start")
            .output()
            .expect("run scripts/systemd-sandbox");
        assert!(
            output.status.success(),
            "the systemd user manager could not be started:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
            .collect()
    })
}

/// `systemctl --user …` against the sandbox manager.
pub fn systemctl_user() -> Command {
    let mut command = Command::new("systemctl");
    command
        .arg("--user")
        .envs(systemd_user_env().iter().map(|(k, v)| (k, v)));
    command
}

/// Held while a test uses the one user manager: unit names are global there.
pub struct SystemdLock {
    _file: nix::fcntl::Flock<std::fs::File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// Serializes tests that share the one user manager, within this test binary (a mutex) and
/// across test runs from other checkouts on the same machine (a file lock beside the
/// sandbox's pid files).
pub fn systemd_lock() -> SystemdLock {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new("/run/backupctl-sandbox");
    std::fs::create_dir_all(dir).expect("create /run/backupctl-sandbox");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("tests.lock"))
        .expect("open /run/backupctl-sandbox/tests.lock");
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .expect("lock /run/backupctl-sandbox/tests.lock");
    SystemdLock {
        _file: file,
        _guard: guard,
    }
}

/// The exposure score `systemd-analyze security --offline=yes` gives a stage: the template and
/// the stage's drop-in merged into one unit file (offline analysis reads no drop-ins).
pub fn exposure_score(units: &Path, stage: &str) -> f64 {
    let dir = tempdir();
    let unit = dir.path().join(format!("backup@{stage}.service"));
    let mut text = std::fs::read_to_string(units.join("backup@.service")).unwrap();
    text.push_str(
        &std::fs::read_to_string(units.join(format!("backup@{stage}.service.d/backupctl.conf")))
            .unwrap(),
    );
    std::fs::write(&unit, text).unwrap();
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{text}{}", stderr(&output)));
    line.split(": ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// promtool, from PATH or where scripts/setup-deps unpacks it.
pub fn promtool() -> PathBuf {
    let unpacked = Path::new("/var/cache/backupctl-tools/prometheus/usr/bin/promtool");
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| unpacked.is_file().then(|| unpacked.to_path_buf()))
        .unwrap_or_else(|| {
            panic!(
                "this test needs `promtool` (on PATH or at {}): run scripts/setup-deps",
                unpacked.display()
            )
        })
}

/// The Debian package `scripts/package` builds (target/debian/backupctl_*.deb), built once
/// per test run from this checkout: cargo rebuilds the release binary only when a source
/// changed, so the package is never stale. Fails, with the script's output, when it cannot be
/// built (cargo-deb missing: scripts/setup-deps).
pub fn debian_package() -> PathBuf {
    static PACKAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = PACKAGE.get_or_init(|| {
        let output = run(&mut Command::new(repo_root().join("scripts/package")));
        if !output.status.success() {
            return Err(format!(
                "scripts/package failed ({}):\n{}{}",
                output.status,
                stdout(&output),
                stderr(&output)
            ));
        }
        let path = PathBuf::from(stdout(&output).trim());
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("scripts/package printed no package: {path:?}"))
        }
    });
    match built {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Flips one byte (a damaged restic pack, a rotted file) in the middle of `file`, keeping its size and mtime.
pub fn flip_byte(file: &Path) {
    let modified = std::fs::metadata(file).unwrap().modified().unwrap();
    let mut data = std::fs::read(file).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    let mut permissions = std::fs::metadata(file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(file, permissions).unwrap();
    std::fs::write(file, &data).unwrap();
    let handle = std::fs::File::options().write(true).open(file).unwrap();
    handle.set_modified(modified).unwrap();
}

/// The largest file under `dir`.
pub fn largest_file(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if best.as_ref().is_none_or(|(size, _)| meta.len() > *size) {
                best = Some((meta.len(), entry.path()));
            }
        }
    }
    best.expect("a file").1
}
