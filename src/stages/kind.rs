//! The one trait a stage kind implements ([`StageKind`]), the registry entry built from it
//! ([`Entry`]), and the kind-erased spec a config holds ([`KindSpec`], an [`AnyKind`]).
//!
//! A kind's name, checks, needs, run and optional capabilities are all declared in its
//! `impl StageKind`; [`Entry::of`] reads them from there, so the registry
//! ([`super::KINDS`]) and the commands can never disagree with the kind's file.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::DeTable;

use super::drill::{Drill, Drillable};
use super::verbs::{
    HistoryArgs, Listing, MountArgs, RestoreArgs, SnapshotsArgs, Verb, VerbContext,
};
use super::{Needs, Outcome, Repositories, SpecError, StageContext, StageError};
use crate::repo_lock::RepositoryUse;

/// What one stage kind is and does. Implemented by the kind's `Spec`: its keys, as serde
/// reads them from the stage's table (strict about unknown keys).
pub trait StageKind:
    DeserializeOwned + fmt::Debug + Clone + PartialEq + Send + Sync + 'static
{
    /// The kind's name, as written in `kind = "…"`.
    const NAME: &'static str;

    /// The kind reads local sources ([`Needs::sources`]) that `snapshot = "btrfs"` can
    /// snapshot (its help lists these kinds).
    const READS_LOCAL_SOURCES: bool = false;

    /// The kind's bandwidth keys (`upload_limit`, `bandwidth`, …), which a job's key of the
    /// same name gives a default to: a stage without the key takes its job's. Empty: the
    /// kind limits no bandwidth.
    const BANDWIDTH_KEYS: &'static [&'static str] = &[];

    /// Places the stage's destination inside a store's mount point (`root`; the stage has
    /// `store = "NAME"`); runs before [`StageKind::validate`]. `None`: the kind cannot write
    /// into a store, and `store` is refused naming the kinds that can.
    const PLACE_IN_STORE: Option<PlaceInStore<Self>> = None;

    /// `backupctl restore STAGE`: files back from the backup. `None`: the kind cannot.
    const RESTORE: Option<Verb<Self, RestoreArgs>> = None;
    /// `backupctl history STAGE [PATH]`: the versions the backup holds. `None`: it cannot.
    const HISTORY: Option<Verb<Self, HistoryArgs>> = None;
    /// `backupctl snapshots STAGE`: the snapshots it keeps. `None`: it keeps none.
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = None;
    /// `backupctl mount STAGE DIR`: the backup as a file system. `None`: it cannot.
    const MOUNT: Option<Verb<Self, MountArgs>> = None;
    /// `kind = "drill"`: a drill stage can restore the newest backup of a stage of this kind
    /// into a private scratch directory and verify it. `None`: it cannot (a drill naming
    /// such a stage is refused at load, with the kinds that can).
    ///
    /// A kind that can implements [`Drillable`] for its `Spec` (see
    /// `stages::drill::target`): `drill_needs`, what the drill's unit needs to read the
    /// backup (its tools, secrets, credentials, network; never writes); `drill`, which gets
    /// the newest backup, or a sample of it, back into the scratch directory it is given and
    /// verifies it (files: through `drill::verify_sample`, byte for byte against the source
    /// or a manifest; a database: loaded into a throw-away server and checked), returning
    /// the figures or failing; optionally `drillable` (this stage's config makes no backup
    /// to drill) and `check_drill` (the drill's keys that apply to it). Then
    /// `const DRILL: Option<Drill<Self>> = Some(Drill::of("a tar stage"));`, the words
    /// naming its drillable stages in messages.
    const DRILL: Option<Drill<Self>> = None;

    /// Checks relations between keys that serde cannot (e.g. "one of a or b").
    fn validate(&self) -> Result<(), SpecError> {
        Ok(())
    }

    /// Takes what the stage names of the declared repositories (`[repository.NAME]`) into
    /// its spec, right after its keys are read and before [`StageKind::validate`]. Default:
    /// the kind names none.
    fn declared(&mut self, _repositories: &Repositories) -> Result<(), SpecError> {
        Ok(())
    }

    /// Resolves what the stage refers to in other stages (e.g. the stage a drill verifies),
    /// once every stage is parsed: `stages` holds every stage's name and spec.
    fn resolve(&mut self, _stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        Ok(())
    }

    /// The stage whose backup this one reads (a drill's target): when that stage writes into
    /// a store, this one's unit opens the same store.
    fn reads_backup_of(&self) -> Option<&str> {
        None
    }

    /// What the stage's unit must allow, and what `hello` checks before a run.
    fn needs(&self) -> Needs;

    /// Needs that span the stage's whole job: given what the job's stages need together
    /// ([`super::job_needs`]), what this stage's unit needs on top of its own. `None` (the
    /// default): only its own. `hello` probes the job's destinations (their writes and
    /// network); each of those paths stays its own stage's (`check` reports it there).
    const JOB_NEEDS: Option<fn(&Self, &Needs) -> Needs> = None;

    /// Local paths the stage reads besides [`Needs::sources`] (those no snapshot covers,
    /// e.g. an exclude file): `check` refuses them where the sandbox would hide them.
    fn other_reads(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// What the stage leaves out of its [`Needs::sources`] (`backupctl coverage`). Default:
    /// nothing.
    fn excludes(&self) -> ToolExcludes {
        ToolExcludes::default()
    }

    /// Runs the stage. Progress goes to `ctx.report`; figures for the summary are returned.
    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError>;

    /// What the stage is for, as the metrics' `purpose` label tells alert rules (a failed
    /// repository check and a failed backup are different alerts).
    fn purpose(&self) -> Purpose {
        Purpose::Backup
    }

    /// The restic repositories the stage touches and in which mode it starts
    /// ([`crate::repo_lock`]: shared to add or read, exclusive to remove or check). The
    /// executor holds their locks before [`StageKind::run`], waiting for the stages in the
    /// way; a later step that needs another mode calls `ctx.repositories.hold`. Default:
    /// none. A kind that reaches two (a copy: source and target) lists both.
    fn repositories(&self) -> Vec<RepositoryUse> {
        Vec::new()
    }

    /// The bandwidth limits the stage's tool runs under (`upload_limit`, …), for `check
    /// --verbose` and `hello`. Default: none.
    fn bandwidth(&self) -> Vec<crate::bandwidth::Applied<'_>> {
        Vec::new()
    }

    /// `backupctl hello`'s checks of the server the stage talks to (a database kind: it
    /// connects with the configured authentication, its dump tool can dump this server),
    /// one table line each; none by default. Private files go into `state_dir`.
    fn server_checks(&self, _state_dir: &Path, _stage: &str) -> Vec<crate::preflight::Check> {
        Vec::new()
    }
}

