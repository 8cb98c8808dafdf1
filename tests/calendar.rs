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

/// `check` on a config whose schedule names `zone`, in a private mount namespace where the
/// system's zoneinfo directories are empty, with `tzdir` as `TZDIR` (none when `None`).
fn check_with_hidden_zoneinfo(
    root: &std::path::Path,
    zone: &str,
    tzdir: Option<&std::path::Path>,
) -> std::process::Output {
    require_tool("unshare");
    let config = crate::util::write_config(
        root,
        &format!(
            "[job]\nschedule = \"*-*-* 03:00:00 {zone}\"\n\n[stage.hello]\nkind = \"hello\"\n"
        ),
    );
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // Bind the empty directory over each zoneinfo directory this machine has (the mounts
    // end with the namespace), then run the check in there.
    let mut script = String::from("set -e\n");
    for dir in ["/usr/share/zoneinfo", "/etc/zoneinfo"] {
        if std::path::Path::new(dir).is_dir() {
            script.push_str(&format!("mount --bind \"$EMPTY\" {dir}\n"));
        }
    }
    script.push_str("exec \"$BACKUPCTL\" --config \"$CONFIG\" check\n");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("EMPTY", &empty)
        .env("BACKUPCTL", crate::util::backupctl_path())
        .env("CONFIG", &config)
        .env_remove("BACKUPCTL_CONFIG")
        .env_remove("TZDIR");
    if let Some(tzdir) = tzdir {
        command.env("TZDIR", tzdir);
    }
    crate::util::run(&mut command)
}

/// NixOS's build sandbox has no zoneinfo directory at all: the module's check passes
/// tzdata's as `TZDIR`, which systemd honours too. A zone found only there is valid; a
/// misspelt one is still refused with its position.
#[test]
fn a_time_zone_found_only_through_tzdir_passes_check() {
    let berlin = std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin");
    assert!(
        berlin.is_file(),
        "this test needs the time zone database in /usr/share/zoneinfo (package tzdata)"
    );
    let scratch = crate::util::tempdir();
    let root = scratch.path();
    let tzdir = root.join("tzdata/share/zoneinfo");
    std::fs::create_dir_all(tzdir.join("Europe")).unwrap();
    std::fs::copy(berlin, tzdir.join("Europe/Berlin")).unwrap();

    let output = check_with_hidden_zoneinfo(root, "Europe/Berlin", Some(&tzdir));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{}: {text}", output.status);

    // The same namespace without TZDIR finds no zone: the directories were hidden.
    let output = check_with_hidden_zoneinfo(root, "Europe/Berlin", None);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && text.contains("unknown time zone `Europe/Berlin`"),
        "{}: {text}",
        output.status
    );

    let output = check_with_hidden_zoneinfo(root, "Europe/Berln", Some(&tzdir));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && text.contains("unknown time zone `Europe/Berln`")
            && text.contains(&format!("TZDIR={} has no such zone", tzdir.display()))
            && text.contains("config.toml:2:12"),
        "{}: {text}",
        output.status
    );
}
