//! `run --here` and `stage` without systemd: the same DAG in this process, failure routing
//! like `Requires=`/`Wants=`, conditions, signals, preflight failures, run records.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{
    assert_same_tree, backupctl_in, ok, require_tool, run, stderr, tempdir, write, write_config,
};

fn config(dir: &Path, text: &str) {
    write_config(dir, text);
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    crate::util::read_run_records(&dir.join("state/backupctl/runs.jsonl"))
}

#[test]
fn runs_the_job_in_order_and_copies_byte_for_byte() {
    require_tool("rsync");
    let dir = tempdir();
    let dir = dir.path();
    write(&dir.join("src/a.txt"), "a");
    write(&dir.join("src/deep/b.bin"), vec![7u8; 100_000]);
    std::os::unix::fs::symlink("a.txt", dir.join("src/link")).unwrap();
    config(
        dir,
        r#"
[stage.hello]
kind = "hello"
min_free = "1M"

[stage.notes]
kind = "exec"
command = ["/bin/sh", "-c", "echo $GREETING > @ROOT@/notes.txt"]
[stage.notes.environment]
GREETING = "hello from the environment"

[stage.copy]
kind = "rsync"
sources = ["@ROOT@/src/"]
destination = "@ROOT@/dst/"
"#,
    );
    let output = run(backupctl_in(dir).args(["run", "--here"]));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert_same_tree(&dir.join("src"), &dir.join("dst"));
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "hello from the environment\n"
    );
    for stage in ["hello", "notes", "copy"] {
        assert!(
            log.lines()
                .any(|l| l.starts_with(stage) && l.contains("success")),
            "{log}"
        );
    }
    let records = records(dir);
    let stages: Vec<&str> = records
        .iter()
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["hello", "notes", "copy"]);
    assert!(
        records.iter().all(|r| r["run"] == records[0]["run"]),
        "one run id for the job"
    );
    assert_eq!(records[2]["figures"]["files"], 5);
}

#[test]
fn a_failed_required_stage_stops_its_dependents_an_optional_one_does_not() {
    let dir = tempdir();
    let dir = dir.path();
    config(
        dir,
        r#"
[stage.first]
kind = "exec"
command = ["/bin/true"]

[stage.broken]
kind = "exec"
command = ["/bin/sh", "-c", "echo no space left >&2; exit 4"]

[stage.after_broken]
kind = "exec"
command = ["/bin/sh", "-c", "touch @ROOT@/must-not-exist"]

[stage.optional]
kind = "exec"
after = ["first"]
required = false
command = ["/bin/false"]

[stage.after_optional]
kind = "exec"
after = ["optional"]
command = ["/bin/sh", "-c", "touch @ROOT@/ran"]
"#,
    );
    let output = run(backupctl_in(dir).args(["run", "--here"]));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("sh failed with exit code 4: no space left"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("after_broken") && l.contains("not run")),
        "{log}"
    );
    assert!(!dir.join("must-not-exist").exists());
    assert!(
        dir.join("ran").exists(),
        "the dependent of an optional stage runs"
    );
}

