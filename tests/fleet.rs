//! The fleet's alerts through the real monitoring stack (docs/fleet.md): Debian's
//! Prometheus, Alertmanager and node_exporter on loopback, three simulated hosts, and the
//! shipped rules (units/backupctl.rules.yml, with every `for:` shortened in a test copy).
//!
//! Each host is its own state directory, config and textfile directory, read by its own
//! node_exporter, scraped with a `host` label. Their metrics files are written by backupctl
//! itself from real runs (`run --here`: a real restic backup and a real restore drill),
//! not crafted:
//! - `healthy`: a daily backup and a drill, both succeed;
//! - `stale`: its backup job is scheduled every 10 seconds (so "not recent" is 15 s, 1.5 ×
//!   the schedule, and a real stale age needs no faked clock); it ran once and its timer
//!   never runs it again. A second, daily job keeps its metrics file from counting as
//!   stale (that rule takes a host's longest schedule), so only the backup is late;
//! - `drill-failed`: a daily backup whose pack is then damaged (one flipped byte), so its
//!   drill really fails.
//!
//! Alertmanager delivers to a webhook receiver in the test (`util::http`); the test waits
//! (generously) until the expected alerts arrived, then asserts that exactly those arrived,
//! with their host labels, and that Prometheus holds none, pending or firing, for `healthy`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::http::Server;
use crate::util::{
    backupctl_user, flip_byte, free_port, largest_file, ok, repo_root, require_tool, run, stderr,
    tempdir, write, write_config, write_secret,
};

/// How long the stack may take to deliver (start, scrape, evaluate, group, send): far more
/// than it needs, so a slow machine does not fail the test; no timing is asserted.
const DEADLINE: Duration = Duration::from_secs(240);

/// A server the test started, stopped (by its own pid) when dropped; its output in `log`.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(program: &str, args: &[String], log: PathBuf) -> Daemon {
        require_tool(program);
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Daemon { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a loopback port (HTTP/1.0: the body ends with the connection): the body
/// when the answer is 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Waits until `port` answers `path` with 200; panics with the daemon's log otherwise.
fn wait_ready(daemon: &Daemon, port: u16, path: &str) {
    let deadline = Instant::now() + DEADLINE;
    while get(port, path).is_none() {
        assert!(
            Instant::now() < deadline,
            "{} did not answer {path} on port {port}:\n{}",
            daemon.log.display(),
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One simulated host: its root holds its config, state, source, repository and textfile
/// directory.
struct Host {
    name: &'static str,
    root: PathBuf,
    config: PathBuf,
}

impl Host {
    /// A host with a restic backup stage `home` in job `job` (on `schedule`) and a drill
    /// stage `drill-home` in job `drill`; `extra` is more of its config.
    fn new(scratch: &Path, name: &'static str, schedule: &str, extra: &str) -> Host {
        let root = scratch.join(name);
        write(&root.join("source/notes.txt"), format!("{name}'s notes\n"));
        write(
            &root.join("source/big.bin"),
            crate::util::incompressible_bytes(1 << 20),
        );
        write_secret(&root.join("password"), format!("{name}-password\n"));
        // node_exporter's directory exists before backupctl writes into it, as on a host.
        std::fs::create_dir_all(root.join("textfile")).unwrap();
        let config = write_config(
            &root,
            &format!(
                r#"
[metrics]
textfile = "@ROOT@/textfile/backupctl.prom"

[job]
schedule = "{schedule}"

[jobs.drill]

[stage.home]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
init = true
paths = ["@ROOT@/source"]
host = "{name}"

[stage.drill-home]
job = "drill"
kind = "drill"
stage = "home"
sample = "100%"
{extra}"#
            ),
        );
        Host { name, root, config }
    }

    fn backupctl(&self) -> Command {
        backupctl_user(&self.root, &self.config)
    }

    fn textfile_dir(&self) -> PathBuf {
        self.root.join("textfile")
    }
}

/// The shipped rules with every `for:` cut to a second (the thresholds stay the shipped
/// ones: the stale host's schedule makes them short).
fn rules_for_the_test(to: &Path) {
    let shipped = std::fs::read_to_string(repo_root().join("units/backupctl.rules.yml")).unwrap();
    let rewritten: String = shipped
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 1s\n", &line[..line.len() - line.trim_start().len()]),
            None => format!("{line}\n"),
        })
        .collect();
    write(to, rewritten);
}

/// (alertname, host) of every firing alert Alertmanager delivered to the receiver.
fn delivered(receiver: &Server) -> BTreeSet<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == "/alerts")
        .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|alert| alert["status"] == "firing")
        .map(|alert| {
            let label = |name: &str| alert["labels"][name].as_str().unwrap_or("").to_string();
            (label("alertname"), label("host"))
        })
        .collect()
}

