//! `[repository.NAME]`: a restic repository declared once — its location, password, backend
//! keys, options, `init` and retry/lock settings — which restic stages name with
//! `repository_name = "NAME"` and `copy` stages with `from`/`to`.
//!
//! A declared repository resolves into the same [`Spec`] fields the inline keys fill
//! ([`Repository::apply`]): everything downstream (the runner, `repo::environment`, `needs`,
//! restore, snapshots, mount, drills, the database stages that stream into a restic stage)
//! sees a restic spec as if the keys were written in the stage. The values keep the spans of
//! the repository's table, so an error in one points at its line there.

use std::ops::Range;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::spec::{Program, Spec};
use crate::stages::SpecError;

/// One `[repository.NAME]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// The table's name (set by the loader, not a key).
    #[serde(skip)]
    pub name: String,
    /// The location (not a secret), e.g. "/data/restic" or "rest:https://host/repo" (a
    /// stage's inline `repository`).
    pub location: Option<Spanned<String>>,
    /// A file holding the location (inline: `repository_file`).
    pub location_file: Option<Spanned<PathBuf>>,
    /// Like `location_file`, loaded as a systemd credential (inline: `repository_credential`).
    pub location_credential: Option<Spanned<PathBuf>>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub password_command: Option<Spanned<Vec<String>>>,
    pub password_credential: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub backend_files: IndexMap<String, Spanned<PathBuf>>,
    #[serde(default)]
    pub backend_credentials: IndexMap<String, Spanned<PathBuf>>,
    pub options: Option<Spanned<Vec<String>>>,
    pub init: Option<Spanned<bool>>,
    pub restic_binary: Option<Spanned<Program>>,
    pub retries: Option<Spanned<u32>>,
    pub retry_delay: Option<Spanned<String>>,
    /// How long a stage waits for this repository's lock (a systemd time span); read by the
    /// stage's resolved `lock_wait`.
    pub lock_wait: Option<Spanned<String>>,
}

/// The declared repositories of a config, in file order.
pub type Repositories = [Repository];

impl Repository {
    /// The repository as a restic spec of its own (no stage keys): what `check` validates
    /// and what a `copy` stage reads and writes through.
    pub fn spec(&self) -> Spec {
        let mut spec = Spec::default();
        self.fill(&mut spec);
        spec
    }

    /// Checks the table on its own, whether or not a stage names it: a location, a password,
    /// absolute secret files, valid time spans.
    pub fn check(&self) -> Result<(), SpecError> {
        let span = |s: &Option<Spanned<PathBuf>>| s.as_ref().map(|s| Some(s.span()));
        super::validate::one_of(
            [
                ("location", self.location.as_ref().map(|s| Some(s.span()))),
                ("location_file", span(&self.location_file)),
                ("location_credential", span(&self.location_credential)),
            ],
            &format!(
                "repository `{}` needs `location`, `location_file` or `location_credential`",
                self.name
            ),
            "e.g. location = \"/data/restic\" or location_file = \"/etc/backupctl/b2-repository\"",
        )?;
        super::validate::one_of(
            [
                ("password_file", span(&self.password_file)),
                (
                    "password_command",
                    self.password_command.as_ref().map(|s| Some(s.span())),
                ),
                ("password_credential", span(&self.password_credential)),
            ],
            &format!(
                "repository `{}` needs `password_file`, `password_command` or `password_credential`",
                self.name
            ),
            "e.g. password_file = \"/etc/backupctl/restic-password\" (mode 0600)",
        )?;
        super::validate::repository_checks(&self.spec())
    }

    /// Fills the repository keys of `spec`, which names this repository
    /// (`repository_name`, at `reference`): a key set in both places is refused, pointing at
    /// the stage's (or its default's) line and at the reference.
    pub fn apply(&self, spec: &mut Spec, reference: Range<usize>) -> Result<(), SpecError> {
        if let Some((key, span)) = inline_repository_key(spec) {
            return Err(SpecError::Conflict {
                span,
                other: reference,
                message: format!(
                    "`{key}` is a repository key, and this stage names the declared repository `{}`",
                    self.name
                ),
                help: format!(
                    "keep the repository's keys in [repository.{}] and remove `{key}` here, or \
                     remove `repository_name` to give every repository key in the stage",
                    self.name
                ),
            });
        }
        self.fill(spec);
        Ok(())
    }