/// See [`StageKind::PLACE_IN_STORE`]: the spec, and the store's mount point.
pub type PlaceInStore<K> = fn(&mut K, &Path) -> Result<(), SpecError>;

/// What a stage leaves out of its sources, as its tool is told (see [`StageKind::excludes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolExcludes {
    /// Whose pattern syntax `patterns` follow.
    pub dialect: Dialect,
    /// Patterns as written in the config (`exclude`).
    pub patterns: Vec<String>,
    /// Files holding more patterns, one a line (`exclude_from`, `exclude_file`).
    pub files: Vec<PathBuf>,
    /// Directories holding a valid `CACHEDIR.TAG` are left out (`exclude_caches`).
    pub exclude_caches: bool,
}

/// The pattern syntax of [`ToolExcludes::patterns`] (see [`crate::patterns`]).
pub use crate::patterns::Dialect;

/// What a stage is for (the `purpose` label of `backupctl_stage_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Checks before the backups (`hello`).
    Preflight,
    /// Copies or backs up data.
    Backup,
    /// Keeps a backup in shape: retention, pruning.
    Maintenance,
    /// Verifies a repository's integrity.
    Check,
    /// Restores a sample and compares it with the source.
    Drill,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Preflight => "preflight",
            Purpose::Backup => "backup",
            Purpose::Maintenance => "maintenance",
            Purpose::Check => "check",
            Purpose::Drill => "drill",
        }
    }
}

/// What a command can do with a kind's backups (the optional parts of [`StageKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Restore,
    History,
    Snapshots,
    Mount,
    /// A `drill` stage can verify its backups ([`StageKind::DRILL`]).
    Drill,
}

impl Capability {
    pub const ALL: [Capability; 5] = [
        Capability::Restore,
        Capability::History,
        Capability::Snapshots,
        Capability::Mount,
        Capability::Drill,
    ];

    /// What uses it: the command (`restore`, …), or `drill` for the stage kind that does.
    pub fn verb(self) -> &'static str {
        match self {
            Capability::Restore => "restore",
            Capability::History => "history",
            Capability::Snapshots => "snapshots",
            Capability::Mount => "mount",
            Capability::Drill => "drill",
        }
    }
}

