//! `manifest`: for each source tree, a manifest of every entry (path as raw bytes, type, size,
//! mode, owner, mtime, symlink target, BLAKE3 of regular files), written in the compact
//! format of [`format`](mod@format). Hashes of files unchanged since the last run come from a cache
//! ([`cache`]), so a run over an unchanged home directory reads metadata only.
//! `backupctl verify --manifest FILE DIR` compares a restored tree against one ([`diff`]).

pub mod cache;
pub mod diff;
pub mod exclude;
pub mod format;
pub mod walk;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Needs, Outcome, SpecError, StageError, StageKind, require_absolute};
use crate::patterns::{Dialect, Matcher};
use crate::report::{Figures, Progress};
use crate::stages::StageContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The trees to describe, one manifest each.
    pub sources: Spanned<Vec<Spanned<PathBuf>>>,
    /// Where the manifests go (default: `STATE/manifest/STAGE/`).
    pub output: Option<Spanned<PathBuf>>,
    /// Patterns to leave out (restic's syntax, see [`exclude`]).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Files of patterns, e.g. the `exclude-pushed.txt` of a `gitrepos` stage.
    #[serde(default)]
    pub exclude_from: Vec<Spanned<PathBuf>>,
    /// Stay on the filesystem of each source.
    #[serde(default)]
    pub one_file_system: bool,
}

