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
//! removed with `restic unlock`, which removes only locks whose process is gone. Temporary
//! failures of a remote repository are retried in the stage itself (see README: on systemd
//! < 254 a unit `Restart=` would fail the job at the first attempt).

pub mod json;
pub mod repo;
mod verbs;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::verbs::{Listing, MountArgs, RestoreArgs, SnapshotsArgs, Verb};
use super::{
    Needs, Outcome, SpecError, StageError, StageKind, require_absolute, require_normalized,
};
use crate::config::Timespan;
use crate::process::Command;
use crate::process::ToolError;
use crate::report::Figures;
use crate::stages::StageContext;
use repo::Failure;

/// restic backup: "snapshot created, but some source files could not be read".
const INCOMPLETE: i32 = 3;
/// Retries of a remote repository's temporary failures, unless `retries` says otherwise.
const DEFAULT_REMOTE_RETRIES: u32 = 3;
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(60);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// restic prints JSON status lines at 60 per second by default; two are plenty.
const PROGRESS_FPS: &str = "2";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    #[default]
    Backup,
    Forget,
    Prune,
    Check,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Forget => "forget",
            Operation::Prune => "prune",
            Operation::Check => "check",
        }
    }
}

/// Retention rules, as restic's `--keep-*` options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// restic duration, e.g. "1y6m", "30d", "48h".
    pub within: Option<Spanned<String>>,
}

impl Keep {
    pub fn arguments(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
            ("--keep-yearly", self.yearly),
        ] {
            if let Some(n) = value {
                args.push(flag.to_string());
                args.push(n.to_string());
            }
        }
        if let Some(within) = &self.within {
            args.push("--keep-within".into());
            args.push(within.get_ref().clone());
        }
        args
    }
}

/// restic's duration syntax for `--keep-within`: numbers with y, m, d or h.
fn valid_restic_duration(text: &str) -> bool {
    let mut digits = false;
    for c in text.chars() {
        match c {
            '0'..='9' => digits = true,
            'y' | 'm' | 'd' | 'h' if digits => digits = false,
            _ => return false,
        }
    }
    !text.is_empty() && !digits
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub operation: Operation,
    /// The repository location (not a secret), e.g. "/data/restic" or "sftp:host:/repo".
    pub repository: Option<Spanned<String>>,
    /// A file holding the repository location (it may embed credentials).
    pub repository_file: Option<Spanned<PathBuf>>,
    /// Like `repository_file`, loaded as a systemd credential.
    pub repository_credential: Option<Spanned<PathBuf>>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// A command printing the password, e.g. ["pass", "show", "restic"].
    pub password_command: Option<Spanned<Vec<String>>>,
    /// Like `password_file`, loaded as a systemd credential.
    pub password_credential: Option<Spanned<PathBuf>>,
    /// Backend keys: environment variable → file holding its value, e.g.
    /// `{ AWS_SECRET_ACCESS_KEY = "/etc/backupctl/s3-secret" }`.
    #[serde(default)]
    pub backend_files: IndexMap<String, Spanned<PathBuf>>,
    /// Like `backend_files`, loaded as systemd credentials (named after the variable).
    #[serde(default)]
    pub backend_credentials: IndexMap<String, Spanned<PathBuf>>,
    /// restic's extended options (`-o KEY=VALUE`), e.g. "sftp.command=ssh -p 2222 host -s sftp".
    #[serde(default)]
    pub options: Vec<String>,
    /// Create the repository when there is none at the location (never re-creates one).
    #[serde(default)]
    pub init: bool,

    pub paths: Option<Spanned<Vec<Spanned<PathBuf>>>>,
    /// A file listing what to back up, one path a line (`--files-from`); with or without `paths`.
    pub files_from: Option<Spanned<PathBuf>>,
    /// A command whose output is the backup (`restic backup --stdin`), e.g.
    /// ["pg_dump", "mydb"]: instead of `paths`.
    pub stdin_from: Option<Spanned<Vec<String>>>,
    /// The file name the output of `stdin_from` gets in the snapshot (default "stdin").
    pub stdin_filename: Option<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_file: Vec<Spanned<PathBuf>>,
    /// Skip directories holding a CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The host name recorded in snapshots (and used to pick them for retention / restore).
    pub host: Option<String>,
    /// Extra arguments for `restic backup`, before the paths (igotchuu's `restic_backup_args`).
    #[serde(default)]
    pub backup_args: Vec<String>,

    pub keep: Option<Spanned<Keep>>,
    /// For `check`: e.g. "10%", "1/7" or "500M".
    pub read_data_subset: Option<Spanned<String>>,

    /// How often a temporary failure (network, lock) is retried (default: 3 for a remote
    /// repository, 0 for a local one).
    pub retries: Option<u32>,
    /// First wait before a retry (doubles each time, at most 15 min); default 1min.
    pub retry_delay: Option<Spanned<String>>,
}

