//! Power cuts: the short campaign of `scripts/powercut` in the Debian guest under qemu — the
//! guest killed (SIGKILL of qemu: its page cache lost) at seeded moments of a timer-started
//! run, and once shut down cleanly mid-run; each next boot catches up by the `Persistent=`
//! timer alone and checks restic repositories, rsync destinations and rotated snapshots,
//! leftovers (btrfs snapshots, mounts, LUKS mappings), run records, metrics, manifests, git
//! and the drill (docs/reliability.md). Fails, never skips, when qemu cannot run.

use std::path::Path;
use std::process::Command;

use crate::util::{repo_root, run};

/// Fixed seeds: the same cut moments at every run of the suite (`--cuts 30` is the full
/// campaign of docs/reliability.md).
#[test]
fn power_cuts_and_a_shutdown_mid_run_leave_nothing_the_next_run_cannot_mend() {
    assert!(
        Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "qemu-system-x86_64 is missing: run scripts/setup-deps (installs qemu-system-x86, debootstrap)"
    );
    let package = crate::util::debian_package();
    let output = run(Command::new(repo_root().join("scripts/powercut"))
        .args([
            "--seed",
            "20261206",
            "--cuts",
            "2",
            "--shutdown",
            "1",
            "--package",
        ])
        .arg(package));
    let table = String::from_utf8_lossy(&output.stdout);
    // One row per cut and per shutdown, after the header.
    let rows = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| # "))
        .count();
    assert!(
        output.status.success() && rows == 3,
        "the power-cut campaign failed ({}):\n{table}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
