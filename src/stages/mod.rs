//! Stage kinds. Each kind is one file whose `Spec` (its config keys, a serde struct strict
//! about unknown keys) implements one trait, [`StageKind`]: its name, checks, what its unit
//! must be allowed to do ([`Needs`]), how it runs, and what the commands that read a backup
//! (`restore`, `history`, `snapshots`, `mount`) can do with it.
//!
//! [`KINDS`] is the registry, the one list of kinds: the config loader parses a stage's
//! keys through it, its help texts list its names, and the commands dispatch through
//! [`AnyKind`] and name the kinds that have a capability from it. Adding a kind is its file
//! plus two lines here, its `mod` and its entry (see CONTRIBUTING.md).

mod context;
pub mod copy;
pub mod drill;
pub mod dump;
pub mod exec;
pub mod git;
pub mod gitrepos;
pub mod hello;
mod kind;
pub mod manifest;
pub mod mysql;
pub mod postgresql;
pub mod rclone;
pub mod restic;
pub mod rsync;
pub mod sqlite;
pub mod ssh;
#[cfg(test)]
mod tar_example;
pub mod verbs;

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use crate::process::ToolError;
use crate::report::Figures;

pub use self::context::{StageContext, new_id};
pub use self::kind::{
    AnyKind, Capability, Dialect, Entry, KindSpec, Purpose, StageKind, ToolExcludes,
};
pub use self::restic::declared::{Repositories, Repository};
pub use crate::needs::Needs;

/// Every stage kind, in the order the help texts list them.
pub static KINDS: &[Entry] = &[
    Entry::of::<hello::Spec>(),
    Entry::of::<exec::Spec>(),
    Entry::of::<rsync::Spec>(),
    Entry::of::<restic::Spec>(),
    Entry::of::<copy::Spec>(),
    Entry::of::<git::Spec>(),
    Entry::of::<rclone::Spec>(),
    Entry::of::<gitrepos::Spec>(),
    Entry::of::<manifest::Spec>(),
    Entry::of::<drill::Spec>(),
    Entry::of::<postgresql::Spec>(),
    Entry::of::<mysql::Spec>(),
    Entry::of::<sqlite::Spec>(),
];

/// The kind called `name` in `kind = "…"`.
pub fn kind(name: &str) -> Option<&'static Entry> {
    KINDS.iter().find(|entry| entry.name == name)
}

/// Every kind's bandwidth keys, each once, in registry order: the keys a job may set for its
/// stages (`StageKind::BANDWIDTH_KEYS`).
pub fn bandwidth_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for key in KINDS.iter().flat_map(|entry| entry.bandwidth_keys) {
        if !keys.contains(key) {
            keys.push(key);
        }
    }
    keys
}

/// The names of the kinds whose entry passes `filter`, in registry order.
pub fn names(filter: impl Fn(&Entry) -> bool) -> Vec<&'static str> {
    KINDS
        .iter()
        .filter(|entry| filter(entry))
        .map(|entry| entry.name)
        .collect()
}

