//! `restic`: back up paths into a restic repository. The repository and password come from
//! files or commands, handed to restic through its `*_FILE` / `*_COMMAND` environment
//! variables, so no secret is ever in argv, a unit file or the journal.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Kind, Needs, Outcome, SpecError, StageError, require_absolute};
use crate::executor::StageContext;
use crate::process::Command;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The repository location (not a secret), e.g. "/data/restic" or "sftp:host:/repo".
    pub repository: Option<Spanned<String>>,
    /// A file holding the repository location (it may embed credentials).
    pub repository_file: Option<Spanned<PathBuf>>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// A command printing the password, e.g. ["pass", "show", "restic"].
    pub password_command: Option<Spanned<Vec<String>>>,
    pub paths: Spanned<Vec<Spanned<PathBuf>>>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl Spec {
    fn is_local(&self) -> bool {
        self.repository.as_ref().is_some_and(|repo| {
            repo.get_ref().starts_with('/') || repo.get_ref().starts_with("local:")
        })
    }
}

impl Kind for Spec {
    fn validate(&self) -> Result<(), SpecError> {
        match (&self.repository, &self.repository_file) {
            (None, None) => {
                return Err(SpecError::invalid(
                    None,
                    "a restic stage needs `repository` or `repository_file`",
                    "e.g. repository = \"/data/restic\" or repository_file = \"/etc/backupctl/b2-repository\"",
                ));
            }
            (Some(_), Some(file)) => {
                return Err(SpecError::invalid(
                    Some(file.span()),
                    "give either `repository` or `repository_file`, not both",
                    "remove one of them",
                ));
            }
            _ => {}
        }
        match (&self.password_file, &self.password_command) {
            (None, None) => {
                return Err(SpecError::invalid(
                    None,
                    "a restic stage needs `password_file` or `password_command`",
                    "e.g. password_file = \"/etc/backupctl/restic-password\" (mode 0600)",
                ));
            }
            (Some(_), Some(command)) => {
                return Err(SpecError::invalid(
                    Some(command.span()),
                    "give either `password_file` or `password_command`, not both",
                    "remove one of them",
                ));
            }
            _ => {}
        }
        if self.paths.get_ref().is_empty() {
            return Err(SpecError::invalid(
                Some(self.paths.span()),
                "`paths` is empty",
                "list what to back up, e.g. paths = [\"/home\", \"/etc\"]",
            ));
        }
        require_absolute(self.paths.get_ref(), "paths")
    }

    fn needs(&self) -> Needs {
        let local = self.is_local();
        let repository = self
            .repository
            .as_ref()
            .map(|r| r.get_ref().trim_start_matches("local:"));
        Needs {
            writes: match repository {
                Some(repo) if local => vec![PathBuf::from(repo)],
                _ => vec![],
            },
            network: !local,
            tools: vec!["restic"],
            secrets: self
                .password_file
                .iter()
                .chain(&self.repository_file)
                .map(|file| file.get_ref().clone())
                .collect(),
            remotes: match repository {
                Some(repo) if !local => vec![repo.to_string()],
                _ => vec![],
            },
            capabilities: vec![],
            sources: self
                .paths
                .get_ref()
                .iter()
                .map(|p| p.get_ref().clone())
                .collect(),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let mut command = Command::new("restic").arg("backup");
        for pattern in &self.exclude {
            command = command.arg(format!("--exclude={pattern}"));
        }
        command = command
            .arg("--")
            .args(self.paths.get_ref().iter().map(|p| p.get_ref().clone()));
        if let Some(repo) = &self.repository {
            command = command.env("RESTIC_REPOSITORY", repo.get_ref());
        }
        if let Some(file) = &self.repository_file {
            command = command.env("RESTIC_REPOSITORY_FILE", file.get_ref());
        }
        if let Some(file) = &self.password_file {
            command = command.env("RESTIC_PASSWORD_FILE", file.get_ref());
        }
        if let Some(argv) = &self.password_command {
            command = command.env("RESTIC_PASSWORD_COMMAND", argv.get_ref().join(" "));
        }
        ctx.report.status("restic: backing up");
        command
            .env(
                "RESTIC_CACHE_DIR",
                crate::paths::cache_dir(ctx.scope).join("restic"),
            )
            .envs(&ctx.stage.environment)
            .on_line(|line| ctx.log_output(line))
            .run()?;
        Ok(Outcome::default())
    }
}
