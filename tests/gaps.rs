//! What a NixOS `services.restic.backups` user expects (issue 13): timer settings, a cleanup
//! command that runs after failure too (`ExecStopPost=`), restic sources from a file list and
//! from a command's output, and sleep inhibition. Runs real restic and the real systemd user
//! manager (scripts/systemd-sandbox); the generated units are also golden-tested
//! (tests/generate/nixos-gaps).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::installed::{Installed, wait_until_idle};
use crate::util::{
    assert_same_tree, backupctl_user, ok, random_file, require_tool, run, stderr, systemctl_user,
    tempdir, write, write_config,
};

#[test]
fn cleanup_runs_after_a_failing_stage_with_its_result() {
    let job = Installed::new(
        "cleanup",
        r#"
[job]
schedule = "daily"
on_boot = "10min"
accuracy = "1min"
inhibit_sleep = true

[stage.broken]
kind = "exec"
command = ["/bin/sh", "-c", "echo partial > @ROOT@/out/dump.sql; exit 3"]
writes = ["@ROOT@/out"]
cleanup = ["/bin/sh", "-c", "echo \"$SERVICE_RESULT $EXIT_STATUS\" > @ROOT@/out/cleanup-ran; rm -f @ROOT@/out/dump.sql"]
"#,
    );
    std::fs::create_dir_all(job.path("out")).unwrap();
    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(!output.status.success(), "the job must fail");
    wait_until_idle();
    assert_eq!(job.show("backup@broken.service", "Result"), "exit-code");
    let ran = std::fs::read_to_string(job.path("out/cleanup-ran"))
        .expect("the cleanup command did not run after the failure");
    // backupctl exits 1 for a failed stage (the tool's own code is in the run record).
    assert_eq!(ran.trim(), "exit-code 1");
    assert!(
        !job.path("out/dump.sql").exists(),
        "the cleanup did not remove the partial dump"
    );
    // The timer settings reach the manager as written.
    assert_eq!(job.show("backup-job.timer", "AccuracyUSec"), "1min");
    let timers = job.show("backup-job.timer", "TimersMonotonic");
    assert!(
        timers.contains("OnBootUSec") && timers.contains("10min"),
        "{timers}"
    );
}

/// A plain `restic` against the test's repository.
fn restic(repo: &Path, password: &Path) -> Command {
    let mut command = Command::new("restic");
    command
        .arg("--repo")
        .arg(repo)
        .arg("--password-file")
        .arg(password)
        .arg("--no-cache")
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_REPOSITORY");
    command
}

