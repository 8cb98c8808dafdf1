//! Exclude patterns, with restic's meaning so that one list serves every stage: a pattern
//! without `/` matches a file or directory name anywhere (`*.tmp`, `node_modules`); a pattern
//! with `/` matches the absolute path (`/home/*/.cache`, `/home/sig/src/**/target`). `*`
//! stays within one path component, `**` crosses them, `\` escapes a wildcard. Exclude files
//! hold one pattern a line; empty lines and lines starting with `#` are skipped.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    #[error("bad exclude pattern `{pattern}`{}: {source}", origin(.file, *.line))]
    Pattern {
        pattern: String,
        file: Option<PathBuf>,
        line: usize,
        #[source]
        source: globset::Error,
    },
    #[error("cannot read the exclude file {}: {source}", .file.display())]
    File {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A stage's `exclude` key, checked at load: the error points at the bad pattern.
pub fn check_patterns(patterns: &[toml::Spanned<String>]) -> Result<(), crate::stages::SpecError> {
    for pattern in patterns {
        glob(pattern.get_ref()).map_err(|error| {
            crate::stages::SpecError::invalid(
                Some(pattern.span()),
                format!("bad exclude pattern: {}", error.kind()),
                "fix the pattern: `*` matches within a name, `**` across directories, `\\` \
                 escapes a wildcard",
            )
        })?;
    }
    Ok(())
}

/// The patterns of a stage's `exclude` key, without their places in the config.
pub fn pattern_texts(patterns: &[toml::Spanned<String>]) -> Vec<String> {
    patterns.iter().map(|p| p.get_ref().clone()).collect()
}

fn origin(file: &Option<PathBuf>, line: usize) -> String {
    match file {
        Some(file) => format!(" in {}:{line}", file.display()),
        None => String::new(),
    }
}

/// A pattern's glob; a trailing `/` (restic's "directories only") is dropped, as restic
/// matches a directory and everything in it alike.
fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern.trim_end_matches('/'))
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

impl Excludes {
    /// Patterns from the config and from exclude files.
    pub fn new(patterns: &[String], files: &[PathBuf]) -> Result<Excludes, ExcludeError> {
        let mut all: Vec<(String, Option<PathBuf>, usize)> =
            patterns.iter().map(|p| (p.clone(), None, 0)).collect();
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| ExcludeError::File {
                file: file.clone(),
                source,
            })?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim_end();
                if !line.is_empty() && !line.starts_with('#') {
                    all.push((line.to_string(), Some(file.clone()), number + 1));
                }
            }
        }
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let (mut any_name, mut any_path) = (false, false);
        for (pattern, file, line) in all {
            let built = glob(&pattern).map_err(|source| ExcludeError::Pattern {
                pattern: pattern.clone(),
                file,
                line,
                source,
            })?;
            if pattern.trim_end_matches('/').contains('/') {
                paths.add(built);
                any_path = true;
            } else {
                names.add(built);
                any_name = true;
            }
        }
        let build = |builder: GlobSetBuilder, any: bool| {
            any.then(|| builder.build().expect("globs that compiled one by one"))
        };
        Ok(Excludes {
            names: build(names, any_name),
            paths: build(paths, any_path),
        })
    }

    /// No patterns at all: nothing is excluded, and no path needs building to ask.
    pub fn is_empty(&self) -> bool {
        self.names.is_none() && self.paths.is_none()
    }

    /// True when `path` (absolute) is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        if let Some(names) = &self.names
            && let Some(name) = path.file_name()
            && names.is_match(Path::new(name))
        {
            return true;
        }
        if let Some(paths) = &self.paths {
            return paths.is_match(path);
        }
        false
    }
}

/// Escapes a literal path for an exclude line (restic and rsync both read `\` as an escape).
pub fn escape_pattern(path: &Path) -> String {
    let text = String::from_utf8_lossy(path.as_os_str().as_bytes());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_anywhere_paths_match_whole() {
        let excludes = Excludes::new(
            &[
                "*.tmp".into(),
                "node_modules".into(),
                "/home/*/.cache".into(),
                "/data/**/target/".into(),
            ],
            &[],
        )
        .unwrap();
        let hit = |p: &str| excludes.is_excluded(Path::new(p));
        assert!(hit("/x/y/a.tmp"));
        assert!(hit("/x/node_modules"));
        assert!(hit("/home/sig/.cache"));
        assert!(!hit("/home/sig/sub/.cache"));
        assert!(hit("/data/a/b/target"));
        assert!(!hit("/data/a/b/target2"));
        assert!(!hit("/x/y/a.txt"));
    }

    #[test]
    fn escaped_paths_match_literally() {
        let path = Path::new("/src/we*rd[1]/.git");
        let excludes = Excludes::new(&[escape_pattern(path)], &[]).unwrap();
        assert!(excludes.is_excluded(path));
        assert!(!excludes.is_excluded(Path::new("/src/weXrd1/.git")));
    }

    #[test]
    fn reads_files_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("excludes");
        std::fs::write(&file, "# comment\n\n/a/b\n/c/[\n").unwrap();
        let error = Excludes::new(&[], std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("{}:4", file.display())), "{error}");
    }
}
