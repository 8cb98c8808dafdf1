//! The module layering of ARCHITECTURE.md, enforced: every `crate::MODULE` reference in
//! `src/` points at a module in the same layer or a lower one, and the only import cycle is
//! `config ↔ stages` (the config holds each stage's spec; the spec is defined by its kind).
//! A new top-level module must be given a layer here (and a paragraph in ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. Keep in step with the table in ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "out",
            "bandwidth",
            "machine",
            "exit",
            "signals",
            "process",
            "paths",
            "units",
            "mounts",
            "btrfs",
            "needs",
            "schedule",
            "secret_file",
            "trust",
            "dag",
            "preflight",
            "patterns",
            "cgroup",
        ],
    ),
    (
        "services",
        &[
            "report",
            "run_records",
            "repository_figures",
            "stage_lock",
            "repo_lock",
            "snapshot",
            "rotate",
        ],
    ),
    ("model", &["config", "stages"]),
    (
        "engines",
        &[
            "generator",
            "job_run",
            "metrics",
            "logs",
            "notify",
            "store",
            "executor",
            "runner",
            "status",
            "coverage",
            "stage_ended",
        ],
    ),
    ("front", &["commands", "cli"]),
];

/// The one cycle the design allows.
const ALLOWED_CYCLE: [&str; 2] = ["config", "stages"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The code of a file without comments and without its unit tests (which may reach
/// anywhere to build fixtures).
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named by `crate::NAME` and by `use crate::{NAME, …}`.
fn referenced_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the group's top-level items name modules: `{a, b::{C, d}}` names a and b.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.insert(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// module → (module it references → files that do).
fn module_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        let targets = graph.entry(from.clone()).or_default();
        for to in referenced_modules(&code) {
            if to != from {
                targets.entry(to).or_default().insert(shown.clone());
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = module_graph()
        .into_keys()
        .filter(|module| layer_of(module).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer: {unplaced:?}; add them to LAYERS in tests/layering.rs \
         and to the table in ARCHITECTURE.md"
    );
}

#[test]
fn imports_never_point_up_a_layer() {
    let mut upward = Vec::new();
    for (from, targets) in module_graph() {
        let Some(from_layer) = layer_of(&from) else {
            continue;
        };
        for (to, files) in targets {
            if layer_of(&to).is_some_and(|to_layer| to_layer > from_layer) {
                upward.push(format!(
                    "{from} ({}) -> {to} ({}): {}",
                    LAYERS[from_layer].0,
                    LAYERS[layer_of(&to).unwrap()].0,
                    files.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_only_cycle_is_config_and_stages() {
    let graph = module_graph();
    let edges: BTreeMap<&str, BTreeSet<&str>> = graph
        .iter()
        .map(|(from, targets)| {
            (
                from.as_str(),
                targets
                    .keys()
                    .map(String::as_str)
                    .filter(|to| graph.contains_key(*to))
                    .collect(),
            )
        })
        .collect();
    // Two modules are in one cycle when each reaches the other.
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut pending = vec![from];
        while let Some(module) = pending.pop() {
            for &next in edges.get(module).into_iter().flatten() {
                if seen.insert(next) {
                    pending.push(next);
                }
            }
        }
        seen
    };
    let mut cycles = Vec::new();
    for &module in edges.keys() {
        let mut members: Vec<&str> = reaches(module)
            .into_iter()
            .filter(|other| reaches(other).contains(module))
            .collect();
        members.sort();
        if !members.is_empty() && !cycles.contains(&members) {
            cycles.push(members);
        }
    }
    let unexpected: Vec<String> = cycles
        .into_iter()
        .filter(|members| members.as_slice() != ALLOWED_CYCLE)
        .map(|members| {
            let detail: Vec<String> = members
                .iter()
                .flat_map(|from| {
                    graph[*from]
                        .iter()
                        .filter(|(to, _)| members.contains(&to.as_str()))
                        .map(move |(to, files)| {
                            format!(
                                "  {from} -> {to}: {}",
                                files.iter().cloned().collect::<Vec<_>>().join(", ")
                            )
                        })
                })
                .collect();
            format!("{}\n{}", members.join(" ↔ "), detail.join("\n"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "import cycles other than config ↔ stages:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn the_reference_finder_sees_both_import_forms() {
    let code = "use crate::paths::Scope;\nuse crate::{exit, report::{Report, dbus}};\n\
                fn f() { crate::units::job(); }";
    let found: Vec<String> = referenced_modules(code).into_iter().collect();
    assert_eq!(found, ["exit", "paths", "report", "units"]);
}

/// Where a kind's name, written as a string outside `src/stages/`, names a program and not
/// the kind: (file, the code around it).
const PROGRAM_NOT_KIND: &[(&str, &str)] = &[
    // The version flag of the tools `hello` lists.
    ("src/preflight.rs", r#""restic" | "rclone" => &["version"]"#),
];

/// The lines of `code` (the file `relative`) that name one of `kinds` or a kind's spec.
fn kind_knowledge(relative: &str, code: &str, kinds: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let program = PROGRAM_NOT_KIND
            .iter()
            .any(|(path, text)| *path == relative && line.contains(text));
        let names_a_kind = kinds.iter().any(|kind| {
            (line.contains(&format!("\"{kind}\"")) && !program)
                || line.contains(&format!("{kind}::Spec"))
        });
        let downcast = line.contains("downcast_ref::<") && line.contains("Spec>");
        if names_a_kind || downcast {
            found.push(format!("{relative}:{}: {}", number + 1, line.trim()));
        }
    }
    found
}

/// Kind knowledge lives in `src/stages/` (issue 21): outside it no code names a kind
/// (`"hello"`, `== "drill"`) or reaches for a kind's spec (`drill::Spec`,
/// `downcast_ref::<…Spec>`). What the rest of the program needs of a kind is a part of
/// `StageKind` (a capability, the purpose, `JOB_NEEDS`, `reads_backup_of`), read through the
/// registry. Unit tests (which build fixtures) are not searched.
#[test]
fn no_kind_is_named_outside_src_stages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let kinds = backupctl::stages::names(|_| true);
    let mut found = Vec::new();
    for file in files
        .iter()
        .filter(|file| !file.starts_with(src.join("stages")))
    {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        found.extend(kind_knowledge(&relative, &code, &kinds));
    }
    assert!(
        found.is_empty(),
        "kind knowledge outside src/stages/ (make it a part of StageKind):\n{}",
        found.join("\n")
    );
}

/// The search above finds what it looks for, and lets a listed program name pass.
#[test]
fn the_kind_finder_sees_a_name_and_a_downcast() {
    let kinds = ["hello", "drill", "restic", "rclone"];
    let code = code_of(concat!(
        "if stage.kind.name() == \"hello\" {}\n",
        "let s = k.downcast_ref::<crate::stages::drill::Spec>();\n",
        "use crate::stages::drill;\nlet s: &drill::Spec = todo!();\n",
        "\"restic\" | \"rclone\" => &[\"version\"],\n",
        "#[cfg(test)]\nmod tests { \"drill\" }",
    ));
    let found = kind_knowledge("src/preflight.rs", &code, &kinds);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("src/preflight.rs:1:"), "{found:?}");
    assert!(found[2].starts_with("src/preflight.rs:4:"), "{found:?}");
    assert_eq!(kind_knowledge("src/other.rs", &code, &kinds).len(), 4);
}
