//! No function in `src/` is longer than [`LIMIT`] lines (CONTRIBUTING.md): a longer one does
//! several things, and each deserves a name. Tests in `src/` count too; nothing is exempt.
//!
//! The scanner relies on rustfmt's layout, which `cargo fmt --check` enforces: a function
//! starts at a line whose code begins with `fn` (after `pub`, `const`, `async`, `unsafe`,
//! `extern "C"`), and its body ends at the first later line that is `}` at the indentation of
//! that line. A signature that reaches `;` before any `{` is a declaration without a body (a
//! trait's) and is not counted. Lines are counted from the `fn` line to the closing `}`, both
//! included, as an editor shows them.

use std::path::{Path, PathBuf};

/// The most lines a function in `src/` may take.
const LIMIT: usize = 120;

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

/// The function's name when `line` (trimmed) declares one.
fn declared_fn(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(scope) => scope.split_once(')')?.1,
            None => after,
        }
        .trim_start();
    }
    for qualifier in ["const ", "async ", "unsafe ", "extern \"C\" "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest).trim_start();
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    (end > 0).then(|| &rest[..end])
}

/// Every function with a body in `text`: (name, first line number, length in lines).
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = declared_fn(line) else {
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let closing = format!("{indent}}}");
        let mut end = None;
        for (index, later) in lines.iter().enumerate().skip(start) {
            let code = later.split("//").next().unwrap_or("").trim_end();
            // A one-line function (`fn a() -> u8 { 1 }`) or the closing line of a longer one.
            if (index == start && code.ends_with('}') && code.contains('{'))
                || (index > start && *later == closing)
            {
                end = Some(index);
                break;
            }
            // A declaration without a body, reached before its body would open.
            if code.ends_with(';') && !lines[start..=index].iter().any(|l| l.contains('{')) {
                break;
            }
        }
        if let Some(end) = end {
            found.push((name.to_string(), start + 1, end - start + 1));
        }
    }
    found
}

#[test]
fn the_scanner_measures_functions_as_an_editor_shows_them() {
    let text = "\
fn one() -> u8 { 1 }
pub(crate) fn three(
    a: u8,
) {
}
trait T {
    fn declared(&self) -> u8;
    fn provided(&self) -> u8 {
        let x = 1;
        x
    }
}
";
    assert_eq!(
        functions(text),
        [
            ("one".to_string(), 1, 1),
            ("three".to_string(), 2, 4),
            ("provided".to_string(), 8, 4),
        ]
    );
}

#[test]
fn no_function_in_src_is_longer_than_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut measured = 0;
    let mut too_long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (name, line, length) in functions(&text) {
            measured += 1;
            if length > LIMIT {
                let shown = file.strip_prefix(&src).unwrap().display();
                too_long.push(format!("src/{shown}:{line} {name}: {length} lines"));
            }
        }
    }
    // The scanner itself must still find the functions: a layout it no longer understands
    // would otherwise pass everything.
    assert!(measured > 500, "only {measured} functions found in src/");
    assert!(
        too_long.is_empty(),
        "functions longer than {LIMIT} lines (split them along what they do):\n{}",
        too_long.join("\n")
    );
}
