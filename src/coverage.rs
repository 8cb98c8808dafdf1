//! `backupctl coverage`: what under the configured roots no stage backs up.
//!
//! A stage of a kind that copies its local sources (rsync, restic, git) covers them ([`crate::stages::Needs::sources`]) minus what its tool
//! is told to leave out ([`crate::stages::ToolExcludes`]: patterns in rsync's or restic's
//! syntax, read by [`crate::patterns`] as the tool reads them, `exclude_caches`). One walk of the roots, parallel over directories (rayon),
//! decides for every entry whether some stage takes it; the top-most entries no stage takes
//! are measured as `du` measures (allocated blocks, a hard-linked inode once) and reported
//! with the reason. A directory that a stage takes whole, with no exclude that could apply
//! below it, is not walked at all. Mount points below a root are not crossed unless asked.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Config;
use crate::paths::Scope;
use crate::patterns::{Dialect, Matcher, PatternError};
use crate::stages::ToolExcludes;

/// The roots walked in system scope when `[coverage] roots` is not set (those that exist).
pub const SYSTEM_ROOTS: &[&str] = &["/home", "/etc", "/srv", "/var/lib", "/root"];

/// The first line of a valid cache directory tag (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// The roots walked by default: the system's, or the user's home.
pub fn default_roots(scope: Scope) -> Vec<PathBuf> {
    match scope {
        Scope::System => SYSTEM_ROOTS.iter().map(PathBuf::from).collect(),
        Scope::User => std::env::var_os("HOME")
            .map(PathBuf::from)
            .into_iter()
            .collect(),
    }
}

/// What one run found (also the `--json` output; keys are only ever added).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The roots walked.
    pub roots: Vec<PathBuf>,
    /// The top-most paths no stage backs up, largest first.
    pub uncovered: Vec<Uncovered>,
    /// Sources a stage names that do not exist.
    pub missing_sources: Vec<MissingSource>,
    /// Mount points below a root that were not crossed.
    pub skipped_mounts: Vec<PathBuf>,
    /// Paths that could not be read (their coverage is unknown).
    pub errors: Vec<WalkError>,
    /// The sums over `uncovered`.
    pub uncovered_bytes: u64,
    pub uncovered_files: u64,
}

