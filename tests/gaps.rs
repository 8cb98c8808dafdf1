//! What a NixOS `services.restic.backups` user expects (issue 13): timer settings, a cleanup
//! command that runs after failure too (`ExecStopPost=`), restic sources from a file list and
//! from a command's output, and sleep inhibition. Runs real restic and the real systemd user
//! manager (scripts/systemd-sandbox); the generated units are also golden-tested
//! (tests/generate/nixos-gaps).

use crate::util::installed::{Installed, wait_until_idle};
use crate::util::{run, systemctl_user};

#[test]
fn cleanup_runs_after_a_failing_stage_with_its_result() {
    let job = Installed::new(
        "cleanup",
        r#"
[job]
schedule = "daily"
on_boot = "10min"
accuracy = "1min"

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
