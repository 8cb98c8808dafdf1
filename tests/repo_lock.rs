//! One lock per restic repository, under the real user manager: two backups of one
//! repository run at once; a prune started during them waits (its `StatusText` and
//! `backupctl status` say for whom) and then prunes; a forget whose `lock_wait` runs out fails
//! naming the backup; and a lock restic itself holds, out of our lock's reach (another host's,
//! here a restic run by hand), is waited out as live. The backups are restic `stdin_from`
//! commands that wait for a file the test creates, so every wait is on a state, never a
//! duration; the restores are compared byte for byte.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::installed::{Installed, run_records, wait_until_idle};
use crate::util::{ok, random_file, require_tool, run, systemctl_user, write_secret};

const CONFIG: &str = r#"
[jobs.weekly]

[stage.slow]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
stdin_from = ["/bin/sh", "-c", "while [ ! -e @ROOT@/go ]; do sleep 0.1; done; cat @ROOT@/slow.bin"]
stdin_filename = "slow.bin"

# The same repository spelt otherwise: one lock all the same.
[stage.laptop]
kind = "restic"
after = []
repository = "local:@ROOT@/repo/"
password_file = "@ROOT@/password"
stdin_from = ["/bin/sh", "-c", "while [ ! -e @ROOT@/go ]; do sleep 0.1; done; cat @ROOT@/laptop.bin"]
stdin_filename = "laptop.bin"

[stage.prune]
kind = "restic"
job = "weekly"
operation = "prune"
keep = { last = 10 }
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"

[stage.impatient]
kind = "restic"
job = "weekly"
after = []
operation = "forget"
keep = { last = 10 }
lock_wait = "2s"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
"#;

/// The installed job, its repository created and the backups' data written.
fn setup(name: &str) -> Installed {
    require_tool("restic");
    let installed = Installed::new(name, CONFIG);
    write_secret(&installed.path("password"), "repo-lock-test\n");
    random_file(&installed.path("slow.bin"), 3 << 20);
    random_file(&installed.path("laptop.bin"), 1 << 20);
    ok(&mut restic(&installed, &["init"]));
    installed
}

fn restic(installed: &Installed, args: &[&str]) -> Command {
    let mut command = Command::new("restic");
    command
        .arg("--repo")
        .arg(installed.path("repo"))
        .arg("--password-file")
        .arg(installed.path("password"))
        .arg("--no-cache")
        .args(args);
    command
}

fn start(unit: &str) {
    ok(systemctl_user().args(["start", "--no-block", unit]));
}