/// How an [`Entry`] reads a stage's kind-specific keys (see [`Entry::parse`]).
type ParseFn = fn(Spanned<DeTable>, Option<&Path>, &Repositories) -> Result<KindSpec, SpecError>;

/// A stage kind as the registry lists it; built by [`Entry::of`] from the kind's
/// [`StageKind`] impl.
pub struct Entry {
    /// As written in `kind = "…"`.
    pub name: &'static str,
    /// See [`StageKind::READS_LOCAL_SOURCES`].
    pub reads_local_sources: bool,
    /// See [`StageKind::PLACE_IN_STORE`].
    pub writes_into_stores: bool,
    /// See [`StageKind::BANDWIDTH_KEYS`].
    pub bandwidth_keys: &'static [&'static str],
    capabilities: [bool; Capability::ALL.len()],
    /// See [`Drill::what`].
    drill_what: Option<&'static str>,
    parse: ParseFn,
}

impl Entry {
    pub const fn of<K: StageKind>() -> Entry {
        Entry {
            name: K::NAME,
            reads_local_sources: K::READS_LOCAL_SOURCES,
            writes_into_stores: K::PLACE_IN_STORE.is_some(),
            bandwidth_keys: K::BANDWIDTH_KEYS,
            // In the order of `Capability::ALL`.
            capabilities: [
                K::RESTORE.is_some(),
                K::HISTORY.is_some(),
                K::SNAPSHOTS.is_some(),
                K::MOUNT.is_some(),
                K::DRILL.is_some(),
            ],
            drill_what: match &K::DRILL {
                Some(drill) => Some(drill.what),
                None => None,
            },
            parse: parse::<K>,
        }
    }

    pub fn can(&self, capability: Capability) -> bool {
        self.capabilities[capability as usize]
    }

    /// How a drill's messages name this kind's drillable stages; `None`: it cannot be
    /// drilled.
    pub fn drill_what(&self) -> Option<&'static str> {
        self.drill_what
    }

    /// Deserializes and checks the kind-specific keys of a stage. `store_root`: the mount
    /// point of the store the stage writes into (`store = "NAME"`); `repositories`: the
    /// config's declared repositories.
    pub fn parse(
        &self,
        table: Spanned<DeTable>,
        store_root: Option<&Path>,
        repositories: &Repositories,
    ) -> Result<KindSpec, SpecError> {
        (self.parse)(table, store_root, repositories)
    }
}

fn parse<K: StageKind>(
    table: Spanned<DeTable>,
    store_root: Option<&Path>,
    repositories: &Repositories,
) -> Result<KindSpec, SpecError> {
    let mut spec = K::deserialize(table.into_deserializer()).map_err(SpecError::Toml)?;
    spec.declared(repositories)?;
    if let Some(root) = store_root {
        let Some(place) = K::PLACE_IN_STORE else {
            return Err(SpecError::invalid(
                None,
                "this kind of stage cannot write into a store",
                format!(
                    "`store = \"NAME\"` is for {} stages; remove it",
                    super::names(|entry| entry.writes_into_stores).join(" and ")
                ),
            ));
        };
        place(&mut spec, root)?;
    }
    spec.validate()?;
    Ok(KindSpec(Box::new(spec)))
}

/// A [`StageKind`] with its kind erased, so that one type holds any (see [`KindSpec`]).
/// The capabilities answer `None` where the kind has none.
pub trait AnyKind: fmt::Debug + Send + Sync {
    /// The kind's name, as written in `kind = "…"`.
    fn name(&self) -> &'static str;
    /// See [`StageKind::resolve`].
    fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError>;
    /// See [`StageKind::reads_backup_of`].
    fn reads_backup_of(&self) -> Option<&str>;
    /// See [`StageKind::needs`].
    fn needs(&self) -> Needs;
    /// See [`StageKind::JOB_NEEDS`]; `job` computes the job's needs, called only when the
    /// kind has such needs.
    fn job_needs(&self, job: &dyn Fn() -> Needs) -> Needs;
    /// See [`StageKind::other_reads`].
    fn other_reads(&self) -> Vec<PathBuf>;
    /// See [`StageKind::excludes`].
    fn excludes(&self) -> ToolExcludes;
    /// See [`StageKind::run`].
    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError>;
    /// See [`StageKind::purpose`].
    fn purpose(&self) -> Purpose;
    /// See [`StageKind::repositories`].
    fn repositories(&self) -> Vec<RepositoryUse>;
    /// See [`StageKind::bandwidth`].
    fn bandwidth(&self) -> Vec<crate::bandwidth::Applied<'_>>;
    /// See [`StageKind::server_checks`].
    fn server_checks(&self, state_dir: &Path, stage: &str) -> Vec<crate::preflight::Check>;
    fn restore(&self, ctx: &VerbContext, args: &RestoreArgs) -> Option<anyhow::Result<ExitCode>>;
    fn history(&self, ctx: &VerbContext, args: &HistoryArgs) -> Option<anyhow::Result<ExitCode>>;
    fn snapshots(&self, ctx: &VerbContext, args: &SnapshotsArgs)
    -> Option<anyhow::Result<Listing>>;
    fn mount(&self, ctx: &VerbContext, args: &MountArgs) -> Option<anyhow::Result<ExitCode>>;
    /// See [`StageKind::DRILL`]: the spec as a drill's target.
    fn drill(&self) -> Option<&dyn Drillable>;
    fn as_any(&self) -> &dyn Any;
    fn clone_box(&self) -> Box<dyn AnyKind>;
    fn eq_dyn(&self, other: &dyn AnyKind) -> bool;
}

