//! `skip_on_metered` and `on_ac_power` under the real systemd user manager, and what systemd
//! does with the dependents of a skipped stage.
//!
//! NetworkManager here is the real one (Debian's network-manager), on a private system bus
//! and in namespaces of its own where it manages one veth and nothing of the machine's
//! (tests/util/network_manager.rs): `Metered` is its own reading of that connection — set
//! metered, its guess for a wired link (guess no), and its guess behind a DHCP server that
//! sends Android's `ANDROID_METERED` (guess yes; dnsmasq). The stage reaches the bus through
//! `DBUS_SYSTEM_BUS_ADDRESS`, set in its `environment` (the variable every D-Bus library
//! reads for the system bus; for tests).
//!
//! Found under systemd 252 (and asserted below): a stage skipped by its `ExecCondition=` or
//! by a `Condition…=` counts as started successfully, so a stage that `Requires=` it runs,
//! and the job succeeds.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::installed::{Installed, RUNS, last_run_record, run_records, wait_until_idle};
use crate::util::network_manager::{NetworkManager, PrivateBus};
use crate::util::{ok, require_tool, run, systemctl_user};

/// A job: `net` (network, skip_on_metered) ← `after-net` (Requires=); `mains`
/// (on_ac_power); `disk` (when_mounted on a plain directory: a failed Condition…=) ←
/// `after-disk` (Requires=). Each writes a file when it runs.
fn config(bus: &str) -> String {
    let touch = |name: &str| {
        format!(
            "command = [\"/usr/bin/touch\", \"@ROOT@/ran/{name}\"]\nwrites = [\"@ROOT@/ran\"]\n"
        )
    };
    format!(
        "{NOTIFY}[stage.net]\nkind = \"exec\"\nnetwork = true\nskip_on_metered = true\n{}\
         environment = {{ DBUS_SYSTEM_BUS_ADDRESS = \"{bus}\" }}\n\
         [stage.after-net]\nkind = \"exec\"\nafter = [\"net\"]\n{}\
         [stage.mains]\nkind = \"exec\"\nafter = []\non_ac_power = true\n{}\
         [stage.disk]\nkind = \"exec\"\nafter = []\nwhen_mounted = \"@ROOT@/not-a-mount\"\n{}\
         [stage.after-disk]\nkind = \"exec\"\nafter = [\"disk\"]\n{}",
        touch("net"),
        touch("after-net"),
        touch("mains"),
        touch("disk"),
        touch("after-disk"),
    )
}

/// Starts the job, waits for it and returns which stages ran (the files they touched).
fn run_job(installed: &Installed) -> Vec<String> {
    let ran = installed.path("ran");
    let _ = std::fs::remove_dir_all(&ran);
    std::fs::create_dir_all(&ran).unwrap();
    ok(systemctl_user().args(["start", "backup-job.service"]));
    let mut names: Vec<String> = std::fs::read_dir(&ran)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What systemd's `ConditionACPower=` decides on this machine, read as systemd reads it.
fn on_ac_power_here() -> bool {
    let Ok(entries) = std::fs::read_dir("/sys/class/power_supply") else {
        return true;
    };
    let read = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
    let mains: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| read(p, "type").trim() == "Mains" && read(p, "scope").trim() != "Device")
        .map(|p| read(&p, "online").trim().to_string())
        .collect();
    mains.is_empty() || mains.iter().any(|online| online == "1")
}