/// Polls `what` until it returns `Some`, failing with `waiting_for` after a minute.
#[track_caller]
fn wait_for<T>(waiting_for: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = what() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {waiting_for}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the stage's unit runs and says `status` (its `StatusText`).
#[track_caller]
fn wait_for_status(installed: &Installed, stage: &str, status: &str) -> String {
    let unit = format!("backup@{stage}.service");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = installed.show(&unit, "StatusText");
        // A stage's unit is "activating" while it runs (Type=notify until it ends).
        let running =
            ["activating", "active"].contains(&installed.show(&unit, "ActiveState").as_str());
        if running && text.contains(status) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{unit} never said {status:?}; last: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until a backup stage's restic runs: its progress ("0%, 0 B, 0/1 files, ETA …") is
/// its `StatusText`.
#[track_caller]
fn wait_for_backup(installed: &Installed, stage: &str) {
    wait_for_status(installed, stage, " files, ETA ");
}

fn record(stage: &str) -> serde_json::Value {
    run_records()
        .into_iter()
        .rfind(|r| r["stage"] == stage)
        .unwrap_or_else(|| panic!("no run record of {stage}"))
}

/// Restores `file` (a stdin backup's name) of the newest snapshot holding it and compares it
/// byte for byte with the source.
#[track_caller]
fn assert_restored(installed: &Installed, file: &str) {
    let target = installed.path(&format!("restore-{file}"));
    let path = format!("/{file}");
    ok(restic(
        installed,
        &["restore", "latest", "--path", &path, "--target"],
    )
    .arg(&target));
    let restored = std::fs::read(target.join(file)).unwrap();
    let source = std::fs::read(installed.path(file)).unwrap();
    assert!(
        restored == source,
        "{file}: the restore differs from the source"
    );
}

fn go(installed: &Installed) {
    std::fs::write(installed.path("go"), "").unwrap();
}

#[test]
fn two_backups_share_the_repository_and_a_prune_waits_for_both_then_prunes() {
    let installed = setup("repo-lock-prune");
    start("backup@slow.service");
    start("backup@laptop.service");
    // Both back up at once: each holds the repository's shared lock.
    wait_for_backup(&installed, "slow");
    wait_for_backup(&installed, "laptop");
    // The slow one cannot have ended: its input waits for the file `go` makes.
    assert_eq!(
        installed.show("backup@slow.service", "ActiveState"),
        "activating"
    );

    start("backup@prune.service");
    let waiting = wait_for_status(&installed, "prune", "waiting for repository");
    assert!(
        waiting.starts_with(&format!(
            "waiting for repository {}, held by stage ",
            installed.path("repo").display()
        )),
        "{waiting}"
    );
    for stage in ["slow", "laptop"] {
        assert!(
            waiting.contains(&format!("stage {stage} (job job, shared) since ")),
            "{waiting}"
        );
    }
    // `backupctl status` shows it on the running stage's row.
    let status = ok(&mut installed.backupctl(&["status"]));
    assert!(status.contains("waiting for repository"), "{status}");

    go(&installed);
    wait_until_idle();
    for stage in ["slow", "laptop", "prune"] {
        let record = record(stage);
        assert_eq!(record["result"], "success", "{stage}: {record}");
    }
    // The prune ran after both backups ended: restic's own lock never refused it.
    let prune_run = format!("BACKUPCTL_RUN={}", record("prune")["run"].as_str().unwrap());
    let journal = ok(Command::new("journalctl").args(["-o", "cat", "--no-pager", &prune_run]));
    assert!(journal.contains("waiting for repository"), "{journal}");
    assert!(!journal.contains("already locked"), "{journal}");
    assert_restored(&installed, "slow.bin");
    assert_restored(&installed, "laptop.bin");
}

#[test]
fn a_forget_whose_lock_wait_runs_out_fails_naming_the_backup() {
    let installed = setup("repo-lock-limit");
    start("backup@slow.service");
    wait_for_backup(&installed, "slow");

    start("backup@impatient.service");
    wait_for("the impatient forget's run record", || {
        run_records()
            .into_iter()
            .find(|r| r["stage"] == "impatient")
    });
    wait_for("the impatient forget's unit to fail", || {
        (installed.show("backup@impatient.service", "ActiveState") == "failed").then_some(())
    });
    let record = record("impatient");
    assert_eq!(record["exit_code"], 75, "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "gave up waiting for repository {} after 2s (`lock_wait`): still held by stage slow (job job, shared) since ",
            installed.path("repo").display()
        )),
        "{error}"
    );
    assert!(
        error.ends_with("raise the stage's `lock_wait`, or move its timer away from the holder's"),
        "{error}"
    );
    assert_eq!(
        installed.show("backup@impatient.service", "ExecMainStatus"),
        "75"
    );

    go(&installed);
    wait_until_idle();
    assert_eq!(record_result("slow"), "success");
    assert_restored(&installed, "slow.bin");
}

fn record_result(stage: &str) -> String {
    record(stage)["result"].as_str().unwrap().to_string()
}

/// A restic run by hand holds restic's own lock: out of reach of ours, as another host's is.
/// The forget sees it is live (its process runs), waits, and forgets once it is gone.
#[test]
fn a_lock_restic_holds_outside_our_lock_is_waited_out_as_live() {
    let installed = setup("repo-lock-fleet");
    let mut by_hand: Child = restic(
        &installed,
        &["backup", "--stdin", "--stdin-filename", "hand.bin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let _lock = wait_for("the restic run by hand to lock the repository", || {
        std::fs::read_dir(installed.path("repo/locks"))
            .ok()
            .and_then(|mut locks| locks.next())
            .and_then(Result::ok)
    });

    start("backup@prune.service");
    let waiting = wait_for_status(&installed, "prune", "locked by restic");
    let expected = format!(
        "waiting for repository {}, locked by restic PID {} on ",
        installed.path("repo").display(),
        by_hand.id()
    );
    assert!(waiting.starts_with(&expected), "{waiting}");
    assert!(waiting.contains(", shared, created at "), "{waiting}");
    assert!(waiting.contains(", live; retry in "), "{waiting}");

    // End the run by hand: its snapshot is saved, its lock removed; the prune goes on.
    use std::io::Write;
    let mut stdin = by_hand.stdin.take().unwrap();
    stdin.write_all(b"by hand\n").unwrap();
    drop(stdin);
    assert!(by_hand.wait().unwrap().success());
    wait_until_idle();
    let record = record("prune");
    assert_eq!(record["result"], "success", "{record}");
    let prune_run = format!("BACKUPCTL_RUN={}", record["run"].as_str().unwrap());
    let journal = ok(Command::new("journalctl").args(["-o", "cat", "--no-pager", &prune_run]));
    assert!(journal.contains("locked by restic PID"), "{journal}");
    let _ = run(&mut restic(&installed, &["unlock"]));
    let restore = installed.path("restore-hand");
    ok(restic(&installed, &["restore", "latest", "--target"]).arg(&restore));
    assert_eq!(
        std::fs::read(restore.join("hand.bin")).unwrap(),
        b"by hand\n"
    );
}
