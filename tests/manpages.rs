//! The man pages: `backupctl man --dir` writes backupctl.1 and one page per subcommand
//! (nested ones too), each page documents its subcommand's options, every `backupctl-NAME(1)`
//! a page names exists, and groff renders every page without a warning. The subcommands and
//! options expected come from the clap definition itself (`backupctl::cli::command()`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::util::{backupctl, ok, require_tool, tempdir};

/// One expected page: the options (`--long`, or `-s` without a long name) and positional
/// value names its command accepts.
struct Expected {
    options: Vec<String>,
    positionals: Vec<String>,
}

/// Page file name → what it must document, for backupctl and every visible subcommand,
/// nested ones included (`store init` → backupctl-store-init.1). Global options (`--config`,
/// `--user`) belong on every page.
fn expected_pages() -> BTreeMap<String, Expected> {
    fn walk(
        command: &clap::Command,
        name: &str,
        globals: &[String],
        pages: &mut BTreeMap<String, Expected>,
    ) {
        let mut options = globals.to_vec();
        let mut positionals = Vec::new();
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.is_positional() {
                let value_names = arg.get_value_names().map(|v| v[0].to_string());
                positionals.push(value_names.unwrap_or_else(|| arg.get_id().to_string()));
            } else if let Some(long) = arg.get_long() {
                options.push(format!("--{long}"));
            } else if let Some(short) = arg.get_short() {
                options.push(format!("-{short}"));
            }
        }
        pages.insert(
            format!("{name}.1"),
            Expected {
                options,
                positionals,
            },
        );
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, &format!("{name}-{}", sub.get_name()), globals, pages);
        }
    }
    let command = backupctl::cli::command();
    let globals: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
        .collect();
    let mut pages = BTreeMap::new();
    walk(&command, "backupctl", &globals, &mut pages);
    pages
}

/// Runs `backupctl man --dir` into a fresh directory (one that does not exist yet: `--dir`
/// creates it).
fn generate() -> (tempfile::TempDir, std::path::PathBuf) {
    let temp = tempdir();
    let dir = temp.path().join("man1");
    ok(backupctl().arg("man").arg("--dir").arg(&dir));
    (temp, dir)
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Renders a page with groff as `man` does (`-k`: preconv, the help texts hold UTF-8 like
/// `…`) to plain text, at a line length that breaks no line, and fails on any warning or
/// error groff reports.
#[track_caller]
fn render(page: &Path) -> String {
    require_tool("groff");
    let output = Command::new("groff")
        .args([
            "-k",
            "-Kutf8",
            "-man",
            "-Tutf8",
            "-ww",
            "-rLL=1000n",
            "-P-cbou",
        ])
        .arg(page)
        .output()
        .expect("run groff");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "groff cannot render {} cleanly ({}):\n{stderr}",
        page.display(),
        output.status
    );
    // groff's utf8 device prints `\-` as a minus sign and may print `-` as a hyphen.
    String::from_utf8_lossy(&output.stdout).replace(['\u{2212}', '\u{2010}'], "-")
}

/// Every `backupctl-NAME(1)` in a page's roff source.
fn references(roff: &str) -> Vec<String> {
    let text = roff.replace("\\-", "-");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("backupctl-") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with("(1)") {
            found.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    found
}

#[test]
fn man_dir_writes_one_page_per_subcommand_and_nothing_else() {
    let (_temp, dir) = generate();
    let mut expected: BTreeSet<String> = expected_pages().into_keys().collect();
    assert!(
        expected.contains("backupctl-status.1") && expected.contains("backupctl-store-init.1"),
        "the walk over the clap definition missed subcommands: {expected:?}"
    );
    // And the config file's page.
    expected.insert("backupctl.toml.5".to_string());
    assert_eq!(
        files_in(&dir),
        expected,
        "`backupctl man --dir` must write exactly one page per visible subcommand and \
         backupctl.toml.5 (no hidden ones, no `help`, no temporary files)"
    );
}

#[test]
fn man_without_dir_prints_the_same_backupctl_1() {
    let (_temp, dir) = generate();
    let printed = ok(backupctl().arg("man"));
    let written = std::fs::read_to_string(dir.join("backupctl.1")).unwrap();
    assert_eq!(
        printed, written,
        "`backupctl man` and `man --dir`'s backupctl.1 differ"
    );
}

#[test]
fn every_page_documents_its_options() {
    let (_temp, dir) = generate();
    for (name, expected) in expected_pages() {
        let text = render(&dir.join(&name));
        for option in &expected.options {
            assert!(
                text.contains(option.as_str()),
                "{name} does not document {option}:\n{text}"
            );
        }
        for value in &expected.positionals {
            assert!(
                text.contains(value.as_str()),
                "{name} does not document the argument {value}:\n{text}"
            );
        }
    }
    // Pinned by hand as well, in case the walk above goes wrong.
    let status = render(&dir.join("backupctl-status.1"));
    assert!(status.contains("--json"), "backupctl-status.1:\n{status}");
    let logs = render(&dir.join("backupctl-logs.1"));
    assert!(logs.contains("--follow"), "backupctl-logs.1:\n{logs}");
    let store_init = render(&dir.join("backupctl-store-init.1"));
    assert!(
        store_init.contains("NAME") && store_init.contains("--config"),
        "backupctl-store-init.1:\n{store_init}"
    );
}

#[test]
fn every_referenced_page_exists() {
    let (_temp, dir) = generate();
    let files = files_in(&dir);
    let mut checked = 0;
    for name in &files {
        let roff = std::fs::read_to_string(dir.join(name)).unwrap();
        for reference in references(&roff) {
            assert!(
                files.contains(&format!("{reference}.1")),
                "{name} refers to {reference}(1), which has no page; pages: {files:?}"
            );
            checked += 1;
        }
    }
    let roff = std::fs::read_to_string(dir.join("backupctl-store.1")).unwrap();
    assert!(
        references(&roff).contains(&"backupctl-store-init".to_string()),
        "backupctl-store.1 does not list backupctl-store-init(1):\n{roff}"
    );
    assert!(checked >= 2, "no page references found: {files:?}");
}

#[test]
fn groff_renders_every_page_without_warnings() {
    let (_temp, dir) = generate();
    for name in files_in(&dir) {
        let text = render(&dir.join(&name));
        let stem = name.trim_end_matches(".1").trim_end_matches(".5");
        assert!(
            text.contains(stem),
            "{name} rendered without its own name:\n{text}"
        );
    }
}
