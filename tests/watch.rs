//! Watching jobs under the real systemd user manager (scripts/systemd-sandbox): `status`
//! (table and `--json`) against the run records and systemd's units, `logs --run` selecting
//! one job run by our journal fields, the job run id shared by every stage of a run (also
//! the stages that start after a failure already failed the job), and the journal message
//! catalog shown by `journalctl -x`.
//!
//! As in systemd_e2e: everything the units touch lives under /var/lib/backupctl-e2e (the
//! units have `PrivateTmp=`), units go into the runtime unit directory, and the tests hold
//! `util::systemd_lock()` while they use the manager.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use backupctl::report::messages;
use serde_json::Value;

use crate::util::installed::{Installed, run_records, wait_until_idle};
use crate::util::{ok, require_tool, run, stderr, stdout, systemctl_user, write};

/// A job installed in the user manager (see `util::installed`), for these tests.
fn watched(name: &str, config: &str) -> Installed {
    require_tool("journalctl");
    Installed::new(&format!("watch-{name}"), config)
}

/// One stage that copies 1000 bytes, one that may fail and does (after a second, so that it
/// can be seen running).
const COPY_AND_BROKEN: &str = r#"
[job]
schedule = "*-*-* 03:00:00"

[stage.copy]
kind = "rsync"
sources = ["@ROOT@/src/"]
destination = "@ROOT@/dst/"

[stage.broken]
kind = "exec"
required = false
command = ["/bin/sh", "-c", "echo the disk is on fire >&2; sleep 1; exit 3"]
"#;

/// Records of the stages of `root`'s job appended since `before` records existed.
fn records_since(before: usize) -> Vec<Value> {
    run_records().into_iter().skip(before).collect()
}

/// Runs the job to its end (`systemctl start` waits) and returns its new run records.
fn run_job() -> Vec<Value> {
    let before = run_records().len();
    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(
        output.status.success(),
        "the job (its failing stage may fail) must succeed: {}",
        stderr(&output)
    );
    wait_until_idle();
    let new = records_since(before);
    assert_eq!(new.len(), 2, "{new:?}");
    new
}

/// The job run all `records` share (and that they share one).
fn job_run_of(records: &[Value]) -> String {
    let id = records[0]["job_run"]
        .as_str()
        .unwrap_or_else(|| panic!("no job_run in {}", records[0]))
        .to_string();
    assert!(
        records.iter().all(|r| r["job_run"] == id.as_str()),
        "one job run: {records:?}"
    );
    id
}