/// `/path` or `local:/path`: a repository on this machine.
fn local_path(repository: &str) -> Option<&str> {
    let path = repository.strip_prefix("local:").unwrap_or(repository);
    path.starts_with('/').then_some(path)
}

impl Spec {
    /// The local repository directory, when the repository is given and local.
    pub fn local_repository(&self) -> Option<PathBuf> {
        self.repository
            .as_ref()
            .and_then(|r| local_path(r.get_ref()))
            .map(PathBuf::from)
    }

    /// Remote unless known to be local (a repository from a file may be anywhere).
    fn is_remote(&self) -> bool {
        self.local_repository().is_none()
    }

    /// Options every restic command of this stage gets (before the subcommand's own).
    pub fn global_args(&self) -> Vec<String> {
        self.options
            .iter()
            .flat_map(|option| ["-o".to_string(), option.clone()])
            .collect()
    }

    fn retry_delay(&self) -> Duration {
        self.retry_delay
            .as_ref()
            .and_then(|text| Timespan::parse(text.get_ref()).ok())
            .map(|span| span.0)
            .unwrap_or(DEFAULT_RETRY_DELAY)
    }

    fn retries(&self) -> u32 {
        self.retries.unwrap_or(if self.is_remote() {
            DEFAULT_REMOTE_RETRIES
        } else {
            0
        })
    }

    /// Flags that pick this stage's snapshots (`--host`, `--tag`), for forget and restore.
    pub fn selection_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(host) = &self.host {
            args.push("--host".into());
            args.push(host.clone());
        }
        if !self.tags.is_empty() {
            // One --tag with a comma list: snapshots that have all of them.
            args.push("--tag".into());
            args.push(self.tags.join(","));
        }
        args
    }

    /// Flags that pick the snapshots this stage made: `--host`, `--tag` and a `--path` per
    /// path (what `restore`, `snapshots`, `mount` and the drill read as "the stage's").
    pub fn own_snapshots_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = self
            .selection_args()
            .into_iter()
            .map(OsString::from)
            .collect();
        for path in self.paths.iter().flat_map(|paths| paths.get_ref()) {
            args.push("--path".into());
            args.push(path.get_ref().into());
        }
        args
    }

    /// `restic backup` arguments after the global ones.
    pub fn backup_arguments(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
        for pattern in &self.exclude {
            args.push(format!("--exclude={pattern}").into());
        }
        for file in &self.exclude_file {
            let mut arg = OsString::from("--exclude-file=");
            arg.push(file.get_ref());
            args.push(arg);
        }
        if self.exclude_caches {
            args.push("--exclude-caches".into());
        }
        if self.one_file_system {
            args.push("--one-file-system".into());
        }
        for tag in &self.tags {
            args.push("--tag".into());
            args.push(tag.into());
        }
        if let Some(host) = &self.host {
            args.push("--host".into());
            args.push(host.into());
        }
        if let Some(file) = &self.files_from {
            let mut arg = OsString::from("--files-from=");
            arg.push(file.get_ref());
            args.push(arg);
        }
        if self.stdin_from.is_some() {
            args.push("--stdin".into());
            args.push("--stdin-filename".into());
            args.push(self.stdin_filename().into());
        }
        args.extend(self.backup_args.iter().map(OsString::from));
        args.push("--".into());
        if let Some(paths) = &self.paths {
            args.extend(paths.get_ref().iter().map(|p| p.get_ref().into()));
        }
        args
    }

    /// The name the output of `stdin_from` is stored under.
    pub fn stdin_filename(&self) -> &str {
        self.stdin_filename
            .as_ref()
            .map_or("stdin", |name| name.get_ref().as_str())
    }

    /// `restic forget` arguments (retention), with `--prune` for the prune operation.
    pub fn forget_arguments(&self, prune: bool) -> Vec<String> {
        let mut args = vec!["forget".to_string()];
        args.extend(self.selection_args());
        if let Some(keep) = &self.keep {
            args.extend(keep.get_ref().arguments());
        }
        if prune {
            args.push("--prune".into());
        }
        args
    }

    pub fn check_arguments(&self) -> Vec<String> {
        let mut args = vec!["check".to_string()];
        if let Some(subset) = &self.read_data_subset {
            args.push(format!("--read-data-subset={}", subset.get_ref()));
        }
        args
    }
}