/// The names of the kinds with `capability`, for messages: "restic and git".
pub fn that_can(capability: Capability) -> String {
    let names = names(|entry| entry.can(capability));
    match names.split_last() {
        None => "no".to_string(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// What the stages of `job` (of every job: `None`) need together: what `hello` checks (the
/// stage, through [`StageKind::JOB_NEEDS`] its unit, and the command `backupctl hello`).
/// `[notify]`'s secret files are part of it: a failure must reach someone.
///
/// A stage that writes into a store adds no writes: its destination exists only while the
/// store is open, which `hello` does not do. Probing it would check the empty mount point
/// (on /run, for free space), and the hello unit's `prepare-paths` would create the
/// destination there, under a mount point that is not mounted. The store's own checks
/// (`backupctl hello`) and its unit, which fails before any stage writes, cover it.
pub fn job_needs(config: &crate::config::Config, job: Option<&str>) -> Needs {
    let mut needs = Needs::default();
    let stages = config
        .stages
        .iter()
        .filter(|stage| job.is_none_or(|job| stage.job == job));
    for stage in stages {
        let mut own = stage.needs();
        if stage.store.is_some() {
            own.writes.clear();
        }
        needs.merge(own);
        // `cleanup` is the stage's, not its kind's: its program is checked like the kind's.
        let cleanup = stage
            .cleanup
            .as_deref()
            .and_then(crate::needs::program_path);
        needs.trusted.extend(cleanup);
    }
    if let Some(notify) = &config.notify {
        needs.merge(Needs {
            trusted: notify.programs(),
            secrets: notify.secret_files(),
            ..Needs::default()
        });
    }
    needs
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
    /// Gave up waiting for a repository another stage or host holds (`lock_wait`): exit 75
    /// like [`StageError::Temporary`], but never retried by the stage itself (the wait was
    /// its retry).
    #[error("{0}")]
    LockWait(String),
    #[error("{0}")]
    Failed(String),
    /// A failure found by counting (a drill's mismatches): the run record keeps the figures.
    #[error("{message}")]
    Counted {
        message: String,
        figures: Box<crate::report::Figures>,
    },
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
    /// What the stage counted before it failed, for the run record.
    pub fn figures(&self) -> Option<&crate::report::Figures> {
        match self {
            StageError::Counted { figures, .. } => Some(figures),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            StageError::Interrupted => crate::exit::INTERRUPTED,
            StageError::Temporary(_) | StageError::LockWait(_) => crate::exit::TEMPORARY,
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
    /// A value that conflicts with one elsewhere: the error points at `span`, and names
    /// the line of `other` (a reference and an inline key it excludes).
    Conflict {
        span: Range<usize>,
        other: Range<usize>,
        message: String,
        help: String,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;

    fn config_error(text: &str) -> ConfigError {
        crate::config::parse(Path::new("/etc/backupctl/config.toml"), text).unwrap_err()
    }

    #[test]
    fn every_kind_is_listed_once_and_found_by_its_name() {
        let all = names(|_| true);
        assert_eq!(all.len(), KINDS.len());
        for name in &all {
            assert_eq!(all.iter().filter(|n| *n == name).count(), 1, "{name}");
            assert_eq!(kind(name).map(|entry| entry.name), Some(*name));
        }
        assert!(kind("tar").is_none(), "the example kind is not registered");
    }

    /// The loader knows a kind by the registry alone: every entry is a known kind there.
    #[test]
    fn the_config_knows_every_registered_kind() {
        for entry in KINDS {
            let text = format!("[stage.x]\nkind = \"{}\"\n", entry.name);
            if let Err(error) = crate::config::parse(Path::new("/c.toml"), &text) {
                assert!(
                    !error.message.contains("unknown stage kind"),
                    "{}: {error}",
                    entry.name
                );
            }
        }
    }

    #[test]
    fn the_config_help_lists_exactly_the_registry() {
        let all = names(|_| true).join(", ");
        let error = config_error("[stage.x]\nkind = \"tar\"\n");
        assert_eq!(error.message, "unknown stage kind `tar`");
        assert_eq!(error.help, Some(format!("use one of: {all}")));
        let error = config_error("[stage.x]\ncommand = [\"/bin/true\"]\n");
        assert_eq!(
            error.help,
            Some(format!("add `kind = \"…\"`, one of: {all}"))
        );
        let error = config_error(
            "[stage.x]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\nsnapshot = \"btrfs\"\n",
        );
        assert_eq!(
            error.help,
            Some(format!(
                "`snapshot` applies to stages that read local sources: {}",
                names(|entry| entry.reads_local_sources).join(", ")
            ))
        );
    }

    /// The commands' "works on … stages" come from the kinds' impls.
    #[test]
    fn the_capable_kinds_are_named_from_their_impls() {
        assert_eq!(
            that_can(Capability::Restore),
            "restic, copy, git, postgresql, mysql and sqlite"
        );
        assert_eq!(that_can(Capability::History), "git");
        assert_eq!(
            that_can(Capability::Snapshots),
            "rsync, restic, copy, postgresql, mysql and sqlite"
        );
        assert_eq!(that_can(Capability::Mount), "restic and copy");
        assert_eq!(
            that_can(Capability::Drill),
            "rsync, restic, copy, git, postgresql, mysql and sqlite"
        );
    }

    const STORE_JOB: &str = r#"
[store.nas]
image = "backup.luks"
size = "2T"
keyfile = "/etc/backupctl/nas.key"
remote = { device = "/dev/sdz1" }

[stage.hello]
kind = "hello"

[stage.home]
kind = "rsync"
store = "nas"
sources = ["/home/"]
destination = "home"

[stage.etc]
kind = "rsync"
sources = ["/etc/"]
destination = "/data/etc/"

[jobs.other]

[stage.far]
job = "other"
kind = "rsync"
sources = ["/srv/"]
destination = "/data/srv/"
"#;

    /// One answer to "what does hello check" for the stage, its unit and the command: a
    /// store's destination is not probed (it exists only while the store is open).
    #[test]
    fn the_needs_of_a_job_leave_out_destinations_inside_a_store() {
        let config = crate::config::parse(Path::new("/c.toml"), STORE_JOB).unwrap();
        let job = job_needs(&config, Some("job"));
        assert_eq!(job.writes, [PathBuf::from("/data/etc/")]);
        assert!(job.sources.contains(&PathBuf::from("/home/")), "{job:?}");
        let all = job_needs(&config, None);
        assert_eq!(
            all.writes,
            [PathBuf::from("/data/etc/"), PathBuf::from("/data/srv/")]
        );
        let hello = config.stage("hello").unwrap();
        let unit = hello.spec.job_needs(&|| job.clone());
        assert_eq!(unit.writes, job.writes);
        assert!(unit.tools.is_empty() && unit.secrets.is_empty(), "{unit:?}");
        let copy = config.stage("etc").unwrap();
        assert_eq!(
            copy.spec.job_needs(&|| panic!("asked for the job")),
            Needs::default()
        );
    }

    /// The hint of `store` on a kind that cannot write into one names those that can.
    #[test]
    fn store_on_another_kind_names_the_kinds_that_write_into_stores() {
        let table = toml::de::DeTable::parse("command = [\"/bin/true\"]\n").unwrap();
        let error = kind("exec")
            .unwrap()
            .parse(table, Some(Path::new("/run/backupctl/store/nas")), &[])
            .unwrap_err();
        let SpecError::Invalid { help, .. } = error else {
            panic!("{error:?}");
        };
        let writers = names(|entry| entry.writes_into_stores);
        assert_eq!(writers, ["rsync"]);
        assert_eq!(
            help.as_deref(),
            Some("`store = \"NAME\"` is for rsync stages; remove it")
        );
    }
}
