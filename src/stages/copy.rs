//! `copy`: `restic copy` from one declared repository to another (the second and third copy
//! of a 3-2-1 setup), then the target's retention.
//!
//! Both repositories are `[repository.NAME]` tables (`from`, `to`), resolved into restic
//! specs when the stage is read ([`StageKind::declared`]). restic 0.14 takes the target as
//! the repository it works on and the source through its `RESTIC_FROM_*` variables (the
//! `--from-repo`/`--from-password-file` flags' environment twins), so no location or
//! password reaches argv; the source's credentials load under their own names
//! (`repo::FROM`). `restic copy` copies only the snapshots the target lacks (it recognises
//! earlier copies by their original id), so a second run copies nothing. A missing target
//! is created with the source's chunker parameters (`init --copy-chunker-params`), which
//! keeps deduplication between copies.
//!
//! A drill of a copy stage reads the target: the newest snapshot the copy's filters pick,
//! restored and compared with the files it was made from, as a drill of the backup stage
//! would (`restore`, `snapshots` and `mount` read the target too).

use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

use super::drill::{self, DrillContext, Drillable};
use super::restic::{self, Keep, declared, repo};
use super::verbs::{Listing, MountArgs, RestoreArgs, SnapshotsArgs, Verb, VerbContext};
use super::{Needs, Outcome, Repositories, SpecError, StageContext, StageError, StageKind};
use crate::repo_lock::{Mode, RepositoryUse};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The declared repository snapshots are copied from.
    pub from: Spanned<String>,
    /// The declared repository they are copied into.
    pub to: Spanned<String>,
    /// Only snapshots of this host (`--host`); also what retention in the target selects.
    pub host: Option<String>,
    /// Only snapshots holding all these tags (`--tag`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only snapshots of these paths (`--path`).
    pub paths: Option<Spanned<Vec<Spanned<PathBuf>>>>,
    /// Retention in the target after the copy (`restic forget`), as a restic stage's `keep`.
    pub keep: Option<Spanned<Keep>>,
    /// Extra arguments for that `restic forget`, e.g. ["--group-by", "host"].
    pub forget_args: Option<Spanned<Vec<String>>>,

    /// The source repository as restic reads it (from `from`).
    #[serde(skip)]
    pub source: Box<restic::Spec>,
    /// The target repository with the copy's filters and retention (from `to`): what the
    /// copy, its retention, a drill and `restore` work on.
    #[serde(skip)]
    pub target: Box<restic::Spec>,
}

impl StageKind for Spec {
    const NAME: &'static str = "copy";
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(restore);
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(snapshots);
    const MOUNT: Option<Verb<Self, MountArgs>> = Some(mount);
    const DRILL: Option<drill::Drill<Self>> = Some(drill::Drill::of("a copy stage"));

    fn declared(&mut self, repositories: &Repositories) -> Result<(), SpecError> {
        let from = declared::find(repositories, &self.from, "from")?;
        let to = declared::find(repositories, &self.to, "to")?;
        if from.name == to.name {
            return Err(SpecError::invalid(
                Some(self.to.span()),
                "`from` and `to` name the same repository",
                "copy into another declared repository, e.g. from = \"local\", to = \"offsite\"",
            ));
        }
        let source = from.spec();
        let mut target = to.spec();
        for (var, path) in source
            .backend_files
            .iter()
            .chain(&source.backend_credentials)
        {
            let theirs = target
                .backend_files
                .get(var)
                .or_else(|| target.backend_credentials.get(var));
            if theirs.is_some_and(|theirs| theirs.get_ref() != path.get_ref()) {
                return Err(SpecError::Conflict {
                    span: path.span(),
                    other: self.to.span(),
                    message: format!(
                        "both repositories of the copy set the backend variable {var}, to different files"
                    ),
                    help: "restic copy gives both repositories one environment: use one key \
                           for both, or copy through a repository that needs none"
                        .into(),
                });
            }
        }
        // restic's -o options apply to both repositories of one command.
        for option in &source.options {
            if !target.options.contains(option) {
                target.options.push(option.clone());
            }
        }
        target.host = self.host.clone();
        target.tags = self.tags.clone();
        target.paths = self.paths.clone();
        target.keep = self.keep.clone();
        target.forget_args = self.forget_args.clone();
        *self.source = source;
        *self.target = target;
        Ok(())
    }

