//! The error corpus: every `tests/errors/*.toml` is a malformed config whose exact message
//! (file, line, column, caret, help) is pinned in the `.expected` file beside it, and none of
//! them may write a unit but the one that fails with the error at boot
//! (`backupctl-config-error.service`, see tests/config_error_unit.rs). The corpus directory is written `@ROOT@` in them; `BLESS=1` rewrites
//! the expected files after a deliberate change of wording (see `util::golden`), then review
//! the diff.

use std::path::{Path, PathBuf};

use crate::util::{backupctl, golden, placeholder, repo_root, run, stderr, tempdir};

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/errors"))
        .expect("tests/errors exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The message with the corpus directory written `@ROOT@`, so the corpus is location-free.
fn normalized(message: &str) -> String {
    placeholder::collapse(message, &repo_root().join("tests/errors"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            names.push(entry.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names
}

#[test]
fn corpus_has_at_least_twenty_cases() {
    assert!(
        corpus().len() >= 20,
        "only {} malformed configs",
        corpus().len()
    );
}

#[test]
fn every_malformed_config_gives_its_exact_error_and_writes_only_the_error_unit() {
    let mut failures = Vec::new();
    for config in corpus() {
        let output_dir = tempdir();
        let output = run(backupctl()
            .arg("--config")
            .arg(&config)
            .args(["generate", "--binary", "/usr/bin/backupctl", "--output"])
            .arg(output_dir.path()));
        let message = normalized(&stderr(&output));
        let name = config.file_name().unwrap().to_string_lossy().into_owned();
        if output.status.code() != Some(2) {
            failures.push(format!(
                "{name}: exit code {:?}, expected 2",
                output.status.code()
            ));
        }
        if let Err(difference) = golden::check_file(&config.with_extension("expected"), &message) {
            failures.push(difference);
        }
        let mut written = files_in(output_dir.path());
        written.sort();
        if written
            != [
                ".backupctl-generated",
                "backupctl-config-error.service",
                "multi-user.target.wants",
            ]
        {
            failures.push(format!("{name}: wrote {written:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn check_exits_1_on_an_invalid_config() {
    let config = repo_root().join("tests/errors/10-cycle.toml");
    let output = run(backupctl().arg("--config").arg(&config).arg("check"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("the stages form a cycle"),
        "{}",
        stderr(&output)
    );
}