impl Spec {
    /// `files_from`, `stdin_from` and `stdin_filename`: absolute, for backups, and a
    /// command's output alone (restic takes no paths beside `--stdin`).
    fn validate_sources(&self) -> Result<(), SpecError> {
        if let Some(file) = &self.files_from {
            require_absolute(std::slice::from_ref(file), "files_from")?;
        }
        if let Some(name) = &self.stdin_filename
            && self.stdin_from.is_none()
        {
            return Err(SpecError::invalid(
                Some(name.span()),
                "`stdin_filename` names the output of `stdin_from`, which is not set",
                "add stdin_from = [\"pg_dump\", \"mydb\"], or remove `stdin_filename`",
            ));
        }
        let Some(command) = &self.stdin_from else {
            return Ok(());
        };
        if self.operation != Operation::Backup {
            return Err(SpecError::invalid(
                Some(command.span()),
                format!(
                    "`stdin_from` is for backups, not for `operation = \"{}\"`",
                    self.operation.name()
                ),
                "remove `stdin_from`, or make this a backup stage",
            ));
        }
        let Some(program) = command.get_ref().first() else {
            return Err(SpecError::invalid(
                Some(command.span()),
                "`stdin_from` is empty",
                "give the program and its arguments, e.g. [\"pg_dump\", \"mydb\"]",
            ));
        };
        if program.is_empty() {
            return Err(SpecError::invalid(
                Some(command.span()),
                "the `stdin_from` program is empty",
                "give the program and its arguments, e.g. [\"pg_dump\", \"mydb\"]",
            ));
        }
        for (key, span) in [
            ("paths", self.paths.as_ref().map(Spanned::span)),
            ("files_from", self.files_from.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                return Err(SpecError::invalid(
                    Some(span),
                    format!("`{key}` and `stdin_from` cannot be combined"),
                    "restic backs up either files or one command's output: make a second restic stage for the other",
                ));
            }
        }
        if let Some(name) = &self.stdin_filename {
            let text = name.get_ref();
            if text.is_empty() || text.contains('/') || text == "." || text == ".." {
                return Err(SpecError::invalid(
                    Some(name.span()),
                    format!("`stdin_filename` {text:?} is not a file name"),
                    "a plain name without `/`, e.g. \"mydb.sql\" (restore it with `restic dump latest /mydb.sql`)",
                ));
            }
        }
        Ok(())
    }
}

