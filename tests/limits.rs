//! Resource limits under real managers: every stage unit runs in backup.slice (the sandbox's
//! user manager), and a stage killed by its `memory_max` is reported as killed by that limit
//! (the qemu guest, systemd as PID 1: the sandbox's host has the memory controller on cgroup
//! v1, which a user manager cannot use).

use std::path::Path;
use std::process::Command;

use crate::util::installed::Installed;
use crate::util::{ok, run, stderr, systemctl_user, tempdir, write};

#[test]
fn stage_units_run_in_backup_slice_under_the_user_manager() {
    let job = Installed::new(
        "slice",
        r#"
[stage.probe]
kind = "exec"
command = ["/bin/sh", "-c", "cat /proc/self/cgroup > @ROOT@/out/cgroup"]
writes = ["@ROOT@/out"]
"#,
    );
    std::fs::create_dir_all(job.path("out")).unwrap();
    ok(systemctl_user().args(["start", "backup-job.service"]));
    assert_eq!(job.show("backup@probe.service", "Slice"), "backup.slice");
    let cgroup = std::fs::read_to_string(job.path("out/cgroup")).unwrap();
    assert!(
        cgroup.contains("/backup.slice/backup@probe.service"),
        "the stage's process is not in backup.slice:\n{cgroup}"
    );
}

const OOM_CONFIG: &str = r#"
# Page cache counts against memory_high too: writing 160M through a 32M limit makes the
# kernel throttle and reclaim (memory.events `high`), and the stage still succeeds. Its
# tools get GOMEMLIMIT at 90 % of the limit (what restic's collector would keep under).
[stage.cache]
kind = "exec"
command = ["/bin/sh", "-c", "printenv GOMEMLIMIT > /var/lib/bc/gomemlimit; head -c 160M /dev/zero > /var/lib/bc/big && rm /var/lib/bc/big"]
writes = ["/var/lib/bc"]
memory_high = "32M"

[stage.hog]
kind = "exec"
shell = true
# `tail -n 1` keeps the whole of a line without newlines in memory: it grows until killed.
command = ["head -c 1G /dev/zero | tail -n 1 > /dev/null"]
memory_max = "64M"
memory_swap_max = "0"

[stage.after]
kind = "exec"
command = ["/bin/true"]

[metrics]
textfile = "/var/lib/bc/backupctl.prom"

[notify.command]
command = ["/bin/cat"]
"#;

