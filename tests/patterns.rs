//! The exclude-pattern library (`backupctl::patterns`) against the real tools. One tree is
//! built; for every case (a list of patterns) rsync (`--dry-run --itemize-changes`), restic
//! (`backup --dry-run -vv`) and git (`check-ignore`) say which paths they leave out, the
//! patterns given on the command line and in an exclude file; the library, walking the tree
//! as coverage and the manifest stage do (not descending into what it excludes), must name
//! the same paths for the same dialect.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use backupctl::patterns::{Dialect, Matcher};

use crate::util::{require_tool, tempdir, write};

/// Directories, then files (a name ending in `/` is a directory).
const TREE: &[&str] = &[
    "a/",
    "a/b",
    "a/c",
    "b/",
    "b/a",
    "sub/",
    "sub/a/",
    "sub/a/b/",
    "sub/a/b/f",
    "sub/dir/",
    "sub/dir/f",
    "sub/x",
    "dir/",
    "dir/f",
    "dir/sub/",
    "dir/sub/g",
    "x",
    "!x",
    "A",
    "*",
    "sp ",
    "sp",
    "c",
    "{c,x}",
];

/// Each case: the patterns, in order. The issue's list (`a/b`, `/a`, `a/`, `**`, `dir/***`,
/// `!x`, `[ab]`, `\*`, trailing spaces, case) and the rule prefixes and negations around it;
/// braces, which none of the tools expands.
const CASES: &[&[&str]] = &[
    &["a/b"],
    &["/a"],
    &["/a/"],
    &["a/"],
    &["**"],
    &["**/b"],
    &["sub/**"],
    &["dir/***"],
    &["!x"],
    &["\\!x"],
    &["x", "!sub/x"],
    &["sub", "!sub/x"],
    &["*", "!x"],
    &["+ x", "x"],
    &["- x"],
    &["[ab]"],
    &["su?"],
    &["\\*"],
    &["sp "],
    &["sp\\ "],
    &["A"],
    &["{c,x}"],
];

/// How a tool was given the patterns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    CommandLine,
    File,
}

struct Fixture {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    restic_repo: PathBuf,
    git_dir: PathBuf,
    patterns_file: PathBuf,
    scratch: PathBuf,
}

fn fixture() -> Fixture {
    for tool in ["rsync", "restic", "git"] {
        require_tool(tool);
    }
    let dir = tempdir();
    let tree = dir.path().join("t");
    for entry in TREE {
        match entry.strip_suffix('/') {
            Some(dir) => std::fs::create_dir_all(tree.join(dir)).unwrap(),
            None => write(&tree.join(entry), "x"),
        }
    }
    let restic_repo = dir.path().join("repo");
    let output = restic(&restic_repo).arg("init").output().unwrap();
    assert!(output.status.success(), "restic init: {output:?}");
    let git_dir = dir.path().join("git");
    let output = Command::new("git")
        .arg("init")
        .arg("-q")
        .arg("--bare")
        .arg(&git_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "git init: {output:?}");
    Fixture {
        tree,
        restic_repo,
        git_dir,
        patterns_file: dir.path().join("patterns"),
        scratch: dir.path().join("dst"),
        _dir: dir,
    }
}

fn restic(repo: &Path) -> Command {
    let mut command = Command::new("restic");
    command
        .arg("--no-cache")
        .arg("-r")
        .arg(repo)
        // A test repository's password; restic reads it from the environment, never argv.
        .env("RESTIC_PASSWORD", "test");
    command
}

/// Every path of the tree, relative, without the trailing `/`.
fn all_paths() -> BTreeSet<String> {
    TREE.iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect()
}

fn bytes_path(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// What rsync leaves out: the tree minus what it would copy.
fn rsync_excludes(f: &Fixture, patterns: &[&str], form: Form) -> BTreeSet<String> {
    let mut command = Command::new("rsync");
    command.args(["-a", "--dry-run", "--itemize-changes"]);
    match form {
        Form::CommandLine => {
            command.args(patterns.iter().map(|p| format!("--exclude={p}")));
        }
        Form::File => {
            command.arg(format!("--exclude-from={}", f.patterns_file.display()));
        }
    }
    let mut source = f.tree.clone().into_os_string();
    source.push("/");
    let output = command.arg(source).arg(&f.scratch).output().unwrap();
    assert!(output.status.success(), "rsync: {output:?}");
    // `cd+++++++++ a/`: eleven flag characters, a space, the path.
    let copied: BTreeSet<String> = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| line.len() > 12 && line[11] == b' ')
        .map(|line| bytes_path(&line[12..]).trim_end_matches('/').to_string())
        .collect();
    all_paths().difference(&copied).cloned().collect()
}

