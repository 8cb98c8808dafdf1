//! The keys of a restic stage ([`Spec`]) and the restic arguments they become: what one
//! stage asks of restic, with no process run here (the runner is `run`, the load-time
//! checks `validate`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::config::Timespan;

/// Retries of a remote repository's temporary failures, unless `retries` says otherwise.
const DEFAULT_REMOTE_RETRIES: u32 = 3;
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(60);

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
    pub(super) fn name(self) -> &'static str {
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
pub(super) fn valid_restic_duration(text: &str) -> bool {
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

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub operation: Operation,
    /// A declared repository (`[repository.NAME]`) whose keys fill the repository keys
    /// below, instead of giving them here (see `declared`).
    pub repository_name: Option<Spanned<String>>,
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
    /// A command whose output lists what to back up, one path a line (`--files-from -`, its
    /// stdout piped to restic), e.g. ["/usr/local/bin/list-projects"].
    pub files_from_command: Option<Spanned<Vec<String>>>,
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
    /// Extra arguments for `restic check` (e.g. ["--with-cache"]).
    pub check_args: Option<Spanned<Vec<String>>>,
    /// Extra arguments for `restic forget` (retention, prune), e.g. ["--group-by", "host"].
    pub forget_args: Option<Spanned<Vec<String>>>,
    /// The restic executable (absolute path); default `restic` from `PATH`.
    pub restic_binary: Option<Spanned<Program>>,

    /// How often a temporary failure (network, lock) is retried (default: 3 for a remote
    /// repository, 0 for a local one).
    pub retries: Option<u32>,
    /// First wait before a retry (doubles each time, at most 15 min); default 1min.
    pub retry_delay: Option<Spanned<String>>,
    /// A declared repository's `lock_wait` (a systemd time span), the wait of a stage that
    /// sets no `lock_wait` of its own; a stage's own is the key every stage takes.
    #[serde(skip)]
    pub lock_wait: Option<Spanned<String>>,

    /// `--limit-upload`: a rate ("1M") or a timetable ("08:00 1M, 19:00 off"; the rate in
    /// effect when each restic command starts holds for that command, see `crate::bandwidth`).
    pub upload_limit: Option<crate::bandwidth::Limit>,
    /// `--limit-download`, as `upload_limit`.
    pub download_limit: Option<crate::bandwidth::Limit>,
}

/// An absolute path to a program, kept as a `&'static str` because `Needs::tools` names the
/// programs `hello` checks that way: a config is loaded once per process, so the few bytes
/// leaked per `restic_binary` are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program(pub &'static str);

impl<'de> Deserialize<'de> for Program {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Program(Box::leak(text.into_boxed_str())))
    }
}

/// `/path` or `local:/path`: a repository on this machine.
pub(super) fn local_path(repository: &str) -> Option<&str> {
    let path = repository.strip_prefix("local:").unwrap_or(repository);
    path.starts_with('/').then_some(path)
}

impl Spec {
    /// What decides what this stage does, by path (`Needs::trusted`): the programs of
    /// `stdin_from`, `files_from_command` and `password_command` when named by path,
    /// `restic_binary`, the lists restic reads.
    pub(super) fn trusted_files(&self) -> Vec<PathBuf> {
        let programs = [
            &self.stdin_from,
            &self.files_from_command,
            &self.password_command,
        ]
        .into_iter()
        .flatten()
        .filter_map(|argv| crate::needs::program_path(argv.get_ref()));
        let binary = self
            .restic_binary
            .as_ref()
            .map(|binary| PathBuf::from(binary.get_ref().0));
        let lists = self.exclude_file.iter().chain(&self.files_from);
        programs
            .chain(binary)
            .chain(lists.map(|file| file.get_ref().clone()))
            .collect()
    }

    /// The local repository directory, when the repository is given and local.
    pub fn local_repository(&self) -> Option<PathBuf> {
        self.repository
            .as_ref()
            .and_then(|r| local_path(r.get_ref()))
            .map(PathBuf::from)
    }

    /// Remote unless known to be local (a repository from a file may be anywhere).
    pub(super) fn is_remote(&self) -> bool {
        self.local_repository().is_none()
    }

    /// The restic program this stage runs: `restic_binary`, or `restic` from `PATH`.
    pub fn program(&self) -> &'static str {
        self.restic_binary
            .as_ref()
            .map_or("restic", |binary| binary.get_ref().0)
    }

    /// Options every restic command of this stage gets (before the subcommand's own).
    pub fn global_args(&self) -> Vec<String> {
        self.options
            .iter()
            .flat_map(|option| ["-o".to_string(), option.clone()])
            .collect()
    }

    /// `--limit-upload`/`--limit-download` for a restic command starting at `now`: restic
    /// 0.14 keeps one rate per run, so a timetable gives the rate of its current entry.
    pub fn limit_args(&self, now: crate::bandwidth::Minute) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, limit) in [
            ("--limit-upload", &self.upload_limit),
            ("--limit-download", &self.download_limit),
        ] {
            if let Some(kib) = limit.as_ref().and_then(|l| l.at(now).0.kib()) {
                args.push(format!("{flag}={kib}"));
            }
        }
        args
    }

    /// The limits and how restic applies them (`StageKind::bandwidth`).
    pub(super) fn limits(&self) -> Vec<crate::bandwidth::Applied<'_>> {
        crate::bandwidth::Applied::upload_and_download(
            self.upload_limit.as_ref(),
            self.download_limit.as_ref(),
            "restic",
            crate::bandwidth::MidRun::RateAtStart,
        )
    }

    pub(super) fn retry_delay(&self) -> Duration {
        self.retry_delay
            .as_ref()
            .and_then(|text| Timespan::parse(text.get_ref()).ok())
            .map(|span| span.0)
            .unwrap_or(DEFAULT_RETRY_DELAY)
    }

    /// `lock_wait`, the longest the stage waits for its repository's lock; `None` when not
    /// given (checked at load, so a given one parses).
    pub fn lock_wait(&self) -> Option<Duration> {
        self.lock_wait
            .as_ref()
            .and_then(|text| Timespan::parse(text.get_ref()).ok())
            .map(|span| span.0)
    }

    pub(super) fn retries(&self) -> u32 {
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
        if self.files_from_command.is_some() {
            // restic reads the list from its stdin, fed by the command (see `run`).
            args.push("--files-from=-".into());
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
        args.extend(self.forget_args.iter().flat_map(|a| a.get_ref().clone()));
        args
    }

    pub fn check_arguments(&self) -> Vec<String> {
        let mut args = vec!["check".to_string()];
        if let Some(subset) = &self.read_data_subset {
            args.push(format!("--read-data-subset={}", subset.get_ref()));
        }
        args.extend(self.check_args.iter().flat_map(|a| a.get_ref().clone()));
        args
    }
}
