//! Exclude patterns as rsync, restic and git read them: one library, a dialect per tool, so
//! that `coverage`, the `manifest` and `gitrepos` stages and `backupctl verify` agree with
//! the tool that does the backup. Each rule below was settled against the real tool
//! (`tests/patterns.rs` asks rsync, restic and `git check-ignore` about one tree):
//!
//! | pattern | rsync (`--exclude`) | restic (`--exclude`) | git (`.gitignore`) |
//! |---|---|---|---|
//! | `a/b` | `a/b` at any depth | `a/b` at any depth | `a/b` at the top only |
//! | `/a` | `a` at the transfer root | `/a` of the file system | `a` at the top |
//! | `a/` | directories named `a` | anything named `a` (restic drops the `/`) | directories named `a` |
//! | `**` | everything | everything | everything |
//! | `dir/***` | `dir` and all below it | what is below `dir` | what is below `dir` |
//! | `sub/**` | below `sub` | `sub` itself too (`**` may be empty) | below `sub` |
//! | `!x` | a file named `!x` | negation: `x` is taken back | negation |
//! | `+ x`, `- x` | include / exclude rule | a name with a space | a name with a space |
//! | `[ab]`, `\*` | a class, a literal `*` | the same | the same |
//! | trailing spaces | kept | kept on the command line, trimmed in files | trimmed unless `\ ` |
//! | case | sensitive | sensitive | sensitive |
//!
//! Which rule decides: rsync's first matching rule; restic's and git's last matching one.
//! All three stop at an excluded directory: nothing below it is taken, whatever a later rule
//! says (restic and rsync do not descend; git cannot re-include a file of an ignored
//! directory). A walker asks for each entry before it descends, as the tools do.
//!
//! What a path is measured from differs: restic matches the absolute path (so `*` matches the
//! backup's root itself), rsync the path below the transfer root (the source directory with a
//! trailing `/`, else its parent), git the path below the repository. [`Matcher::excluded_by`]
//! takes that path.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// Whose pattern syntax a list of patterns follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// rsync's `--exclude` / `--exclude-from` (also the `git` stage's copy).
    #[default]
    Rsync,
    /// restic's `--exclude` / `--exclude-file` (also `manifest`, `gitrepos`, `verify`).
    Restic,
    /// gitignore files.
    Git,
}

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("bad exclude pattern `{pattern}`{}: {message}", origin(.file, *.line))]
    Pattern {
        pattern: String,
        file: Option<PathBuf>,
        line: usize,
        message: String,
    },
    #[error("cannot read the exclude file {}: {source}", .file.display())]
    File {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn origin(file: &Option<PathBuf>, line: usize) -> String {
    match file {
        Some(file) => format!(" in {}:{line}", file.display()),
        None => String::new(),
    }
}

/// Compiled patterns of one dialect, in their order.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    dialect: Dialect,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// As written (the reason `coverage` reports).
    text: String,
    /// rsync's `+ ` rule, restic's and git's `!`: a match takes the path back.
    include: bool,
    /// rsync's and git's trailing `/`.
    dir_only: bool,
    how: How,
}

#[derive(Debug, Clone)]
enum How {
    /// rsync and git: globs over the whole relative path (`literal_separator`), any of which
    /// matching is a match.
    Whole(Vec<GlobMatcher>),
    /// restic: one part per path component, matched against any run of the path's
    /// components (at its start only when anchored).
    Parts { anchored: bool, parts: Vec<Part> },
}

#[derive(Debug, Clone)]
enum Part {
    /// `**`: zero or more components.
    Any,
    One(GlobMatcher),
}

impl Matcher {
    /// Patterns as given on the tool's command line (`exclude`).
    pub fn new(dialect: Dialect, patterns: &[String]) -> Result<Matcher, PatternError> {
        Matcher::with_files(dialect, patterns, &[])
    }