impl Report {
    /// Nothing uncovered and no source missing.
    pub fn fully_covered(&self) -> bool {
        self.uncovered.is_empty() && self.missing_sources.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Uncovered {
    pub path: PathBuf,
    /// `dir` or `file` (anything not a directory: a file, a symlink, a socket…).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Allocated bytes, as `du -s --block-size=1` counts them.
    pub bytes: u64,
    /// Entries that are not directories.
    pub files: u64,
    pub reason: Reason,
}

/// Why a path is not backed up.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// No stage's sources contain it.
    NotUnderAnySource,
    /// Under a stage's source, but an exclude pattern matches it.
    Excluded {
        stage: String,
        stage_kind: &'static str,
        pattern: String,
    },
    /// Under a stage's source, but it holds a CACHEDIR.TAG and the stage has
    /// `exclude_caches = true`.
    CachedirTag {
        stage: String,
        stage_kind: &'static str,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NotUnderAnySource => write!(f, "not under any source"),
            Reason::Excluded {
                stage,
                stage_kind,
                pattern,
            } => write!(f, "excluded by {stage_kind} stage `{stage}`: `{pattern}`"),
            Reason::CachedirTag { stage, stage_kind } => {
                write!(f, "CACHEDIR.TAG ({stage_kind} stage `{stage}`)")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingSource {
    pub stage: String,
    pub stage_kind: &'static str,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalkError {
    pub path: PathBuf,
    pub error: String,
}

/// What to walk and what to leave out of the report.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub roots: Vec<PathBuf>,
    /// Absolute glob patterns (`[coverage] ignore`).
    pub ignore: Vec<String>,
    /// Walk into other file systems mounted below a root.
    pub cross_file_systems: bool,
}

/// A problem with the config's patterns, found before walking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stage `{stage}`: exclude pattern `{pattern}` cannot be read: {message}")]
    Pattern {
        stage: String,
        pattern: String,
        message: String,
    },
    #[error("stage `{stage}`: cannot read exclude file {}: {source}", file.display())]
    ExcludeFile {
        stage: String,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("ignore pattern `{0}` cannot be read: {1}")]
    Ignore(String, String),
}

/// A source of a stage: the path and where rsync anchors `/patterns` for it.
struct Source {
    path: PathBuf,
    anchor: PathBuf,
}

/// One stage as the walk sees it.
struct StageView {
    name: String,
    kind: &'static str,
    sources: Vec<Source>,
    patterns: Matcher,
    exclude_caches: bool,
}

impl StageView {
    fn excludes_anything(&self) -> bool {
        !self.patterns.is_empty() || self.exclude_caches
    }

    /// The pattern that leaves `path` out, for the source at `source`: restic matches the
    /// absolute path, rsync the path below the transfer root.
    fn excluded_by(&self, source: usize, path: &Path, is_dir: bool) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        let subject = match self.patterns.dialect() {
            Dialect::Restic => path,
            Dialect::Rsync | Dialect::Git => {
                let rel = path.strip_prefix(&self.sources[source].anchor).ok()?;
                if rel.as_os_str().is_empty() {
                    return None;
                }
                rel
            }
        };
        self.patterns.excluded_by(subject, is_dir)
    }
}

fn view(
    name: &str,
    kind: &'static str,
    sources: Vec<PathBuf>,
    excludes: ToolExcludes,
) -> Result<StageView, Error> {
    let patterns = Matcher::with_files(excludes.dialect, &excludes.patterns, &excludes.files)
        .map_err(|error| match error {
            PatternError::Pattern {
                pattern, message, ..
            } => Error::Pattern {
                stage: name.to_string(),
                pattern,
                message,
            },
            PatternError::File { file, source } => Error::ExcludeFile {
                stage: name.to_string(),
                file,
                source,
            },
        })?;
    let sources = sources
        .into_iter()
        .map(|path| {
            let contents_only = path.as_os_str().as_bytes().ends_with(b"/");
            let anchor = if contents_only {
                path.clone()
            } else {
                path.parent().unwrap_or(Path::new("/")).to_path_buf()
            };
            Source { path, anchor }
        })
        .collect();
    Ok(StageView {
        name: name.to_string(),
        kind,
        sources,
        patterns,
        exclude_caches: excludes.exclude_caches,
    })
}

/// A stage's relation to one path.
#[derive(Clone, Debug)]
enum State {
    /// None of its sources contains the path.
    Outside,
    /// Inside its source number N, not excluded.
    Inside(usize),
    /// Inside a source, but left out.
    Excluded(Reason),
}

struct Walk<'a> {
    stages: &'a [StageView],
    ignore: GlobSet,
    /// Destinations of the stages: never reported.
    destinations: Vec<PathBuf>,
    cross: bool,
    /// Inodes with more than one link already counted.
    seen: Mutex<HashSet<(u64, u64)>>,
    uncovered: Mutex<Vec<Uncovered>>,
    skipped: Mutex<Vec<PathBuf>>,
    errors: Mutex<Vec<WalkError>>,
    entries: AtomicU64,
}

enum Work {
    Visit(PathBuf, Vec<State>),
    Measure(PathBuf, Box<std::fs::Metadata>, Reason),
}

