//! End to end under the real systemd user manager (scripts/systemd-sandbox): generate →
//! daemon-reload → `systemctl --user start backup-job`, and what must follow from it: stage
//! order, byte-identical copies, journal fields, `StatusText`, failure routing through
//! `Requires=`/`Wants=`, parallel branches, the timer and `backupctl run` over D-Bus.
//!
//! Everything the units touch lives under /var/lib/backupctl-e2e (not /tmp: the units have
//! `PrivateTmp=`), including a copy of the binary, wherever the checkout is (see
//! `util::installed`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::installed::{Installed, run_records, wait_until_idle};
use crate::util::{
    assert_same_tree, ok, run, stderr, stdout, systemctl_user, systemd_user_env, write,
};

/// A source tree with what a faithful copy must keep.
fn make_source(root: &Path) {
    write(&root.join("notes/today.md"), "# today\n");
    write(&root.join("notes/with space.txt"), "spaces\n");
    write(
        &root.join("data/blob.bin"),
        (0..=255u8).cycle().take(300_000).collect::<Vec<_>>(),
    );
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("notes/today.md", root.join("link")).unwrap();
    std::fs::hard_link(root.join("notes/today.md"), root.join("hardlink.md")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("notes/with space.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
}

const THREE_STAGES: &str = r#"
[job]
schedule = "*-*-* 03:00:00"

[stage.hello]
kind = "hello"
min_free = "1M"

[stage.notes]
kind = "exec"
command = ["/bin/sh", "-c", "echo exporting notes; sleep 3; date +%s.%N > @ROOT@/out/notes-done"]
writes = ["@ROOT@/out"]

[stage.copy]
kind = "rsync"
sources = ["@ROOT@/src/"]
destination = "@ROOT@/dst/"
"#;

#[test]
fn job_runs_hello_exec_and_rsync_in_order_under_the_user_manager() {
    let job = Installed::new("order", THREE_STAGES);
    make_source(&job.path("src"));

    let before = run_ids();
    // Start without blocking, to watch StatusText while the exec stage runs.
    ok(systemctl_user().args(["start", "--no-block", "backup-job.service"]));
    let mut status_texts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = job.show("backup@notes.service", "StatusText");
        if !text.is_empty() && !status_texts.contains(&text) {
            status_texts.push(text);
        }
        let pending = ok(systemctl_user().args(["list-jobs", "--no-legend"]));
        if pending.trim().is_empty()
            && job.show("backup-job.service", "ActiveState") != "activating"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish; jobs:\n{pending}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        status_texts.iter().any(|t| t.contains("running /bin/sh")),
        "StatusText seen while running: {status_texts:?}"
    );

    // What ran, from the run records (systemd may unload finished units before `show`).
    let records = new_records(&before);
    let stages: Vec<&str> = records
        .iter()
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["hello", "notes", "copy"], "{records:?}");
    assert!(
        records.iter().all(|r| r["result"] == "success"),
        "{records:?}"
    );
    // Order: each stage started after the previous one ended.
    let time = |r: &serde_json::Value, key: &str| -> jiff::Timestamp {
        r[key].as_str().unwrap().parse().unwrap()
    };
    assert!(time(&records[0], "finished") <= time(&records[1], "started"));
    assert!(time(&records[1], "finished") <= time(&records[2], "started"));
    assert!(job.path("out/notes-done").is_file());
    assert_same_tree(&job.path("src"), &job.path("dst"));

    // The journal holds the stage's records with our fields, under its invocation id.
    let invocation = records[2]["run"].as_str().unwrap();
    let journal = ok(Command::new("journalctl").args([
        "-o",
        "json",
        "--no-pager",
        "BACKUPCTL_STAGE=copy",
        &format!("BACKUPCTL_RUN={invocation}"),
    ]));
    let journal: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(journal.len() >= 2, "records of the copy stage: {journal:?}");
    assert!(journal.iter().all(|r| r["BACKUPCTL_JOB"] == "job"));
    assert!(
        journal
            .iter()
            .any(|r| r["_SYSTEMD_INVOCATION_ID"] == invocation),
        "BACKUPCTL_RUN is the unit's invocation id"
    );
    let done = journal
        .iter()
        .find(|r| r["MESSAGE_ID"] == backupctl::report::messages::STAGE_SUCCEEDED)
        .expect("a succeeded record");
    // 9 entries: the root, 3 directories, 3 files, a symlink and a hard link.
    assert_eq!(done["BACKUPCTL_FILES"], "9", "{done}");
    // The job unit ran last and logged its summary.
    let summary = ok(Command::new("journalctl").args([
        "-o",
        "cat",
        "--no-pager",
        &format!("MESSAGE_ID={}", backupctl::report::messages::JOB_FINISHED),
        "BACKUPCTL_JOB=job",
        "-n",
        "1",
    ]));
    assert!(
        summary.contains("hello succeeded, notes succeeded, copy succeeded"),
        "{summary}"
    );
}