    /// Patterns from the command line, then those of exclude files (one a line, read as the
    /// tool reads its `--exclude-from` / `--exclude-file` / `.gitignore`).
    pub fn with_files(
        dialect: Dialect,
        patterns: &[String],
        files: &[PathBuf],
    ) -> Result<Matcher, PatternError> {
        let mut rules = Vec::new();
        for pattern in patterns {
            let text = match dialect {
                // A gitignore pattern only ever comes from a file.
                Dialect::Git => match file_line(pattern, dialect) {
                    Some(text) => text,
                    None => continue,
                },
                _ => pattern.clone(),
            };
            rules.push(
                compile(&text, dialect).map_err(|message| PatternError::Pattern {
                    pattern: pattern.clone(),
                    file: None,
                    line: 0,
                    message,
                })?,
            );
        }
        for file in files {
            let data = std::fs::read(file).map_err(|source| PatternError::File {
                file: file.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&data);
            for (number, line) in text.split('\n').enumerate() {
                let Some(pattern) = file_line(line, dialect) else {
                    continue;
                };
                rules.push(compile(&pattern, dialect).map_err(|message| {
                    PatternError::Pattern {
                        pattern: pattern.clone(),
                        file: Some(file.clone()),
                        line: number + 1,
                        message,
                    }
                })?);
            }
        }
        Ok(Matcher { dialect, rules })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// No patterns at all: nothing is excluded, and no path needs building to ask.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The pattern that leaves `path` out, or `None` when it is taken (as far as `path`
    /// itself goes: a walker does not descend into an excluded directory). `path` is
    /// absolute for restic, below the transfer root for rsync, below the repository for git
    /// (a leading `/` is ignored there).
    pub fn excluded_by(&self, path: &Path, is_dir: bool) -> Option<&str> {
        if self.rules.is_empty() {
            return None;
        }
        let components: Vec<&[u8]> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.as_bytes()),
                _ => None,
            })
            .collect();
        if components.is_empty() {
            return None;
        }
        let joined = components.join(&b'/');
        let joined = Path::new(std::ffi::OsStr::from_bytes(&joined));
        let mut matching = self.rules.iter().filter(|rule| {
            (is_dir || !rule.dir_only)
                && match &rule.how {
                    How::Whole(globs) => globs.iter().any(|g| g.is_match(joined)),
                    How::Parts { anchored, parts } => parts_match(parts, &components, *anchored),
                }
        });
        let decisive = match self.dialect {
            Dialect::Rsync => matching.next(),
            Dialect::Restic | Dialect::Git => matching.next_back(),
        };
        decisive.filter(|r| !r.include).map(|r| r.text.as_str())
    }

    /// Whether `path` is left out (see [`Matcher::excluded_by`]).
    pub fn is_excluded(&self, path: &Path, is_dir: bool) -> bool {
        self.excluded_by(path, is_dir).is_some()
    }
}

/// Checks one pattern as the loader reads a stage's `exclude` key: `Err` says what is wrong.
pub fn check(dialect: Dialect, pattern: &str) -> Result<(), String> {
    compile(pattern, dialect).map(drop)
}

/// One line of an exclude file as the tool reads it: `None` for blank lines and comments.
/// rsync keeps trailing spaces and skips `;` comments too; restic trims both ends; git trims
/// trailing spaces that are not escaped.
pub fn file_line(line: &str, dialect: Dialect) -> Option<String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let line = match dialect {
        Dialect::Rsync => line,
        Dialect::Restic => line.trim(),
        Dialect::Git => git_trim_end(line),
    };
    let comment = line.starts_with('#') || (dialect == Dialect::Rsync && line.starts_with(';'));
    (!line.trim().is_empty() && !comment).then(|| line.to_string())
}

/// The patterns of an exclude file's text (see [`file_line`]).
pub fn file_patterns(text: &str, dialect: Dialect) -> Vec<String> {
    text.split('\n')
        .filter_map(|line| file_line(line, dialect))
        .collect()
}

/// Escapes a literal path for an exclude line that matches only that path (restic, rsync and
/// git all read `\` as an escape in a pattern with wildcards).
pub fn escape(path: &Path) -> OsString {
    let mut out = Vec::with_capacity(path.as_os_str().len());
    for &byte in path.as_os_str().as_bytes() {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(byte);
    }
    OsString::from_vec(out)
}

/// Trailing spaces go unless escaped with `\`.
fn git_trim_end(line: &str) -> &str {
    let mut end = line.len();
    while line[..end].ends_with(' ') {
        let before = &line[..end - 1];
        let backslashes = before.len() - before.trim_end_matches('\\').len();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &line[..end]
}

/// A glob as globset reads it: none of the tools knows `{a,b}`, so braces are literal.
fn glob(text: &str) -> Result<GlobMatcher, String> {
    let mut escaped = String::with_capacity(text.len());
    let (mut after_backslash, mut in_class) = (false, false);
    for c in text.chars() {
        if !after_backslash && !in_class && matches!(c, '{' | '}') {
            escaped.push('\\');
        }
        match c {
            '[' if !after_backslash => in_class = true,
            ']' if !after_backslash => in_class = false,
            _ => {}
        }
        after_backslash = c == '\\' && !after_backslash;
        escaped.push(c);
    }
    Ok(GlobBuilder::new(&escaped)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())?
        .compile_matcher())
}

