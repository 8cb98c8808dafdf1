//! `backupctl coverage` on a generated tree: a covered directory, one excluded by an rsync
//! pattern, one by an exclude file, a CACHEDIR.TAG directory under a restic stage with
//! `exclude_caches`, one no stage names, and a source that does not exist. Sizes are compared
//! with `du -s --block-size=1`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::util::{backupctl, require_tool, run, stderr, stdout, tempdir, write, write_config};

const CONFIG: &str = r#"
[stage.files]
kind = "rsync"
sources = ["@ROOT@/data/docs"]
destination = "@ROOT@/dst"
exclude = ["*.tmp", "build/"]
exclude_from = ["@ROOT@/excludes"]

[stage.repo]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
paths = ["@ROOT@/data/work", "@ROOT@/data/gone"]
exclude = ["/never/*"]
exclude_caches = true
"#;

fn du(path: &Path) -> u64 {
    require_tool("du");
    let output = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du's answer")
}

/// The tree under `root/data` and its config; returns the config's path.
fn tree(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    write(&data.join("docs/letter.txt"), "dear");
    write(&data.join("docs/sub/notes.md"), vec![b'n'; 20_000]);
    write(&data.join("docs/sub/scratch.tmp"), vec![b't'; 70_000]);
    write(&data.join("docs/build/out.o"), vec![b'o'; 9_000]);
    write(&data.join("docs/old.bak"), vec![b'b'; 5_000]);
    write(&data.join("work/report.odt"), vec![b'r'; 3_000]);
    write(
        &data.join("work/.cache/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write(&data.join("work/.cache/blob"), vec![b'c'; 40_000]);
    write(&data.join("games/save/slot1"), vec![b's'; 123_456]);
    write(&data.join("games/readme"), "hi");
    // A hard link counts once, as du counts it.
    std::fs::hard_link(data.join("games/save/slot1"), data.join("games/slot1-link")).unwrap();
    write(&root.join("excludes"), "# exclude file\n\n*.bak\n");
    write_config(root, CONFIG)
}

#[test]
fn json_lists_exactly_what_no_stage_backs_up() {
    let root = tempdir();
    let root = root.path();
    let config = tree(root);
    let data = root.join("data");
    let output = run(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["coverage", "--json"])
        .arg(&data));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let path = |rel: &str| data.join(rel).display().to_string();
    let file_size = |rel: &str| {
        use std::os::unix::fs::MetadataExt;
        data.join(rel).metadata().unwrap().blocks() * 512
    };
    let excluded = |pattern: &str| json!({"kind": "excluded", "stage": "files", "stage_kind": "rsync", "pattern": pattern});
    let mut expected = vec![
        json!({"path": path("games"), "type": "dir", "bytes": du(&data.join("games")), "files": 3,
               "reason": {"kind": "not_under_any_source"}}),
        json!({"path": path("docs/sub/scratch.tmp"), "type": "file",
               "bytes": file_size("docs/sub/scratch.tmp"), "files": 1, "reason": excluded("*.tmp")}),
        json!({"path": path("work/.cache"), "type": "dir", "bytes": du(&data.join("work/.cache")),
               "files": 2, "reason": {"kind": "cachedir_tag", "stage": "repo", "stage_kind": "restic"}}),
        json!({"path": path("docs/build"), "type": "dir", "bytes": du(&data.join("docs/build")),
               "files": 1, "reason": excluded("build/")}),
        json!({"path": path("docs/old.bak"), "type": "file", "bytes": file_size("docs/old.bak"),
               "files": 1, "reason": excluded("*.bak")}),
    ];
    let key = |v: &Value| {
        (
            std::cmp::Reverse(v["bytes"].as_u64()),
            v["path"].as_str().map(String::from),
        )
    };
    expected.sort_by_key(key);
    assert_eq!(report["uncovered"], Value::Array(expected), "{report:#}");
    assert_eq!(
        report["missing_sources"],
        json!([{"stage": "repo", "stage_kind": "restic", "path": path("gone")}])
    );
    let sum: u64 = report["uncovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(report["uncovered_bytes"], json!(sum));
    assert_eq!(report["roots"], json!([data.display().to_string()]));
}

#[test]
fn the_table_says_why_and_a_covered_tree_exits_0() {
    let root = tempdir();
    let root = root.path();
    let config = tree(root);
    let data = root.join("data");
    let output = run(backupctl()
        .arg("--config")
        .arg(&config)
        .arg("coverage")
        .arg(&data));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let table = stdout(&output);
    let line = |rel: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{} ", data.join(rel).display())))
            .unwrap_or_else(|| panic!("no line for {rel} in:\n{table}"))
            .to_string()
    };
    assert!(table.starts_with("UNCOVERED"), "{table}");
    assert!(
        line("games/").ends_with("  3  not under any source"),
        "{table}"
    );
    assert!(
        line("docs/sub/scratch.tmp").ends_with("excluded by rsync stage `files`: `*.tmp`"),
        "{table}"
    );
    assert!(
        line("work/.cache/").ends_with("CACHEDIR.TAG (restic stage `repo`)"),
        "{table}"
    );
    assert!(line("games/").contains(" KiB "), "{table}");
    assert!(
        table.contains(&format!(
            "  {} (restic stage `repo`)",
            data.join("gone").display()
        )),
        "{table}"
    );
    assert!(table.contains("sources missing"), "{table}");

    // Only the covered directory: nothing to report, exit 0.
    std::fs::create_dir_all(data.join("gone")).unwrap();
    let output = run(backupctl()
        .arg("--config")
        .arg(&config)
        .arg("coverage")
        .arg(data.join("docs/sub"))
        .arg(data.join("work/report.odt"))
        .arg(data.join("gone")));
    assert_eq!(
        output.status.code(),
        Some(1),
        "scratch.tmp is still excluded: {}",
        stdout(&output)
    );
    std::fs::remove_file(data.join("docs/sub/scratch.tmp")).unwrap();
    let output = run(backupctl()
        .arg("--config")
        .arg(&config)
        .arg("coverage")
        .arg(data.join("docs/sub"))
        .arg(data.join("work/report.odt")));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("is backed up"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn hello_warns_about_a_vanished_source() {
    let root = tempdir();
    let root = root.path();
    let config = write_config(
        root,
        "[stage.files]\nkind = \"rsync\"\nsources = [\"@ROOT@/gone\"]\ndestination = \"@ROOT@/dst\"\n",
    );
    let output = run(backupctl().arg("--config").arg(&config).arg("hello"));
    let gone = root.join("gone").display().to_string();
    assert!(
        stderr(&output).contains(&format!("warning: source {gone} does not exist")),
        "{}",
        stderr(&output)
    );
}
