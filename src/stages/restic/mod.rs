//! `restic`: back up paths into a restic repository (local, sftp, REST, S3, B2, …), and keep
//! it in shape: retention (`keep` → `restic forget`), `prune` and `check`.
//!
//! One stage does one `operation`:
//! - `backup` (default): `restic backup --json`, live progress from its status lines, the
//!   summary as the stage's figures; then, when `keep` is set, `restic forget` (cheap: it only
//!   removes snapshot files);
//! - `prune`: `restic forget --prune` with `keep` (or a bare `restic prune`): slow, rewrites
//!   packs, takes an exclusive lock; meant for its own job on a weekly timer;
//! - `forget`: retention without pruning;
//! - `check`: `restic check`, optionally `--read-data-subset`.
//!
//! Secrets are handed to restic as file names or a command (see [`repo`]). A killed run is
//! noticed at the next start (a marker in the state directory) and its stale locks are
//! removed with `restic unlock`, which removes only locks whose process is gone (the locks of
//! an earlier boot are seen to first, in `boot_locks`: restic would probe their PIDs). Temporary
//! failures of a remote repository are retried in the stage itself (see README: on systemd
//! < 254 a unit `Restart=` would fail the job at the first attempt).
//!
//! The keys and the restic arguments they become are in `spec`, their load-time checks in
//! `validate`, a run (retries, cures, errors) in `run`; `repo` hands over the repository and
//! secrets, `verbs` serves restore, snapshots and mount; `figures` refreshes the
//! repository's figures (snapshot count, newest per host, sizes) at the end of a run.

pub(in crate::stages) mod boot_locks;
pub mod declared;
mod figures;
mod fleet;
pub mod json;
pub mod repo;
mod run;
mod spec;
mod validate;
mod verbs;

use std::path::PathBuf;

pub(in crate::stages) use run::run_with;
pub use spec::{Keep, Operation, Spec};

use super::verbs::{Listing, MountArgs, RestoreArgs, SnapshotsArgs, Verb};
use super::{Needs, Outcome, SpecError, StageError, StageKind};
use crate::repo_lock::{Location, Mode, RepositoryUse};
use crate::stages::StageContext;

impl StageKind for Spec {
    const NAME: &'static str = "restic";
    const BANDWIDTH_KEYS: &'static [&'static str] = &["upload_limit", "download_limit"];
    const READS_LOCAL_SOURCES: bool = true;
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(verbs::restore);
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(verbs::snapshots);
    const MOUNT: Option<Verb<Self, MountArgs>> = Some(verbs::mount);
    const DRILL: Option<super::drill::Drill<Self>> =
        Some(super::drill::Drill::of("a restic backup stage"));

    fn validate(&self) -> Result<(), SpecError> {
        validate::validate(self)
    }

    fn declared(&mut self, repositories: &super::Repositories) -> Result<(), SpecError> {
        let Some(name) = self.repository_name.clone() else {
            return Ok(());
        };
        declared::find(repositories, &name, "repository_name")?.apply(self, name.span())
    }

    fn needs(&self) -> Needs {
        self.needs_as(repo::OWN)
    }

    fn purpose(&self) -> crate::stages::Purpose {
        use crate::stages::Purpose;
        match self.operation {
            Operation::Backup => Purpose::Backup,
            Operation::Forget | Operation::Prune => Purpose::Maintenance,
            Operation::Check => Purpose::Check,
        }
    }

    fn excludes(&self) -> crate::stages::ToolExcludes {
        crate::stages::ToolExcludes {
            dialect: crate::stages::Dialect::Restic,
            patterns: self.exclude.clone(),
            files: self
                .exclude_file
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
            exclude_caches: self.exclude_caches,
        }
    }

    fn other_reads(&self) -> Vec<PathBuf> {
        let files = self.exclude_file.iter().chain(&self.files_from);
        files.map(|file| file.get_ref().clone()).collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        run::run(self, ctx)
    }

    fn bandwidth(&self) -> Vec<crate::bandwidth::Applied<'_>> {
        self.limits()
    }

    /// A backup starts shared (its `forget` for `keep` holds it exclusively, see `run`);
    /// forget, prune and check are exclusive, as restic 0.14 locks them.
    fn repositories(&self) -> Vec<RepositoryUse> {
        let mode = match self.operation {
            Operation::Backup => Mode::Shared,
            Operation::Forget | Operation::Prune | Operation::Check => Mode::Exclusive,
        };
        self.repository_use(mode).into_iter().collect()
    }
}