fn compile(text: &str, dialect: Dialect) -> Result<Rule, String> {
    match dialect {
        Dialect::Rsync => compile_rsync(text),
        Dialect::Restic => compile_restic(text),
        Dialect::Git => compile_git(text),
    }
}

/// rsync: `+ `/`- ` choose the rule; a trailing `/` matches directories only; `dir/***`
/// is `dir` and everything in it; a leading `/` anchors at the transfer root, otherwise the
/// pattern matches the end of the path (a name without `/` any name). Without `*?[` the
/// pattern is literal, backslashes included.
fn compile_rsync(text: &str) -> Result<Rule, String> {
    let (include, mut body) = match (text.strip_prefix("+ "), text.strip_prefix("- ")) {
        (Some(body), _) => (true, body),
        (None, Some(body)) => (false, body),
        (None, None) => (false, text),
    };
    let mut bodies = vec![];
    let mut dir_only = false;
    if let Some(base) = body.strip_suffix("/***") {
        bodies.push(base.to_string());
        bodies.push(format!("{base}/**"));
    } else {
        if let Some(stripped) = body.strip_suffix('/') {
            body = stripped;
            dir_only = true;
        }
        bodies.push(body.to_string());
    }
    let globs = bodies
        .into_iter()
        .map(|body| {
            let body = if body.contains(['*', '?', '[']) {
                body
            } else {
                literal(&body)
            };
            match body.strip_prefix('/') {
                Some(anchored) => glob(anchored),
                None => glob(&format!("**/{body}")),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        text: text.to_string(),
        include,
        dir_only,
        how: How::Whole(globs),
    })
}

/// restic: `!` negates; the pattern is cleaned as a path (a trailing `/` goes), each
/// component a glob, `**` zero or more components; it matches any run of the path's
/// components, starting at the root when it starts with `/`.
fn compile_restic(text: &str) -> Result<Rule, String> {
    let (include, body) = match text.strip_prefix('!') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let anchored = body.starts_with('/');
    let mut names: Vec<&str> = Vec::new();
    for name in body.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                names.pop();
            }
            name => names.push(name),
        }
    }
    let parts = names
        .into_iter()
        .map(|name| match name {
            "**" => Ok(Part::Any),
            name => glob(&collapse_stars(name)).map(Part::One),
        })
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        text: text.to_string(),
        include,
        dir_only: false,
        how: How::Parts { anchored, parts },
    })
}

/// git: `!` negates (`\!`, `\#` are literal); a trailing `/` matches directories only; a
/// `/` at the start or inside anchors at the top, otherwise a name matches at any depth;
/// `**` as a whole component crosses directories, elsewhere it is `*`.
fn compile_git(text: &str) -> Result<Rule, String> {
    let (include, mut body) = match text.strip_prefix('!') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let mut dir_only = false;
    if let Some(stripped) = body.strip_suffix('/') {
        body = stripped;
        dir_only = true;
    }
    let anchored = body.contains('/');
    let body = body.strip_prefix('/').unwrap_or(body);
    let components: Vec<String> = body
        .split('/')
        .map(|name| {
            if name.len() >= 2 && name.bytes().all(|b| b == b'*') {
                "**".to_string()
            } else {
                collapse_stars(name)
            }
        })
        .collect();
    let body = components.join("/");
    let matcher = if body == "**" {
        glob("**")?
    } else if anchored {
        glob(&body)?
    } else {
        glob(&format!("**/{body}"))?
    };
    Ok(Rule {
        text: text.to_string(),
        include,
        dir_only,
        how: How::Whole(vec![matcher]),
    })
}