/// Exactly one of three alternative keys (given ones carry their span).
fn one_of(
    options: [(&str, Option<Option<std::ops::Range<usize>>>); 3],
    missing: &str,
    example: &str,
) -> Result<(), SpecError> {
    let given: Vec<_> = options
        .iter()
        .filter_map(|(name, span)| span.clone().map(|span| (*name, span)))
        .collect();
    match given.as_slice() {
        [] => Err(SpecError::invalid(None, missing, example)),
        [_] => Ok(()),
        [(first, _), (second, span), ..] => Err(SpecError::invalid(
            span.clone(),
            format!("give only one of `{first}` and `{second}`"),
            "remove one of them",
        )),
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "restic";
    const READS_LOCAL_SOURCES: bool = true;
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(verbs::restore);
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(verbs::snapshots);
    const MOUNT: Option<Verb<Self, MountArgs>> = Some(verbs::mount);
    const DRILL: Option<super::drill::Drill<Self>> =
        Some(super::drill::Drill::of("a restic backup stage"));

    fn validate(&self) -> Result<(), SpecError> {
        let span = |s: &Option<Spanned<PathBuf>>| s.as_ref().map(|s| Some(s.span()));
        one_of(
            [
                (
                    "repository",
                    self.repository.as_ref().map(|s| Some(s.span())),
                ),
                ("repository_file", span(&self.repository_file)),
                ("repository_credential", span(&self.repository_credential)),
            ],
            "a restic stage needs `repository`, `repository_file` or `repository_credential`",
            "e.g. repository = \"/data/restic\" or repository_file = \"/etc/backupctl/b2-repository\"",
        )?;
        one_of(
            [
                ("password_file", span(&self.password_file)),
                (
                    "password_command",
                    self.password_command.as_ref().map(|s| Some(s.span())),
                ),
                ("password_credential", span(&self.password_credential)),
            ],
            "a restic stage needs `password_file`, `password_command` or `password_credential`",
            "e.g. password_file = \"/etc/backupctl/restic-password\" (mode 0600)",
        )?;
        if let Some(repository) = &self.repository
            && let Some(path) = local_path(repository.get_ref())
        {
            require_normalized(repository.span(), path, "repository")?;
        }
        if let Some(command) = &self.password_command
            && command.get_ref().is_empty()
        {
            return Err(SpecError::invalid(
                Some(command.span()),
                "`password_command` is empty",
                "give the program and its arguments, e.g. [\"pass\", \"show\", \"restic\"]",
            ));
        }
        if let Some(command) = &self.password_command
            && let Some(word) = command
                .get_ref()
                .iter()
                .find(|word| repo::restic_word(word).is_none())
        {
            return Err(SpecError::invalid(
                Some(command.span()),
                format!("restic cannot pass the `password_command` word {word:?} on intact"),
                "restic splits the command itself and has no way to write an empty word, a word \
                 ending in `\\`, or one holding both `'` and `\"` with spaces or `\\`; \
                 put the command in a script and give its path",
            ));
        }
        for file in [
            &self.repository_file,
            &self.repository_credential,
            &self.password_file,
            &self.password_credential,
        ]
        .into_iter()
        .flatten()
        {
            require_absolute(std::slice::from_ref(file), "secret files")?;
        }
        for (key, map) in [
            ("backend_files", &self.backend_files),
            ("backend_credentials", &self.backend_credentials),
        ] {
            for (var, path) in map {
                let valid = var.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                    && var
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !valid || repo::INHERITED.contains(&var.as_str()) {
                    return Err(SpecError::invalid(
                        Some(path.span()),
                        format!("`{var}` in `{key}` is not a backend variable name"),
                        "use restic's variable names, e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, B2_ACCOUNT_ID, B2_ACCOUNT_KEY; the repository and password have keys of their own",
                    ));
                }
                require_absolute(std::slice::from_ref(path), key)?;
            }
        }
        require_absolute(&self.exclude_file, "exclude_file")?;
        if let Some(delay) = &self.retry_delay
            && let Err(error) = Timespan::parse(delay.get_ref())
        {
            return Err(SpecError::invalid(
                Some(delay.span()),
                format!("invalid `retry_delay`: {error}"),
                "use a systemd time span, e.g. \"30s\" or \"2min\"",
            ));
        }
        if let Some(keep) = &self.keep {
            if keep.get_ref().arguments().is_empty() {
                return Err(SpecError::invalid(
                    Some(keep.span()),
                    "`keep` has no rule",
                    "e.g. keep = { daily = 7, weekly = 5, monthly = 12 }",
                ));
            }
            if let Some(within) = &keep.get_ref().within
                && !valid_restic_duration(within.get_ref())
            {
                return Err(SpecError::invalid(
                    Some(within.span()),
                    format!("`{}` is not a restic duration", within.get_ref()),
                    "numbers with y, m, d or h, e.g. \"1y6m\", \"30d\" or \"48h\"",
                ));
            }
        }
        self.validate_sources()?;
        match self.operation {
            Operation::Backup => {
                let Some(paths) = &self.paths else {
                    if self.files_from.is_some() || self.stdin_from.is_some() {
                        return Ok(());
                    }
                    return Err(SpecError::invalid(
                        None,
                        "a restic backup stage needs `paths`, `files_from` or `stdin_from`",
                        "list what to back up, e.g. paths = [\"/home\", \"/etc\"]",
                    ));
                };
                if paths.get_ref().is_empty() {
                    return Err(SpecError::invalid(
                        Some(paths.span()),
                        "`paths` is empty",
                        "list what to back up, e.g. paths = [\"/home\", \"/etc\"]",
                    ));
                }
                require_absolute(paths.get_ref(), "paths")?;
            }
            other => {
                if let Some(paths) = &self.paths {
                    return Err(SpecError::invalid(
                        Some(paths.span()),
                        format!(
                            "`paths` is for backups, not for `operation = \"{}\"`",
                            other.name()
                        ),
                        "remove `paths`, or make this a backup stage",
                    ));
                }
                if other == Operation::Forget && self.keep.is_none() {
                    return Err(SpecError::invalid(
                        None,
                        "`operation = \"forget\"` needs `keep`",
                        "e.g. keep = { daily = 7, weekly = 5, monthly = 12 }",
                    ));
                }
            }
        }
        if let Some(subset) = &self.read_data_subset
            && self.operation != Operation::Check
        {
            return Err(SpecError::invalid(
                Some(subset.span()),
                "`read_data_subset` is for `operation = \"check\"`",
                "add a check stage (e.g. in a weekly job) and move it there",
            ));
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        let mut credentials = Vec::new();
        if let Some(path) = &self.repository_credential {
            credentials.push((repo::REPOSITORY_CREDENTIAL.into(), path.get_ref().clone()));
        }
        if let Some(path) = &self.password_credential {
            credentials.push((repo::PASSWORD_CREDENTIAL.into(), path.get_ref().clone()));
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
                vec!["restic", "ssh"]
            } else {
                vec!["restic"]
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
            sources: self
                .paths
                .iter()
                .flat_map(|paths| paths.get_ref())
                .map(|p| p.get_ref().clone())
                .collect(),
        }
    }

    fn purpose(&self) -> crate::stages::Purpose {
        use crate::stages::Purpose;
        match self.operation {
            Operation::Backup => Purpose::Backup,
            Operation::Forget | Operation::Prune => Purpose::Maintenance,
            Operation::Check => Purpose::Check,
        }
    }

    fn excludes(&self) -> crate::stages::Excludes {
        crate::stages::Excludes {
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
        let env = repo::environment(self, ctx.scope)?;
        let runner = Runner {
            spec: self,
            ctx,
            env,
        };
        let marker = RunMarker::new(&ctx.state_dir, &ctx.stage.name);
        if marker.left_by_a_killed_run() {
            tracing::warn!(
                "the previous run of this stage did not finish; removing stale restic locks"
            );
            runner.cure("unlock")?;
        }
        let mut delay = self.retry_delay();
        let mut attempt = 0;
        loop {
            marker.set();
            let result = runner.operation();
            marker.clear();
            match result {
                Err(StageError::Temporary(message)) if attempt < self.retries() => {
                    attempt += 1;
                    tracing::warn!(
                        "{message}; retry {attempt} of {} in {}",
                        self.retries(),
                        crate::report::short_duration(delay)
                    );
                    ctx.report.status(&format!(
                        "restic: repository unreachable, retry {attempt} in {}",
                        crate::report::short_duration(delay)
                    ));
                    sleep_unless_stopped(delay)?;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                other => return other,
            }
        }
    }
}

/// Waits, but returns at once (as interrupted) when a stop is requested.
fn sleep_unless_stopped(duration: Duration) -> Result<(), StageError> {
    let end = std::time::Instant::now() + duration;
    while std::time::Instant::now() < end {
        if crate::signals::stopped() {
            return Err(StageError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A file in the state directory that exists while restic runs for a stage: found at the
/// next start, it means the last run was killed (SIGKILL, power loss) and may have left
/// stale locks. Cheaper than running `restic unlock` (which derives the key) every time.
struct RunMarker {
    path: PathBuf,
}

impl RunMarker {
    fn new(state_dir: &Path, stage: &str) -> Self {
        RunMarker {
            path: state_dir.join("restic-running").join(stage),
        }
    }

    fn left_by_a_killed_run(&self) -> bool {
        self.path.exists()
    }

    fn set(&self) {
        // Best effort: without the marker only the automatic unlock of a later run is lost.
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(&self.path, std::process::id().to_string());
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs the restic commands of one stage run.
struct Runner<'a> {
    spec: &'a Spec,
    ctx: &'a StageContext<'a>,
    env: Vec<(OsString, OsString)>,
}

impl Runner<'_> {
    fn operation(&self) -> Result<Outcome, StageError> {
        match self.spec.operation {
            Operation::Backup => {
                let outcome = self.backup()?;
                if self.spec.keep.is_some() {
                    self.ctx
                        .report
                        .status("restic: applying retention (forget)");
                    self.restic("forget", self.spec.forget_arguments(false), &[])?;
                }
                Ok(outcome)
            }
            Operation::Forget => {
                self.ctx
                    .report
                    .status("restic: applying retention (forget)");
                self.restic("forget", self.spec.forget_arguments(false), &[])?;
                Ok(Outcome::default())
            }
            Operation::Prune => {
                self.ctx.report.status("restic: pruning");
                let args = if self.spec.keep.is_some() {
                    self.spec.forget_arguments(true)
                } else {
                    vec!["prune".to_string()]
                };
                self.restic("prune", args, &[])?;
                Ok(Outcome::default())
            }
            Operation::Check => {
                self.ctx.report.status("restic: checking the repository");
                self.restic("check", self.spec.check_arguments(), &[])?;
                Ok(Outcome::default())
            }
        }
    }

    fn backup(&self) -> Result<Outcome, StageError> {
        self.ctx.report.status("restic: backing up");
        let mut figures = Figures::default();
        let mut summary = None;
        let mut warnings = Vec::new();
        let finished = self.run_with_recovery("backup", |runner| {
            let mut command = runner.command(self.spec.backup_arguments());
            if let Some(argv) = &self.spec.stdin_from {
                // A new run of the command for each attempt: the last one's output is gone.
                let producer =
                    crate::process::Producer::spawn(argv.get_ref(), &self.ctx.stage.environment)?;
                command = command.stdin_from(producer);
            }
            command
                .env("RESTIC_PROGRESS_FPS", PROGRESS_FPS)
                .ok_codes(&[INCOMPLETE])
                .on_line(|line| match json::Message::parse(line) {
                    Some(json::Message::Status(status)) => {
                        self.ctx.report.progress(&status.progress())
                    }
                    Some(json::Message::Summary(found)) => summary = Some(found),
                    Some(json::Message::Error(error)) => {
                        tracing::warn!("{}", error.describe())
                    }
                    Some(json::Message::Other) => {}
                    None => self.ctx.log_output(line),
                })
                .on_stderr(|line| match json::Message::parse(line) {
                    Some(json::Message::Error(error)) => {
                        tracing::warn!("{}", error.describe())
                    }
                    _ => tracing::warn!("restic: {line}"),
                })
                .run()
                .map_err(StageError::from)
        })?;
        if let Some(summary) = &summary {
            figures = summary.figures();
            tracing::info!(
                backupctl_restic_duration_secs = summary.total_duration,
                backupctl_dirs_new = summary.dirs_new,
                backupctl_dirs_changed = summary.dirs_changed,
                backupctl_files_unmodified = summary.files_unmodified,
                "restic: snapshot {} saved: {} new, {} changed, {} unmodified files, {} added",
                summary.snapshot_id,
                summary.files_new,
                summary.files_changed,
                summary.files_unmodified,
                crate::out::human_bytes(summary.data_added),
            );
        }
        if finished.code == INCOMPLETE {
            warnings.push(format!(
                "restic saved snapshot {} but could not read some files (exit 3); see the warnings above",
                figures.snapshot_id.as_deref().unwrap_or("?")
            ));
        }
        Ok(Outcome { warnings, figures })
    }

    /// A restic command with this stage's repository, options and environment.
    fn command(&self, args: Vec<OsString>) -> Command<'_> {
        repo::command(self.spec, &self.env, &self.ctx.stage.environment).args(args)
    }

    /// A plain restic command whose output goes to the journal.
    fn restic(
        &self,
        what: &str,
        args: Vec<String>,
        ok_codes: &[i32],
    ) -> Result<crate::process::Finished, StageError> {
        let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
        self.run_with_recovery(what, |runner| {
            runner
                .command(args.clone())
                .ok_codes(ok_codes)
                .on_line(|line| runner.ctx.log_output(line))
                .on_stderr(log_stderr)
                .tail_skips(repo::is_stack_frame)
                .run()
                .map_err(StageError::from)
        })
    }

    /// Runs `attempt`, and on the failures that have a cure applies it once and runs it
    /// again: no repository yet (with `init = true`) → `restic init`; locked → `restic
    /// unlock` (stale locks only). What remains becomes a clear [`StageError`].
    fn run_with_recovery<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut(&Self) -> Result<T, StageError>,
    ) -> Result<T, StageError> {
        let mut cured = Vec::new();
        loop {
            let stderr = match attempt(self) {
                Err(StageError::Tool(ToolError::Failed { stderr, .. })) => stderr,
                other => return other,
            };
            let failure = repo::classify(&stderr);
            match failure {
                Failure::Missing if self.spec.init && !cured.contains(&failure) => {
                    tracing::info!("no restic repository at the location yet; creating it");
                    self.ctx.report.status("restic: creating the repository");
                    self.cure("init")?;
                }
                Failure::Locked if !cured.contains(&failure) => {
                    tracing::warn!("the repository is locked; removing stale locks");
                    self.cure("unlock")?;
                }
                _ => return Err(describe(what, failure, &stderr, self.spec.init)),
            }
            cured.push(failure);
        }
    }

    /// `restic init` or `restic unlock`: the cures [`Self::run_with_recovery`] applies (and a
    /// stage killed last time starts with).
    fn cure(&self, verb: &str) -> Result<(), StageError> {
        let result = self
            .command(vec![verb.into()])
            .on_line(|line| self.ctx.log_output(line))
            .on_stderr(log_stderr)
            .tail_skips(repo::is_stack_frame)
            .run();
        match result {
            Ok(_) => Ok(()),
            Err(ToolError::Failed { stderr, .. }) => Err(describe(
                verb,
                repo::classify(&stderr),
                &stderr,
                self.spec.init,
            )),
            Err(other) => Err(other.into()),
        }
    }
}

/// restic's stderr goes to the journal as warnings, but for the frames of a Go stack trace
/// (kept at debug level: nothing a reader can act on).
fn log_stderr(line: &str) {
    if repo::is_stack_frame(line) {
        tracing::debug!("restic: {line}");
    } else {
        tracing::warn!("restic: {line}");
    }
}

/// The error people read in the journal and `backupctl status`.
fn describe(what: &str, failure: Failure, stderr: &str, init: bool) -> StageError {
    let detail = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    match failure {
        Failure::Unreachable => StageError::Temporary(format!(
            "restic {what}: cannot reach the repository: {detail}"
        )),
        Failure::Locked => StageError::Temporary(format!(
            "restic {what}: the repository is locked by another restic process that is still running: {detail}"
        )),
        Failure::Forbidden => StageError::Failed(format!(
            "restic {what}: the repository refused to delete (403 Forbidden); an append-only \
             endpoint (`rclone serve restic --append-only`, rest-server --append-only) takes \
             backups only: run forget and prune through one with full access (docs/fleet.md): {detail}"
        )),
        Failure::Missing if !init => StageError::Failed(format!(
            "restic {what}: there is no repository at the configured location; create it with `restic init` or set `init = true` in the stage: {detail}"
        )),
        _ => StageError::Failed(format!("restic {what} failed: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> Result<Spec, String> {
        let spec: Spec = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        match spec.validate() {
            Ok(()) => Ok(spec),
            Err(SpecError::Invalid { message, .. }) => Err(message),
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
}