#[test]
fn metered_and_battery_skips_are_recorded_and_dependents_still_run() {
    require_tool("systemctl");
    let installed = Installed::new(
        "conditions",
        &config("unix:path=@ROOT@/bus/system_bus_socket"),
    );
    std::fs::create_dir_all(installed.path("not-a-mount")).unwrap();
    std::fs::create_dir_all(installed.path("bus")).unwrap();
    let bus = PrivateBus::start(&installed.path("bus"));
    let mut nm = NetworkManager::start(&installed.path("network-manager"), &bus);

    // Metered (1): `net` is skipped by its ExecCondition=, its Requires= dependent runs; a
    // failed ConditionPathIsMountPoint= (`disk`) likewise lets `after-disk` run.
    let ran = run_job(&installed);
    assert_eq!(ran, ["after-disk", "after-net", "mains"], "stages that ran");
    // `systemctl start` of the job exited 0 (run_job): the job succeeded.
    let record = last_run_record("net");
    assert_eq!(record["result"], "skipped", "{record}");
    assert_eq!(record["skip_reason"], "metered connection", "{record}");
    let status = ok(&mut installed.backupctl(&["status"]));
    assert!(
        status.contains("skipped: metered connection"),
        "status:\n{status}"
    );
    // A Condition…= skip runs nothing of ours: backup-skips@job, after every stage, records it
    // from the unit's ConditionResult and Conditions. ConditionPathIsMountPoint= here; a failed
    // ConditionACPower= is recorded the same way ("on battery"), which this VM cannot show.
    let record = last_run_record("disk");
    assert_eq!(record["result"], "skipped", "{record}");
    assert!(
        record["skip_reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("not-a-mount is not mounted")),
        "{record}"
    );
    // ConditionACPower= as this machine's power supplies decide it (a VM: no battery, so
    // true and `mains` ran). Asserted by what ran: a finished oneshot unit is unloaded soon,
    // and an unloaded unit's ConditionResult reads "no".
    assert_eq!(
        ran.contains(&"mains".to_string()),
        on_ac_power_here(),
        "ConditionACPower=true decided otherwise than /sys/class/power_supply says"
    );

    // NetworkManager's guess: no for a wired link (4), the stage runs; yes behind a
    // phone's hotspot (3), skipped too.
    nm.guess_on_a_wired_link();
    assert!(run_job(&installed).contains(&"net".to_string()));
    assert_eq!(last_run_record("net")["result"], "success");
    nm.guess_behind_a_phone();
    assert!(!run_job(&installed).contains(&"net".to_string()));
    let record = last_run_record("net");
    assert_eq!(record["skip_reason"], "metered connection", "{record}");

    // No NetworkManager on the bus: the stage runs, and its record says it could not ask.
    drop(nm);
    assert!(run_job(&installed).contains(&"net".to_string()));
    let record = last_run_record("net");
    assert_eq!(record["result"], "success", "{record}");
    let notes = record["notes"].to_string();
    assert!(
        notes.contains("NetworkManager could not be asked"),
        "{record}"
    );
    // No skip sent a failure notification (the channel works: the test of a failed stage
    // beside a skip shows it).
    wait_until_idle();
    assert_eq!(notified(&installed), Vec::<String>::new());
}

/// A notification channel that notes the stage of each failure notification. The notifier
/// unit may write only the state directory (ProtectSystem=strict), so the file is there,
/// named after this test's directory.
const NOTIFY: &str = "[notify.command]\n\
     command = [\"/bin/sh\", \"-c\", \
     \"echo $BACKUPCTL_NOTIFY_STAGE >> $STATE_DIRECTORY/notified-$(basename @ROOT@)\"]\n\n";

/// The stages failure notifications were sent for (an empty line: the job's own); read once.
fn notified(installed: &Installed) -> Vec<String> {
    let root = installed.path("");
    let name = root.file_name().unwrap().to_string_lossy();
    let file = Path::new(RUNS).with_file_name(format!("notified-{name}"));
    let sent = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(file);
    sent.lines().map(String::from).collect()
}

/// A skip systemd decided by a `Condition…=` is recorded however the job ends: here a
/// required stage fails, so systemd fails the job unit's start job at once and `job-finished`
/// never runs; `backup-skips@job` (`Wants=` of the job, `After=` every stage) records it.
///
/// On battery cannot be shown on this machine: `ConditionACPower=` reads
/// /sys/class/power_supply, which a user manager cannot be shown another copy of, and this VM
/// has no battery (so `mains`, `on_ac_power = true`, runs: asserted against what sysfs says).
/// The skip recorded is a failed `ConditionPathIsMountPoint=`, which systemd reports through
/// the same `ConditionResult`/`Conditions` properties and which `record-skips` reads the same
/// way; the words for a failed `ConditionACPower=` ("on battery") are held by a unit test of
/// `commands::internal`.
/// A job of three parallel stages: `fails` (required, running `command`), `disk`
/// (`when_mounted` on a plain directory, and `on_ac_power`) and `mains` (`on_ac_power`).
fn skip_beside(command: &str) -> String {
    format!(
        "[metrics]\ntextfile = \"@ROOT@/textfile/backupctl.prom\"\n\n{NOTIFY}[job]\n\n\
         [stage.fails]\nkind = \"exec\"\ncommand = {command}\n\
         [stage.disk]\nkind = \"exec\"\nafter = []\nwhen_mounted = \"@ROOT@/not-a-mount\"\n\
         on_ac_power = true\ncommand = [\"/bin/true\"]\n\
         [stage.mains]\nkind = \"exec\"\nafter = []\non_ac_power = true\n\
         command = [\"/bin/true\"]\n"
    )
}

#[test]
fn a_condition_skip_is_recorded_when_a_required_stage_fails() {
    require_tool("systemctl");
    let config = skip_beside("[\"/bin/false\"]");
    let installed = Installed::new("conditions-failed", &config);
    std::fs::create_dir_all(installed.path("not-a-mount")).unwrap();
    std::fs::create_dir_all(installed.path("textfile")).unwrap();
    let before = run_records().len();

    let started = run(systemctl_user().args(["start", "backup-job.service"]));
    assert!(
        !started.status.success(),
        "the job must fail: its required stage `fails` exits 1"
    );
    // The job's start job failed at once; backup-skips@job still waits for the stages.
    wait_until_idle();
    let records: Vec<serde_json::Value> = run_records().split_off(before);
    let of = |stage: &str| {
        records
            .iter()
            .filter(|r| r["stage"] == stage)
            .collect::<Vec<_>>()
    };
    let failed = of("fails");
    assert_eq!(failed.len(), 1, "{records:#?}");
    assert_eq!(failed[0]["result"], "failed", "{records:#?}");

    // Recorded once, skipped, with systemd's reason, in the same job run as the failure.
    let skipped = of("disk");
    assert_eq!(
        skipped.len(),
        1,
        "one record of the skipped stage: {records:#?}"
    );
    let skip = skipped[0];
    assert_eq!(skip["result"], "skipped", "{skip}");
    assert!(
        skip["skip_reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("not-a-mount is not mounted")),
        "{skip}"
    );
    assert_eq!(skip["job_run"], failed[0]["job_run"], "{records:#?}");
    let status = ok(&mut installed.backupctl(&["status"]));
    assert!(
        status.contains("not-a-mount is not mounted"),
        "status:\n{status}"
    );
    // The failure was notified; the skip, beside it in the same run, was not.
    let sent = notified(&installed);
    assert!(sent.iter().any(|s| s == "fails"), "notified: {sent:?}");
    assert!(!sent.iter().any(|s| s == "disk"), "notified: {sent:?}");
    let metrics = std::fs::read_to_string(installed.path("textfile/backupctl.prom")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("backupctl_stage_last_skipped{")
                && l.contains("stage=\"disk\"")
                && l.contains("not-a-mount is not mounted")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("backupctl_stage_last_skipped{") && l.contains("stage=\"mains\"")
        ),
        "{metrics}"
    );

    // `mains` as systemd decided ConditionACPower= from this machine's power supplies.
    let mains = of("mains");
    if on_ac_power_here() {
        assert_eq!(mains.len(), 1, "{records:#?}");
        assert_eq!(mains[0]["result"], "success", "{records:#?}");
    } else {
        assert_eq!(mains[0]["skip_reason"], "on battery", "{records:#?}");
    }
}

/// The same when the job is stopped while a stage runs: `backup-skips@job` still runs after
/// the stages stopped, and records the skip in the stopped run.
#[test]
fn a_condition_skip_is_recorded_when_the_job_is_stopped() {
    require_tool("systemctl");
    let installed = Installed::new(
        "conditions-stopped",
        &skip_beside("[\"/bin/sleep\", \"300\"]"),
    );
    std::fs::create_dir_all(installed.path("not-a-mount")).unwrap();
    let before = run_records().len();
    ok(systemctl_user().args(["start", "--no-block", "backup-job.service"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Stopped while `fails` sleeps (a oneshot unit is "activating" while its ExecStart= runs)
    // and after `mains` ran, whose record names the run (on battery `mains` is skipped, and
    // recorded with `disk` after the stop).
    let mains_ran = || {
        !on_ac_power_here()
            || run_records()[before..]
                .iter()
                .any(|r| r["stage"] == "mains")
    };
    while installed.show("backup@fails.service", "ActiveState") != "activating" || !mains_ran() {
        assert!(
            Instant::now() < deadline,
            "backup@fails or backup@mains never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(systemctl_user().args(["stop", "backup-job.service"]));
    wait_until_idle();
    let records: Vec<serde_json::Value> = run_records().split_off(before);
    let of = |stage: &str| records.iter().find(|r| r["stage"] == stage).cloned();
    let skip = of("disk").unwrap_or_else(|| panic!("the skip went unrecorded: {records:#?}"));
    assert_eq!(skip["result"], "skipped", "{skip}");
    // In the stopped run: the run of `mains`, which ran beside it. `fails`, stopped, may be
    // recorded only at its next start (the open-run note), so it is not the one compared.
    let mains = of("mains").unwrap_or_else(|| panic!("no record of `mains`: {records:#?}"));
    assert_eq!(skip["job_run"], mains["job_run"], "{records:#?}");
}