#[test]
fn a_stage_whose_disk_is_not_mounted_is_skipped_cleanly() {
    let dir = tempdir();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("usb")).unwrap();
    config(
        dir,
        r#"
[stage.usb]
kind = "exec"
when_mounted = "@ROOT@/usb"
command = ["/bin/sh", "-c", "touch @ROOT@/copied"]

[stage.after]
kind = "exec"
command = ["/bin/sh", "-c", "touch @ROOT@/after"]
"#,
    );
    let output = run(backupctl_in(dir).args(["run", "--here"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!dir.join("copied").exists());
    assert!(dir.join("after").exists());
    assert_eq!(records(dir)[0]["result"], "skipped");
}

/// Starts `backupctl stage slow` in `dir`, an exec stage running `script` under `sh -c`
/// (stderr piped), and waits until the script has made the file `marker` of `dir`.
fn start_stage_slow(dir: &Path, script: &str, marker: &str) -> std::process::Child {
    config(
        dir,
        &format!("[stage.slow]\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"{script}\"]\n"),
    );
    let child = backupctl_in(dir)
        .args(["stage", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join(marker).exists() {
        assert!(Instant::now() < deadline, "the tool did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Sends `signal` to the stage's process (as another process would: `kill`).
fn signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[test]
fn sigterm_stops_the_running_tool_and_the_stage_reports_it() {
    let dir = tempdir();
    let dir = dir.path();
    let mut child = start_stage_slow(dir, "echo $$ > @ROOT@/pid; exec sleep 60", "pid");
    let tool_pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let started = Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert!(
        !Path::new(&format!("/proc/{tool_pid}")).exists(),
        "the tool (pid {tool_pid}) outlived the stage"
    );
    assert_eq!(records(dir)[0]["result"], "interrupted");
}

/// restic sends SIGHUP to the PID of a lock of this host to see whether its process lives;
/// after a power cut that PID may be a running stage's (the power-cut campaign, seed 1207,
/// cut 6: a stage stopped "by a signal" when another stage's `restic unlock` probed a lock
/// of the cut run). A SIGHUP from a process is not a stop request: the stage runs on.
#[test]
fn a_sighup_sent_by_a_process_does_not_stop_the_stage() {
    let dir = tempdir();
    let dir = dir.path();
    let child = start_stage_slow(
        dir,
        "touch @ROOT@/started; while [ ! -e @ROOT@/go ]; do sleep 0.05; done; echo done > @ROOT@/ended",
        "started",
    );
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    // Time for the signal to be handled before the tool may end.
    std::thread::sleep(Duration::from_millis(500));
    write(&dir.join("go"), "");
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(dir.join("ended").exists(), "{said}");
    assert_eq!(records(dir)[0]["result"], "success");
    assert!(said.contains("SIGHUP from process"), "{said}");
}

#[test]
fn hello_fails_precisely_on_a_secret_readable_by_others() {
    let dir = tempdir();
    let dir = dir.path();
    write(&dir.join("password"), "hunter2");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("password"), std::fs::Permissions::from_mode(0o644)).unwrap();
    config(
        dir,
        r#"
[stage.hello]
kind = "hello"
tools = ["backupctl-no-such-tool"]

[stage.offsite]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
paths = ["@ROOT@"]
"#,
    );
    let output = run(backupctl_in(dir).args(["stage", "hello"]));
    assert_eq!(output.status.code(), Some(3), "preflight failures exit 3");
    let log = stderr(&output);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("FAIL") && table.contains("backupctl-no-such-tool"),
        "{table}"
    );
    assert!(
        log.contains(&format!(
            "is readable by its group and others (mode 0644); run: chmod 600 {}/password",
            dir.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("backupctl-no-such-tool: not found in PATH"),
        "{log}"
    );
    assert!(
        !log.contains("hunter2") && !table.contains("hunter2"),
        "the secret leaked"
    );
}

#[test]
fn check_prints_the_resolved_graph() {
    let dir = tempdir();
    let dir = dir.path();
    config(
        dir,
        r#"
[job]
schedule = "daily"

[stage.hello]
kind = "hello"

[stage.left]
kind = "exec"
command = ["/bin/true"]

[stage.right]
kind = "exec"
after = ["hello"]
required = false
command = ["/bin/true"]
"#,
    );
    let out = ok(backupctl_in(dir).arg("check"));
    assert!(
        out.contains("job job (backup-job.service, backup-job.timer (daily))"),
        "{out}"
    );
    assert!(out.contains("    left   exec     after hello\n"), "{out}");
    assert!(
        out.contains("    right  exec     after hello, may fail"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(backupctl_in(dir).args(["check", "--json"]))).unwrap();
    assert_eq!(json["jobs"][0]["stages"][2]["depth"], 1);
    assert_eq!(json["jobs"][0]["stages"][2]["required"], false);
}

#[test]
fn user_scope_keeps_state_where_the_user_units_do_whatever_xdg_state_home_says() {
    // The user units name %h/.local/state/backupctl (systemd 252 cannot follow
    // $XDG_STATE_HOME); `run --here` and `status` must use the same directory, or a manual
    // run would not share the units' stage locks and `status` would miss their runs.
    let home = tempdir();
    let home = home.path();
    config(
        home,
        "[stage.noop]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
    );
    let elsewhere = home.join("xdg-state");
    let with_env = |command: &mut std::process::Command| {
        command
            .env_remove("STATE_DIRECTORY")
            .env("HOME", home)
            .env("XDG_STATE_HOME", &elsewhere);
    };
    let mut here = backupctl_in(home);
    with_env(&mut here);
    ok(here.args(["run", "--here"]));
    let runs = home.join(".local/state/backupctl/runs.jsonl");
    let text = std::fs::read_to_string(&runs)
        .unwrap_or_else(|e| panic!("no run record in {}: {e}", runs.display()));
    assert!(text.contains("\"stage\":\"noop\""), "{text}");
    assert!(!elsewhere.exists(), "state written under $XDG_STATE_HOME");
    let mut status = backupctl_in(home);
    with_env(&mut status);
    let json: serde_json::Value =
        serde_json::from_str(&ok(status.args(["status", "--json"]))).unwrap();
    assert_eq!(
        json["jobs"][0]["stages"][0]["result"], "success",
        "{json:#}"
    );
}