/// journalctl -o json with these matches, once the journal has `until` (a MESSAGE_ID).
fn journal(matches: &[String], until: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = ok(Command::new("journalctl")
            .args(["-o", "json", "--no-pager", "-q"])
            .args(matches));
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if records.iter().any(|r| r["MESSAGE_ID"] == until) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no {until} record for {matches:?} in the journal: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_reports_a_succeeding_and_a_failing_stage_exactly() {
    let job = watched("status", COPY_AND_BROKEN);
    write(&job.path("src/data.bin"), vec![7u8; 1000]);
    ok(systemctl_user().args(["start", "backup-job.timer"]));

    // While the failing stage runs: the run is "running", the stage shows its StatusText.
    let before = run_records().len();
    ok(systemctl_user().args(["start", "--no-block", "backup-job.service"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let status = job.status_json();
        let broken = &status["jobs"][0]["stages"][1];
        if broken["result"] == "running" && !broken["status_text"].is_null() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "never saw broken running: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let job_status = &running["jobs"][0];
    assert_eq!(job_status["last_run"]["result"], "running", "{running:#}");
    assert!(job_status["last_run"]["finished"].is_null(), "{running:#}");
    assert_eq!(job_status["stages"][1]["state"], "activating");
    assert_eq!(job_status["stages"][1]["status_text"], "running /bin/sh");
    assert_eq!(job_status["stages"][0]["result"], "success");
    let table = ok(&mut job.backupctl(&["status"]));
    assert!(
        table.lines().any(|l| l.starts_with("broken ")
            && l.contains("running")
            && l.contains("running /bin/sh")),
        "{table}"
    );
    wait_until_idle();

    // After the run: exactly what the run records and systemd say.
    let new = records_since(before);
    assert_eq!(new.len(), 2, "{new:?}");
    let (copy, broken) = (&new[0], &new[1]);
    assert_eq!(
        (copy["stage"].as_str(), broken["stage"].as_str()),
        (Some("copy"), Some("broken"))
    );
    let id = job_run_of(&new);
    let status = job.status_json();
    assert_eq!(status["version"], 1);
    assert_eq!(status["scope"], "user");
    assert_eq!(status["systemd"]["reachable"], true);
    let job_status = &status["jobs"][0];
    assert_eq!(job_status["name"], "job");
    assert_eq!(job_status["unit"]["name"], "backup-job.service");
    assert_eq!(job_status["unit"]["load_state"], "loaded");
    assert_eq!(job_status["unit"]["result"], "success");
    let next: jiff::Timestamp = job_status["timer"]["next_elapse"]
        .as_str()
        .unwrap_or_else(|| panic!("no next elapse: {status:#}"))
        .parse()
        .unwrap();
    assert!(next > jiff::Timestamp::now(), "{next}");
    assert_eq!(job_status["timer"]["active_state"], "active");
    let last_run = &job_status["last_run"];
    assert_eq!(last_run["id"], id.as_str());
    assert_eq!(
        last_run["result"], "success",
        "an optional failure: {last_run}"
    );
    assert_eq!(last_run["failed"], serde_json::json!(["broken"]));
    assert_eq!(last_run["not_run"], serde_json::json!([]));
    assert_eq!(last_run["started"], copy["started"]);
    assert_eq!(last_run["finished"], broken["finished"]);

    let stages = job_status["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    let copy_status = &stages[0];
    assert_eq!(copy_status["name"], "copy");
    assert_eq!(copy_status["kind"], "rsync");
    assert_eq!(copy_status["required"], true);
    assert_eq!(copy_status["unit"], "backup@copy.service");
    assert_eq!(copy_status["state"], "inactive");
    assert_eq!(copy_status["result"], "success");
    assert!(copy_status["error"].is_null());
    assert!(copy_status["status_text"].is_null());
    assert_eq!(copy_status["last_success"], copy["finished"]);
    assert_eq!(copy_status["last_duration_secs"], copy["duration_secs"]);
    assert_eq!(copy_status["bytes_added"], 1000);
    assert_eq!(&copy_status["last_run"], copy);

    let broken_status = &stages[1];
    assert_eq!(broken_status["name"], "broken");
    assert_eq!(broken_status["required"], false);
    assert_eq!(broken_status["state"], "failed");
    assert_eq!(broken_status["sub_state"], "failed");
    assert_eq!(broken_status["result"], "failed");
    assert_eq!(
        broken_status["error"],
        "sh failed with exit code 3: the disk is on fire"
    );
    assert!(broken_status["last_success"].is_null());
    assert_eq!(broken_status["last_duration_secs"], broken["duration_secs"]);
    assert!(broken_status["bytes_added"].is_null());
    assert_eq!(&broken_status["last_run"], broken);

    // The table says the same to people (no colour: stdout is a pipe).
    let table = ok(&mut job.backupctl(&["status", "job"]));
    assert!(!table.contains('\x1b'), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("job job  backup-job.service: inactive  next run "),
        "{table}"
    );
    assert!(
        lines[1].starts_with("last run ")
            && lines[1].contains(": success; failed: broken")
            && lines[1].ends_with(&format!("[run {id}]")),
        "{table}"
    );
    assert!(
        lines[2].starts_with("STAGE ") && lines[2].ends_with("DETAIL"),
        "{table}"
    );
    let copy_line: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        (copy_line[0], copy_line[1], copy_line[2], copy_line[3]),
        ("copy", "rsync", "inactive", "success"),
        "{table}"
    );
    assert!(lines[3].contains("1000 B"), "{table}");
    let broken_line: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        (
            broken_line[0],
            broken_line[1],
            broken_line[2],
            broken_line[3]
        ),
        ("broken", "exec", "failed", "failed"),
        "{table}"
    );
    assert!(
        lines[4].ends_with("sh failed with exit code 3: the disk is on fire (may fail)"),
        "{table}"
    );
    assert_eq!(lines.len(), 5, "{table}");

    // Without systemd: the run records alone, and a word that systemd could not be asked.
    let mut offline = job.backupctl(&["status", "--json"]);
    offline
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("XDG_RUNTIME_DIR", "/nonexistent");
    let offline: Value = serde_json::from_str(&ok(&mut offline)).unwrap();
    assert_eq!(offline["systemd"]["reachable"], false);
    assert!(
        offline["systemd"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach the user service manager")),
        "{offline:#}"
    );
    let offline_job = &offline["jobs"][0];
    assert!(offline_job["unit"].is_null() && offline_job["timer"].is_null());
    assert_eq!(offline_job["last_run"], *last_run);
    assert!(offline_job["stages"][0]["state"].is_null());
    assert_eq!(offline_job["stages"][0]["result"], "success");
    assert_eq!(offline_job["stages"][1]["result"], "failed");
    let mut offline_table = job.backupctl(&["status"]);
    offline_table.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let text = ok(&mut offline_table);
    assert!(
        text.starts_with("systemd could not be asked (")
            && text.contains("showing the run records only"),
        "{text}"
    );
}

#[test]
fn logs_of_the_last_run_show_that_run_only() {
    let job = watched("logs", COPY_AND_BROKEN);
    write(&job.path("src/data.bin"), vec![7u8; 1000]);
    let first = job_run_of(&run_job());
    let second = job_run_of(&run_job());
    assert_ne!(first, second, "two runs, two job run ids");

    // Every record of a run carries its id: both stages' and the job's summary.
    let first_records = journal(
        &[format!("BACKUPCTL_JOB_RUN={first}")],
        messages::JOB_FINISHED,
    );
    let stages_of = |records: &[Value]| {
        let mut stages: Vec<String> = records
            .iter()
            .filter_map(|r| r["BACKUPCTL_STAGE"].as_str().map(String::from))
            .collect();
        stages.dedup();
        stages
    };
    assert_eq!(stages_of(&first_records), ["copy", "broken"]);
    journal(
        &[format!("BACKUPCTL_JOB_RUN={second}")],
        messages::JOB_FINISHED,
    );

    let text = ok(&mut job.backupctl(&["logs", "--run", "last", "--json"]));
    let last: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        last.iter()
            .all(|r| r["BACKUPCTL_JOB_RUN"] == second.as_str()),
        "records of another run: {text}"
    );
    assert!(
        !text.contains(&first),
        "the first run's records are shown: {text}"
    );
    let ids: Vec<&str> = last
        .iter()
        .filter_map(|r| r["MESSAGE_ID"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            messages::STAGE_STARTED,
            messages::STAGE_SUCCEEDED,
            messages::STAGE_STARTED,
            messages::STAGE_FAILED,
            messages::JOB_FINISHED,
        ],
        "{text}"
    );
    assert_eq!(stages_of(&last), ["copy", "broken"]);

    // For people: one line per record, the stage first, errors marked.
    let text = ok(&mut job.backupctl(&["logs", "--run", "last"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), last.len(), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" copy: stage copy (rsync) started")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(
            " broken: error: stage broken failed: sh failed with exit code 3: the disk is on fire"
        )),
        "{text}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(" job job: job job finished: copy succeeded, broken failed"),
        "{text}"
    );

    // One stage of a given run; the same run by a stage run id.
    let broken_first = ok(&mut job.backupctl(&["logs", "broken", "--run", &first, "--json"]));
    let broken_first: Vec<Value> = broken_first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!broken_first.is_empty());
    assert!(
        broken_first
            .iter()
            .all(|r| r["BACKUPCTL_STAGE"] == "broken" && r["BACKUPCTL_JOB_RUN"] == first.as_str())
    );
    let stage_run = broken_first[0]["BACKUPCTL_RUN"].as_str().unwrap();
    let by_stage_run = ok(&mut job.backupctl(&["logs", "--run", stage_run, "--json"]));
    assert_eq!(by_stage_run.lines().count(), broken_first.len());

    // `-n`: the newest records only.
    let newest = ok(&mut job.backupctl(&["logs", "broken", "-n", "1"]));
    assert_eq!(newest.lines().count(), 1, "{newest}");
    assert!(newest.contains("stage broken failed"), "{newest}");

    // `-f`: a third run, followed from its first record to its summary as it happens.
    let before = run_records().len();
    ok(systemctl_user().args(["start", "--no-block", "backup-job.service"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while records_since(before).is_empty() {
        assert!(Instant::now() < deadline, "the third run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut follow = job.backupctl(&["logs", "--run", "last", "-f"]);
    follow.stdout(std::process::Stdio::piped()).process_group(0);
    let mut child = follow.spawn().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut followed = Vec::new();
    while !followed
        .last()
        .is_some_and(|l: &String| l.contains("job job finished"))
    {
        match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => followed.push(line),
            Err(_) => break,
        }
    }
    // The whole group: backupctl and its journalctl.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    wait_until_idle();
    assert!(
        followed
            .first()
            .is_some_and(|l| l.ends_with(" copy: stage copy (rsync) started"))
            && followed
                .iter()
                .any(|l| l.contains("broken: error: stage broken failed"))
            && followed
                .last()
                .is_some_and(|l| l.contains("job job finished")),
        "followed: {followed:#?}"
    );
    let third = job_run_of(&records_since(before));
    assert!(third != first && third != second);
}

#[test]
fn stages_that_start_after_a_required_failure_keep_the_job_run() {
    // `fails` ends the job's start job at once; `slow` and `later` on the other branch go on.
    let _job = watched(
        "branches",
        r#"
[stage.fails]
kind = "exec"
command = ["/bin/false"]

[stage.slow]
kind = "exec"
after = []
command = ["/bin/sleep", "2"]

[stage.later]
kind = "exec"
after = ["slow"]
command = ["/bin/true"]
"#,
    );
    let before = run_records().len();
    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(!output.status.success(), "a required stage failed");
    wait_until_idle();
    let new = records_since(before);
    let mut stages: Vec<&str> = new.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    stages.sort();
    assert_eq!(stages, ["fails", "later", "slow"], "{new:?}");
    let id = job_run_of(&new);
    assert!(
        new.iter().all(|r| r["run"] != id.as_str()),
        "the job run is not a stage's own run: {new:?}"
    );
}

/// The catalog installed where systemd 252's journalctl reads catalogs (it reads neither
/// /etc/systemd/catalog nor /run/systemd/catalog); removed again on drop.
struct CatalogInstalled(PathBuf);

impl CatalogInstalled {
    fn new() -> Self {
        let path = PathBuf::from("/usr/local/lib/systemd/catalog/backupctl-e2e-test.catalog");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(
            crate::util::repo_root().join("units/backupctl.catalog"),
            &path,
        )
        .unwrap();
        ok(Command::new("journalctl").arg("--update-catalog"));
        CatalogInstalled(path)
    }
}

impl Drop for CatalogInstalled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = run(Command::new("journalctl").arg("--update-catalog"));
    }
}

#[test]
fn journalctl_x_explains_a_failed_stage_from_the_catalog() {
    let job = watched("catalog", COPY_AND_BROKEN);
    write(&job.path("src/data.bin"), vec![7u8; 10]);
    let id = job_run_of(&run_job());
    journal(&[format!("BACKUPCTL_JOB_RUN={id}")], messages::JOB_FINISHED);
    let _catalog = CatalogInstalled::new();
    let output = run(Command::new("journalctl").args([
        "-x",
        "--no-pager",
        "-q",
        &format!("MESSAGE_ID={}", messages::STAGE_FAILED),
        &format!("BACKUPCTL_JOB_RUN={id}"),
    ]));
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    for expected in [
        "stage broken failed: sh failed with exit code 3: the disk is on fire",
        "Subject: backupctl stage broken of job job failed",
        "Defined-By: backupctl",
        "with exit code 1; the reason is the",
        "What to do:",
        &format!("backupctl logs broken --run {id}"),
        "backupctl status job",
        "systemctl start backup-job.service",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
    // The success record is explained too, with its own entry.
    let success = ok(Command::new("journalctl").args([
        "-x",
        "--no-pager",
        "-q",
        &format!("MESSAGE_ID={}", messages::STAGE_SUCCEEDED),
        &format!("BACKUPCTL_JOB_RUN={id}"),
    ]));
    assert!(
        success.contains("Subject: backupctl stage copy of job job succeeded"),
        "{success}"
    );
}

#[test]
fn a_stage_killed_before_writing_its_record_shows_systemds_result() {
    let job = watched(
        "killed",
        r#"
[stage.sleepy]
kind = "exec"
command = ["/bin/sleep", "30"]
"#,
    );
    // This test's earlier kill of `sleepy` left its open-run note, which this run would
    // record as interrupted first (by design: run_records::begin): not this run's record.
    let note =
        std::path::Path::new(crate::util::installed::RUNS).with_file_name("open/sleepy.json");
    let _ = std::fs::remove_file(note);
    let before = run_records().len();
    ok(systemctl_user().args(["start", "--no-block", "backup-job.service"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while job.status_json()["jobs"][0]["stages"][0]["result"] != "running" {
        assert!(Instant::now() < deadline, "sleepy never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL: backupctl cannot write a record, only systemd knows what happened.
    ok(systemctl_user().args([
        "kill",
        "--signal=SIGKILL",
        "--kill-who=all",
        "backup@sleepy.service",
    ]));
    wait_until_idle();
    assert_eq!(
        records_since(before).len(),
        0,
        "a killed stage wrote a record"
    );
    let status = job.status_json();
    let sleepy = &status["jobs"][0]["stages"][0];
    assert_eq!(sleepy["state"], "failed", "{status:#}");
    assert_eq!(sleepy["result"], "failed", "{status:#}");
    assert_eq!(
        sleepy["error"],
        "systemd: signal (no run record; see `systemctl --user status backup@sleepy.service`)"
    );
    // The job's last run is failed too, not the run before it (regression: it said success).
    let last_run = &status["jobs"][0]["last_run"];
    assert_eq!(last_run["result"], "failed", "{status:#}");
    assert!(
        last_run["failed"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("sleepy"))),
        "{status:#}"
    );
}
