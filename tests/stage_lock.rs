//! One run of a stage at a time, and tools that die with their stage: two `run --here`, a
//! unit and `run --here`, `--wait`, and `kill -9` of `run --here` in the middle of a copy.
//! The copies are paced with rsync's `--bwlimit`; the tests wait for rsync's temporary file to
//! appear (the copy is under way), never for a duration.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::installed::{Installed, run_records};
use crate::util::{
    assert_same_tree, backupctl, incompressible_bytes, ok, require_tool, run, stderr,
    systemctl_user, write,
};

/// A scratch directory under target/tmp (never /tmp: units run with `PrivateTmp=`) holding
/// the config, the state, a source with one big incompressible file and the destination.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// `bwlimit`: rsync's pace in KiB/s; `megabytes`: the size of `src/big.bin`.
    fn new(bwlimit: u32, megabytes: usize) -> Scratch {
        require_tool("rsync");
        let dir = tempfile::Builder::new()
            .prefix("stage-lock-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let scratch = Scratch { dir };
        make_source(&scratch.path("src"), megabytes);
        scratch.config(bwlimit);
        scratch
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// One rsync stage `copy`; `bwlimit` 0: unpaced.
    fn config(&self, bwlimit: u32) {
        let args = if bwlimit == 0 {
            String::new()
        } else {
            format!("args = [\"--bwlimit={bwlimit}\"]\n")
        };
        write(
            &self.path("config.toml"),
            format!(
                "[stage.copy]\nkind = \"rsync\"\nsources = [\"{src}/\"]\ndestination = \"{dst}/\"\n{args}",
                src = self.path("src").display(),
                dst = self.path("dst").display(),
            ),
        );
    }

    /// `backupctl --user --config CONFIG` with its state in the scratch directory.
    fn backupctl(&self) -> Command {
        let mut command = backupctl();
        command
            .env("STATE_DIRECTORY", self.path("state/backupctl"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .arg("--user")
            .arg("--config")
            .arg(self.path("config.toml"));
        command
    }

    /// `run --here` started in the background, its output captured.
    fn spawn_run_here(&self, extra: &[&str]) -> Child {
        self.backupctl()
            .args(["run", "--here"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn records(&self) -> Vec<serde_json::Value> {
        crate::util::read_run_records(&self.path("state/backupctl/runs.jsonl"))
    }
}

/// A small tree and `big.bin`, incompressible so that `--bwlimit` paces the copy.
fn make_source(src: &Path, megabytes: usize) {
    write(&src.join("notes/a.txt"), "alpha\n");
    write(&src.join("notes/b.txt"), "beta\n");
    write(&src.join("big.bin"), incompressible_bytes(megabytes << 20));
}

/// Waits for a background run and returns (exit code, stderr).
fn finish(child: Child) -> (Option<i32>, String) {
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Live processes named `name` whose command line mentions `needle` (zombies have none).
fn processes(name: &str, needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if comm.trim() == name && cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[test]
fn two_run_here_of_one_stage_at_once_killed_each_others_partial_files() {
    // On main, run B removed run A's partial file as "left by a killed run"; A failed (23).
    let scratch = Scratch::new(1000, 3);
    let mut first = scratch.spawn_run_here(&[]);
    crate::util::wait_for_partial_file(&scratch.path("dst"), Some(&mut first));

    let second = run(scratch.backupctl().args(["run", "--here"]));
    let log = stderr(&second);
    assert_eq!(second.status.code(), Some(75), "{log}");
    let expected = format!(
        "stage `copy` is already running (pid {}, started ",
        first.id()
    );
    assert!(log.contains(&expected), "{log}");
    assert!(log.contains(" by backupctl run --here); "), "{log}");
    assert!(
        log.contains(&format!("stop it with kill {}", first.id())),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("copy") && l.contains("busy")),
        "{log}"
    );

    let (code, log) = finish(first);
    assert_eq!(code, Some(0), "{log}");
    assert_same_tree(&scratch.path("src"), &scratch.path("dst"));
    // The refused run did nothing, and is no run of the stage in the records.
    let records = scratch.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["result"], "success");
}

#[test]
fn run_here_wait_waits_for_the_running_one_then_copies() {
    let scratch = Scratch::new(1000, 3);
    let mut first = scratch.spawn_run_here(&[]);
    crate::util::wait_for_partial_file(&scratch.path("dst"), Some(&mut first));

    let second = scratch.spawn_run_here(&["--wait"]);
    let (code, first_log) = finish(first);
    assert_eq!(code, Some(0), "{first_log}");
    let (code, log) = finish(second);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("stage `copy` is already running (pid ")
            && log.contains("waiting for it to end"),
        "{log}"
    );
    assert_eq!(log.matches("waiting for it to end").count(), 1, "{log}");
    assert_same_tree(&scratch.path("src"), &scratch.path("dst"));
    // Both ran, one after the other.
    let records = scratch.records();
    assert_two_successes_one_after_the_other(&records);
}

#[test]
fn kill_9_of_run_here_left_rsync_running_as_an_orphan() {
    // 8 MiB at 500 KiB/s: an orphaned rsync would copy on for ~16 s.
    let scratch = Scratch::new(500, 8);
    let needle = scratch.path("src").display().to_string();
    let mut first = scratch.spawn_run_here(&[]);
    crate::util::wait_for_partial_file(&scratch.path("dst"), Some(&mut first));
    assert!(
        !processes("rsync", &needle).is_empty(),
        "the check for rsync processes finds the running copy"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes("rsync", &needle);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rsync still runs 5 s after `run --here` was killed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    scratch.config(0);
    ok(scratch.backupctl().args(["run", "--here"]));
    assert_same_tree(&scratch.path("src"), &scratch.path("dst"));
}

/// The OOM killer's way: SIGKILL to rsync alone. Its temporary file stays (it had no chance
/// to remove it), the run fails, and the next run removes the half file before copying.
#[test]
fn an_rsync_killed_alone_leaves_its_partial_file_to_the_next_run() {
    let scratch = Scratch::new(500, 8);
    let needle = scratch.path("src").display().to_string();
    let mut first = scratch.spawn_run_here(&[]);
    let partial = crate::util::wait_for_partial_file(&scratch.path("dst"), Some(&mut first));
    let rsyncs = processes("rsync", &needle);
    assert!(!rsyncs.is_empty(), "the copy's rsync processes are found");
    // Stop them all before killing any: killed one by one, a survivor (the receiver) sees
    // the broken pipe and deletes its temporary file before its own SIGKILL arrives.
    for signal in [
        nix::sys::signal::Signal::SIGSTOP,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        for (pid, _) in &rsyncs {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
        }
    }
    let (code, log) = finish(first);
    assert_eq!(code, Some(1), "a killed rsync fails the run: {log}");
    assert!(log.contains("rsync was killed by signal 9"), "{log}");
    assert!(partial.exists(), "SIGKILL leaves rsync's temporary file");

    scratch.config(0);
    ok(scratch.backupctl().args(["run", "--here"]));
    assert!(!partial.exists(), "{} is still there", partial.display());
    assert_same_tree(&scratch.path("src"), &scratch.path("dst"));
}

#[test]
fn run_here_while_the_stage_unit_runs_was_not_refused() {
    require_tool("systemctl");
    let installed = installed_slow_copy("stage-lock", "lockcopy");
    let before = stage_records("lockcopy").len();
    let unit = "backup@lockcopy.service";
    ok(systemctl_user().args(["start", "--no-block", unit]));
    // The unit's copy is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(installed.path("dst")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".big.bin."))
    }) {
        assert!(
            Instant::now() < deadline,
            "the unit's rsync wrote nothing within 60 s: {}",
            installed.show(unit, "ActiveState")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let main_pid = installed.show(unit, "MainPID");

    // `run --here` of the same stage, with the unit's state directory.
    let here = run(&mut manual_run(&installed));
    let log = stderr(&here);
    assert_eq!(here.status.code(), Some(75), "{log}");
    assert!(
        log.contains(&format!(
            "stage `lockcopy` is already running (pid {main_pid}, started "
        )) && log.contains(&format!(
            "by {unit}); wait for it (`--wait`) or stop it with systemctl --user stop {unit}"
        )),
        "{log}"
    );

    // The unit's run was left alone: it succeeds, its copy whole.
    wait_until_ended(&installed, unit);
    let records: Vec<_> = stage_records("lockcopy").into_iter().skip(before).collect();
    assert_eq!(
        records.len(),
        1,
        "one run of the stage, the unit's: {records:?}"
    );
    assert_eq!(records[0]["result"], "success", "{records:?}");
    assert_same_tree(&installed.path("src"), &installed.path("dst"));
}

/// Two successful run records, the second started after the first had finished.
fn assert_two_successes_one_after_the_other(records: &[serde_json::Value]) {
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records.iter().all(|r| r["result"] == "success"),
        "{records:?}"
    );
    let time = |r: &serde_json::Value, key: &str| {
        r[key].as_str().unwrap().parse::<jiff::Timestamp>().unwrap()
    };
    assert!(
        time(&records[1], "started") >= time(&records[0], "finished"),
        "{records:?}"
    );
}

/// A job of one slow rsync copy (3 MiB at 1000 KiB/s), installed for the user manager.
fn installed_slow_copy(job: &str, stage: &str) -> Installed {
    let installed = Installed::new(
        job,
        &format!(
            r#"
[stage.{stage}]
kind = "rsync"
sources = ["@ROOT@/src/"]
destination = "@ROOT@/dst/"
args = ["--bwlimit=1000"]
"#
        ),
    );
    make_source(&installed.path("src"), 3);
    std::fs::create_dir_all(installed.path("dst")).unwrap();
    installed
}

/// `backupctl run --here` of the installed job, sharing the units' state directory (user
/// scope: ~/.local/state/backupctl) and so their stage locks.
fn manual_run(installed: &Installed) -> Command {
    let mut command = Command::new(&installed.binary);
    command
        .env_remove("INVOCATION_ID")
        .env_remove("STATE_DIRECTORY")
        .env("HOME", "/root")
        .args(["--user", "--config"])
        .arg(&installed.config)
        .args(["run", "--here"]);
    command
}

/// The run records of `stage` in the user manager's state directory.
fn stage_records(stage: &str) -> Vec<serde_json::Value> {
    run_records()
        .into_iter()
        .filter(|r| r["stage"] == stage)
        .collect()
}

/// Waits (up to 60 s) until `unit` is no longer starting, running or stopping.
fn wait_until_ended(installed: &Installed, unit: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(
        installed.show(unit, "ActiveState").as_str(),
        "activating" | "active" | "deactivating"
    ) {
        assert!(Instant::now() < deadline, "{unit} did not end within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stage_unit_started_during_run_here_waits_for_it_then_runs() {
    require_tool("systemctl");
    let installed = installed_slow_copy("stage-wait", "waitcopy");
    let before = stage_records("waitcopy").len();

    // A manual run, with the units' state directory.
    let mut here = manual_run(&installed)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::util::wait_for_partial_file(&installed.path("dst"), Some(&mut here));

    // The timer's run meanwhile: the unit waits, and says so, instead of failing.
    let unit = "backup@waitcopy.service";
    ok(systemctl_user().args(["start", "--no-block", unit]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = installed.show(unit, "StatusText");
        if status.contains("waiting for it to end") {
            assert!(
                status.contains("stage `waitcopy` is already running (pid ")
                    && status.contains("by backupctl run --here"),
                "{status}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unit} did not say it waits within 60 s: {} {status:?}",
            installed.show(unit, "ActiveState")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(installed.show(unit, "ActiveState"), "activating");

    let (code, log) = finish(here);
    assert_eq!(code, Some(0), "{log}");
    wait_until_ended(&installed, unit);
    assert_eq!(installed.show(unit, "Result"), "success");
    // Two runs, one after the other: the manual one, then the unit's.
    let records: Vec<_> = stage_records("waitcopy").into_iter().skip(before).collect();
    assert_two_successes_one_after_the_other(&records);
    assert_same_tree(&installed.path("src"), &installed.path("dst"));
}
