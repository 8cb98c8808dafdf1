//! `snapshot = "btrfs"`: sources read from read-only snapshots in a private mount namespace,
//! on a real btrfs filesystem on a loop device; no snapshot may outlive a run (success,
//! failure, stop, SIGKILL + next run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::btrfs::Btrfs;
use crate::util::installed::InstalledStage;
use crate::util::{
    assert_same_tree, backupctl, incompressible_bytes, ok, require_tool, run, stderr,
    systemctl_user, systemd_lock, tempdir, write,
};

/// A btrfs filesystem with a subvolume `data` holding `data/src`, plus a scratch directory
/// (config, state, destinations) outside it.
pub struct Setup {
    pub fs: Btrfs,
    pub scratch: tempfile::TempDir,
    pub src: PathBuf,
}

impl Setup {
    pub fn new() -> Self {
        require_tool("rsync");
        let fs = Btrfs::new();
        fs.subvolume("data");
        let src = fs.path("data/src");
        write(&src.join("notes/a.txt"), "alpha\n");
        write(&src.join("notes/b.txt"), "beta\n");
        write(&src.join("big.bin"), incompressible_bytes(3 << 20));
        write(&src.join("live.bin"), vec![0u8; 64 << 10]);
        let scratch = tempfile::Builder::new()
            .prefix("snapshot-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        Setup { fs, scratch, src }
    }

    pub fn scratch(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// Writes the config and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let path = self.scratch("config.toml");
        write(&path, text);
        path
    }

    /// `backupctl --user --config CONFIG` with its state and cache in the scratch directory.
    pub fn backupctl(&self) -> Command {
        let mut command = backupctl();
        command
            .arg("--user")
            .arg("--config")
            .arg(self.scratch("config.toml"))
            .env("STATE_DIRECTORY", self.scratch("state/backupctl"))
            .env("XDG_CACHE_HOME", self.scratch("cache"));
        command
    }

    /// Waits for the run's snapshot to appear and returns its path.
    #[track_caller]
    pub fn wait_for_snapshot(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(name) = self.fs.snapshots().first() {
                return self.fs.path(name);
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot appeared within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Rewrites `path` in place, over and over, until dropped; each version is different.
pub struct Rewriter {
    stop: Arc<AtomicBool>,
    pub versions: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rewriter {
    pub fn start(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let versions = Arc::new(AtomicU64::new(0));
        let path = path.to_path_buf();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let versions = versions.clone();
            move || {
                while !stop.load(Ordering::SeqCst) {
                    let version = versions.fetch_add(1, Ordering::SeqCst);
                    let line = format!("version {version:>12}\n");
                    std::fs::write(&path, line.repeat(4096)).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Rewriter {
            stop,
            versions,
            thread: Some(thread),
        }
    }
}

impl Drop for Rewriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `cp -a SNAPSHOT/src/. COPY`: the sources as the snapshot holds them.
fn copy_from_snapshot(snapshot: &Path, copy: &Path) {
    std::fs::create_dir_all(copy).unwrap();
    ok(Command::new("cp")
        .arg("-a")
        .arg(snapshot.join("src/."))
        .arg(copy));
}

fn rsync_config(setup: &Setup, extra: &str) -> PathBuf {
    setup.config(&format!(
        r#"
[stage.copy]
kind = "rsync"
sources = ["{src}/"]
destination = "{dest}"
snapshot = "btrfs"
{extra}
"#,
        src = setup.src.display(),
        dest = setup.scratch("dest").display(),
    ))
}

#[test]
fn rsync_copies_a_file_rewritten_during_the_run_as_the_snapshot_holds_it() {
    let setup = Setup::new();
    // ~3 s for 3 MiB: the rewriter runs all along the copy.
    rsync_config(&setup, r#"args = ["--bwlimit=1000"]"#);
    let rewriter = Rewriter::start(&setup.src.join("live.bin"));
    let child = setup
        .backupctl()
        .args(["run", "--here"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let snapshot = setup.wait_for_snapshot();
    let before = rewriter.versions.load(Ordering::SeqCst);
    copy_from_snapshot(&snapshot, &setup.scratch("copy"));
    let output = child.wait_with_output().unwrap();
    let after = rewriter.versions.load(Ordering::SeqCst);
    drop(rewriter);
    assert!(
        output.status.success(),
        "run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        after > before + 10,
        "the file was not rewritten during the run ({before} → {after})"
    );
    assert_same_tree(&setup.scratch("copy"), &setup.scratch("dest"));
    assert_ne!(
        std::fs::read(setup.src.join("live.bin")).unwrap(),
        std::fs::read(setup.scratch("dest/live.bin")).unwrap(),
        "the live file ended as it was copied: the test proves nothing"
    );
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new());
}

#[test]
fn restic_restores_the_snapshot_state_under_the_original_paths() {
    require_tool("restic");
    let setup = Setup::new();
    let repo = setup.scratch("repo");
    let password = setup.scratch("password");
    write(&password, "correct horse battery staple\n");
    ok(Command::new("restic")
        .args(["init", "--repo"])
        .arg(&repo)
        .env("RESTIC_PASSWORD_FILE", &password));
    // The password command runs once restic started, i.e. after the snapshot was taken:
    // its pause is the window in which the test copies the snapshot.
    let slow_password = setup.scratch("slow-password");
    write(
        &slow_password,
        format!("#!/bin/sh\nsleep 2\nexec cat '{}'\n", password.display()),
    );
    std::fs::set_permissions(
        &slow_password,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    setup.config(&format!(
        r#"
[stage.vault]
kind = "restic"
repository = "{repo}"
password_command = ["{slow_password}"]
paths = ["{src}"]
snapshot = "btrfs"
"#,
        repo = repo.display(),
        slow_password = slow_password.display(),
        src = setup.src.display(),
    ));
    let rewriter = Rewriter::start(&setup.src.join("live.bin"));
    let child = setup
        .backupctl()
        .args(["run", "--here"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let snapshot = setup.wait_for_snapshot();
    copy_from_snapshot(&snapshot, &setup.scratch("copy"));
    let output = child.wait_with_output().unwrap();
    drop(rewriter);
    assert!(
        output.status.success(),
        "run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new());

    let restic = |args: &[&str]| {
        let mut command = Command::new("restic");
        command
            .args(args)
            .arg("--repo")
            .arg(&repo)
            .env("RESTIC_PASSWORD_FILE", &password);
        command
    };
    let snapshots: serde_json::Value =
        serde_json::from_str(&ok(&mut restic(&["snapshots", "--json"]))).unwrap();
    assert_eq!(
        snapshots[0]["paths"],
        serde_json::json!([setup.src.display().to_string()]),
        "restic recorded other paths than the sources"
    );
    let target = setup.scratch("restore");
    ok(&mut restic(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]));
    let restored = target.join(setup.src.strip_prefix("/").unwrap());
    assert_same_tree(&setup.scratch("copy"), &restored);
    assert_ne!(
        std::fs::read(setup.src.join("live.bin")).unwrap(),
        std::fs::read(restored.join("live.bin")).unwrap(),
        "the live file ended as it was backed up: the test proves nothing"
    );
}

#[test]
fn a_failing_tool_leaves_no_snapshot() {
    let setup = Setup::new();
    rsync_config(&setup, r#"args = ["--no-such-option"]"#);
    let output = run(setup.backupctl().args(["run", "--here"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("rsync failed"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("deleted snapshot"),
        "{}",
        stderr(&output)
    );
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new());
}

#[test]
fn a_source_off_btrfs_fails_unless_snapshot_is_auto() {
    let setup = Setup::new();
    let plain = tempdir();
    write(&plain.path().join("f.txt"), "on ext4 or tmpfs\n");
    let config = |mode: &str| {
        setup.config(&format!(
            r#"
[stage.copy]
kind = "rsync"
sources = ["{plain}/", "{src}/notes"]
destination = "{dest}"
snapshot = "{mode}"
"#,
            plain = plain.path().display(),
            src = setup.src.display(),
            dest = setup.scratch("dest").display(),
        ))
    };
    config("btrfs");
    let output = run(setup.backupctl().args(["run", "--here"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "{} is not on a btrfs filesystem; with snapshot = \"auto\"",
            plain.path().display()
        )),
        "{}",
        stderr(&output)
    );
    config("auto");
    let output = run(setup.backupctl().args(["run", "--here"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is not on btrfs: backed up live"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(setup.scratch("dest/f.txt")).unwrap(),
        "on ext4 or tmpfs\n"
    );
    assert_same_tree(&setup.src.join("notes"), &setup.scratch("dest/notes"));
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new());
}

#[test]
fn snapshot_prefix_locations_and_exec_before_snapshot() {
    let setup = Setup::new();
    setup.fs.subvolume("other");
    write(&setup.fs.path("other/o.txt"), "other\n");
    std::fs::create_dir(setup.fs.path("snaps")).unwrap();
    let marker = setup.scratch("exec-before-ran");
    setup.config(&format!(
        r#"
[stage.copy]
kind = "rsync"
sources = ["{src}/notes", "{other}"]
destination = "{dest}"
snapshot = "btrfs"
snapshot_prefix = "{snaps}"
snapshot_locations = {{ "{other}" = "{mnt}/other-snap" }}
exec_before_snapshot = ["touch", "{marker}"]
"#,
        src = setup.src.display(),
        other = setup.fs.path("other").display(),
        dest = setup.scratch("dest").display(),
        snaps = setup.fs.path("snaps").display(),
        mnt = setup.fs.mount.display(),
        marker = marker.display(),
    ));
    let output = run(setup.backupctl().args(["run", "--here"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(marker.exists(), "exec_before_snapshot did not run");
    let log = stderr(&output);
    let data_flat = format!(
        "{}/{}@backupctl.copy.",
        setup.fs.path("snaps").display(),
        setup
            .fs
            .path("data")
            .display()
            .to_string()
            .trim_start_matches('/')
            .replace('/', "-")
    );
    assert!(log.contains(&format!("snapshot {data_flat}")), "{log}");
    assert!(
        log.contains(&format!(
            "snapshot {}/other-snap@backupctl.copy.",
            setup.fs.mount.display()
        )),
        "{log}"
    );
    assert_same_tree(&setup.src.join("notes"), &setup.scratch("dest/notes"));
    assert_eq!(
        std::fs::read_to_string(setup.scratch("dest/other/o.txt")).unwrap(),
        "other\n"
    );
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new());
}

/// Waits until the unit left `activating`/`deactivating`.
#[track_caller]
fn wait_until_inactive(stage: &InstalledStage) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(
        stage.state().as_str(),
        "activating" | "deactivating" | "active"
    ) {
        assert!(Instant::now() < deadline, "{} did not end", stage.unit);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn under_systemd_stop_and_sigkill_leave_no_snapshot_behind() {
    let _lock = systemd_lock();
    let setup = Setup::new();
    // ~6 s: time to stop it in the middle. The prefix becomes the unit's ReadWritePaths=.
    let prefix = format!("snapshot_prefix = \"{}\"\n", setup.fs.mount.display());
    rsync_config(&setup, &format!("{prefix}args = [\"--bwlimit=500\"]"));
    // The user manager sets up ReadWritePaths= before `ExecStartPre=+… prepare-paths` runs
    // (systemd 252), so the destination must exist: see the report on the generator.
    std::fs::create_dir_all(setup.scratch("dest")).unwrap();
    let stage = InstalledStage::install(setup.backupctl(), &setup.scratch("units"), "copy", "stop");

    // systemctl stop: SIGTERM, rsync ends, the snapshot is deleted before the unit stops.
    ok(systemctl_user()
        .args(["start", "--no-block"])
        .arg(&stage.unit));
    setup.wait_for_snapshot();
    ok(systemctl_user().arg("stop").arg(&stage.unit));
    assert_eq!(
        setup.fs.snapshots(),
        Vec::<String>::new(),
        "{}",
        stage.journal()
    );
    assert!(
        stage.journal().contains("deleted snapshot"),
        "{}",
        stage.journal()
    );
    // rsync removes its partial file on SIGTERM, and the stage waits for it to have.
    assert_eq!(
        crate::util::rsync_partial_file(&setup.scratch("dest"), "big.bin"),
        None,
        "systemctl stop left a partial file\n{}",
        stage.journal()
    );

    // SIGKILL: the snapshot stays, and the next run removes it before taking its own.
    ok(systemctl_user()
        .args(["start", "--no-block"])
        .arg(&stage.unit));
    let killed = setup.wait_for_snapshot();
    // Killed while rsync writes big.bin.
    let partial = crate::util::wait_for_partial_file(&setup.scratch("dest"), None);
    ok(systemctl_user()
        .args(["kill", "--signal=SIGKILL"])
        .arg(&stage.unit));
    wait_until_inactive(&stage);
    assert_eq!(
        setup.fs.snapshots(),
        vec![killed.file_name().unwrap().to_string_lossy().into_owned()],
        "a killed run cannot delete its snapshot"
    );
    // systemd signals the unit's processes one after the other: rsync may first get the
    // SIGTERM its parent's death sends (PR_SET_PDEATHSIG) and remove its temporary file
    // itself. When it could not, the next run must. (stage_lock.rs kills rsync alone, so
    // that the removal is always tested.)
    let partial_left = partial.exists();
    rsync_config(&setup, &prefix);
    ok(systemctl_user().arg("start").arg(&stage.unit));
    assert_eq!(
        setup.fs.snapshots(),
        Vec::<String>::new(),
        "{}",
        stage.journal()
    );
    assert!(
        stage.journal().contains(&format!(
            "deleted snapshot {} left by an earlier run",
            killed.display()
        )),
        "{}",
        stage.journal()
    );
    // The next run removed it: the copy holds no half file.
    assert!(
        !partial_left
            || stage
                .journal()
                .contains("removed 1 partial file(s) an earlier run left"),
        "{}",
        stage.journal()
    );
    assert!(!partial.exists(), "{} is still there", partial.display());
    assert_same_tree(&setup.src, &setup.scratch("dest"));
}

/// The score `systemd-analyze security --offline=yes` gives a stage unit (template with the
/// stage's drop-in appended), e.g. 2.1.
fn security_score(setup: &Setup, stage: &str) -> f64 {
    let generated = setup.scratch("units");
    ok(setup
        .backupctl()
        .args(["generate", "--output"])
        .arg(&generated));
    crate::util::exposure_score(&generated, stage)
}

#[test]
fn snapshot_drop_in_security_score() {
    require_tool("systemd-analyze");
    let setup = Setup::new();
    rsync_config(&setup, "");
    let with_snapshot = security_score(&setup, "copy");
    let text = std::fs::read_to_string(setup.scratch("config.toml")).unwrap();
    setup.config(&text.replace("snapshot = \"btrfs\"", ""));
    let without = security_score(&setup, "copy");
    eprintln!(
        "systemd-analyze security: rsync stage {without}, with snapshot = \"btrfs\" {with_snapshot}"
    );
    // CAP_SYS_ADMIN and the @mount calls cost a little; the unit stays in the "OK" band.
    assert!(
        with_snapshot <= 2.5,
        "snapshot stage exposure {with_snapshot}"
    );
    assert!(
        with_snapshot - without <= 0.5,
        "{without} → {with_snapshot}"
    );
}

/// A private `dbus-daemon --session` for one test, stopped on drop.
struct Bus {
    address: String,
    daemon: std::process::Child,
}

impl Bus {
    fn start(dir: &Path) -> Self {
        require_tool("dbus-daemon");
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(daemon.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
        Bus {
            address: line.trim().to_string(),
            daemon,
        }
    }

    fn connect(&self) -> zbus::Connection {
        zbus::block_on(async {
            zbus::connection::Builder::address(self.address.as_str())
                .build()
                .await
        })
        .unwrap()
    }

    /// Collects the signals of `io.github.backupctl.Stage1` until the stage ends (or 60 s).
    fn subscribe(&self) -> std::thread::JoinHandle<Vec<zbus::Message>> {
        let connection = self.connect();
        let (ready, subscribed) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            zbus::block_on(async {
                use futures_util::StreamExt;
                let rule = zbus::MatchRule::builder()
                    .msg_type(zbus::message::Type::Signal)
                    .interface("io.github.backupctl.Stage1")
                    .build()
                    .unwrap();
                let mut stream = zbus::MessageStream::for_match_rule(rule, &connection, None)
                    .await
                    .unwrap();
                ready.send(()).unwrap();
                let mut messages = Vec::new();
                while let Some(Ok(message)) = stream.next().await {
                    let member = message.header().member().map(|m| m.to_string());
                    messages.push(message);
                    if matches!(member.as_deref(), Some("BackupComplete" | "Error")) {
                        break;
                    }
                }
                messages
            })
        });
        subscribed.recv_timeout(Duration::from_secs(10)).unwrap();
        thread
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn members(messages: &[zbus::Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m.header().member().map(|m| m.to_string()))
        .collect()
}

#[test]
fn dbus_signals_carry_progress_and_the_journal_figures() {
    let _lock = systemd_lock();
    let setup = Setup::new();
    let bus = Bus::start(setup.scratch.path());
    rsync_config(
        &setup,
        &format!(
            "snapshot_prefix = \"{}\"\nargs = [\"--bwlimit=1500\"]\nenvironment = {{ DBUS_SESSION_BUS_ADDRESS = \"{}\" }}\n",
            setup.fs.mount.display(),
            bus.address
        ),
    );
    std::fs::create_dir_all(setup.scratch("dest")).unwrap();
    let stage = InstalledStage::install(setup.backupctl(), &setup.scratch("units"), "copy", "dbus");
    let signals = bus.subscribe();
    let watch = setup
        .backupctl()
        .args(["watch", "copy"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok(systemctl_user().arg("start").arg(&stage.unit));
    let messages = signals.join().unwrap();
    let watched = watch.wait_with_output().unwrap();

    let names = members(&messages);
    assert_eq!(
        names.first().map(String::as_str),
        Some("BackupStarted"),
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("BackupComplete"),
        "{names:?}"
    );
    let progress = names.iter().filter(|n| *n == "Progress").count();
    assert!(progress >= 2, "only {progress} Progress signals: {names:?}");
    let last_progress = messages
        .iter()
        .rfind(|m| m.header().member().is_some_and(|n| n == "Progress"))
        .unwrap();
    let (_, _, fraction, ..): (u64, u64, f64, u64, u64, u64, u64, u64, Vec<String>) =
        last_progress.body().deserialize().unwrap();
    assert!((0.0..=1.0).contains(&fraction), "percent_done {fraction}");

    type Complete = (
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        i64,
        i64,
        u64,
        u64,
        u64,
        f64,
        String,
        bool,
    );
    let complete: Complete = messages.last().unwrap().body().deserialize().unwrap();
    let journal = ok(Command::new("journalctl")
        .arg(format!("_SYSTEMD_USER_UNIT={}", stage.unit))
        .arg("MESSAGE_ID=edee025d3a2744be8e6fbea7d3476beb")
        .args(["-o", "json", "-n", "1", "--no-pager"]));
    let record: serde_json::Value = serde_json::from_str(journal.trim()).unwrap();
    let field = |name: &str| -> u64 {
        record[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {record}"))
            .parse()
            .unwrap()
    };
    assert_eq!(complete.0, field("BACKUPCTL_FILES_NEW"), "files_new");
    assert_eq!(
        complete.1,
        field("BACKUPCTL_FILES_CHANGED"),
        "files_changed"
    );
    assert_eq!(complete.8, field("BACKUPCTL_BYTES_ADDED"), "data_added");
    assert_eq!(
        complete.9,
        field("BACKUPCTL_FILES"),
        "total_files_processed"
    );
    assert_eq!(
        complete.10,
        field("BACKUPCTL_BYTES_READ"),
        "total_bytes_processed"
    );
    assert!(
        complete.10 > 3 << 20,
        "total_bytes_processed {}",
        complete.10
    );

    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(watched.contains("copy: started"), "{watched}");
    assert!(watched.contains("copy: complete: "), "{watched}");
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new());
}

#[test]
fn dbus_stop_ends_the_stage_and_leaves_no_snapshot() {
    let setup = Setup::new();
    let bus = Bus::start(setup.scratch.path());
    rsync_config(&setup, r#"args = ["--bwlimit=500"]"#);
    let signals = bus.subscribe();
    let child = setup
        .backupctl()
        .args(["run", "--here"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    setup.wait_for_snapshot();
    let connection = bus.connect();
    zbus::block_on(connection.call_method(
        Some("io.github.backupctl.stage.copy"),
        "/io/github/backupctl/stage/copy",
        Some("io.github.backupctl.Stage1"),
        "Stop",
        &(),
    ))
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert_eq!(setup.fs.snapshots(), Vec::<String>::new(), "{log}");
    let messages = signals.join().unwrap();
    let (error, during, _): (String, String, String) =
        messages.last().unwrap().body().deserialize().unwrap();
    assert_eq!(
        (error.as_str(), during.as_str()),
        ("stopped by a signal", "stage")
    );
}

#[test]
fn the_snapshot_example_config_is_valid() {
    let example = crate::util::repo_root().join("examples/snapshot.toml");
    ok(backupctl().arg("--config").arg(&example).arg("check"));
}