    fn validate(&self) -> Result<(), SpecError> {
        if let Some(paths) = &self.paths {
            super::require_absolute(paths.get_ref(), "paths")?;
        }
        if let Some(args) = &self.forget_args
            && self.keep.is_none()
        {
            return Err(SpecError::invalid(
                Some(args.span()),
                "`forget_args` is for the retention after the copy, which runs only with `keep`",
                "add keep = { daily = 7, … } to this stage, or remove `forget_args`",
            ));
        }
        // The target's retention keys as a restic stage checks them.
        StageKind::validate(&self.retention_view())
    }

    fn needs(&self) -> Needs {
        let mut needs = self.repositories_view().needs_as(repo::OWN);
        let mut source = self.source.needs_as(repo::FROM);
        // A backend key both repositories share (checked equal at load) loads once.
        source
            .credentials
            .retain(|credential| !needs.credentials.iter().any(|c| c.0 == credential.0));
        needs.merge(source);
        needs
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let from = repo::environment_as(&self.source, ctx.scope, repo::FROM)?;
        let copied = Cell::new(0_u64);
        let skipped = Cell::new(0_u64);
        let target = self.repositories_view();
        restic::run_with(&target, ctx, from, &["--copy-chunker-params"], &|runner| {
            ctx.report.status(&format!(
                "restic: copying snapshots from {} to {}",
                self.from.get_ref(),
                self.to.get_ref()
            ));
            copied.set(0);
            skipped.set(0);
            let mut args = vec!["copy".to_string()];
            args.extend(self.filter_args());
            runner.restic_seeing("copy", args, &[], &|line| {
                if line.starts_with("skipping source snapshot") {
                    skipped.set(skipped.get() + 1);
                } else if line.starts_with("snapshot ") && line.ends_with(" saved") {
                    copied.set(copied.get() + 1);
                }
            })?;
            tracing::info!(
                backupctl_snapshots_copied = copied.get(),
                backupctl_snapshots_skipped = skipped.get(),
                "restic copy: {} snapshot(s) copied from {} to {}, {} already there",
                copied.get(),
                self.from.get_ref(),
                self.to.get_ref(),
                skipped.get()
            );
            if self.keep.is_some() {
                // restic's forget locks the target exclusively: ours too, after letting go
                // of the source, so two copies in opposite directions cannot deadlock.
                if let Some(source) = self.source_use() {
                    ctx.repositories.release(&source);
                }
                if let Some(exclusive) = target.repository_use(Mode::Exclusive) {
                    ctx.hold_repository(&exclusive)?;
                }
                ctx.report
                    .status("restic: applying the target's retention (forget)");
                runner.restic("forget", self.target.forget_arguments(false), &[])?;
            }
            Ok(Outcome::default())
        })
    }

    /// Both repositories, shared: restic copy locks each non-exclusively.
    fn repositories(&self) -> Vec<RepositoryUse> {
        let target = self.repositories_view().repository_use(Mode::Shared);
        target.into_iter().chain(self.source_use()).collect()
    }
}

impl Spec {
    /// The source repository, read (shared), under the credential names of a copy's source.
    fn source_use(&self) -> Option<RepositoryUse> {
        self.source.repository_use_as(Mode::Shared, repo::FROM)
    }

