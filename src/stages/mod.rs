//! Stage kinds. Each kind is one file: its config keys (a serde struct, strict about unknown
//! keys), what its unit must be allowed to do ([`Needs`]), and how it runs ([`Kind::run`]).
//!
//! Adding a kind: write `src/stages/NAME.rs` with a `Spec` implementing [`Kind`], then add it
//! to [`StageKind`], [`KIND_NAMES`] and [`StageKind::from_table`].

mod context;
pub mod exec;
pub mod git;
pub mod gitrepos;
pub mod hello;
pub mod manifest;
pub mod rclone;
pub mod restic;
pub mod rsync;
pub mod ssh;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::DeTable;

use crate::process::ToolError;
use crate::report::Figures;

pub use self::context::{StageContext, new_id};

/// The kinds a config may name, as written in `kind = "…"`.
pub const KIND_NAMES: &[&str] = &[
    "hello", "exec", "rsync", "restic", "git", "rclone", "gitrepos", "manifest",
];

/// A stage's kind with its validated keys.
#[derive(Debug, Clone, PartialEq)]
pub enum StageKind {
    Hello(hello::Spec),
    Exec(exec::Spec),
    Rsync(rsync::Spec),
    /// Boxed: its spec is much larger than the others'.
    Restic(Box<restic::Spec>),
    Git(git::Spec),
    Rclone(rclone::Spec),
    Gitrepos(gitrepos::Spec),
    Manifest(manifest::Spec),
}

impl StageKind {
    /// Deserializes the kind-specific keys of a stage. `Err(None)`: no such kind.
    /// `store_root`: the mount point of the store the stage writes into (`store = "NAME"`).
    pub fn from_table(
        kind: &str,
        table: Spanned<DeTable>,
        store_root: Option<&Path>,
    ) -> Result<StageKind, Option<SpecError>> {
        fn spec<T: DeserializeOwned + Kind>(
            table: Spanned<DeTable>,
            store_root: Option<&Path>,
        ) -> Result<T, Option<SpecError>> {
            let mut spec = T::deserialize(table.into_deserializer())
                .map_err(|error| Some(SpecError::Toml(error)))?;
            if let Some(root) = store_root {
                spec.place_in_store(root).map_err(Some)?;
            }
            spec.validate().map_err(Some)?;
            Ok(spec)
        }
        Ok(match kind {
            "hello" => StageKind::Hello(spec(table, store_root)?),
            "exec" => StageKind::Exec(spec(table, store_root)?),
            "rsync" => StageKind::Rsync(spec(table, store_root)?),
            "restic" => StageKind::Restic(Box::new(spec(table, store_root)?)),
            "git" => StageKind::Git(spec(table, store_root)?),
            "rclone" => StageKind::Rclone(spec(table, store_root)?),
            "gitrepos" => StageKind::Gitrepos(spec(table, store_root)?),
            "manifest" => StageKind::Manifest(spec(table, store_root)?),
            _ => return Err(None),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            StageKind::Hello(_) => "hello",
            StageKind::Exec(_) => "exec",
            StageKind::Rsync(_) => "rsync",
            StageKind::Restic(_) => "restic",
            StageKind::Git(_) => "git",
            StageKind::Rclone(_) => "rclone",
            StageKind::Gitrepos(_) => "gitrepos",
            StageKind::Manifest(_) => "manifest",
        }
    }

    pub fn as_kind(&self) -> &dyn Kind {
        match self {
            StageKind::Hello(spec) => spec,
            StageKind::Exec(spec) => spec,
            StageKind::Rsync(spec) => spec,
            StageKind::Restic(spec) => spec.as_ref(),
            StageKind::Git(spec) => spec,
            StageKind::Rclone(spec) => spec,
            StageKind::Gitrepos(spec) => spec,
            StageKind::Manifest(spec) => spec,
        }
    }
}

/// What one stage kind is and does.
pub trait Kind {
    /// Checks relations between keys that serde cannot (e.g. "one of a or b").
    fn validate(&self) -> Result<(), SpecError> {
        Ok(())
    }

    /// Places the stage's destination inside a store's mount point `root` (the stage has
    /// `store = "NAME"`); runs before [`Kind::validate`]. Kinds that cannot write into a
    /// store keep this default, an error.
    fn place_in_store(&mut self, _root: &Path) -> Result<(), SpecError> {
        Err(SpecError::invalid(
            None,
            "this kind of stage cannot write into a store",
            "`store = \"NAME\"` is for rsync stages; remove it",
        ))
    }