impl Walk<'_> {
    fn error(&self, path: &Path, error: impl std::fmt::Display) {
        self.errors.lock().unwrap().push(WalkError {
            path: path.to_path_buf(),
            error: error.to_string(),
        });
    }

    fn ignored(&self, path: &Path) -> bool {
        self.ignore.is_match(path) || self.destinations.iter().any(|d| d == path)
    }

    fn has_cachedir_tag(dir: &Path) -> bool {
        let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
        std::fs::File::open(dir.join("CACHEDIR.TAG"))
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
    }

    /// The stages' states for `path`, a child of an entry whose states are `parent`.
    fn states(&self, parent: &[State], path: &Path, is_dir: bool) -> Vec<State> {
        let mut cachedir = None;
        self.stages
            .iter()
            .zip(parent)
            .map(|(stage, state)| {
                let source = match state {
                    State::Excluded(reason) => return State::Excluded(reason.clone()),
                    State::Inside(source) => *source,
                    State::Outside => match stage.sources.iter().position(|s| s.path == path) {
                        Some(source) => source,
                        None => return State::Outside,
                    },
                };
                if let Some(pattern) = stage.excluded_by(source, path, is_dir) {
                    return State::Excluded(Reason::Excluded {
                        stage: stage.name.clone(),
                        stage_kind: stage.kind,
                        pattern: pattern.to_string(),
                    });
                }
                if is_dir
                    && stage.exclude_caches
                    && *cachedir.get_or_insert_with(|| Self::has_cachedir_tag(path))
                {
                    return State::Excluded(Reason::CachedirTag {
                        stage: stage.name.clone(),
                        stage_kind: stage.kind,
                    });
                }
                State::Inside(source)
            })
            .collect()
    }

    /// The states of a root: a stage whose source contains it is inside.
    fn root_states(&self, root: &Path) -> Vec<State> {
        let outside = vec![State::Outside; self.stages.len()];
        let mut states = outside.clone();
        for (i, stage) in self.stages.iter().enumerate() {
            if let Some(source) = stage.sources.iter().position(|s| root.starts_with(&s.path)) {
                let mut one = outside.clone();
                one[i] = State::Inside(source);
                states[i] = self.states(&one, root, true).swap_remove(i);
            }
        }
        states
    }

    /// What to do with an entry whose states are known: nothing (covered whole), walk it
    /// (covered with excludes that may apply below, or holding a source), or measure it.
    fn decide(
        &self,
        path: PathBuf,
        meta: Option<std::fs::Metadata>,
        is_dir: bool,
        states: Vec<State>,
    ) -> Option<Work> {
        let inside: Vec<&StageView> = states
            .iter()
            .zip(self.stages)
            .filter(|(s, _)| matches!(s, State::Inside(_)))
            .map(|(_, stage)| stage)
            .collect();
        let holds_source = is_dir
            && self
                .stages
                .iter()
                .flat_map(|s| &s.sources)
                .any(|s| s.path.starts_with(&path) && s.path != path);
        if !inside.is_empty() {
            let walk = is_dir && (holds_source || inside.iter().all(|s| s.excludes_anything()));
            return walk.then_some(Work::Visit(path, states));
        }
        if holds_source {
            return Some(Work::Visit(path, states));
        }
        let reason = states
            .into_iter()
            .find_map(|s| match s {
                State::Excluded(reason) => Some(reason),
                _ => None,
            })
            .unwrap_or(Reason::NotUnderAnySource);
        let meta = match meta {
            Some(meta) => meta,
            None => match path.symlink_metadata() {
                Ok(meta) => meta,
                Err(error) => {
                    self.error(&path, error);
                    return None;
                }
            },
        };
        Some(Work::Measure(path, Box::new(meta), reason))
    }

    fn run(&self, work: Work, dev: u64) {
        match work {
            Work::Visit(dir, states) => self.visit(&dir, &states, dev),
            Work::Measure(path, meta, reason) => {
                let (bytes, files) = if meta.is_dir() {
                    self.measure(&path, &meta, dev)
                } else {
                    (self.blocks(&meta), 1)
                };
                self.uncovered.lock().unwrap().push(Uncovered {
                    kind: if meta.is_dir() { "dir" } else { "file" },
                    path,
                    bytes,
                    files,
                    reason,
                });
            }
        }
    }

    /// Allocated bytes of one entry; a hard-linked inode counts the first time only.
    fn blocks(&self, meta: &std::fs::Metadata) -> u64 {
        if meta.nlink() > 1
            && !meta.is_dir()
            && !self.seen.lock().unwrap().insert((meta.dev(), meta.ino()))
        {
            return 0;
        }
        meta.blocks() * 512
    }

    fn visit(&self, dir: &Path, states: &[State], dev: u64) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => return self.error(dir, error),
        };
        let mut work = vec![];
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    self.error(dir, error);
                    continue;
                }
            };
            self.entries.fetch_add(1, Ordering::Relaxed);
            let path = entry.path();
            if self.ignored(&path) {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let mut meta = None;
            if is_dir {
                match entry.metadata() {
                    Ok(m) if m.dev() != dev && !self.cross => {
                        self.skipped.lock().unwrap().push(path);
                        continue;
                    }
                    Ok(m) => meta = Some(m),
                    Err(error) => {
                        self.error(&path, error);
                        continue;
                    }
                }
            }
            let child = self.states(states, &path, is_dir);
            if let Some(w) = self.decide(path, meta, is_dir, child) {
                work.push(w);
            }
        }
        work.into_par_iter().for_each(|w| {
            let dev = match &w {
                Work::Measure(_, meta, _) if self.cross => meta.dev(),
                _ => dev,
            };
            self.run(w, dev)
        });
    }

    /// `du -s` of a directory: its own blocks and everything below.
    fn measure(&self, dir: &Path, meta: &std::fs::Metadata, dev: u64) -> (u64, u64) {
        let own = self.blocks(meta);
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                self.error(dir, error);
                return (own, 0);
            }
        };
        let mut bytes = own;
        let mut files = 0;
        let mut dirs = vec![];
        for entry in entries.flatten() {
            self.entries.fetch_add(1, Ordering::Relaxed);
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(error) => {
                    self.error(&entry.path(), error);
                    continue;
                }
            };
            if meta.is_dir() {
                if meta.dev() != dev && !self.cross {
                    self.skipped.lock().unwrap().push(entry.path());
                } else {
                    dirs.push((entry.path(), meta));
                }
            } else {
                bytes += self.blocks(&meta);
                files += 1;
            }
        }
        let (b, f) = dirs
            .into_par_iter()
            .map(|(path, meta)| self.measure(&path, &meta, meta.dev()))
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (bytes + b, files + f)
    }
}