impl Spec {
    /// What a unit needs to reach this spec's repository in `role` (a copy stage's source
    /// repository takes its credentials under other names than its target's).
    pub fn needs_as(&self, role: repo::Role) -> Needs {
        let mut credentials = Vec::new();
        if let Some(path) = &self.repository_credential {
            credentials.push((role.repository_credential.into(), path.get_ref().clone()));
        }
        if let Some(path) = &self.password_credential {
            credentials.push((role.password_credential.into(), path.get_ref().clone()));
        }
        for (var, path) in &self.backend_credentials {
            credentials.push((var.clone(), path.get_ref().clone()));
        }
        let sftp = self
            .repository
            .as_ref()
            .is_some_and(|r| r.get_ref().starts_with("sftp:"));
        Needs {
            writes: self.local_repository().into_iter().collect(),
            network: self.is_remote(),
            tools: if sftp {
                vec![self.program(), "ssh"]
            } else {
                vec![self.program()]
            },
            secrets: [
                &self.password_file,
                &self.repository_file,
                &self.password_credential,
                &self.repository_credential,
            ]
            .into_iter()
            .flatten()
            .map(|file| file.get_ref().clone())
            .chain(
                self.backend_files
                    .values()
                    .chain(self.backend_credentials.values())
                    .map(|file| file.get_ref().clone()),
            )
            .collect(),
            remotes: self
                .repository
                .as_ref()
                .filter(|_| self.is_remote())
                .map(|r| r.get_ref().clone())
                .into_iter()
                .collect(),
            capabilities: vec![],
            credentials,
            trusted: self.trusted_files(),
            sources: self
                .paths
                .iter()
                .flat_map(|paths| paths.get_ref())
                .map(|p| p.get_ref().clone())
                .collect(),
        }
    }

    /// This stage's repository used in `mode`, for [`crate::repo_lock`]: its location is the
    /// `repository` given, or the file (or loaded credential) it is read from at run time.
    /// A declared repository is named by its name (`repository_name`); `role` says under
    /// which credential names a unit loads it (a copy's source takes other names).
    pub fn repository_use(&self, mode: Mode) -> Option<RepositoryUse> {
        self.repository_use_as(mode, repo::OWN)
    }

