//! `backupctl verify --manifest FILE DIR`: compare a tree (typically a restore) against a
//! manifest written by a `manifest` stage, and list every difference, one a line:
//! `+ PATH` new, `- PATH` missing, `R OLD -> NEW` renamed, `M PATH (what)` changed.
//! Exit code 0: identical; 1: differences found; 2: the manifest or tree could not be read.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::exit::{Class, Classify};
use crate::patterns::{Dialect, Matcher};
use crate::stages::manifest::cache::Cache;
use crate::stages::manifest::diff::{self, Ignore};
use crate::stages::manifest::format::{Manifest, display_bytes};
use crate::stages::manifest::walk::{self, Counters, WalkOptions};

/// The largest manifest read: about 20 million entries.
const MAX_MANIFEST_SIZE: u64 = 1 << 30;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest file (`STATE/manifest/STAGE/SOURCE.manifest`).
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,

    /// The tree to compare; without it, the manifest's entries are printed.
    pub dir: Option<PathBuf>,

    /// Fields not to compare: mtime, dir-mtime, owner, mode (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_parser = ["mtime", "dir-mtime", "owner", "mode"])]
    pub ignore: Vec<String>,

    /// Leave out what matches, as the stage's `exclude` did (restic's pattern syntax).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // A manifest that cannot be read is a bad argument (2), as the module doc says.
    let data = crate::paths::read_regular(&args.manifest, MAX_MANIFEST_SIZE)
        .with_context(|| format!("cannot read the manifest {}", args.manifest.display()))
        .classify(Class::Usage)?;
    let expected = Manifest::decode(&data)
        .with_context(|| format!("cannot read the manifest {}", args.manifest.display()))
        .classify(Class::Usage)?;
    let Some(dir) = &args.dir else {
        list(&expected)?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut ignore = Ignore::default();
    for field in &args.ignore {
        match field.as_str() {
            "mtime" => ignore.mtime = true,
            "dir-mtime" => ignore.dir_mtime = true,
            "owner" => ignore.owner = true,
            "mode" => ignore.mode = true,
            _ => unreachable!("clap checked the values"),
        }
    }
    // Every file is read: a restore must be checked by its bytes, never by a cache.
    let options = WalkOptions {
        excludes: Matcher::new(Dialect::Restic, &args.exclude)?,
        ..WalkOptions::default()
    };
    let no_cache = Cache::default();
    let mut scan = walk::scan(dir, &options, || &no_cache, &Counters::default())?;
    for warning in &scan.warnings {
        eprintln!("warning: {warning}");
    }
    let differences = diff::compare(&expected, &scan.take_manifest(), ignore);
    let mut out = crate::out::Buffered::new();
    for difference in &differences {
        writeln!(out, "{difference}")?;
    }
    out.finish()?;
    if differences.is_empty() && scan.problems == 0 {
        eprintln!(
            "{}: identical to {} ({} entries)",
            dir.display(),
            args.manifest.display(),
            expected.entries.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{}: {} difference(s) from {}{}",
            dir.display(),
            differences.len(),
            args.manifest.display(),
            if scan.problems > 0 {
                format!(", {} entries unreadable", scan.problems)
            } else {
                String::new()
            }
        );
        Ok(ExitCode::from(crate::exit::FAILED))
    }
}

/// One line an entry: type, mode, uid:gid, size, mtime, hash or target, path.
fn list(manifest: &Manifest) -> std::io::Result<()> {
    let mut out = crate::out::Buffered::new();
    writeln!(out, "# root {}", manifest.root.display())?;
    for entry in &manifest.entries {
        let detail = match (&entry.hash, &entry.target) {
            (Some(hash), _) => hash.iter().map(|b| format!("{b:02x}")).collect(),
            (None, Some(target)) => format!("-> {}", display_bytes(target)),
            _ => "-".to_string(),
        };
        let path = if entry.path.is_empty() {
            ".".to_string()
        } else {
            display_bytes(&entry.path)
        };
        writeln!(
            out,
            "{} {:04o} {}:{} {} {}.{:09} {} {}",
            entry.file_type.code() as char,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.size,
            entry.mtime,
            entry.mtime_nsec,
            detail,
            path
        )?;
    }
    out.finish()
}
