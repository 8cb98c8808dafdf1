//! Notifications and metrics against real parts: a real HTTP server on loopback
//! (`util::http`) receives the webhook, the healthchecks-style pings and the ntfy message;
//! a real command gets the mail on stdin; `promtool` checks the metrics file; and under the
//! real systemd user manager a failing stage reaches the server through `OnFailure=` and the
//! notifier unit, while an unreachable server leaves the job's result alone and puts the
//! notifier's failure into the journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use backupctl::report::messages;

use crate::util::http::Server;
use crate::util::installed::{Installed, RUNS, wait_until_idle};
use crate::util::{
    backupctl, backupctl_in, ok, repo_root, require_tool, run, stderr, systemctl_user, tempdir,
    write, write_config, write_secret,
};

fn records(state: &Path) -> Vec<serde_json::Value> {
    crate::util::read_run_records(&state.join("runs.jsonl"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

const HC_UUID: &str = "5f0c7f52-secret-uuid";
const TOKEN: &str = "tok-very-secret";

const CHANNELS: &str = r#"
[notify]
timeout = "5s"

[notify.webhook]
url = "@WEBHOOK@"
token_file = "@ROOT@/secrets/webhook-token"

[notify.healthchecks]
url_file = "@ROOT@/secrets/hc-url"

[notify.ntfy]
url = "@NTFY@"
priority = "urgent"
tags = ["floppy_disk"]

[notify.command]
command = ["/bin/sh", "-c", "cat > @ROOT@/mail.txt; env > @ROOT@/mail.env"]
to = "root@example.org"

[stage.first]
kind = "exec"
command = ["/bin/true"]

[stage.broken]
kind = "exec"
command = ["/bin/sh", "-c", "echo disk on fire >&2; exit 3"]
"#;

#[test]
fn a_stage_failure_reaches_the_webhook_the_pings_ntfy_and_the_command() {
    let server = Server::start();
    let dir = tempdir();
    let d = dir.path();
    write_secret(&d.join("secrets/webhook-token"), format!("{TOKEN}\n"));
    write_secret(
        &d.join("secrets/hc-url"),
        server.url(&format!("/hc/{HC_UUID}/")),
    );
    write_config(
        d,
        &CHANNELS
            .replace("@WEBHOOK@", &server.url("/hook"))
            .replace("@NTFY@", &server.url("/ntfy/backups")),
    );
    // A real run leaves the record the notifier reads.
    let output = run(backupctl_in(d).args(["run", "--here"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let state = d.join("state/backupctl");
    let record = records(&state)
        .into_iter()
        .find(|r| r["stage"] == "broken")
        .expect("a record of the broken stage");
    let run_id = record["run"].as_str().unwrap().to_string();

    // What systemd passes to an OnFailure= unit.
    let output = run(backupctl_in(d)
        .args(["notify", "backup@broken.service"])
        .env("MONITOR_SERVICE_RESULT", "exit-code")
        .env("MONITOR_INVOCATION_ID", &run_id));
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(!said.contains(TOKEN) && !said.contains(HC_UUID), "{said}");

    let hook = server.wait_for("POST /hook", |r| r.path == "/hook");
    assert_eq!(hook.method, "POST");
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert_eq!(
        hook.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let body = hook.json();
    assert_eq!(body["event"], "failure", "{body}");
    assert_eq!(body["job"], "job");
    assert_eq!(body["stage"], "broken");
    assert_eq!(body["unit"], "backup@broken.service");
    assert_eq!(body["result"], "exit-code");
    assert_eq!(body["fails_job"], true);
    assert_eq!(body["host"], hostname().as_str());
    assert_eq!(body["started"], record["started"]);
    assert_eq!(body["finished"], record["finished"]);
    assert_eq!(body["exit_code"], record["exit_code"]);
    assert_eq!(body["error"], record["error"]);
    assert!(
        body["error"].as_str().unwrap().contains("disk on fire"),
        "{body}"
    );
    assert_eq!(body["run"], run_id.as_str());
    assert!(
        body["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    // Outside systemd the stage logged to stderr, so the tail is the record's error.
    let log: Vec<&str> = body["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(log.iter().any(|l| l.contains("disk on fire")), "{log:?}");

    let fail = server.wait_for("the fail ping", |r| r.path.ends_with("/fail"));
    assert_eq!(fail.path, format!("/hc/{HC_UUID}/fail"));
    assert!(
        fail.text().contains("stage broken of job job failed")
            && fail.text().contains("disk on fire"),
        "{}",
        fail.text()
    );

    let ntfy = server.wait_for("POST /ntfy/backups", |r| r.path == "/ntfy/backups");
    assert_eq!(
        ntfy.header("title").unwrap(),
        format!(
            "backupctl: stage broken of job job failed on {}",
            hostname()
        )
    );
    assert_eq!(ntfy.header("priority"), Some("urgent"));
    assert_eq!(ntfy.header("tags"), Some("rotating_light,floppy_disk"));
    assert!(ntfy.text().contains("disk on fire"), "{}", ntfy.text());

    let mail = std::fs::read_to_string(d.join("mail.txt")).unwrap();
    assert!(
        mail.starts_with(&format!(
            "Subject: backupctl: stage broken of job job failed on {}\nTo: root@example.org\n",
            hostname()
        )),
        "{mail}"
    );
    assert!(mail.contains("\n\nbackupctl: stage broken"), "{mail}");
    let env = std::fs::read_to_string(d.join("mail.env")).unwrap();
    assert!(env.contains("BACKUPCTL_NOTIFY_STAGE=broken\n"), "{env}");
    assert!(env.contains("BACKUPCTL_NOTIFY_RESULT=exit-code\n"), "{env}");
    assert!(
        !env.contains(TOKEN),
        "the command's environment holds no secret"
    );

    // The start ping: healthchecks only.
    ok(backupctl_in(d).args(["notify", "--start", "backup-job.service"]));
    let start = server.wait_for("the start ping", |r| r.path.ends_with("/start"));
    assert_eq!(start.path, format!("/hc/{HC_UUID}/start"));
    assert!(start.body.is_empty());

    // The job's success: the success ping (no suffix), with one line per stage; the webhook
    // stays quiet without `on_success`.
    ok(backupctl_in(d).args(["notify", "--result", "success", "backup-job.service"]));
    let success = server.wait_for("the success ping", |r| r.path == format!("/hc/{HC_UUID}"));
    assert!(
        success.text().contains("job job succeeded"),
        "{}",
        success.text()
    );
    assert!(
        success.text().contains("first: success"),
        "{}",
        success.text()
    );
    let hooks = server
        .requests()
        .iter()
        .filter(|r| r.path == "/hook")
        .count();
    assert_eq!(hooks, 1, "only the failure went to the webhook");
}

/// Regression: without a result from systemd (< 251), the run record decides, and an
/// interrupted run (stopped: exit code 130, a failed unit to systemd) was taken for a success,
/// so the stage's OnFailure= notifier announced "stage … succeeded" (or nothing at all).
#[test]
fn without_systemds_word_an_interrupted_run_is_reported_as_a_failure() {
    let server = Server::start();
    let dir = tempdir();
    let d = dir.path();
    write(
        &d.join("config.toml"),
        format!(
            r#"
[notify]
on_success = true

[notify.webhook]
url = "{}"

[stage.slow]
kind = "exec"
command = ["/bin/sleep", "600"]
"#,
            server.url("/hook")
        ),
    );
    write(
        &d.join("state/backupctl/runs.jsonl"),
        r#"{"run":"r1","job":"job","stage":"slow","kind":"exec","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:01:00Z","duration_secs":60.0,"result":"interrupted","exit_code":130,"error":"stopped"}
"#,
    );
    ok(backupctl_in(d).args(["notify", "backup@slow.service"]));
    let hook = server.wait_for("the webhook", |r| r.path == "/hook");
    assert_eq!(hook.json()["event"], "failure", "{}", hook.json());
    assert_eq!(hook.json()["result"], "interrupted");
    assert_eq!(hook.json()["exit_code"], 130);
}

/// Regression: ntfy takes a body of 4096 bytes or more as an attachment, which a server
/// without attachment storage refuses (HTTP 400): a long failure was never delivered there.
#[test]
fn a_long_failure_reaches_ntfy_as_a_message_of_less_than_4096_bytes() {
    let server = Server::start();
    let dir = tempdir();
    let d = dir.path();
    write(
        &d.join("config.toml"),
        format!(
            r#"
[notify.ntfy]
url = "{}"

[stage.broken]
kind = "exec"
command = ["/bin/false"]
"#,
            server.url("/ntfy/backups")
        ),
    );
    let error = format!("{} the last words", "x".repeat(10_000));
    write(
        &d.join("state/backupctl/runs.jsonl"),
        format!(
            "{}\n",
            serde_json::json!({
                "run": "r1", "job": "job", "stage": "broken", "kind": "exec",
                "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:00:01Z",
                "duration_secs": 1.0, "result": "failed", "exit_code": 1, "error": error,
            })
        ),
    );
    ok(backupctl_in(d).args(["notify", "--result", "failure", "backup@broken.service"]));
    let ntfy = server.wait_for("POST /ntfy/backups", |r| r.path == "/ntfy/backups");
    assert!(ntfy.body.len() < 4096, "{} bytes", ntfy.body.len());
    assert!(ntfy.text().ends_with("the last words\n"), "{}", ntfy.text());
}

#[test]
fn an_unreachable_endpoint_fails_the_notifier_quickly_and_names_no_secret() {
    // A port nobody listens on, and a server that accepts but never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let silent = Server::silent();
    let dir = tempdir();
    let d = dir.path();
    write_secret(
        &d.join("secrets/hc-url"),
        silent.url(&format!("/hc/{HC_UUID}")),
    );
    write(
        &d.join("config.toml"),
        format!(
            r#"
[notify]
timeout = "2s"

[notify.webhook]
url = "http://127.0.0.1:{closed_port}/hook/{HC_UUID}"

[notify.healthchecks]
url_file = "{}/secrets/hc-url"

[stage.broken]
kind = "exec"
command = ["/bin/false"]
"#,
            d.display()
        ),
    );
    let started = Instant::now();
    let output =
        run(backupctl_in(d).args(["notify", "--result", "failure", "backup@broken.service"]));
    let took = started.elapsed();
    println!("notify with a refused and a silent endpoint (timeout 2s) took {took:?}");
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "notification of backup@broken.service through webhook failed: connection refused"
        ),
        "{said}"
    );
    assert!(
        said.contains("through healthchecks failed: no answer within 2s"),
        "{said}"
    );
    assert!(
        !said.contains(HC_UUID),
        "a URL leaked into the messages: {said}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert_eq!(silent.requests().len(), 1, "the ping was sent once");
}

/// `promtool check metrics` (lint included): must pass without a word.
#[track_caller]
fn assert_promtool_accepts(file: &Path) {
    let output: Output = Command::new(crate::util::promtool())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
}

/// `name{labels}` → value, from a text file (comments skipped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn unix_seconds(time: &serde_json::Value) -> f64 {
    let time: jiff::Timestamp = time.as_str().unwrap().parse().unwrap();
    time.as_millisecond() as f64 / 1000.0
}

/// Compares the file with the newest record of each stage.
#[track_caller]
fn assert_metrics_match(text: &str, records: &[serde_json::Value], stages: &[&str]) {
    let samples = samples(text);
    let get = |name: &str, stage: &str, extra: &str| -> Option<f64> {
        samples
            .get(&format!(
                "{name}{{backup_job=\"job\",stage=\"{stage}\"{extra}}}"
            ))
            .copied()
    };
    for stage in stages {
        let last = records
            .iter()
            .rev()
            .find(|r| r["stage"] == *stage)
            .unwrap_or_else(|| panic!("no record of {stage}"));
        let near = |a: Option<f64>, b: f64, what: &str| {
            let a = a.unwrap_or_else(|| panic!("{stage}: no {what} in\n{text}"));
            assert!((a - b).abs() < 0.001, "{stage}: {what} {a} != {b}\n{text}");
        };
        near(
            get("backupctl_stage_last_run_timestamp_seconds", stage, ""),
            unix_seconds(&last["finished"]),
            "last run",
        );
        near(
            get("backupctl_stage_last_duration_seconds", stage, ""),
            last["duration_secs"].as_f64().unwrap(),
            "duration",
        );
        near(
            get("backupctl_stage_last_exit_code", stage, ""),
            last["exit_code"].as_f64().unwrap(),
            "exit code",
        );
        let result = last["result"].as_str().unwrap();
        for word in ["success", "failed", "skipped", "interrupted"] {
            near(
                get(
                    "backupctl_stage_last_result",
                    stage,
                    &format!(",result=\"{word}\""),
                ),
                if word == result { 1.0 } else { 0.0 },
                "result",
            );
        }
        match records
            .iter()
            .rev()
            .find(|r| r["stage"] == *stage && r["result"] == "success")
        {
            Some(success) => near(
                get("backupctl_stage_last_success_timestamp_seconds", stage, ""),
                unix_seconds(&success["finished"]),
                "last success",
            ),
            None => assert_eq!(
                get("backupctl_stage_last_success_timestamp_seconds", stage, ""),
                None
            ),
        }
        for (metric, figure) in [
            ("backupctl_stage_last_added_bytes", "bytes_added"),
            ("backupctl_stage_last_files", "files"),
        ] {
            match last["figures"][figure].as_f64() {
                Some(value) => near(get(metric, stage, ""), value, figure),
                None => assert_eq!(get(metric, stage, ""), None, "{stage}: {metric}"),
            }
        }
    }
}

#[test]
fn the_metrics_file_passes_promtool_and_holds_the_run_records() {
    require_tool("rsync");
    let dir = tempdir();
    let d = dir.path();
    write(&d.join("src/a.txt"), "a\n");
    write(&d.join("src/sub/b.bin"), vec![7u8; 50_000]);
    std::fs::create_dir_all(d.join("textfile")).unwrap();
    write_config(
        d,
        r#"
[job]
schedule = "Mon..Fri 22:30"

[metrics]
textfile = "@ROOT@/textfile/backupctl.prom"

[stage.copy]
kind = "rsync"
sources = ["@ROOT@/src/"]
destination = "@ROOT@/dst/"

[stage.flaky]
kind = "exec"
required = false
command = ["/bin/false"]
"#,
    );
    ok(backupctl_in(d).args(["run", "--here"]));
    let file = d.join("textfile/backupctl.prom");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_promtool_accepts(&file);
    let state = d.join("state/backupctl");
    let records = records(&state);
    assert_metrics_match(&text, &records, &["copy", "flaky"]);
    // What the shipped alert rules join on: each stage's purpose, the schedule's longest gap
    // (Friday night to Monday night), the time the file was written.
    for line in [
        "backupctl_stage_info{backup_job=\"job\",stage=\"copy\",kind=\"rsync\",purpose=\"backup\"} 1",
        "backupctl_stage_info{backup_job=\"job\",stage=\"flaky\",kind=\"exec\",purpose=\"backup\"} 1",
        "backupctl_job_schedule_interval_seconds{backup_job=\"job\"} 259200",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    let written = samples(&text)["backupctl_metrics_written_timestamp_seconds"];
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    assert!(
        (now - written).abs() < 600.0,
        "written at {written}, now {now}"
    );
    assert!(
        text.contains("# TYPE backupctl_stage_last_added_bytes gauge"),
        "{text}"
    );
    let copy = records.iter().find(|r| r["stage"] == "copy").unwrap();
    assert!(
        copy["figures"]["bytes_added"].as_u64().unwrap() > 0,
        "{copy}"
    );
    // Only the file itself is left in the collector's directory: no temporary files.
    let names: Vec<String> = std::fs::read_dir(d.join("textfile"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["backupctl.prom"]);
}

#[test]
fn the_notifier_units_pass_systemd_analyze_verify_and_score_at_most_3() {
    require_tool("systemd-analyze");
    let out = tempdir();
    ok(backupctl()
        .arg("--config")
        .arg(repo_root().join("tests/generate/notify/config.toml"))
        .args(["generate", "--binary"])
        .arg(crate::util::backupctl_path())
        .arg("--output")
        .arg(out.path()));
    let units = [
        "backup-notify@backup\\x40my\\x2ddocs.service.service",
        "backup-notify@backup\\x2djob.service.service",
        "backup-notify-start@job.service",
        "backup-job.service",
        "backup@my-docs.service",
    ];
    let output = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .current_dir(out.path())
        .env("SYSTEMD_LOG_LEVEL", "notice"));
    assert!(
        output.status.success() && stderr(&output).trim().is_empty(),
        "systemd-analyze verify {units:?}:\n{}",
        stderr(&output)
    );
    for template in ["backup-notify@.service", "backup-notify-start@.service"] {
        let output = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(out.path().join(template)));
        let text = crate::util::stdout(&output);
        let score: f64 = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no score in:\n{text}{}", stderr(&output)));
        println!("systemd-analyze security: {template} exposure {score}");
        assert!(score <= 3.0, "{template} exposure {score} > 3.0");
    }
    // No secret in any generated file: only the credential's file name.
    for entry in walk(out.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains("ntfy.example.org/backups") || entry.ends_with("config.toml"),
            "{} holds a channel URL",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Journal records with `MESSAGE_ID=NOTIFY_FAILED` about `unit`, newest last.
fn notify_failures(unit: &str) -> Vec<serde_json::Value> {
    ok(Command::new("journalctl").args([
        "-o",
        "json",
        "--no-pager",
        &format!("MESSAGE_ID={}", messages::NOTIFY_FAILED),
        &format!("BACKUPCTL_NOTIFY_UNIT={unit}"),
    ]))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

#[test]
fn under_systemd_a_failing_stage_reaches_the_server_through_on_failure() {
    require_tool("journalctl");
    let server = Server::start();
    let job = Installed::new(
        "notify",
        &format!(
            r#"
[notify]
timeout = "5s"

[notify.webhook]
url = "{}"

[notify.healthchecks]
url_file = "@ROOT@/hc-url"

[stage.first]
kind = "exec"
command = ["/bin/true"]

[stage.broken]
kind = "exec"
command = ["/bin/sh", "-c", "echo disk on fire; echo the fire is hot >&2; exit 3"]
"#,
            server.url("/hook")
        ),
    );
    write_secret(&job.path("hc-url"), server.url(&format!("/hc/{HC_UUID}")));
    let notifier = "backup-notify@backup\\x40broken.service.service";

    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(!output.status.success(), "the job must fail");
    wait_until_idle();

    let start = server.wait_for("the start ping", |r| {
        r.path == format!("/hc/{HC_UUID}/start")
    });
    assert!(start.body.is_empty());
    let hook = server.wait_for("the webhook", |r| r.path == "/hook");
    let body = hook.json();
    println!("webhook body: {body:#}");
    assert_eq!(body["event"], "failure", "{body}");
    assert_eq!(body["unit"], "backup@broken.service");
    assert_eq!(body["stage"], "broken");
    assert_eq!(
        body["result"], "exit-code",
        "systemd's MONITOR_SERVICE_RESULT"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(RUNS)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let record = records
        .iter()
        .rev()
        .find(|r| r["stage"] == "broken")
        .unwrap();
    let ended: jiff::Timestamp = record["finished"].as_str().unwrap().parse().unwrap();
    let received = jiff::Timestamp::try_from(hook.at).unwrap();
    println!(
        "webhook received {} ms after the stage ended",
        received.duration_since(ended).as_millis()
    );
    // The start ping came before the first stage started (the stages are After= it).
    let first = records
        .iter()
        .rev()
        .find(|r| r["stage"] == "first")
        .unwrap();
    let first_started: jiff::Timestamp = first["started"].as_str().unwrap().parse().unwrap();
    let pinged = jiff::Timestamp::try_from(start.at).unwrap();
    assert!(
        pinged <= first_started,
        "start ping {pinged}, first stage {first_started}"
    );
    assert_eq!(
        body["run"], record["run"],
        "MONITOR_INVOCATION_ID is the stage's run"
    );
    assert_eq!(body["error"], record["error"]);
    // The log tail is the stage's journal: the tool's output and the failure record.
    let log = body["log"].to_string();
    assert!(log.contains("disk on fire"), "{log}");
    assert!(log.contains("stage broken failed"), "{log}");
    let fail = server.wait_for("the fail ping", |r| r.path == format!("/hc/{HC_UUID}/fail"));
    assert!(fail.text().contains("disk on fire"), "{}", fail.text());
    // wait_until_idle() returned: the notifiers' start jobs, queued when the stage and the
    // job failed, are done.
    assert_eq!(job.show(notifier, "Result"), "success");
    assert_eq!(job.show("backup@broken.service", "Result"), "exit-code");
    // The job's own OnFailure= notifier ran too (systemd starts it for a "dependency"
    // failure) and stayed quiet: one failure, one message per channel.
    assert_eq!(
        job.show("backup-notify@backup\\x2djob.service.service", "Result"),
        "success"
    );
    let count = |path: &str| server.requests().iter().filter(|r| r.path == path).count();
    assert_eq!(count("/hook"), 1, "{:?}", server.requests());
    assert_eq!(count(&format!("/hc/{HC_UUID}/fail")), 1);
    // No success ping for a failed job.
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path == format!("/hc/{HC_UUID}")),
        "{:?}",
        server.requests()
    );

    // The server goes away: the job fails the same way, the notifier unit fails and says why
    // in the journal.
    drop(server);
    std::thread::sleep(Duration::from_millis(100));
    let before = notify_failures("backup@broken.service").len();
    ok(systemctl_user().arg("reset-failed"));
    let output = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(!output.status.success(), "the job must still fail");
    wait_until_idle();
    assert_eq!(job.show("backup@broken.service", "Result"), "exit-code");
    // The notifier's own failure is visible: its unit failed.
    assert_eq!(job.show(notifier, "Result"), "exit-code");
    let deadline = Instant::now() + Duration::from_secs(10);
    let failures = loop {
        let failures = notify_failures("backup@broken.service");
        if failures.len() > before || Instant::now() > deadline {
            break failures;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let messages: Vec<&str> = failures[before..]
        .iter()
        .map(|r| r["MESSAGE"].as_str().unwrap_or_default())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("through webhook failed: connection refused")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| !m.contains(HC_UUID) && !m.contains("127.0.0.1")),
        "{messages:?}"
    );
}

#[test]
fn under_systemd_a_successful_job_pings_success_and_writes_the_metrics_file() {
    let server = Server::start();
    let job = Installed::new(
        "notify-ok",
        &format!(
            r#"
[notify]
on_success = true

[notify.webhook]
url = "{}"

[notify.healthchecks]
url_file = "@ROOT@/hc-url"

[metrics]
textfile = "@ROOT@/textfile/backupctl.prom"

[stage.copy]
kind = "rsync"
sources = ["@ROOT@/src/"]
destination = "@ROOT@/dst/"
"#,
            server.url("/hook")
        ),
    );
    write_secret(&job.path("hc-url"), server.url(&format!("/hc/{HC_UUID}")));
    write(&job.path("src/notes.txt"), "notes\n");
    std::fs::create_dir_all(job.path("textfile")).unwrap();
    ok(systemctl_user().args(["start", "backup-job.service"]));
    wait_until_idle();
    let success = server.wait_for("the success ping", |r| r.path == format!("/hc/{HC_UUID}"));
    assert!(
        success.text().contains("copy: success"),
        "{}",
        success.text()
    );
    let hook = server.wait_for("the webhook", |r| r.path == "/hook");
    assert_eq!(hook.json()["event"], "success");
    assert_eq!(hook.json()["unit"], "backup-job.service");

    let file = job.path("textfile/backupctl.prom");
    assert_promtool_accepts(&file);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(RUNS)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_metrics_match(
        &std::fs::read_to_string(&file).unwrap(),
        &records,
        &["copy"],
    );
}

/// An HTTPS server (python3's http.server behind its ssl module) with a certificate for
/// 127.0.0.1 signed by nobody the system trusts; it appends `PATH BODY` lines to `log`.
const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
cert, log, port_file = sys.argv[1], sys.argv[2], sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "ab") as f:
            f.write(self.path.encode() + b" " + body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert)
server.socket = context.wrap_socket(server.socket, server_side=True)
open(port_file, "w").write(str(server.server_address[1]))
server.serve_forever()
"#;

/// Kills the child (a server this test started) on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_endpoints_are_verified_against_the_system_trust_store() {
    require_tool("openssl");
    require_tool("python3");
    let dir = tempdir();
    let d = dir.path();
    // A private CA (as in a home lab) and a certificate for 127.0.0.1 signed by it.
    let openssl = |args: &[&str]| ok(Command::new("openssl").args(args).current_dir(d));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    write(&d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "leaf.pem",
    ]);
    let mut pem = std::fs::read(d.join("leaf.pem")).unwrap();
    pem.extend(std::fs::read(d.join("leaf.key")).unwrap());
    write(&d.join("both.pem"), pem);
    write(&d.join("server.py"), HTTPS_SERVER);
    let _server = Child(
        Command::new("python3")
            .arg(d.join("server.py"))
            .arg(d.join("both.pem"))
            .arg(d.join("requests.log"))
            .arg(d.join("port"))
            .spawn()
            .expect("start python3"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        if let Ok(port) = std::fs::read_to_string(d.join("port"))
            && !port.is_empty()
        {
            break port;
        }
        assert!(Instant::now() < deadline, "the HTTPS server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    write(
        &d.join("config.toml"),
        format!(
            "[notify.webhook]\nurl = \"https://127.0.0.1:{port}/hook\"\n\n\
             [stage.broken]\nkind = \"exec\"\ncommand = [\"/bin/false\"]\n"
        ),
    );
    let notify = || {
        let mut command = backupctl_in(d);
        command.args(["notify", "--result", "failure", "backup@broken.service"]);
        command
    };
    // The CA is not in the trust store: refused, nothing delivered.
    let output = run(notify().env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("through webhook failed: TLS failed"),
        "{}",
        stderr(&output)
    );
    assert!(!d.join("requests.log").exists());
    // Trusted through the system store (SSL_CERT_FILE stands in for /etc/ssl/certs): delivered.
    let output = run(notify().env("SSL_CERT_FILE", d.join("ca.pem")));
    assert!(output.status.success(), "{}", stderr(&output));
    let log = std::fs::read_to_string(d.join("requests.log")).unwrap();
    assert!(log.starts_with("/hook {"), "{log}");
    assert!(log.contains(r#""stage":"broken""#), "{log}");
}