    pub fn repository_use_as(&self, mode: Mode, role: repo::Role) -> Option<RepositoryUse> {
        let declared = self.repository_name.as_ref().map(|n| n.get_ref().clone());
        let (name, location) = if let Some(given) = &self.repository {
            let name = crate::repo_lock::display_name(given.get_ref());
            (name, Location::Given(given.get_ref().clone()))
        } else if let Some(file) = &self.repository_file {
            let name = format!("from {}", file.get_ref().display());
            (name, Location::File(file.get_ref().clone()))
        } else {
            let file = self.repository_credential.as_ref()?.get_ref();
            let loaded = repo::credential_path(role.repository_credential, file);
            (format!("from {}", file.display()), Location::File(loaded))
        };
        Some(RepositoryUse {
            name: declared.unwrap_or(name),
            location,
            mode,
            wait: self.lock_wait(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::spec::valid_restic_duration;
    use super::*;

    fn spec(toml_text: &str) -> Result<Spec, String> {
        let spec: Spec = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        match spec.validate() {
            Ok(()) => Ok(spec),
            Err(SpecError::Invalid { message, .. } | SpecError::Conflict { message, .. }) => {
                Err(message)
            }
            Err(SpecError::Toml(error)) => Err(error.to_string()),
        }
    }

    #[test]
    fn builds_backup_arguments() {
        let spec = spec(
            r#"
            repository = "/data/restic"
            password_file = "/etc/pw"
            paths = ["/home", "/etc"]
            exclude = ["*.tmp"]
            exclude_file = ["/etc/backupctl/excludes"]
            exclude_caches = true
            one_file_system = true
            tags = ["daily"]
            host = "laptop"
            backup_args = ["--read-concurrency=4"]
            "#,
        )
        .unwrap();
        let args: Vec<String> = spec
            .backup_arguments()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "backup",
                "--json",
                "--exclude=*.tmp",
                "--exclude-file=/etc/backupctl/excludes",
                "--exclude-caches",
                "--one-file-system",
                "--tag",
                "daily",
                "--host",
                "laptop",
                "--read-concurrency=4",
                "--",
                "/home",
                "/etc"
            ]
        );
        assert_eq!(spec.local_repository(), Some(PathBuf::from("/data/restic")));
        assert!(!spec.needs().network);
    }

    #[test]
    fn builds_retention_and_check_arguments() {
        let spec = spec(
            r#"
            operation = "prune"
            repository_file = "/etc/backupctl/b2-repository"
            password_command = ["pass", "show", "restic"]
            keep = { last = 3, daily = 7, weekly = 5, monthly = 12, yearly = 2, within = "1y6m" }
            tags = ["a", "b"]
            "#,
        )
        .unwrap();
        assert_eq!(
            spec.forget_arguments(true).join(" "),
            "forget --tag a,b --keep-last 3 --keep-daily 7 --keep-weekly 5 --keep-monthly 12 \
             --keep-yearly 2 --keep-within 1y6m --prune"
        );
        assert!(
            spec.needs().network,
            "a repository from a file may be remote"
        );
        let check = self::spec(
            r#"
            operation = "check"
            repository = "rest:http://127.0.0.1:8000/"
            password_credential = "/etc/backupctl/restic-password"
            read_data_subset = "10%"
            "#,
        )
        .unwrap();
        assert_eq!(
            check.check_arguments().join(" "),
            "check --read-data-subset=10%"
        );
        assert_eq!(
            check.needs().credentials,
            [(
                "restic-password".to_string(),
                PathBuf::from("/etc/backupctl/restic-password")
            )]
        );
    }

    #[test]
    fn rejects_inconsistent_keys() {
        let base = "password_file = \"/pw\"\n";
        for (text, expected) in [
            ("paths = [\"/a\"]", "needs `repository`"),
            (
                "repository = \"/r\"\nrepository_file = \"/f\"\npaths = [\"/a\"]",
                "only one of `repository` and `repository_file`",
            ),
            ("repository = \"/r\"", "needs `paths`"),
            ("repository = \"/r\"\npaths = [\"a\"]", "absolute"),
            (
                "repository = \"/r\"\npaths = [\"/a\"]\nkeep = {}",
                "no rule",
            ),
            (
                "repository = \"/r\"\npaths = [\"/a\"]\nkeep = { within = \"2 weeks\" }",
                "not a restic duration",
            ),
            (
                "repository = \"/r\"\noperation = \"forget\"",
                "needs `keep`",
            ),
            (
                "repository = \"/r\"\npaths = [\"/a\"]\nread_data_subset = \"5%\"",
                "is for `operation = \"check\"`",
            ),
            (
                "repository = \"/r\"\npaths = [\"/a\"]\nbackend_files = { RESTIC_PASSWORD = \"/x\" }",
                "not a backend variable",
            ),
            (
                "repository = \"/r\"\npaths = [\"/a\"]\nkeep = { dayly = 1 }",
                "unknown field",
            ),
        ] {
            let error = spec(&format!("{base}{text}")).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn builds_files_from_and_stdin_arguments() {
        let listed =
            spec("repository = \"/r\"\npassword_file = \"/pw\"\nfiles_from = \"/etc/list\"")
                .unwrap();
        let words = |spec: &Spec| -> Vec<String> {
            spec.backup_arguments()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            words(&listed),
            ["backup", "--json", "--files-from=/etc/list", "--"]
        );
        assert_eq!(listed.other_reads(), [PathBuf::from("/etc/list")]);
        let dump = spec(
            "repository = \"/r\"\npassword_file = \"/pw\"\nstdin_from = [\"pg_dump\", \"db\"]\nstdin_filename = \"db.sql\"",
        )
        .unwrap();
        assert_eq!(
            words(&dump),
            [
                "backup",
                "--json",
                "--stdin",
                "--stdin-filename",
                "db.sql",
                "--"
            ]
        );
        for (text, expected) in [
            ("stdin_from = []", "is empty"),
            (
                "stdin_from = [\"x\"]\nfiles_from = \"/l\"",
                "cannot be combined",
            ),
            ("stdin_filename = \"a\"", "which is not set"),
            (
                "stdin_from = [\"x\"]\nstdin_filename = \"a/b\"",
                "not a file name",
            ),
            ("files_from = \"list\"", "absolute"),
            (
                "operation = \"check\"\nstdin_from = [\"x\"]",
                "is for backups",
            ),
        ] {
            let error = spec(&format!(
                "repository = \"/r\"\npassword_file = \"/pw\"\n{text}"
            ))
            .unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn validates_restic_durations() {
        assert!(valid_restic_duration("1y6m"));
        assert!(valid_restic_duration("48h"));
        assert!(!valid_restic_duration("6"));
        assert!(!valid_restic_duration("1w"));
        assert!(!valid_restic_duration(""));
    }

    #[test]
    fn appends_check_and_forget_args_and_reads_files_from_the_command() {
        let spec = spec(
            r#"
            repository = "/r"
            password_file = "/pw"
            files_from_command = ["/usr/local/bin/list"]
            keep = { last = 1 }
            forget_args = ["--group-by", "host"]
            restic_binary = "/opt/restic/bin/restic"
            "#,
        )
        .unwrap();
        assert_eq!(
            spec.forget_arguments(false).join(" "),
            "forget --keep-last 1 --group-by host"
        );
        let args: Vec<_> = spec.backup_arguments();
        assert!(args.iter().any(|a| a == "--files-from=-"), "{args:?}");
        assert_eq!(spec.program(), "/opt/restic/bin/restic");
        assert_eq!(spec.needs().tools, ["/opt/restic/bin/restic"]);
        let check = self::spec(
            "operation = \"check\"\nrepository = \"/r\"\npassword_file = \"/pw\"\ncheck_args = [\"--with-cache\"]",
        )
        .unwrap();
        assert_eq!(check.check_arguments().join(" "), "check --with-cache");
        for managed in ["-r", "-r/x", "--repo", "--repo=/x", "--password-file", "-p"] {
            let text = format!(
                "operation = \"check\"\nrepository = \"/r\"\npassword_file = \"/pw\"\ncheck_args = [{managed:?}]"
            );
            let error = self::spec(&text).unwrap_err();
            assert!(error.contains("backupctl sets"), "{managed}: {error}");
        }
        for fine in ["--read-data", "--retry-lock=5m", "--pack-size=64"] {
            let text = format!(
                "operation = \"check\"\nrepository = \"/r\"\npassword_file = \"/pw\"\ncheck_args = [{fine:?}]"
            );
            assert!(self::spec(&text).is_ok(), "{fine}");
        }
    }
}