/// A stage whose tool grows past `memory_max` is killed by the kernel; systemd reports
/// `Result=oom-kill`, and `stage-ended` makes the run record, `status`, the journal and the
/// metrics say which limit it was. The next stage (`Requires=`) does not run and the job
/// fails, as for any failure. In the guest (≈ 1–2 min emulated); the debug binary is shared
/// over 9p.
#[test]
fn a_stage_killed_by_memory_max_is_reported_as_killed_by_its_limit_in_a_guest() {
    assert!(
        Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "qemu-system-x86_64 is missing: run scripts/setup-deps (installs qemu-system-x86, debootstrap)"
    );
    let share = tempdir();
    let share = share.path();
    std::fs::copy(crate::util::backupctl_path(), share.join("backupctl")).unwrap();
    write(&share.join("config.toml"), OOM_CONFIG);
    write(
        &share.join("run"),
        r#"set -uo pipefail
out=/mnt/host/out
mkdir -p "$out" /var/lib/bc
bc() { /mnt/host/backupctl --config /mnt/host/config.toml "$@"; }
bc generate --output /run/systemd/system --binary /mnt/host/backupctl || exit 1
systemctl daemon-reload
cat /sys/fs/cgroup/cgroup.controllers > "$out/controllers"
if systemctl start backup-job.service; then echo started-ok > "$out/job"; else echo failed > "$out/job"; fi
systemctl show -p Result -p Slice backup@hog.service > "$out/hog"
systemctl show -p ActiveState -p ExecMainStartTimestampMonotonic backup@after.service > "$out/after"
cp /var/lib/backupctl/runs.jsonl "$out/runs.jsonl"
bc status > "$out/status" 2>&1
cp /var/lib/bc/backupctl.prom "$out/metrics" 2>/dev/null
cp /var/lib/bc/gomemlimit "$out/gomemlimit" 2>/dev/null
journalctl -b -o cat MESSAGE_ID=3e6f0b9a2c8d4f17a5b1e4c7d9026f83 > "$out/journal"
# The notifier runs once the stage unit failed (OnFailure=): wait for its message.
for _ in $(seq 60); do
	journalctl -b -o cat -u 'backup-notify@*' > "$out/notify"
	grep -q "unit: backup@hog.service" "$out/notify" && break
	sleep 2
done
echo "GUEST DONE"
"#,
    );
    let output = run(
        Command::new(crate::util::repo_root().join("scripts/guest/run"))
            .arg(share)
            .args(["--timeout", "900"]),
    );
    let read =
        |name: &str| std::fs::read_to_string(share.join("out").join(name)).unwrap_or_default();
    let log = read("log");
    assert!(
        log.contains("GUEST DONE"),
        "the guest run failed ({}):\n{log}\n{}",
        output.status,
        stderr(&output)
    );
    assert!(
        read("controllers").contains("memory"),
        "no memory controller in the guest"
    );
    assert_eq!(read("job").trim(), "failed", "the job must fail\n{log}");
    let hog = read("hog");
    assert!(
        hog.contains("Result=oom-kill") && hog.contains("Slice=backup.slice"),
        "{hog}"
    );
    let after = read("after");
    assert!(
        after.contains("ActiveState=inactive")
            && after.contains("ExecMainStartTimestampMonotonic=0"),
        "the stage after the killed one ran:\n{after}"
    );
    let records = crate::util::read_run_records(&share.join("out/runs.jsonl"));
    assert!(records.iter().all(|r| r["stage"] != "after"), "{records:?}");
    let record = records
        .iter()
        .rev()
        .find(|r| r["stage"] == "hog")
        .expect("hog's record");
    let said = "killed: memory limit memory_max = 64M reached";
    assert_eq!(record["result"], "failed", "{record}");
    assert_eq!(record["error"], said, "{record}");
    assert_eq!(record["killed_by_limit"], "memory_max = 64M", "{record}");
    assert_eq!(
        records.iter().filter(|r| r["stage"] == "hog").count(),
        1,
        "one record per run"
    );
    assert!(read("status").contains(said), "status:\n{}", read("status"));
    let notify = read("notify");
    assert!(
        notify.contains("result: oom-kill") && notify.contains(&format!("error: {said}")),
        "the failure notification:\n{notify}"
    );
    let cache = records
        .iter()
        .rev()
        .find(|r| r["stage"] == "cache")
        .expect("cache's record");
    assert_eq!(cache["result"], "success", "{cache}");
    assert_eq!(
        read("gomemlimit").trim(),
        ((32u64 << 20) / 10 * 9).to_string(),
        "a stage under memory_high = 32M must hand its Go tools GOMEMLIMIT at 90 % of it"
    );
    assert!(
        cache["memory"]["high_events"].as_u64().unwrap_or(0) > 0,
        "{cache}"
    );
    assert!(
        cache["warnings"]
            .to_string()
            .contains("throttled by memory_high"),
        "{cache}"
    );
    assert!(
        read("journal").contains(said),
        "journal:\n{}",
        read("journal")
    );
    assert!(
        read("metrics")
            .contains("backupctl_stage_last_killed_by_limit{backup_job=\"job\",stage=\"hog\"} 1"),
        "metrics:\n{}",
        read("metrics")
    );
}

/// The lines limits add to stage units: the resource-control directives, `Slice=` and the
/// `stage-ended` hook.
fn is_limit_line(line: &str) -> bool {
    const DIRECTIVES: &[&str] = &[
        "MemoryHigh=",
        "MemoryMax=",
        "MemorySwapMax=",
        "IOWeight=",
        "IOReadBandwidthMax=",
        "IOWriteBandwidthMax=",
        "CPUQuota=",
        "TasksMax=",
        "Slice=",
    ];
    DIRECTIVES.iter().any(|d| line.starts_with(d))
        || (line.starts_with("ExecStopPost=") && line.contains(" stage-ended "))
}