impl<K: StageKind> AnyKind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        StageKind::resolve(self, stages)
    }
    fn reads_backup_of(&self) -> Option<&str> {
        StageKind::reads_backup_of(self)
    }
    fn needs(&self) -> Needs {
        StageKind::needs(self)
    }
    fn job_needs(&self, job: &dyn Fn() -> Needs) -> Needs {
        K::JOB_NEEDS.map_or_else(Needs::default, |needs| needs(self, &job()))
    }
    fn other_reads(&self) -> Vec<PathBuf> {
        StageKind::other_reads(self)
    }
    fn excludes(&self) -> ToolExcludes {
        StageKind::excludes(self)
    }
    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        StageKind::run(self, ctx)
    }
    fn purpose(&self) -> Purpose {
        StageKind::purpose(self)
    }
    fn repositories(&self) -> Vec<RepositoryUse> {
        StageKind::repositories(self)
    }
    fn bandwidth(&self) -> Vec<crate::bandwidth::Applied<'_>> {
        StageKind::bandwidth(self)
    }
    fn server_checks(&self, state_dir: &Path, stage: &str) -> Vec<crate::preflight::Check> {
        StageKind::server_checks(self, state_dir, stage)
    }
    fn restore(&self, ctx: &VerbContext, args: &RestoreArgs) -> Option<anyhow::Result<ExitCode>> {
        K::RESTORE.map(|verb| verb(self, ctx, args))
    }
    fn history(&self, ctx: &VerbContext, args: &HistoryArgs) -> Option<anyhow::Result<ExitCode>> {
        K::HISTORY.map(|verb| verb(self, ctx, args))
    }
    fn snapshots(
        &self,
        ctx: &VerbContext,
        args: &SnapshotsArgs,
    ) -> Option<anyhow::Result<Listing>> {
        K::SNAPSHOTS.map(|verb| verb(self, ctx, args))
    }
    fn mount(&self, ctx: &VerbContext, args: &MountArgs) -> Option<anyhow::Result<ExitCode>> {
        K::MOUNT.map(|verb| verb(self, ctx, args))
    }
    fn drill(&self) -> Option<&dyn Drillable> {
        K::DRILL.as_ref().map(|drill| drill.target(self))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn clone_box(&self) -> Box<dyn AnyKind> {
        Box::new(self.clone())
    }
    fn eq_dyn(&self, other: &dyn AnyKind) -> bool {
        other.as_any().downcast_ref::<K>() == Some(self)
    }
}

impl dyn AnyKind {
    /// The spec as its own kind's type, when it is of kind `K` (for tests and for code that
    /// belongs to that kind).
    pub fn downcast_ref<K: StageKind>(&self) -> Option<&K> {
        self.as_any().downcast_ref()
    }
}

/// A stage's validated keys, whatever its kind: what `config::Stage::kind` holds. Derefs to
/// [`AnyKind`]; compares and clones as the kind's own `Spec` does.
#[derive(Debug)]
pub struct KindSpec(Box<dyn AnyKind>);

impl KindSpec {
    /// See [`StageKind::resolve`]; the config loader calls it once all stages are parsed.
    pub fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        self.0.resolve(stages)
    }
}

impl std::ops::Deref for KindSpec {
    type Target = dyn AnyKind;

    fn deref(&self) -> &(dyn AnyKind + 'static) {
        self.0.as_ref()
    }
}

impl Clone for KindSpec {
    fn clone(&self) -> Self {
        KindSpec(self.0.clone_box())
    }
}

impl PartialEq for KindSpec {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_dyn(other.0.as_ref())
    }
}