/// Runs the three hosts' stages, each as backupctl really runs them.
fn run_the_hosts(scratch: &Path) -> Vec<Host> {
    let healthy = Host::new(
        scratch,
        "healthy",
        "daily",
        r#"
[stage.check-home]
job = "drill"
kind = "restic"
operation = "check"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
"#,
    );
    ok(healthy.backupctl().args(["run", "--here", "job"]));
    assert_status_shows_the_repository(&healthy);
    ok(healthy.backupctl().args(["run", "--here", "drill"]));
    assert_status_shows_the_check(&healthy);

    let stale = Host::new(
        scratch,
        "stale",
        "*:*:0/10",
        r#"
[jobs.daily]
schedule = "daily"

[stage.daily-note]
job = "daily"
kind = "exec"
command = ["/bin/true"]
"#,
    );
    ok(stale.backupctl().args(["run", "--here", "job"]));
    ok(stale.backupctl().args(["run", "--here", "daily"]));

    let drill_failed = Host::new(scratch, "drill-failed", "daily", "");
    ok(drill_failed.backupctl().args(["run", "--here", "job"]));
    flip_byte(&largest_file(&drill_failed.root.join("repo/data")));
    let output = run(drill_failed.backupctl().args(["run", "--here", "drill"]));
    assert!(
        !output.status.success(),
        "the drill of a damaged pack must fail:\n{}",
        stderr(&output)
    );
    vec![healthy, stale, drill_failed]
}

/// `status --json` and the table show the repository's figures the backup left.
fn assert_status_shows_the_repository(host: &Host) {
    let status: serde_json::Value =
        serde_json::from_str(&ok(host.backupctl().args(["status", "--json"]))).unwrap();
    let repositories = status["repositories"].as_array().unwrap();
    assert_eq!(repositories.len(), 1, "{status:#}");
    let repository = &repositories[0];
    assert_eq!(
        repository["repository"],
        host.root.join("repo").to_str().unwrap()
    );
    assert_eq!(
        repository["stages"],
        serde_json::json!([{"name": "home", "role": "backup"}])
    );
    assert_eq!(repository["snapshots"], 1, "{repository}");
    assert_eq!(repository["hosts"][0]["host"], host.name, "{repository}");
    // The first backup measured the sizes (none were known): the source is a MiB of
    // random bytes, stored once.
    let restore = repository["restore_bytes"].as_u64().unwrap();
    let stored = repository["stored_bytes"].as_u64().unwrap();
    assert!(restore > 1 << 20, "{repository}");
    assert!(stored > 1 << 20 && stored < 2 << 20, "{repository}");
    assert_eq!(repository["last_check"], serde_json::Value::Null);
    let table = ok(host.backupctl().args(["status"]));
    assert!(
        table.contains(&format!("repository {}", host.root.join("repo").display()))
            && table.contains("  snapshots: 1 (listed ")
            && table.contains(&format!("newest: {} ", host.name))
            && table.contains("last check: never; last prune: never"),
        "{table}"
    );
}