fn snapshot_count(repo: &Path, password: &Path) -> usize {
    let out = ok(restic(repo, password).args(["snapshots", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("snapshots --json");
    list.len()
}

fn lock_count(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("locks")).map_or(0, |dir| dir.count())
}

fn password_file(dir: &Path) -> PathBuf {
    let path = dir.join("password");
    write(&path, "stdin-test-password\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn restic_stdin_from_stores_a_commands_output_and_a_failing_command_leaves_no_snapshot() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let data = random_file(&dir.join("data.bin"), 3_000_000);
    let password = password_file(dir);
    let repo = dir.join("repo");
    let config = write_config(
        dir,
        &format!(
            r#"
[stage.db]
kind = "restic"
repository = "{repo}"
password_file = "{password}"
init = true
stdin_from = ["/bin/sh", "-c", "cat {data}; printf 'trailer %s\\n' end"]
stdin_filename = "mydb.sql"

[stage.broken]
kind = "restic"
repository = "{repo}"
password_file = "{password}"
stdin_from = ["/bin/sh", "-c", "head -c 2000000 {data}; echo dump broke >&2; exit 4"]
stdin_filename = "mydb.sql"
"#,
            repo = repo.display(),
            password = password.display(),
            data = dir.join("data.bin").display(),
        ),
    );
    ok(backupctl_user(dir, &config).args(["stage", "db"]));
    assert_eq!(snapshot_count(&repo, &password), 1);
    let dumped = run(restic(&repo, &password).args(["dump", "latest", "/mydb.sql"]));
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    let mut expected = data.clone();
    expected.extend_from_slice(b"trailer end\n");
    assert!(
        dumped.stdout == expected,
        "restored {} bytes differ from the command's {} bytes",
        dumped.stdout.len(),
        expected.len()
    );

    // The command fails after 2 MB: restic must not take the truncated output for a dump.
    let output = run(backupctl_user(dir, &config).args(["stage", "broken"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("sh failed with exit code 4") && text.contains("dump broke"),
        "{text}"
    );
    assert_eq!(
        snapshot_count(&repo, &password),
        1,
        "a failing stdin_from command left a snapshot"
    );
    assert_eq!(lock_count(&repo), 0, "restic left its lock");
    ok(restic(&repo, &password).arg("check"));
}

#[test]
fn restic_files_from_backs_up_exactly_the_listed_files() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let source = dir.join("source");
    random_file(&source.join("a/one.bin"), 200_000);
    write(&source.join("a/two with space.txt"), "two\n");
    write(&source.join("b/three.txt"), "three\n");
    write(&source.join("unlisted.txt"), "not listed\n");
    let list = dir.join("list");
    write(
        &list,
        format!(
            "{}\n{}\n",
            source.join("a").display(),
            source.join("b/three.txt").display()
        ),
    );
    let password = password_file(dir);
    let repo = dir.join("repo");
    let config = write_config(
        dir,
        &format!(
            r#"
[stage.listed]
kind = "restic"
repository = "{repo}"
password_file = "{password}"
init = true
files_from = "{list}"
"#,
            repo = repo.display(),
            password = password.display(),
            list = list.display(),
        ),
    );
    ok(backupctl_user(dir, &config).args(["stage", "listed"]));
    let target = dir.join("restore");
    ok(backupctl_user(dir, &config)
        .args(["restore", "listed", "--target"])
        .arg(&target));
    let restored = target.join(source.strip_prefix("/").unwrap());
    assert_same_tree(&source.join("a"), &restored.join("a"));
    assert_eq!(
        std::fs::read(restored.join("b/three.txt")).unwrap(),
        b"three\n"
    );
    assert!(!restored.join("unlisted.txt").exists());
    assert_eq!(std::fs::read_dir(restored.join("b")).unwrap().count(), 1);
}

const INHIBIT_CONFIG: &str = r#"
[job]
inhibit_sleep = true

[stage.work]
kind = "exec"
shell = true
command = ["systemd-inhibit --list --no-pager --no-legend > @OUT@/locks 2>&1; echo done > @OUT@/ran"]
writes = ["@OUT@"]
"#;

/// Without logind (here: a system bus address where nothing listens, so the answer does not
/// depend on the machine) the stage runs, and its record and stderr say it was not protected.
#[test]
fn inhibit_sleep_without_logind_runs_the_stage_with_a_warning() {
    let dir = tempdir();
    let dir = dir.path();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = write_config(
        dir,
        &INHIBIT_CONFIG.replace("@OUT@", &out.display().to_string()),
    );
    let no_bus = format!("unix:path={}", dir.join("no-system-bus").display());
    let output = run(backupctl_user(dir, &config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", no_bus)
        .args(["stage", "work"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(out.join("ran")).unwrap(), "done\n");
    let records = crate::util::read_run_records(&dir.join("state/backupctl/runs.jsonl"));
    let record = records.last().expect("a run record");
    assert_eq!(record["result"], "success", "{record}");
    assert!(
        record["warnings"]
            .to_string()
            .contains("inhibit_sleep: cannot keep the system from sleeping"),
        "{record}"
    );
    assert!(
        stderr(&output).contains("inhibit_sleep"),
        "{}",
        stderr(&output)
    );
}

/// With logind, the stage holds a sleep lock of ours while it runs. logind runs where
/// systemd is PID 1: the qemu guest (scripts/guest/), booted once for this test (≈ 1–2 min
/// emulated); the debug binary is shared with it over 9p.
#[test]
fn inhibit_sleep_holds_a_logind_lock_in_a_guest_with_logind() {
    assert!(
        Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "qemu-system-x86_64 is missing: run scripts/setup-deps (installs qemu-system-x86, debootstrap)"
    );
    let share = tempdir();
    let share = share.path();
    std::fs::copy(crate::util::backupctl_path(), share.join("backupctl")).unwrap();
    write(
        &share.join("config.toml"),
        INHIBIT_CONFIG.replace("@OUT@", "/mnt/host/out"),
    );
    // Inside the guest, as root under systemd: logind must answer (bus-activated), then the
    // stage runs as the host's tests run it, its state in /var/tmp/bc.
    write(
        &share.join("run"),
        r#"set -euo pipefail
mkdir -p /mnt/host/out
busctl --system status org.freedesktop.login1 >/dev/null ||
	{ echo "FAIL - logind does not answer in the guest"; exit 1; }
STATE_DIRECTORY=/var/tmp/bc/state XDG_CACHE_HOME=/var/tmp/bc/cache \
	/mnt/host/backupctl --user --config /mnt/host/config.toml stage work
cp /var/tmp/bc/state/runs.jsonl /mnt/host/out/runs.jsonl
echo "GUEST DONE"
"#,
    );
    let output = run(
        Command::new(crate::util::repo_root().join("scripts/guest/run"))
            .arg(share)
            .args(["--timeout", "900"]),
    );
    let log = std::fs::read_to_string(share.join("out/log")).unwrap_or_default();
    assert!(
        output.status.success() && log.contains("GUEST DONE"),
        "the guest run failed ({}):\n{log}\n{}",
        output.status,
        stderr(&output)
    );
    let locks = std::fs::read_to_string(share.join("out/locks")).unwrap();
    assert!(
        locks.contains("backupctl") && locks.contains("backup job"),
        "no inhibitor lock of ours while the stage ran:\n{locks}"
    );
    let records = crate::util::read_run_records(&share.join("out/runs.jsonl"));
    let record = records.last().expect("a run record");
    assert_eq!(record["result"], "success", "{record}");
    assert!(
        !record["warnings"].to_string().contains("inhibit_sleep"),
        "{record}"
    );
}

#[test]
fn restic_stdin_from_under_the_user_manager_stores_the_output_and_cleans_up() {
    require_tool("restic");
    let job = Installed::new(
        "stdin",
        r#"
[job]
inhibit_sleep = true

[stage.db]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
init = true
stdin_from = ["/bin/sh", "-c", "cat @ROOT@/data.bin"]
stdin_filename = "mydb.sql"
cleanup = ["/bin/sh", "-c", "echo $SERVICE_RESULT > @ROOT@/repo/cleanup-ran"]
"#,
    );
    let data = random_file(&job.path("data.bin"), 2_500_000);
    let password = job.path("password");
    write(&password, "e2e-password\n");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(
        output.status.success(),
        "{}{}",
        stderr(&output),
        crate::util::stdout(&output)
    );
    wait_until_idle();
    let repo = job.path("repo");
    assert_eq!(snapshot_count(&repo, &password), 1);
    let dumped = run(restic(&repo, &password).args(["dump", "latest", "/mydb.sql"]));
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    assert!(
        dumped.stdout == data,
        "the restored dump differs from the command's output"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("cleanup-ran")).unwrap(),
        "success\n"
    );
}