    fn fill(&self, spec: &mut Spec) {
        spec.repository = self.location.clone();
        spec.repository_file = self.location_file.clone();
        spec.repository_credential = self.location_credential.clone();
        spec.password_file = self.password_file.clone();
        spec.password_command = self.password_command.clone();
        spec.password_credential = self.password_credential.clone();
        spec.backend_files = self.backend_files.clone();
        spec.backend_credentials = self.backend_credentials.clone();
        spec.options = self
            .options
            .as_ref()
            .map(|options| options.get_ref().clone())
            .unwrap_or_default();
        spec.init = self.init.as_ref().is_some_and(|init| *init.get_ref());
        spec.restic_binary = self.restic_binary.clone();
        spec.retries = self.retries.as_ref().map(|retries| *retries.get_ref());
        spec.retry_delay = self.retry_delay.clone();
        spec.lock_wait = self.lock_wait.clone();
    }
}

/// The first repository key a stage gives itself (inline), with its span when it has one.
/// Keys serde reads without a span (`options`, `init`, `retries`) are reported at the
/// reference (`None` → the caller's span).
fn inline_repository_key(spec: &Spec) -> Option<(&'static str, Range<usize>)> {
    let spanned = [
        ("repository", spec.repository.as_ref().map(Spanned::span)),
        (
            "repository_file",
            spec.repository_file.as_ref().map(Spanned::span),
        ),
        (
            "repository_credential",
            spec.repository_credential.as_ref().map(Spanned::span),
        ),
        (
            "password_file",
            spec.password_file.as_ref().map(Spanned::span),
        ),
        (
            "password_command",
            spec.password_command.as_ref().map(Spanned::span),
        ),
        (
            "password_credential",
            spec.password_credential.as_ref().map(Spanned::span),
        ),
        (
            "restic_binary",
            spec.restic_binary.as_ref().map(Spanned::span),
        ),
        ("retry_delay", spec.retry_delay.as_ref().map(Spanned::span)),
        ("lock_wait", spec.lock_wait.as_ref().map(Spanned::span)),
        (
            "backend_files",
            spec.backend_files.values().next().map(Spanned::span),
        ),
        (
            "backend_credentials",
            spec.backend_credentials.values().next().map(Spanned::span),
        ),
    ];
    if let Some(found) = spanned
        .into_iter()
        .find_map(|(key, span)| span.map(|span| (key, span)))
    {
        return Some(found);
    }
    let unspanned = [
        ("options", !spec.options.is_empty()),
        ("init", spec.init),
        ("retries", spec.retries.is_some()),
    ];
    unspanned
        .into_iter()
        .find(|(_, set)| *set)
        .map(|(key, _)| (key, 0..0))
}

/// The declared repository a key (`repository_name`, `from`, `to`) names, or an error
/// listing the declared ones.
pub fn find<'r>(
    repositories: &'r Repositories,
    name: &Spanned<String>,
    key: &str,
) -> Result<&'r Repository, SpecError> {
    repositories
        .iter()
        .find(|repository| repository.name == *name.get_ref())
        .ok_or_else(|| {
            let declared: Vec<&str> = repositories.iter().map(|r| r.name.as_str()).collect();
            SpecError::invalid(
                Some(name.span()),
                format!(
                    "`{key}` names repository `{}`, which is not declared",
                    name.get_ref()
                ),
                if declared.is_empty() {
                    format!(
                        "declare it: [repository.{}] with `location` and `password_file`",
                        name.get_ref()
                    )
                } else {
                    format!("declared repositories: {}", declared.join(", "))
                },
            )
        })
}