/// Exposure (`systemd-analyze security`) does not rise for any stage of any shipped example
/// because of the limits: each stage unit scores no worse than the same unit without the
/// limit lines, the slice and the stage-ended hook.
#[test]
fn limits_do_not_raise_the_exposure_of_any_example_stage() {
    crate::util::require_tool("systemd-analyze");
    let mut examples: Vec<_> = std::fs::read_dir(crate::util::repo_root().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    let mut scored = 0;
    for example in examples {
        let with = tempdir();
        ok(crate::util::backupctl()
            .arg("--config")
            .arg(&example)
            .args(["generate", "--output"])
            .arg(with.path()));
        let without = tempdir();
        for entry in walk(with.path()) {
            let relative = entry.strip_prefix(with.path()).unwrap();
            let text = std::fs::read_to_string(&entry).unwrap();
            let kept: String = text
                .lines()
                .filter(|line| !is_limit_line(line))
                .map(|line| format!("{line}\n"))
                .collect();
            write(&without.path().join(relative), kept);
        }
        for stage in stage_names(with.path()) {
            let limited = crate::util::exposure_score(with.path(), &stage);
            let unlimited = crate::util::exposure_score(without.path(), &stage);
            println!(
                "{}: backup@{stage}.service exposure {limited} (without limits {unlimited})",
                example.display()
            );
            assert!(
                limited <= unlimited,
                "{}: backup@{stage}.service exposure {limited} > {unlimited} without the limits",
                example.display()
            );
            scored += 1;
        }
    }
    assert!(scored > 10, "only {scored} stages scored");
}

/// The regular files under `dir` (units and drop-ins; symlinks left out).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files.extend(walk(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

/// `backup@NAME.service.d` directories: the stages of a generated unit set.
fn stage_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().ok()?;
            Some(
                name.strip_prefix("backup@")?
                    .strip_suffix(".service.d")?
                    .to_string(),
            )
        })
        .collect();
    names.sort();
    names
}

/// `hello` lists each stage's limits as the directives its unit gets, and the slice's.
#[test]
fn hello_shows_the_limits_that_apply_to_each_stage() {
    let dir = tempdir();
    let config = crate::util::write_config(
        dir.path(),
        r#"
[job]
memory_high = "1G"

[slice]
memory_max = "50%"

[stage.copy]
kind = "exec"
command = ["/bin/true"]
memory_max = "2G"
io_write_bandwidth = { "/dev/sda" = "20M" }
io_read_bandwidth = { "/no/such/disk" = "1M" }
"#,
    );
    let output = run(crate::util::backupctl()
        .arg("--config")
        .arg(&config)
        .arg("hello"));
    let text = crate::util::stdout(&output);
    // systemd drops a limit whose device it cannot find, with a warning in its own log only:
    // hello fails on it instead.
    let missing = text
        .lines()
        .find(|line| line.starts_with("io limit") && line.contains("/no/such/disk"))
        .unwrap_or_else(|| panic!("no io limit row for /no/such/disk:\n{text}"));
    assert!(
        missing.contains("FAIL") && missing.contains("will not limit"),
        "{missing}"
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let copy = text
        .lines()
        .find(|line| line.trim_start().starts_with("copy "))
        .unwrap_or_else(|| panic!("no limits line for copy:\n{text}"));
    assert!(
        copy.contains("MemoryHigh=1G")
            && copy.contains("MemoryMax=2G")
            && copy.contains("IOWriteBandwidthMax=/dev/sda 20971520"),
        "{copy}"
    );
    assert!(
        text.lines()
            .any(|line| line.contains("backup.slice") && line.contains("MemoryMax=50%")),
        "{text}"
    );
}