fn run_ids() -> Vec<String> {
    run_records()
        .iter()
        .map(|r| r["run"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Run records appended since `before` was taken.
fn new_records(before: &[String]) -> Vec<serde_json::Value> {
    run_records()
        .into_iter()
        .filter(|r| !before.iter().any(|id| r["run"] == id.as_str()))
        .collect()
}

#[test]
fn a_failing_required_stage_fails_the_job_and_its_dependents_never_start() {
    let job = Installed::new(
        "failure",
        r#"
[stage.first]
kind = "exec"
command = ["/bin/true"]

[stage.broken]
kind = "exec"
command = ["/bin/sh", "-c", "echo disk on fire >&2; exit 3"]

[stage.after_broken]
kind = "exec"
command = ["/bin/sh", "-c", "touch @ROOT@/out/after_broken"]
writes = ["@ROOT@/out"]

[stage.optional]
kind = "exec"
after = ["first"]
required = false
command = ["/bin/false"]

[stage.after_optional]
kind = "exec"
after = ["optional"]
command = ["/bin/sh", "-c", "touch @ROOT@/out/after_optional; sleep 0"]
writes = ["@ROOT@/out"]
"#,
    );
    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(!output.status.success(), "the job must fail");
    // `start` returns when the job unit failed; stages that do not depend on the failure
    // may still be running.
    wait_until_idle();
    assert_eq!(job.show("backup@broken.service", "Result"), "exit-code");
    assert_eq!(job.show("backup@broken.service", "ExecMainStatus"), "1");
    assert!(
        !job.path("out/after_broken").exists(),
        "a dependent of a failed stage started"
    );
    // The optional stage failed, and its dependent ran anyway (Wants=, not Requires=).
    assert_eq!(job.show("backup@optional.service", "Result"), "exit-code");
    assert!(
        job.path("out/after_optional").exists(),
        "the dependent of an optional stage did not run"
    );

    // `backupctl run` over D-Bus reports the same and exits 1.
    ok(systemctl_user().arg("reset-failed"));
    let output = run(Command::new(&job.binary)
        .arg("--config")
        .arg(&job.config)
        .args(["--user", "run"])
        .envs(systemd_user_env().iter().map(|(k, v)| (k, v))));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    assert!(
        text.contains("broken") && text.contains("failed (exit-code)"),
        "{text}"
    );
    assert!(
        text.contains("after_broken") && text.contains("not run"),
        "{text}"
    );
    assert!(text.contains("job job failed"), "{text}");
}

#[test]
fn a_failing_optional_stage_does_not_fail_the_job() {
    let _job = Installed::new(
        "optional",
        r#"
[stage.main]
kind = "exec"
command = ["/bin/true"]

[stage.extra]
kind = "exec"
required = false
command = ["/bin/false"]
"#,
    );
    ok(systemctl_user().args(["start", "backup-job.service"]));
}

#[test]
fn two_stages_after_the_same_parent_run_in_parallel() {
    let job = Installed::new(
        "parallel",
        r#"
[stage.parent]
kind = "exec"
command = ["/bin/true"]

[stage.left]
kind = "exec"
after = ["parent"]
command = ["/bin/sh", "-c", "date +%s.%N > @ROOT@/out/left-start; sleep 2; date +%s.%N > @ROOT@/out/left-end"]
writes = ["@ROOT@/out"]

[stage.right]
kind = "exec"
after = ["parent"]
command = ["/bin/sh", "-c", "date +%s.%N > @ROOT@/out/right-start; sleep 2; date +%s.%N > @ROOT@/out/right-end"]
writes = ["@ROOT@/out"]
"#,
    );
    ok(systemctl_user().args(["start", "backup-job.service"]));
    let time = |name: &str| -> f64 {
        std::fs::read_to_string(job.path(&format!("out/{name}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (left, right) = (
        (time("left-start"), time("left-end")),
        (time("right-start"), time("right-end")),
    );
    assert!(
        left.0 < right.1 && right.0 < left.1,
        "left {left:?} and right {right:?} did not overlap"
    );
}

#[test]
fn the_timer_is_listed_with_its_calendar_and_its_unit_runs_the_job() {
    let job = Installed::new("timer", THREE_STAGES);
    make_source(&job.path("src"));
    ok(systemctl_user().args(["start", "backup-job.timer"]));
    let timers = ok(systemctl_user().args(["list-timers", "--all", "--no-pager"]));
    assert!(
        timers.contains("backup-job.timer") && timers.contains("backup-job.service"),
        "{timers}"
    );
    let calendar = job.show("backup-job.timer", "TimersCalendar");
    assert!(calendar.contains("OnCalendar=*-*-* 03:00:00"), "{calendar}");
    // The timer's unit, started by hand, runs the whole job.
    ok(systemctl_user().args(["start", "backup-job.service"]));
    assert_same_tree(&job.path("src"), &job.path("dst"));
}

#[test]
fn run_through_dbus_follows_the_stages_and_succeeds() {
    let job = Installed::new("dbus-run", THREE_STAGES);
    make_source(&job.path("src"));
    let out = ok(Command::new(&job.binary)
        .arg("--config")
        .arg(&job.config)
        .args(["--user", "run"])
        .envs(systemd_user_env().iter().map(|(k, v)| (k, v))));
    for stage in ["hello", "notes", "copy"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(stage) && l.contains("success")),
            "{out}"
        );
    }
    assert!(out.contains("job job succeeded"), "{out}");
    assert_same_tree(&job.path("src"), &job.path("dst"));
}
