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
            "dag",
            "preflight",
        ],
    ),
    (
        "services",
        &["report", "run_records", "stage_lock", "snapshot", "rotate"],
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