/// After a check: its time, from the run records, and the sizes it measured again.
fn assert_status_shows_the_check(host: &Host) {
    let status: serde_json::Value =
        serde_json::from_str(&ok(host.backupctl().args(["status", "--json"]))).unwrap();
    let repository = &status["repositories"][0];
    assert!(repository["last_check"].is_string(), "{repository}");
    assert!(
        repository["stages"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "check-home", "role": "check"})),
        "{repository}"
    );
    assert!(
        repository["sizes_refreshed"].as_str() > repository["snapshots_refreshed"].as_str(),
        "a check measures the sizes again: {repository}"
    );
    let metrics = std::fs::read_to_string(host.textfile_dir().join("backupctl.prom")).unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("backupctl_repository_last_check_timestamp_seconds{repository=")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn the_shipped_rules_alert_on_the_stale_and_the_failed_host_and_not_the_healthy_one() {
    require_tool("restic");
    let scratch = tempdir();
    let scratch = scratch.path();
    let hosts = run_the_hosts(scratch);
    for host in &hosts {
        let text = std::fs::read_to_string(host.textfile_dir().join("backupctl.prom")).unwrap();
        assert!(
            text.contains("backupctl_repository_snapshots{"),
            "{}'s metrics carry its repository's figures:\n{text}",
            host.name
        );
    }

    let receiver = Server::start();
    let mut daemons = Vec::new();
    let mut targets = String::new();
    for host in &hosts {
        let port = free_port();
        let daemon = Daemon::start(
            "prometheus-node-exporter",
            &[
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--collector.disable-defaults".into(),
                "--collector.textfile".into(),
                format!(
                    "--collector.textfile.directory={}",
                    host.textfile_dir().display()
                ),
            ],
            scratch.join(format!("node-exporter-{}.log", host.name)),
        );
        wait_ready(&daemon, port, "/metrics");
        daemons.push(daemon);
        targets.push_str(&format!(
            "      - targets: ['127.0.0.1:{port}']\n        labels: {{host: '{}'}}\n",
            host.name
        ));
    }

    let alertmanager_port = free_port();
    write(
        &scratch.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [host, alertname]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
             webhook_configs:\n      - url: {}\n        send_resolved: false\n",
            receiver.url("/alerts")
        ),
    );
    let alertmanager = Daemon::start(
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                scratch.join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", scratch.join("alertmanager").display()),
            format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            // One instance, no gossip port to collide with anything.
            "--cluster.listen-address=".into(),
        ],
        scratch.join("alertmanager.log"),
    );
    wait_ready(&alertmanager, alertmanager_port, "/-/ready");

    rules_for_the_test(&scratch.join("rules.yml"));
    let prometheus_port = free_port();
    write(
        &scratch.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: \
             ['127.0.0.1:{alertmanager_port}']\nscrape_configs:\n  - job_name: node\n    \
             static_configs:\n{targets}",
            scratch.join("rules.yml").display()
        ),
    );
    let prometheus = Daemon::start(
        "prometheus",
        &[
            format!("--config.file={}", scratch.join("prometheus.yml").display()),
            format!(
                "--storage.tsdb.path={}",
                scratch.join("prometheus").display()
            ),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        scratch.join("prometheus.log"),
    );
    wait_ready(&prometheus, prometheus_port, "/-/ready");

    let expected: BTreeSet<(String, String)> = [
        ("BackupNotRecent", "stale"),
        ("BackupDrillFailed", "drill-failed"),
    ]
    .iter()
    .map(|(alert, host)| (alert.to_string(), host.to_string()))
    .collect();
    let deadline = Instant::now() + DEADLINE;
    while !delivered(&receiver).is_superset(&expected) {
        assert!(
            Instant::now() < deadline,
            "expected {expected:?} from Alertmanager; delivered {:?}\nPrometheus alerts: {}\n\
             prometheus.log:\n{}\nalertmanager.log:\n{}",
            delivered(&receiver),
            get(prometheus_port, "/api/v1/alerts").unwrap_or_default(),
            prometheus.log_tail(),
            alertmanager.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(delivered(&receiver), expected, "exactly these alerts");

    // Prometheus itself holds nothing, pending or firing, for the healthy host.
    let alerts: serde_json::Value =
        serde_json::from_str(&get(prometheus_port, "/api/v1/alerts").unwrap()).unwrap();
    let healthy: Vec<&serde_json::Value> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["host"] == "healthy")
        .collect();
    assert!(
        healthy.is_empty(),
        "alerts for the healthy host: {healthy:?}"
    );

    // The repository figures reached Prometheus, per host: one snapshot each.
    let query = "/api/v1/query?query=backupctl_repository_snapshots";
    let answer: serde_json::Value =
        serde_json::from_str(&get(prometheus_port, query).unwrap()).unwrap();
    let hosts_with_one: BTreeSet<String> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["value"][1] == "1")
        .map(|r| r["metric"]["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        hosts_with_one,
        ["drill-failed", "healthy", "stale"]
            .map(String::from)
            .into(),
        "{answer}"
    );
    drop(daemons);
}
