//! The shipped alert rules (units/backupctl.rules.yml): valid for Prometheus, right on
//! fixture series (tests/prometheus/*.test.yml, `promtool test rules`), and written against
//! metrics backupctl really exports.

use std::collections::BTreeSet;
use std::process::Command;

use crate::util::{promtool, repo_root};

#[track_caller]
fn promtool_passes(args: &[&str]) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_rules_pass_promtool_check() {
    promtool_passes(&["check", "rules", "units/backupctl.rules.yml"]);
}

#[test]
fn the_rules_fire_exactly_as_their_fixtures_expect() {
    promtool_passes(&["test", "rules", "tests/prometheus/backupctl.rules.test.yml"]);
}

/// `backupctl_…` names in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("backupctl_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| name.len() > "backupctl_".len())
        .collect()
}

#[test]
fn the_rules_and_fixtures_use_only_exported_metrics() {
    let exported: BTreeSet<String> = ["src/metrics.rs", "src/metrics/repositories.rs"]
        .iter()
        .flat_map(|file| metric_names(&std::fs::read_to_string(repo_root().join(file)).unwrap()))
        .collect();
    for file in [
        "units/backupctl.rules.yml",
        "tests/prometheus/backupctl.rules.test.yml",
    ] {
        let used = metric_names(&std::fs::read_to_string(repo_root().join(file)).unwrap());
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics src/metrics.rs and src/metrics/ do not write: {unknown:?}"
        );
    }
}
