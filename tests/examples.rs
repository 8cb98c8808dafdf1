//! Every config shipped in `examples/` is valid (`backupctl check`), so the documentation
//! cannot drift from what the loader accepts.

use crate::util::{backupctl, ok, repo_root, run, stderr, tempdir, write};

#[test]
fn every_example_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            ok(backupctl().arg("--config").arg(&path).arg("check"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example configs found");
}

/// examples/full.toml says it shows every key, and the loader's errors send people there: each
/// table is given an unknown key, and the keys the error lists (for a stage also those every
/// stage takes, from its help) must each appear in the file, set or commented out.
#[test]
fn the_full_example_shows_every_key_the_loader_takes() {
    let full = std::fs::read_to_string(repo_root().join("examples/full.toml")).unwrap();
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    let check = |text: &str| -> String {
        write(&config, text);
        let output = run(backupctl().arg("--config").arg(&config).arg("check"));
        assert!(!output.status.success(), "{text} was accepted");
        stderr(&output)
    };

    let no_kind = check("[stage.x]\n");
    let kinds: Vec<String> = after(&no_kind, "one of: ")
        .split(", ")
        .map(str::to_string)
        .collect();
    let top = check("unknown_key = 1\n");
    let mut missing: Vec<String> = after(&top, "the top-level tables are: ")
        .split(", ")
        .filter(|table| {
            !full.contains(&format!("[{table}]")) && !full.contains(&format!("[{table}."))
        })
        .map(|table| format!("[{table}]"))
        .collect();

    let channels = backupctl::config::notify::CHANNEL_NAMES
        .iter()
        .map(|channel| format!("[notify.{channel}]"));
    let mut tables: Vec<String> = ["[job]", "[jobs.x]", "[notify]"]
        .into_iter()
        .map(str::to_string)
        .chain(channels)
        .chain(
            [
                "[metrics]",
                "[coverage]",
                "[units]",
                "[store.x]",
                "[repository.x]",
            ]
            .map(str::to_string),
        )
        .map(|table| format!("{table}\nunknown_key = 1\n"))
        .collect();
    tables.push("[store.x]\nremote = { unknown_key = 1 }\n".into());
    tables.push("[stage.x]\nkind = \"rsync\"\nrotate = { unknown_key = 1 }\n".into());
    tables.push("[stage.x]\nkind = \"restic\"\nkeep = { unknown_key = 1 }\n".into());
    for kind in &kinds {
        tables.push(format!("[stage.x]\nkind = \"{kind}\"\nunknown_key = 1\n"));
    }
    let mut keys = std::collections::BTreeSet::new();
    for table in &tables {
        let error = check(table);
        let first = error.lines().next().unwrap_or_default();
        assert!(
            first.contains("unknown field `unknown_key`"),
            "{table}: not the unknown-key error:\n{error}"
        );
        let listed = first.split_once("expected").map_or("", |(_, rest)| rest);
        keys.extend(listed.split('`').skip(1).step_by(2).map(str::to_string));
        if error.contains("every stage takes ") {
            let common = after(&error, "every stage takes ");
            let common = common.split(';').next().unwrap();
            keys.extend(common.split(", ").map(str::to_string));
        }
    }
    assert!(keys.len() > 100, "too few keys found: {keys:?}");
    missing.extend(keys.into_iter().filter(|key| !shows_key(&full, key)));
    assert!(
        missing.is_empty(),
        "examples/full.toml does not show: {missing:?}"
    );
}

/// The rest of the line of `text` that follows `marker`.
fn after<'t>(text: &'t str, marker: &str) -> &'t str {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in:\n{text}"))
        + marker.len();
    text[start..].lines().next().unwrap_or_default()
}

/// `key = …` at the start of a line (set or commented out) or in an inline table, or a table
/// `[….key]`.
fn shows_key(text: &str, key: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start().trim_start_matches('#').trim_start();
        line.starts_with(&format!("{key} ="))
            || line.contains(&format!("{{ {key} ="))
            || line.contains(&format!(", {key} ="))
            || line.contains(&format!(".{key}]"))
    })
}