/// What restic leaves out: the tree minus what its dry run would back up; `None` when it
/// refuses the patterns.
fn restic_excludes(f: &Fixture, patterns: &[&str], form: Form) -> Option<BTreeSet<String>> {
    let mut command = restic(&f.restic_repo);
    command.args(["backup", "--dry-run", "-vv"]);
    match form {
        Form::CommandLine => {
            command.args(patterns.iter().map(|p| format!("--exclude={p}")));
        }
        Form::File => {
            command.arg(format!("--exclude-file={}", f.patterns_file.display()));
        }
    }
    let output = command.arg(&f.tree).output().unwrap();
    let prefix = format!("{}/", f.tree.display());
    // `new       /…/t/a/b, saved in 0.000s (0 B added)`; a directory ends with `/`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let taken: BTreeSet<String> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("new"))
        .map(|rest| rest.trim_start())
        .filter_map(|rest| rest.strip_prefix(&prefix))
        .map(|rest| rest.split(", saved in").next().unwrap())
        .map(|path| path.trim_end_matches('/').to_string())
        .collect();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("invalid pattern"), "restic: {output:?}");
        return None;
    }
    Some(all_paths().difference(&taken).cloned().collect())
}

/// What git ignores with the patterns in `info/exclude` (a path in an ignored directory is
/// reported too).
fn git_excludes(f: &Fixture) -> BTreeSet<String> {
    std::fs::create_dir_all(f.git_dir.join("info")).unwrap();
    std::fs::copy(&f.patterns_file, f.git_dir.join("info/exclude")).unwrap();
    let mut child = Command::new("git")
        .arg(format!("--git-dir={}", f.git_dir.display()))
        .arg(format!("--work-tree={}", f.tree.display()))
        .args(["check-ignore", "--stdin", "-z"])
        .current_dir(&f.tree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: Vec<u8> = all_paths()
        .iter()
        .flat_map(|p| p.bytes().chain([0]))
        .collect();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    // 0: some path ignored, 1: none.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "git check-ignore: {output:?}"
    );
    output
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(bytes_path)
        .collect()
}

/// What the library leaves out, walking the tree as coverage does: each entry asked before
/// the walk descends, an excluded directory excluded whole. Restic also asks about the
/// backup's root itself.
fn library_excludes(f: &Fixture, dialect: Dialect, matcher: &Matcher) -> BTreeSet<String> {
    let subject = |rel: &str| -> PathBuf {
        match dialect {
            Dialect::Restic => f.tree.join(rel),
            Dialect::Rsync | Dialect::Git => PathBuf::from(rel),
        }
    };
    if dialect == Dialect::Restic && matcher.is_excluded(&f.tree, true) {
        return all_paths();
    }
    let mut excluded = BTreeSet::new();
    for entry in TREE {
        let is_dir = entry.ends_with('/');
        let rel = entry.trim_end_matches('/');
        let under_excluded = Path::new(rel)
            .ancestors()
            .skip(1)
            .any(|a| excluded.contains(a.to_str().unwrap()));
        if under_excluded || matcher.is_excluded(&subject(rel), is_dir) {
            excluded.insert(rel.to_string());
        }
    }
    excluded
}

fn show(set: &Option<BTreeSet<String>>) -> String {
    let Some(set) = set else {
        return "nothing: it refuses the patterns".to_string();
    };
    let quoted: Vec<String> = set.iter().map(|p| format!("{p:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[test]
fn the_library_leaves_out_what_rsync_restic_and_git_leave_out() {
    let f = fixture();
    let mut disagreements = Vec::new();
    for patterns in CASES {
        let texts: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let mut file = Vec::new();
        for pattern in *patterns {
            file.extend_from_slice(pattern.as_bytes());
            file.push(b'\n');
        }
        write(&f.patterns_file, &file);
        // `None`: the tool refuses the patterns (and so must the library).
        let runs: [(&str, Dialect, Form, Option<BTreeSet<String>>); 5] = [
            (
                "rsync --exclude",
                Dialect::Rsync,
                Form::CommandLine,
                Some(rsync_excludes(&f, patterns, Form::CommandLine)),
            ),
            (
                "rsync --exclude-from",
                Dialect::Rsync,
                Form::File,
                Some(rsync_excludes(&f, patterns, Form::File)),
            ),
            (
                "restic --exclude",
                Dialect::Restic,
                Form::CommandLine,
                restic_excludes(&f, patterns, Form::CommandLine),
            ),
            (
                "restic --exclude-file",
                Dialect::Restic,
                Form::File,
                restic_excludes(&f, patterns, Form::File),
            ),
            (
                "git check-ignore",
                Dialect::Git,
                Form::File,
                Some(git_excludes(&f)),
            ),
        ];
        for (tool, dialect, form, expected) in runs {
            let matcher = match form {
                Form::CommandLine => Matcher::new(dialect, &texts),
                Form::File => {
                    Matcher::with_files(dialect, &[], std::slice::from_ref(&f.patterns_file))
                }
            };
            let actual = matcher.ok().map(|m| library_excludes(&f, dialect, &m));
            if actual != expected {
                disagreements.push(format!(
                    "{patterns:?} with {tool}: the tool leaves out {}, the library {}",
                    show(&expected),
                    show(&actual)
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "the pattern library disagrees with the tools:\n{}",
        disagreements.join("\n")
    );
}

/// The names a case list must keep covering (the issue's list), so that no rule is dropped
/// from the table unnoticed.
#[test]
fn the_cases_cover_every_rule_the_issue_names() {
    let all: Vec<&str> = CASES.iter().flat_map(|c| c.iter().copied()).collect();
    for rule in [
        "a/b", "/a", "a/", "**", "dir/***", "!x", "[ab]", "\\*", "sp ", "A",
    ] {
        assert!(all.contains(&rule), "no case for `{rule}`");
    }
}