    /// What the stage's unit must allow, and what `hello` checks before a run.
    fn needs(&self) -> Needs;

    /// Runs the stage. Progress goes to `ctx.report`; figures for the summary are returned.
    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError>;
}

/// What a stage needs from its sandbox and environment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Needs {
    /// Paths the stage writes (→ `ReadWritePaths=`; `hello` checks them and their free space).
    pub writes: Vec<PathBuf>,
    /// The stage talks to the network (→ `RestrictAddressFamilies=` with IP, no `PrivateNetwork=`).
    pub network: bool,
    /// Programs the stage runs (`hello` checks them and prints their versions).
    pub tools: Vec<&'static str>,
    /// Files holding secrets (`hello` checks they exist and are not readable by others).
    pub secrets: Vec<PathBuf>,
    /// Remote places the stage reaches, for `hello`'s table (e.g. `host:path`, a repository).
    pub remotes: Vec<String>,
    /// Capabilities beyond reading everything, when run as root (system scope), e.g. the
    /// right to set owners on copied files.
    pub capabilities: Vec<&'static str>,
    /// Local paths the stage reads (what `snapshot = "btrfs"` snapshots).
    pub sources: Vec<PathBuf>,
    /// systemd credentials the unit loads (`LoadCredential=NAME:PATH`): the stage reads them
    /// from `$CREDENTIALS_DIRECTORY/NAME`, so the secret file may stay readable by root only
    /// even when the stage runs as another user.
    pub credentials: Vec<(String, PathBuf)>,
}

/// A stage that finished (maybe with warnings).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub warnings: Vec<String>,
    pub figures: Figures,
}

/// Why a stage failed. The exit code tells systemd (and `run`) which kind of failure it was.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A tool the stage ran failed (its exit code, signal, or it could not be started).
    #[error(transparent)]
    Tool(ToolError),
    #[error("preflight failed: {0}")]
    Preflight(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stopped by a signal")]
    Interrupted,
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// A failure that may pass by itself (network down, repository locked): systemd may retry.
    #[error("{0}")]
    Temporary(String),
    #[error("{0}")]
    Failed(String),
}

/// A tool stopped by our stop request is the stage stopped, whatever ran it.
impl From<ToolError> for StageError {
    fn from(error: ToolError) -> Self {
        match error {
            ToolError::Interrupted => StageError::Interrupted,
            other => StageError::Tool(other),
        }
    }
}

impl StageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StageError::Io {
            context: context.into(),
            source,
        }
    }

    /// The documented exit code of `backupctl stage` for this failure (see `crate::exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            StageError::Interrupted => crate::exit::INTERRUPTED,
            StageError::Temporary(_) => crate::exit::TEMPORARY,
            StageError::Snapshot(error) if error.is_temporary() => crate::exit::TEMPORARY,
            StageError::Preflight(_) => crate::exit::PREFLIGHT,
            _ => crate::exit::FAILED,
        }
    }
}

/// An error in a stage's kind-specific keys.
#[derive(Debug)]
pub enum SpecError {
    Toml(toml::de::Error),
    Invalid {
        span: Option<Range<usize>>,
        message: String,
        help: Option<String>,
    },
}

impl SpecError {
    pub fn invalid(
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        SpecError::Invalid {
            span,
            message: message.into(),
            help: Some(help.into()),
        }
    }
}

/// A list of paths in a config, each with its position for errors.
pub type SpannedPaths = Vec<Spanned<PathBuf>>;

/// Checks that every path is absolute (relative paths would depend on the unit's cwd) and
/// normalized (see [`require_normalized`]).
pub fn require_absolute(paths: &[Spanned<PathBuf>], key: &str) -> Result<(), SpecError> {
    for path in paths {
        if !path.get_ref().is_absolute() {
            return Err(SpecError::invalid(
                Some(path.span()),
                format!(
                    "`{key}` needs absolute paths, `{}` is relative",
                    path.get_ref().display()
                ),
                "write the full path, starting with /",
            ));
        }
        require_normalized(path.span(), &path.get_ref().to_string_lossy(), key)?;
    }
    Ok(())
}

/// Checks that a path is spelled as systemd takes paths in units: the one rule of
/// `crate::config::pathname`, for every path key of every kind.
pub fn require_normalized(span: Range<usize>, path: &str, key: &str) -> Result<(), SpecError> {
    crate::config::pathname::check(path).map_err(|problem| {
        SpecError::invalid(Some(span), problem.message(key, path), problem.help())
    })
}