    /// `--host`, `--tag` and `--path` of the copy's filters.
    fn filter_args(&self) -> Vec<String> {
        self.target
            .own_snapshots_args()
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    /// The target as a restic spec of its repository only (no filters, no sources): what
    /// the copy's unit needs to reach it, and how restic is run on it.
    fn repositories_view(&self) -> restic::Spec {
        restic::Spec {
            host: None,
            tags: Vec::new(),
            paths: None,
            ..(*self.target).clone()
        }
    }

    /// The target as a forget stage would be: what its retention keys must pass.
    fn retention_view(&self) -> restic::Spec {
        restic::Spec {
            operation: if self.keep.is_some() {
                restic::Operation::Forget
            } else {
                restic::Operation::Check
            },
            paths: None,
            ..(*self.target).clone()
        }
    }
}

/// The drill reads the target as it would the backup stage's repository.
impl Drillable for Spec {
    fn drill_needs(&self) -> Needs {
        self.target.drill_needs()
    }

    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError> {
        self.target.drill(ctx)
    }
}

fn restore(spec: &Spec, ctx: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let verb = <restic::Spec as StageKind>::RESTORE.expect("restic stages restore");
    verb(&spec.target, ctx, args)
}

fn snapshots(spec: &Spec, ctx: &VerbContext, args: &SnapshotsArgs) -> anyhow::Result<Listing> {
    let verb = <restic::Spec as StageKind>::SNAPSHOTS.expect("restic stages list snapshots");
    verb(&spec.target, ctx, args)
}

fn mount(spec: &Spec, ctx: &VerbContext, args: &MountArgs) -> anyhow::Result<ExitCode> {
    let verb = <restic::Spec as StageKind>::MOUNT.expect("restic stages mount");
    verb(&spec.target, ctx, args)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const REPOSITORIES: &str = r#"
[repository.local]
location = "/srv/restic"
password_file = "/etc/backupctl/local.pass"

[repository.offsite]
location = "rest:https://backup.example.net/web1/"
password_credential = "/etc/credstore/offsite.pass"
options = ["rest.connections=2"]
"#;

    fn load(stage: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse(
            Path::new("/etc/backupctl/backup.toml"),
            &format!("{REPOSITORIES}\n[stage.offsite]\nkind = \"copy\"\n{stage}"),
        )
    }

    #[test]
    fn the_copy_reads_the_source_through_from_variables_and_needs_both_secrets() {
        let config = load(
            "from = \"local\"\nto = \"offsite\"\nhost = \"web1\"\ntags = [\"daily\"]\nkeep = { daily = 7 }\n",
        )
        .unwrap();
        let spec = config.stages[0].spec.downcast_ref::<Spec>().unwrap();
        assert_eq!(
            spec.filter_args(),
            ["--host", "web1", "--tag", "daily"].map(String::from)
        );
        let env =
            repo::environment_as(&spec.source, crate::paths::Scope::System, repo::FROM).unwrap();
        let names: Vec<_> = env.iter().map(|(k, _)| k.to_string_lossy()).collect();
        assert!(
            names.contains(&"RESTIC_FROM_REPOSITORY".into()),
            "{names:?}"
        );
        assert!(
            names.contains(&"RESTIC_FROM_PASSWORD_FILE".into()),
            "{names:?}"
        );
        let needs = StageKind::needs(spec);
        assert_eq!(needs.writes, [PathBuf::from("/srv/restic")]);
        assert!(needs.network);
        assert!(needs.secrets.contains(&"/etc/backupctl/local.pass".into()));
        assert!(needs.credentials.contains(&(
            "restic-password".into(),
            "/etc/credstore/offsite.pass".into()
        )));
        assert!(needs.sources.is_empty(), "a copy reads no local files");
        assert_eq!(
            spec.target.forget_arguments(false),
            [
                "forget",
                "--host",
                "web1",
                "--tag",
                "daily",
                "--keep-daily",
                "7"
            ]
            .map(String::from)
        );
    }

    #[test]
    fn the_same_repository_twice_and_unknown_names_are_refused() {
        let error = load("from = \"local\"\nto = \"local\"\n").unwrap_err();
        assert!(error.message.contains("the same repository"), "{error}");
        let error = load("from = \"local\"\nto = \"elsewhere\"\n").unwrap_err();
        assert!(error.message.contains("not declared"), "{error}");
        assert!(error.help.unwrap().contains("local, offsite"));
    }
}
