//! What the commands that read a stage's backup (`restore`, `history`, `snapshots`,
//! `mount`) hand to a kind that has the capability (see [`super::StageKind::RESTORE`] and
//! the others), and what `snapshots` gets back.
//!
//! The command line's flags are mirrored here as plain values: the commands own clap,
//! the kinds own what the flags mean for their backups.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::paths::Scope;

/// A capability of a kind `S`: called with the stage's spec, where the command runs, and
/// the command's arguments. A usage error (exit 2) is `crate::exit::usage`; a tool that
/// failed is exit 1.
pub type Verb<S, A, O = ExitCode> = fn(&S, &VerbContext, &A) -> anyhow::Result<O>;

/// Where a command runs and on which stage.
#[derive(Debug, Clone, Copy)]
pub struct VerbContext<'a> {
    /// The stage's name, as the command line gave it.
    pub stage: &'a str,
    pub scope: Scope,
}

/// `restore STAGE --target DIR`, or for a database stage `restore STAGE --database NAME`.
#[derive(Debug, Clone, Default)]
pub struct RestoreArgs {
    /// Where to write the restored files (empty: not given, only with `database`; a
    /// database stage then loads the dump into the server).
    pub target: PathBuf,
    /// restic: the snapshot id, or `latest`.
    pub snapshot: String,
    /// git: the commit.
    pub commit: String,
    /// Only these paths (and what is below them).
    pub include: Vec<String>,
    /// Read the restored files back and compare them with the backup.
    pub verify: bool,
    /// Database stages: the database whose dump to restore (or a dump's file name, as
    /// `snapshots` lists it).
    pub database: Option<String>,
    /// Database stages: load into this database instead of the one dumped.
    pub into: Option<String>,
    /// Database stages: drop and re-create a target database that is not empty.
    pub replace: bool,
}

/// `history STAGE [PATH]`.
#[derive(Debug, Clone)]
pub struct HistoryArgs {
    /// Only versions that touched this path.
    pub path: Option<String>,
    /// JSON lines instead of a table.
    pub json: bool,
}

/// `snapshots STAGE`.
#[derive(Debug, Clone)]
pub struct SnapshotsArgs {
    /// Every snapshot in the repository, not only the stage's.
    pub all: bool,
    /// The tool's JSON output.
    pub json: bool,
}

/// `mount STAGE DIR`.
#[derive(Debug, Clone)]
pub struct MountArgs {
    pub dir: PathBuf,
    /// Every snapshot in the repository, not only the stage's.
    pub all: bool,
}

/// What a kind's `snapshots` found.
#[derive(Debug)]
pub enum Listing {
    /// The kind listed them itself (or handed the terminal to its tool).
    Done(ExitCode),
    /// Rotated directory snapshots next to `destination`. The command lists them, opening
    /// the stage's store first when `destination` is inside one (stores are above stages).
    Rotated {
        destination: PathBuf,
        every: String,
        keep: u32,
    },
}
