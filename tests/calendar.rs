//! The calendar corpus (tests/calendar/corpus.txt, made by scripts/calendar-corpus): our
//! validator must give systemd's verdict on every expression, and the stored verdicts must
//! still be those of this machine's `systemd-analyze calendar`.

use std::process::Command;

use backupctl::config::calendar;

use crate::util::{repo_root, require_tool};

/// `(accepted, expression)` for every corpus line.
fn corpus() -> Vec<(bool, String)> {
    let path = repo_root().join("tests/calendar/corpus.txt");
    let text = std::fs::read_to_string(&path).expect("tests/calendar/corpus.txt exists");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (verdict, expr) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("corpus line without a tab: {line:?}"));
            let accepted = match verdict {
                "accept" => true,
                "refuse" => false,
                other => panic!("unknown verdict {other:?} in {line:?}"),
            };
            (accepted, expr.to_string())
        })
        .collect()
}

#[test]
fn calendar_corpus_has_at_least_400_expressions_of_both_verdicts() {
    let corpus = corpus();
    let accepted = corpus.iter().filter(|(accepted, _)| *accepted).count();
    assert!(corpus.len() >= 400, "only {} expressions", corpus.len());
    assert!(
        accepted >= 100 && corpus.len() - accepted >= 100,
        "{accepted} accepted of {}: the corpus needs both verdicts",
        corpus.len()
    );
}

#[test]
fn calendar_validator_agrees_with_systemd_on_the_corpus() {
    // Time-zone verdicts were taken with tzdata installed; without it they cannot agree.
    assert!(
        std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").is_file(),
        "this test needs the time zone database in /usr/share/zoneinfo (package tzdata)"
    );
    let disagreements: Vec<String> = corpus()
        .into_iter()
        .filter_map(|(accepted, expr)| {
            // The verdicts were taken with TZ=UTC (the local zone's names are accepted too).
            let ours = calendar::validate_with_local_zone(&expr, &["UTC".into(), "UTC".into()]);
            (ours.is_ok() != accepted).then(|| match ours {
                Ok(()) => format!("{expr:?}: systemd refuses it, we accept it"),
                Err(error) => format!("{expr:?}: systemd accepts it, we refuse it: {error}"),
            })
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s) with systemd:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[test]
fn calendar_corpus_verdicts_match_this_systemd() {
    require_tool("systemd-analyze");
    let corpus = corpus();
    // One call for the whole corpus: systemd-analyze names each expression it cannot parse.
    let output = Command::new("systemd-analyze")
        .env("TZ", "UTC")
        .args(["calendar", "--"])
        .args(corpus.iter().map(|(_, expr)| expr))
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mismatches: Vec<String> = corpus
        .iter()
        .filter(|(accepted, expr)| {
            let refused = stderr.contains(&format!(
                "Failed to parse calendar specification '{expr}': "
            ));
            refused == *accepted
        })
        .map(|(accepted, expr)| {
            format!(
                "{expr:?}: stored {}, systemd-analyze now {}",
                if *accepted { "accept" } else { "refuse" },
                if *accepted { "refuses" } else { "accepts" }
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "stored verdicts are stale (rerun scripts/calendar-corpus and review the diff):\n{}",
        mismatches.join("\n")
    );
}
