//! Power cuts: the short campaign of `scripts/powercut` in the Debian guest under qemu — the
//! guest killed (SIGKILL of qemu: its page cache lost) at seeded moments of a timer-started
//! run, and once shut down cleanly mid-run; each next boot catches up by the `Persistent=`
//! timer alone and checks restic repositories, rsync destinations and rotated snapshots,
//! leftovers (btrfs snapshots, mounts, LUKS mappings), run records and the cut job run shown
//! as interrupted, metrics, manifests, git (the local remote's receive-pack fsyncs) and the
//! drill (docs/reliability.md). Fails, never skips, when qemu cannot run.

use std::path::Path;
use std::process::Command;

use crate::util::{repo_root, run};

/// The cells of the campaign's table that failed, as `cut N (kind, running at the cut):
/// check = value`, one per line.
fn failed_checks(table: &str) -> Vec<String> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split(" | ")
            .map(|cell| cell.trim().to_string())
            .collect()
    };
    let Some(header) = table.lines().find(|l| l.starts_with("| # ")).map(cells) else {
        return vec!["the campaign printed no table".into()];
    };
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| # "))
        .map(cells)
        .flat_map(|row| {
            let at = format!(
                "cut {} ({}, running at the cut: {})",
                row[0],
                row.get(1).map_or("?", String::as_str),
                row.get(4).map_or("?", String::as_str)
            );
            header
                .iter()
                .zip(row.clone())
                .filter(|(_, value)| value.starts_with("FAIL"))
                .map(move |(check, value)| format!("{at}: {check} = {value}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_failed_cell_is_named_by_its_check_and_cut() {
    let table = "| # | kind | seed | moment (s) | running at the cut | drill |\n\
                 |---|---|---|---|---|---|\n\
                 | 1 | cut | 7 | 1.000 | sqlite | ok |\n\
                 | 2 | shutdown | 7 | 2.000 | git | FAIL(failed) |\n";
    assert_eq!(
        failed_checks(table),
        ["cut 2 (shutdown, running at the cut: git): drill = FAIL(failed)"]
    );
}

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
            // The clean shutdown while the sqlite stage copies (it was once recorded as a
            // failed copy, not as stopped by the shutdown).
            "--shutdown-during",
            "sqlite",
            "--package",
        ])
        .arg(package));
    let table = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failed = failed_checks(&table);
    assert!(
        failed.is_empty(),
        "checks of the power-cut campaign failed:\n{}\n\n{table}\n{stderr}",
        failed.join("\n")
    );
    // One row per cut and per shutdown, after the header.
    let rows = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| # "))
        .count();
    assert!(
        output.status.success() && rows == 3,
        "the power-cut campaign failed ({}, {rows} of 3 rows):\n{table}\n{stderr}",
        output.status
    );
}