/// Walks `options.roots` against the config's stages. `progress` is called now and then
/// with the number of entries seen so far (for a terminal's progress display).
pub fn scan(
    config: &Config,
    options: &Options,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, Error> {
    let mut stages = vec![];
    let mut missing_sources = vec![];
    let mut destinations = vec![];
    for stage in &config.stages {
        let needs = stage.spec.needs();
        destinations.extend(needs.writes.iter().cloned());
        for source in &needs.sources {
            if source.symlink_metadata().is_err() {
                missing_sources.push(MissingSource {
                    stage: stage.name.clone(),
                    stage_kind: stage.spec.name(),
                    path: source.clone(),
                });
            }
        }
        // Only kinds that copy their sources cover them (a `manifest` only lists them), and
        // only their backups (not a restic `forget` of the same paths).
        let copies = crate::stages::kind(stage.spec.name()).is_some_and(|k| k.reads_local_sources)
            && stage.spec.purpose() == crate::stages::Purpose::Backup;
        if copies && !needs.sources.is_empty() {
            stages.push(view(
                &stage.name,
                stage.spec.name(),
                needs.sources,
                stage.spec.excludes(),
            )?);
        }
    }
    let mut ignore = GlobSetBuilder::new();
    for pattern in &options.ignore {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::Ignore(pattern.clone(), e.kind().to_string()))?;
        ignore.add(glob);
    }
    let walk = Walk {
        stages: &stages,
        ignore: ignore
            .build()
            .map_err(|e| Error::Ignore(String::new(), e.to_string()))?,
        destinations,
        cross: options.cross_file_systems,
        seen: Mutex::default(),
        uncovered: Mutex::default(),
        skipped: Mutex::default(),
        errors: Mutex::default(),
        entries: AtomicU64::new(0),
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                progress(walk.entries.load(Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        for root in &options.roots {
            let meta = match root.metadata() {
                Ok(meta) => meta,
                Err(error) => {
                    walk.error(root, error);
                    continue;
                }
            };
            if walk.ignored(root) {
                continue;
            }
            let states = walk.root_states(root);
            if let Some(work) = walk.decide(root.clone(), Some(meta.clone()), meta.is_dir(), states)
            {
                walk.run(work, meta.dev());
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    let mut uncovered = walk.uncovered.into_inner().unwrap();
    uncovered.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    let mut skipped_mounts = walk.skipped.into_inner().unwrap();
    skipped_mounts.sort();
    let mut errors = walk.errors.into_inner().unwrap();
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Report {
        roots: options.roots.clone(),
        uncovered_bytes: uncovered.iter().map(|u| u.bytes).sum(),
        uncovered_files: uncovered.iter().map(|u| u.files).sum(),
        uncovered,
        missing_sources,
        skipped_mounts,
        errors,
    })
}

/// The report as a table for people.
pub fn render(report: &Report) -> String {
    use crate::out::human_bytes;
    use std::fmt::Write;
    let mut text = String::new();
    let roots: Vec<String> = report
        .roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    if !report.uncovered.is_empty() {
        let width = report
            .uncovered
            .iter()
            .map(|u| u.path.as_os_str().len() + usize::from(u.kind == "dir"))
            .max()
            .unwrap_or(9)
            .clamp(9, 70);
        let _ = writeln!(
            text,
            "{:<width$}  {:>10}  {:>8}  WHY",
            "UNCOVERED", "SIZE", "FILES"
        );
        for u in &report.uncovered {
            let slash = if u.kind == "dir" { "/" } else { "" };
            let path = format!("{}{slash}", u.path.display());
            let _ = writeln!(
                text,
                "{path:<width$}  {:>10}  {:>8}  {}",
                human_bytes(u.bytes),
                u.files,
                u.reason
            );
        }
    }
    if !report.missing_sources.is_empty() {
        let _ = writeln!(text, "\nsources that do not exist:");
        for m in &report.missing_sources {
            let _ = writeln!(
                text,
                "  {} ({} stage `{}`)",
                m.path.display(),
                m.stage_kind,
                m.stage
            );
        }
    }
    if !report.skipped_mounts.is_empty() {
        let _ = writeln!(
            text,
            "\nother file systems not walked (--cross-file-systems walks them):"
        );
        for m in &report.skipped_mounts {
            let _ = writeln!(text, "  {}", m.display());
        }
    }
    if report.fully_covered() {
        let _ = writeln!(text, "everything under {} is backed up", roots.join(", "));
    } else {
        let _ = writeln!(
            text,
            "{}not backed up: {} in {} files ({} paths); {} sources missing",
            if report.uncovered.is_empty() {
                ""
            } else {
                "\n"
            },
            human_bytes(report.uncovered_bytes),
            report.uncovered_files,
            report.uncovered.len(),
            report.missing_sources.len()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, dialect: Dialect, path: &str, is_dir: bool) -> bool {
        Matcher::new(dialect, &[pattern.to_string()])
            .unwrap()
            .is_excluded(Path::new(path), is_dir)
    }

    #[test]
    fn rsync_patterns() {
        let r = Dialect::Rsync;
        assert!(matches("*.tmp", r, "/src/a/b.tmp", false));
        assert!(matches("*.tmp", r, "/b.tmp", false));
        assert!(!matches("*.tmp", r, "/src/a.tmpx", false));
        assert!(matches("/src/cache", r, "/src/cache", true));
        assert!(!matches("/cache", r, "/src/cache", true));
        assert!(matches("cache/", r, "/src/cache", true));
        assert!(!matches("cache/", r, "/src/cache", false));
        assert!(matches("a/b", r, "/src/x/a/b", true));
        assert!(!matches("a/*", r, "/src/a/b/c", false));
        assert!(matches("a/**", r, "/src/a/b/c", false));
        assert!(matches("dir/***", r, "/src/dir", true));
        assert!(matches("- *.o", r, "/x.o", false));
    }

    #[test]
    fn restic_patterns() {
        let r = Dialect::Restic;
        assert!(matches("*.tmp", r, "/home/a/b.tmp", false));
        assert!(matches("/home/*/.cache", r, "/home/sig/.cache", true));
        assert!(!matches("/home/*/.cache", r, "/home/sig/x/.cache", true));
        assert!(matches("cache/", r, "/home/cache", false));
        assert!(matches("/home/**/*.iso", r, "/home/a/b/c.iso", false));
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// An rsync stage's coverage (`stage` without its destination).
    fn scan_with(root: &Path, stage: &str) -> Report {
        scan_config(
            root,
            &format!("{stage}destination = \"/nonexistent-dst\"\n"),
        )
    }

    fn scan_config(root: &Path, text: &str) -> Report {
        let config =
            crate::config::parse(Path::new("c.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        let options = Options {
            roots: vec![root.to_path_buf()],
            ..Options::default()
        };
        scan(&config, &options, &|_| {}).unwrap()
    }

    #[test]
    fn rsync_anchors_at_the_transfer_root() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("build")).unwrap();
        std::fs::create_dir_all(src.join("keep/build")).unwrap();
        let uncovered = |source: String| -> Vec<PathBuf> {
            let stage = format!(
                "[stage.a]\nkind = \"rsync\"\nsources = [\"{source}\"]\nexclude = [\"{}\"]\n",
                if source.ends_with('/') {
                    "/build"
                } else {
                    "/src/build"
                }
            );
            let report = scan_with(&src, &stage);
            report.uncovered.into_iter().map(|u| u.path).collect()
        };
        let with_slash = format!("{}/", src.display());
        assert_eq!(uncovered(with_slash), [src.join("build")]);
        assert_eq!(uncovered(src.display().to_string()), [src.join("build")]);
    }

    #[test]
    fn rsync_include_rules_keep_what_a_later_exclude_names() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        for name in ["a.keep", "b.kz", "c.txt"] {
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join(name), "x").unwrap();
        }
        let stage = format!(
            "[stage.a]\nkind = \"rsync\"\nsources = [\"{}/\"]\nexclude = [\"+ *.keep\", \"*.k*\"]\n",
            src.display()
        );
        let report = scan_with(&src, &stage);
        let uncovered: Vec<PathBuf> = report.uncovered.into_iter().map(|u| u.path).collect();
        // As `rsync --exclude='+ *.keep' --exclude='*.k*'` copies a.keep and c.txt.
        assert_eq!(uncovered, [src.join("b.kz")]);
    }

    #[test]
    fn restic_negated_patterns_cancel_earlier_excludes_only() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for name in ["a.keep", "b.kz", "c.txt"] {
            std::fs::write(src.join(name), "x").unwrap();
        }
        let uncovered = |excludes: &str| -> Vec<PathBuf> {
            let stage = format!(
                "[stage.a]\nkind = \"restic\"\nrepository = \"/nonexistent-repo\"\npassword_file = \"/nonexistent-pw\"\npaths = [\"{}\"]\nexclude = [{excludes}]\n",
                src.display()
            );
            let report = scan_config(&src, &stage);
            report.uncovered.into_iter().map(|u| u.path).collect()
        };
        // As restic 0.14 backs up: a.keep and c.txt with `*.k*`, `!*.keep`; only c.txt the
        // other way round.
        assert_eq!(uncovered("\"*.k*\", \"!*.keep\""), [src.join("b.kz")]);
        assert_eq!(
            uncovered("\"!*.keep\", \"*.k*\""),
            [src.join("a.keep"), src.join("b.kz")]
        );
    }
}
