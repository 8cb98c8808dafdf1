//! The capability "can be drilled" ([`super::super::StageKind::DRILL`]): what a kind
//! provides so that a `drill` stage can verify its backups. The drill stage knows no kind: it
//! finds its target's [`Drillable`] through the registry, gives it a private scratch
//! directory, and reports what the target's [`Drillable::drill`] returns.
//!
//! A kind implements it in two steps:
//!
//! 1. `impl drill::Drillable for Spec`: [`Drillable::drill_needs`] (what the drill's unit
//!    needs to read the backup: its tools, secrets, credentials, network; the drill drops
//!    every write and capability) and [`Drillable::drill`]: restore the newest backup, or a
//!    sample of it, into `ctx.scratch` (a private directory under the state directory,
//!    removed afterwards) and verify what came back. Verifying is the kind's to say: a kind
//!    whose backups are files lists the newest backup's files ([`super::Backup`]) and hands
//!    them to [`super::verify_sample`], which restores a random sample through the kind's
//!    [`super::RestoreSample`] and compares each file byte for byte with the truth (the live
//!    source or a manifest); a database kind loads its newest dump into a throw-away server
//!    and checks it. Either way a failed verification is an `Err` (a
//!    `StageError::Counted` keeps the figures), a passed one the figures of the run.
//!    Optionally [`Drillable::drillable`] (this stage's config makes no drillable backup)
//!    and [`Drillable::check_drill`] (which of the drill's keys apply to this target).
//! 2. In its `impl StageKind`: `const DRILL: Option<Drill<Self>> = Some(Drill::of("a tar
//!    stage"))`, the words naming what can be drilled in the drill's messages.

use std::path::Path;

use super::Spec;
use crate::stages::{Needs, Outcome, SpecError, StageContext, StageError};

/// The capability as a kind declares it (see the module doc): how its spec is seen as a
/// [`Drillable`], and how the drill's messages name the kind's drillable stages.
pub struct Drill<K> {
    /// For messages: "a restic backup stage", "an rsync stage with a local destination".
    pub what: &'static str,
    target: fn(&K) -> &dyn Drillable,
}

impl<K: Drillable> Drill<K> {
    pub const fn of(what: &'static str) -> Drill<K> {
        Drill {
            what,
            target: as_drillable::<K>,
        }
    }
}

impl<K> Drill<K> {
    /// The spec as a drill target.
    pub fn target<'k>(&self, spec: &'k K) -> &'k dyn Drillable {
        (self.target)(spec)
    }
}

fn as_drillable<K: Drillable>(spec: &K) -> &dyn Drillable {
    spec
}

/// A stage whose newest backup a drill can restore and verify (see the module doc).
pub trait Drillable {
    /// Why this stage makes no backup a drill can verify (a restic stage that only prunes,
    /// an rsync stage with a remote destination); `Ok` when it does.
    fn drillable(&self) -> Result<(), String> {
        Ok(())
    }

    /// Checks the drill's keys against this target (git: `remote` is one of its local
    /// remotes). Default: a drill of this kind takes no `remote`.
    fn check_drill(&self, drill: &Spec) -> Result<(), SpecError> {
        drill.refuse_remote()
    }

    /// What the drill's unit needs to reach and read the backup. The drill keeps neither
    /// the writes nor the capabilities: it writes only its scratch directory.
    fn drill_needs(&self) -> Needs;

    /// Capabilities the drill's unit needs when it runs as root (a database drill that
    /// starts its throw-away server as another account); none by default.
    fn drill_capabilities(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Restores the newest backup (or a sample) into `ctx.scratch` and verifies it.
    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError>;
}

/// What a target's [`Drillable::drill`] gets.
pub struct DrillContext<'a> {
    /// The drill stage's run: its reporter, scope, state directory, environment.
    pub stage: &'a StageContext<'a>,
    /// The drill's keys: the sample's size, the truth (`manifest`), `remote`.
    pub drill: &'a Spec,
    /// A private, empty directory, removed after the drill (never /tmp: a unit's /tmp is
    /// private, `run --here`'s is shared).
    pub scratch: &'a Path,
}