/// A glob matching `text` as it is, backslashes included.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Within one component, a run of `*` is one `*`.
fn collapse_stars(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut escaped = false;
    for c in name.chars() {
        if c == '*' && !escaped && out.ends_with('*') && !out.ends_with("\\*") {
            continue;
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

/// Whether `parts` match a run of `path` (from its start when `anchored`).
fn parts_match(parts: &[Part], path: &[&[u8]], anchored: bool) -> bool {
    if parts.is_empty() {
        return false;
    }
    let starts = if anchored { 0..=0 } else { 0..=path.len() };
    starts
        .into_iter()
        .any(|start| run_matches(parts, &path[start..]))
}

/// Whether `parts` match a prefix of `path`.
fn run_matches(parts: &[Part], path: &[&[u8]]) -> bool {
    match parts.split_first() {
        None => true,
        Some((Part::Any, rest)) => (0..=path.len()).any(|skip| run_matches(rest, &path[skip..])),
        Some((Part::One(glob), rest)) => match path.split_first() {
            Some((name, tail)) => {
                glob.is_match(Path::new(std::ffi::OsStr::from_bytes(name)))
                    && run_matches(rest, tail)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(dialect: Dialect, patterns: &[&str], path: &str, is_dir: bool) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Matcher::new(dialect, &patterns)
            .unwrap()
            .is_excluded(Path::new(path), is_dir)
    }

    #[test]
    fn restic_matches_any_run_of_components() {
        let r = Dialect::Restic;
        assert!(hit(r, &["a/b"], "/x/a/b", false));
        assert!(hit(r, &["a/b"], "/x/a/b/c", false));
        assert!(!hit(r, &["/a/b"], "/x/a/b", false));
        assert!(hit(r, &["/x/*/b"], "/x/a/b", false));
        assert!(hit(r, &["sub/**"], "/x/sub", true));
        assert!(hit(r, &["a/"], "/x/a", false));
        assert!(hit(r, &["/home/*/.cache"], "/home/sig/.cache", true));
        assert!(!hit(r, &["/home/*/.cache"], "/home/sig/sub/.cache", true));
        assert!(!hit(r, &["a/b", "!b"], "/x/a/b", false));
        assert!(hit(r, &["!b", "a/b"], "/x/a/b", false));
    }

    #[test]
    fn rsync_anchors_at_the_transfer_root_and_reads_rule_prefixes() {
        let r = Dialect::Rsync;
        assert!(hit(r, &["/a"], "a", false));
        assert!(!hit(r, &["/a"], "x/a", false));
        assert!(hit(r, &["a/b"], "x/a/b", false));
        assert!(!hit(r, &["a/"], "x/a", false));
        assert!(hit(r, &["a/"], "x/a", true));
        assert!(hit(r, &["dir/***"], "x/dir", true));
        assert!(hit(r, &["dir/***"], "x/dir/f", false));
        assert!(!hit(r, &["+ x", "x"], "x", false));
        assert!(hit(r, &["- x"], "x", false));
        assert!(hit(r, &["!x"], "!x", false));
        assert!(hit(r, &["\\!x"], "\\!x", false));
    }

    #[test]
    fn git_trims_unescaped_trailing_spaces() {
        assert_eq!(file_line("sp  ", Dialect::Git).unwrap(), "sp");
        assert_eq!(file_line("sp\\  ", Dialect::Git).unwrap(), "sp\\ ");
        assert_eq!(file_line(" sp ", Dialect::Restic).unwrap(), "sp");
        assert_eq!(file_line("sp ", Dialect::Rsync).unwrap(), "sp ");
        assert_eq!(file_line("; c", Dialect::Rsync), None);
        assert_eq!(file_line("; c", Dialect::Restic).unwrap(), "; c");
        assert!(hit(Dialect::Git, &["sp\\ "], "sp ", false));
    }

    #[test]
    fn escaped_paths_match_only_themselves() {
        let path = Path::new("/src/we*rd[1]/.git");
        let pattern = escape(path).into_string().unwrap();
        for dialect in [Dialect::Restic, Dialect::Rsync] {
            let matcher = Matcher::new(dialect, std::slice::from_ref(&pattern)).unwrap();
            assert!(matcher.is_excluded(path, true), "{dialect:?}");
            assert!(!matcher.is_excluded(Path::new("/src/weXrd1/.git"), true));
        }
    }

    #[test]
    fn files_name_their_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("excludes");
        std::fs::write(&file, "# comment\n\n/a/b\n/c/[\n").unwrap();
        let error = Matcher::with_files(Dialect::Restic, &[], std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("{}:4", file.display())), "{error}");
    }
}