/// A file name for a path, as `systemd-escape --path` makes it: `/home/sig` → `home-sig`.
pub fn escape_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let trimmed: &[u8] = {
        let mut t = bytes;
        while let [b'/', rest @ ..] = t {
            t = rest;
        }
        while let [rest @ .., b'/'] = t {
            t = rest;
        }
        t
    };
    if trimmed.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(trimmed.len());
    for (index, &byte) in trimmed.iter().enumerate() {
        match byte {
            b'/' => out.push('-'),
            b'.' if index == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out
}

impl Spec {
    /// The directory the manifests are written to.
    pub fn output_dir(&self, state_dir: &Path, stage: &str) -> PathBuf {
        self.output
            .as_ref()
            .map(|o| o.get_ref().clone())
            .unwrap_or_else(|| state_dir.join("manifest").join(stage))
    }

    /// The manifest file of one source: `OUTPUT/home-sig.manifest`.
    pub fn manifest_file(output: &Path, source: &Path) -> PathBuf {
        output.join(format!("{}.manifest", escape_path(source)))
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "manifest";

    fn validate(&self) -> Result<(), SpecError> {
        if self.sources.get_ref().is_empty() {
            return Err(SpecError::invalid(
                Some(self.sources.span()),
                "`sources` is empty",
                "list the trees to describe, e.g. sources = [\"/home/sig\"]",
            ));
        }
        require_absolute(self.sources.get_ref(), "sources")?;
        require_absolute(&self.exclude_from, "exclude_from")?;
        if let Some(output) = &self.output {
            require_absolute(std::slice::from_ref(output), "output")?;
        }
        exclude::check_patterns(&self.exclude)?;
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs {
            // The default output is under the state directory, which the unit may write.
            writes: self.output.iter().map(|o| o.get_ref().clone()).collect(),
            trusted: self
                .exclude_from
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
            ..Needs::default()
        }
    }

    fn other_reads(&self) -> Vec<PathBuf> {
        let sources = self.sources.get_ref().iter();
        sources
            .chain(&self.exclude_from)
            .map(|path| path.get_ref().clone())
            .collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let output = self.output_dir(&ctx.state_dir, &ctx.stage.name);
        let cache_dir = ctx.state_dir.join("manifest-cache").join(&ctx.stage.name);
        for dir in [&output, &cache_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| StageError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let exclude_files: Vec<PathBuf> = self
            .exclude_from
            .iter()
            .map(|f| f.get_ref().clone())
            .collect();
        let excludes = Matcher::with_files(
            Dialect::Restic,
            &exclude::pattern_texts(&self.exclude),
            &exclude_files,
        )
        .map_err(|e| StageError::Failed(e.to_string()))?;
        let options = walk::WalkOptions {
            excludes,
            one_file_system: self.one_file_system,
            // Our own files change every run: describing them would make no manifest stable.
            skip: vec![output.clone(), cache_dir.clone(), ctx.state_dir.clone()],
        };
        let mut figures = Figures {
            files: Some(0),
            files_changed: Some(0),
            bytes_read: Some(0),
            ..Figures::default()
        };
        let mut warnings = Vec::new();
        for source in self.sources.get_ref() {
            let source = source.get_ref();
            let cache_file = cache_dir.join(format!("{}.cache", escape_path(source)));
            let manifest_file = Spec::manifest_file(&output, source);
            let scan = describe(ctx, source, &options, &cache_file, &manifest_file)?;
            *figures.files.get_or_insert(0) += scan.files;
            if scan.problems > 0 {
                warnings.push(format!(
                    "{}: {} entries could not be read (first: {})",
                    source.display(),
                    scan.problems,
                    scan.warnings.first().map(String::as_str).unwrap_or("")
                ));
            }
            tracing::info!(
                "manifest of {} written to {} ({} entries)",
                source.display(),
                manifest_file.display(),
                scan.entries
            );
            *figures.files_changed.get_or_insert(0) += scan.files_hashed;
            *figures.bytes_read.get_or_insert(0) += scan.bytes_hashed;
        }
        Ok(Outcome { warnings, figures })
    }
}

/// One source's scan, with the figures a run reports.
struct Described {
    entries: usize,
    files: u64,
    warnings: Vec<String>,
    problems: u64,
    files_hashed: u64,
    bytes_hashed: u64,
}

/// Scans one source with its cache, reporting progress about once a second, and writes its
/// manifest and the new cache.
fn describe(
    ctx: &StageContext,
    source: &Path,
    options: &walk::WalkOptions,
    cache_file: &Path,
    manifest_file: &Path,
) -> Result<Described, StageError> {
    let run_started = jiff::Timestamp::now().as_second();
    ctx.report
        .status(&format!("manifest: scanning {}", source.display()));
    let counters = walk::Counters::default();
    let done = std::sync::atomic::AtomicBool::new(false);
    // The cache is read while the tree is walked: it is needed only once the walk is done.
    let cache = std::sync::OnceLock::new();
    let scan = std::thread::scope(|scope| {
        let loading = scope.spawn(|| {
            let loaded = cache::Cache::load(cache_file);
            tracing::debug!("{} cached hashes", loaded.len());
            cache.get_or_init(|| loaded);
        });
        let reporter = scope.spawn(|| {
            loop {
                std::thread::park_timeout(Duration::from_secs(1));
                // Woken at the end: nothing more to report.
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let total = counters.bytes_total.load(Ordering::Relaxed);
                let bytes = counters.bytes_done.load(Ordering::Relaxed);
                ctx.report.progress(&Progress {
                    percent: (total > 0).then(|| bytes as f64 * 100.0 / total as f64),
                    bytes_done: Some(bytes),
                    bytes_total: Some(total),
                    files_done: Some(counters.files.load(Ordering::Relaxed)),
                    text: Some(source.display().to_string()),
                    ..Progress::default()
                });
            }
        });
        let loaded = || {
            // A panic while loading would be a bug; an empty cache is still a correct answer.
            let _ = loading.join();
            cache.get_or_init(cache::Cache::default)
        };
        let scan = walk::scan(source, options, loaded, &counters);
        done.store(true, Ordering::Relaxed);
        reporter.thread().unpark();
        scan
    })
    .map_err(|error| match error {
        walk::WalkError::Interrupted => StageError::Interrupted,
        other => StageError::Failed(other.to_string()),
    })?;
    let cache = cache.get_or_init(cache::Cache::default);
    // Both files on both cores: after an unchanged run this is all that is left to do.
    let (manifest, new_cache) = rayon::join(
        || write_unless_same(manifest_file, &scan.encode()),
        || {
            // An unchanged tree gives the same cache: comparing costs less than rewriting.
            if cache.is_encoding_of(scan.cache_records(), run_started) {
                return Ok(());
            }
            write_atomically(
                cache_file,
                &cache::encode(scan.cache_records(), run_started),
            )
        },
    );
    manifest.and(new_cache)?;
    Ok(Described {
        files_hashed: counters.files_hashed.load(Ordering::Relaxed),
        bytes_hashed: counters.bytes_hashed.load(Ordering::Relaxed),
        entries: scan.len(),
        files: scan.entries().filter(|e| e.hash.is_some()).count() as u64,
        warnings: scan.warnings,
        problems: scan.problems,
    })
}

/// Writes `data` unless the file holds exactly that already (an unchanged tree gives a
/// byte-identical manifest: reading it back is cheaper than writing it, and leaves it alone).
fn write_unless_same(path: &Path, data: &[u8]) -> Result<(), StageError> {
    if holds(path, data).unwrap_or(false) {
        return Ok(());
    }
    write_atomically(path, data)
}

/// Whether the file at `path` holds exactly `data`, read in pieces (no second copy in memory).
fn holds(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() != data.len() as u64 {
        return Ok(false);
    }
    let mut buffer = vec![0u8; 256 << 10];
    let mut rest = data;
    while !rest.is_empty() {
        let n = file.read(&mut buffer[..rest.len().min(256 << 10)])?;
        if n == 0 || buffer[..n] != rest[..n] {
            return Ok(false);
        }
        rest = &rest[n..];
    }
    Ok(true)
}

/// [`crate::paths::write_atomically`], failing the stage.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StageError> {
    crate::paths::write_atomically(path, data, crate::paths::Fsync::No, None)
        .map_err(|e| StageError::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_paths_like_systemd() {
        assert_eq!(escape_path(Path::new("/home/sig")), "home-sig");
        assert_eq!(escape_path(Path::new("/home/sig/")), "home-sig");
        assert_eq!(escape_path(Path::new("/a-b/.x")), "a\\x2db-.x");
        assert_eq!(escape_path(Path::new("/.hidden")), "\\x2ehidden");
        assert_eq!(escape_path(Path::new("/")), "-");
    }
}
