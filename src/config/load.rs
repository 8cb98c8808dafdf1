//! Parsing and validating a config text into [`Config`].
//!
//! The document is parsed once into toml's spanned tree, so that every error, including the
//! ones found after deserialization (unknown `after` targets, cycles), points at its source.
//! A stage table is split in two: the keys every stage has (deserialized here) and the keys
//! of its kind (deserialized by the kind, see `crate::stages`), each strict about unknown keys.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::store::{Password, Remote, Store};
use super::{Config, ConfigError, DEFAULT_JOB, IoClass, Job, Stage, Timespan, calendar, size};
use crate::dag;
use crate::snapshot;
use crate::stages::{self, SpecError};

/// Keys every stage accepts besides those of its kind.
const COMMON_KEYS: &[&str] = &[
    "kind",
    "job",
    "description",
    "after",
    "required",
    "timeout",
    "nice",
    "io_class",
    "cpu_weight",
    "when_mounted",
    "environment",
    "store",
    "snapshot",
    "snapshot_prefix",
    "snapshot_locations",
    "exec_before_snapshot",
];

const TOP_LEVEL_KEYS: &str = "job, jobs, stage, store, notify, metrics";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    description: Option<String>,
    schedule: Option<Spanned<String>>,
    randomized_delay: Option<Spanned<String>>,
    persistent: Option<bool>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    job: Option<Spanned<String>>,
    description: Option<String>,
    after: Option<Vec<Spanned<String>>>,
    required: Option<bool>,
    timeout: Option<Spanned<String>>,
    nice: Option<Spanned<i32>>,
    io_class: Option<Spanned<String>>,
    cpu_weight: Option<Spanned<u32>>,
    when_mounted: Option<Spanned<PathBuf>>,
    environment: Option<IndexMap<Spanned<String>, Spanned<String>>>,
    store: Option<Spanned<String>>,
    snapshot: Option<Spanned<String>>,
    snapshot_prefix: Option<Spanned<PathBuf>>,
    snapshot_locations: Option<IndexMap<Spanned<String>, Spanned<PathBuf>>>,
    exec_before_snapshot: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    remote: Spanned<RawRemote>,
    image: Spanned<String>,
    size: Option<Spanned<String>>,
    keyfile: Spanned<PathBuf>,
}

/// Both remote types' keys; which ones apply is checked in [`store`] (a tagged enum would
/// lose the spans).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    volume: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    /// Accepted only to say where the password belongs instead.
    password: Option<Spanned<toml::Value>>,
    password_file: Option<Spanned<PathBuf>>,
    password_credential: Option<Spanned<String>>,
    domain: Option<String>,
    #[serde(default)]
    options: Vec<Spanned<String>>,
    device: Option<Spanned<String>>,
}

/// The config text and its file name, to turn spans into located errors.
pub(super) struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    pub(super) fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) -> ConfigError {
        ConfigError::at(self.file, self.text, Some(span), message, help.into())
    }

    pub(super) fn toml(&self, error: toml::de::Error, help: Option<String>) -> ConfigError {
        let message = error.message().trim_end().to_string();
        let help = help.or_else(|| hint_for_toml_message(&message));
        ConfigError::at(self.file, self.text, error.span(), message, help)
    }

    /// Checks a path value against the one rule of [`super::pathname`].
    pub(super) fn normalized(
        &self,
        span: Range<usize>,
        path: &Path,
        key: &str,
    ) -> Result<(), ConfigError> {
        let text = path.to_string_lossy();
        super::pathname::check(&text)
            .map_err(|problem| self.error(span, problem.message(key, &text), problem.help()))
    }

    fn spec(&self, error: SpecError, fallback: Range<usize>) -> ConfigError {
        match error {
            SpecError::Toml(error) => self.toml(error, None),
            SpecError::Invalid {
                span,
                message,
                help,
            } => self.error(span.unwrap_or(fallback), message, help),
        }
    }
}

fn hint_for_toml_message(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or fix its spelling: the keys this table takes are listed above, the README's config reference explains each".into())
    } else if let Some(field) = message.strip_prefix("missing field ") {
        Some(format!(
            "this table needs {field}; the README's config reference shows every key"
        ))
    } else if message.contains("duplicate key") {
        Some("each table and key may appear once; stage names must be unique".into())
    } else {
        None
    }
}

/// Parses and validates a whole config.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source { file, text };
    let root = DeTable::parse(text).map_err(|error| source.toml(error, None))?;
    // Before any key is read: no string anywhere may carry what could reshape a unit file.
    super::text::check_document(&source, &root)?;

    let mut jobs: Vec<(Option<Range<usize>>, Job)> = Vec::new();
    let mut stage_entries = Vec::new();
    let mut stores = Vec::new();
    let mut notify = None;
    let mut metrics = None;
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "job" => {
                let raw = RawJob::deserialize(value.into_deserializer())
                    .map_err(|error| source.toml(error, None))?;
                jobs.push((Some(key.span()), job(&source, DEFAULT_JOB, raw)?));
            }
            "jobs" => {
                for (name, value) in table(
                    &source,
                    value,
                    "`jobs` must be a table of jobs, e.g. [jobs.offsite]",
                )? {
                    check_name(&source, &name, "job")?;
                    if name.get_ref() == DEFAULT_JOB {
                        return Err(source.error(
                            name.span(),
                            format!("job name `{DEFAULT_JOB}` is reserved for the [job] table"),
                            Some("describe the default job under [job], or give this one another name".into()),
                        ));
                    }
                    let raw = RawJob::deserialize(value.into_deserializer())
                        .map_err(|error| source.toml(error, None))?;
                    let job = job(&source, name.get_ref(), raw)?;
                    jobs.push((Some(name.span()), job));
                }
            }
            "stage" => {
                stage_entries = table(
                    &source,
                    value,
                    "`stage` must hold tables, e.g. [stage.hello]",
                )?;
            }
            "store" => {
                for (name, value) in
                    table(&source, value, "`store` must hold tables, e.g. [store.nas]")?
                {
                    check_name(&source, &name, "store")?;
                    stores.push(store(&source, name, value)?);
                }
            }
            "notify" => notify = Some(super::notify::notify(&source, key.span(), value)?),
            "metrics" => metrics = Some(super::metrics::metrics(&source, value)?),
            other => {
                return Err(source.error(
                    key.span(),
                    format!("unknown top-level key `{other}`"),
                    Some(format!("the top-level tables are: {TOP_LEVEL_KEYS}")),
                ));
            }
        }
    }

    if stage_entries.is_empty() {
        return Err(ConfigError::whole_file(
            file,
            "the config defines no stages",
            Some("add at least one stage, e.g.\n[stage.hello]\nkind = \"hello\"".into()),
        ));
    }

    let mut stages = Vec::new();
    let mut after_spans: Vec<Vec<Range<usize>>> = Vec::new();
    for (name, value) in stage_entries {
        check_name(&source, &name, "stage")?;
        let (stage, spans) = stage(&source, name, value, &jobs, &stores)?;
        stages.push(stage);
        after_spans.push(spans);
    }
    // A stage without `job` belongs to [job]; that job exists even when [job] is absent.
    if !jobs.iter().any(|(_, job)| job.name == DEFAULT_JOB)
        && stages.iter().any(|stage| stage.job == DEFAULT_JOB)
    {
        jobs.insert(0, (None, default_job()));
    }
    for (span, job) in &jobs {
        if !stages.iter().any(|stage| stage.job == job.name) {
            return Err(source.error(
                span.clone().unwrap_or(0..0),
                format!("job `{}` has no stages", job.name),
                Some(format!(
                    "add `job = \"{}\"` to a stage, or remove the job",
                    job.name
                )),
            ));
        }
    }
    resolve_after(&source, &mut stages, &after_spans)?;

    Ok(Config {
        file: file.to_path_buf(),
        text: text.to_string(),
        jobs: jobs.into_iter().map(|(_, job)| job).collect(),
        stages,
        stores,
        notify,
        metrics,
        stage_index: Default::default(),
    })
}

fn default_job() -> Job {
    Job {
        name: DEFAULT_JOB.into(),
        description: None,
        schedule: None,
        randomized_delay: None,
        persistent: true,
        user: None,
        group: None,
    }
}

/// A key of a table with its value, both with their positions.
type Entry<'i> = (Spanned<String>, Spanned<DeValue<'i>>);

/// The entries of a table value, or an error at the value.
fn table<'i>(
    source: &Source,
    value: Spanned<DeValue<'i>>,
    message: &str,
) -> Result<Vec<Entry<'i>>, ConfigError> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => Ok(table
            .into_iter()
            .map(|(key, value)| {
                let span = key.span();
                (Spanned::new(span, key.into_inner().into_owned()), value)
            })
            .collect()),
        _ => Err(source.error(span, message, None)),
    }
}

/// Stage and job names become systemd instance and unit names, so they are kept simple.
fn check_name(source: &Source, name: &Spanned<String>, what: &str) -> Result<(), ConfigError> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(source.error(
            name.span(),
            format!("`{text}` is not a valid {what} name"),
            Some(format!(
                "a {what} name becomes part of a systemd unit name: use up to 64 letters, digits, `-` and `_`, starting with a letter or digit"
            )),
        ))
    }
}

fn job(source: &Source, name: &str, raw: RawJob) -> Result<Job, ConfigError> {
    if let Some(schedule) = &raw.schedule {
        calendar::validate(schedule.get_ref()).map_err(|error| {
            source.error(
                schedule.span(),
                format!("invalid schedule: {error}"),
                Some(error.help()),
            )
        })?;
    }
    for (key, value) in [("user", &raw.user), ("group", &raw.group)] {
        if let Some(value) = value {
            check_account(source, key, value)?;
        }
    }
    Ok(Job {
        name: name.to_string(),
        description: raw.description,
        user: raw.user.map(Spanned::into_inner),
        group: raw.group.map(Spanned::into_inner),
        schedule: raw.schedule.map(Spanned::into_inner),
        randomized_delay: raw
            .randomized_delay
            .map(|text| timespan(source, &text, "randomized_delay"))
            .transpose()?,
        persistent: raw.persistent.unwrap_or(true),
    })
}

/// `user`/`group` become `User=`/`Group=`, and systemd *ignores* a name it finds invalid: the
/// stages would run as root. So only names every system takes (or numeric ids) pass.
fn check_account(source: &Source, key: &str, name: &Spanned<String>) -> Result<(), ConfigError> {
    let text = name.get_ref();
    let numeric = !text.is_empty() && text.len() <= 10 && text.chars().all(|c| c.is_ascii_digit());
    let portable = !text.is_empty()
        && text.len() <= 31
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if numeric || portable {
        return Ok(());
    }
    Err(source.error(
        name.span(),
        format!("`{key}` is not a valid {key} name"),
        Some(format!(
            "systemd ignores an invalid {key} name and runs the stages as root: use up to 31 letters, digits, `_` and `-`, starting with a letter or `_` (or a numeric id)"
        )),
    ))
}

pub(super) fn timespan(
    source: &Source,
    text: &Spanned<String>,
    key: &str,
) -> Result<Timespan, ConfigError> {
    Timespan::parse(text.get_ref()).map_err(|error| {
        source.error(
            text.span(),
            format!("invalid `{key}`: {error}"),
            Some("use a systemd time span, e.g. \"90s\", \"30min\", \"2h\" or \"1h 30min\"".into()),
        )
    })
}

/// A stage's `timeout` (`TimeoutStartSec=`): systemd reads 0 as "no timeout at all", the
/// opposite of what a zero suggests, and the same as leaving the key out (stage units are
/// `Type=oneshot`, which has no start timeout by default), so a zero is refused.
fn stage_timeout(source: &Source, text: &Spanned<String>) -> Result<Timespan, ConfigError> {
    let timeout = timespan(source, text, "timeout")?;
    if timeout.0.is_zero() {
        return Err(source.error(
            text.span(),
            "a `timeout` of zero means no timeout to systemd",
            Some("omit the key for no time limit (the default), or give the longest a run may take, e.g. \"2h\"".into()),
        ));
    }
    Ok(timeout)
}

/// Builds one stage; also returns the spans of its `after` entries for later errors.
fn stage(
    source: &Source,
    name: Spanned<String>,
    value: Spanned<DeValue>,
    jobs: &[(Option<Range<usize>>, Job)],
    stores: &[Store],
) -> Result<(Stage, Vec<Range<usize>>), ConfigError> {
    let stage_span = value.span();
    let DeValue::Table(entries) = value.into_inner() else {
        return Err(source.error(
            stage_span,
            format!("stage `{}` must be a table", name.get_ref()),
            Some(format!(
                "write it as [stage.{}] followed by its keys",
                name.get_ref()
            )),
        ));
    };
    // Split the stage's keys into the common ones and those of its kind.
    let mut common = DeTable::new();
    let mut specific = DeTable::new();
    let mut kind = None;
    for (key, value) in entries {
        if key.get_ref() == "kind" {
            kind = Some(value);
        } else if COMMON_KEYS.contains(&key.get_ref().as_ref()) {
            common.insert(key, value);
        } else {
            specific.insert(key, value);
        }
    }
    let kinds = stages::names(|_| true).join(", ");
    let Some(kind) = kind else {
        return Err(source.error(
            name.span(),
            format!("stage `{}` has no `kind`", name.get_ref()),
            Some(format!("add `kind = \"…\"`, one of: {kinds}")),
        ));
    };
    let kind_span = kind.span();
    let Some(kind_name) = kind.get_ref().as_str().map(str::to_string) else {
        return Err(source.error(
            kind_span,
            "`kind` must be a string",
            Some(format!("one of: {kinds}")),
        ));
    };
    let mut raw =
        RawCommon::deserialize(Spanned::new(stage_span.clone(), common).into_deserializer())
            .map_err(|error| source.toml(error, None))?;
    let store_root = match &raw.store {
        None => None,
        Some(name) => match stores.iter().find(|store| store.name == *name.get_ref()) {
            Some(store) => Some(store.mount_point()),
            None => {
                let known: Vec<&str> = stores.iter().map(|s| s.name.as_str()).collect();
                return Err(source.error(
                    name.span(),
                    format!("store `{}` is not defined", name.get_ref()),
                    Some(if known.is_empty() {
                        "define it as [store.NAME] with remote, image and keyfile".into()
                    } else {
                        format!("defined stores: {}", known.join(", "))
                    }),
                ));
            }
        },
    };
    // Errors without a position of their own point at `store` when the stage has one (the
    // kind cannot write into a store), else at the stage.
    let fallback = raw
        .store
        .as_ref()
        .map_or(stage_span.clone(), |store| store.span());
    let kind = stages::kind(&kind_name)
        .ok_or_else(|| {
            source.error(
                kind_span.clone(),
                format!("unknown stage kind `{kind_name}`"),
                Some(format!("use one of: {kinds}")),
            )
        })?
        .parse(
            Spanned::new(stage_span.clone(), specific),
            store_root.as_deref(),
        )
        .map_err(|error| source.spec(error, fallback.clone()))?;

    let job = match &raw.job {
        None => DEFAULT_JOB.to_string(),
        Some(job) => {
            if job.get_ref() != DEFAULT_JOB
                && !jobs.iter().any(|(_, known)| known.name == *job.get_ref())
            {
                return Err(source.error(
                    job.span(),
                    format!(
                        "stage `{}` names job `{}`, which is not defined",
                        name.get_ref(),
                        job.get_ref()
                    ),
                    Some(format!(
                        "define it as [jobs.{}] with a schedule, or remove `job`",
                        job.get_ref()
                    )),
                ));
            }
            job.get_ref().clone()
        }
    };
    if let Some(nice) = &raw.nice
        && !(-20..=19).contains(nice.get_ref())
    {
        return Err(source.error(
            nice.span(),
            format!("nice {} is out of range", nice.get_ref()),
            Some("use a value from -20 (first) to 19 (last)".into()),
        ));
    }
    let io_class = raw
        .io_class
        .as_ref()
        .map(|class| {
            IoClass::parse(class.get_ref()).ok_or_else(|| {
                source.error(
                    class.span(),
                    format!("unknown io_class `{}`", class.get_ref()),
                    Some("use \"idle\", \"best-effort\" or \"realtime\"".into()),
                )
            })
        })
        .transpose()?;
    if let Some(weight) = &raw.cpu_weight
        && !(1..=10000).contains(weight.get_ref())
    {
        return Err(source.error(
            weight.span(),
            format!("cpu_weight {} is out of range", weight.get_ref()),
            Some("use a value from 1 to 10000 (systemd's default is 100)".into()),
        ));
    }
    if let Some(path) = &raw.when_mounted
        && !path.get_ref().is_absolute()
    {
        return Err(source.error(
            path.span(),
            "`when_mounted` must be an absolute path",
            Some("e.g. when_mounted = \"/mnt/usb\"".into()),
        ));
    }
    if let Some(path) = &raw.when_mounted {
        source.normalized(path.span(), path.get_ref(), "when_mounted")?;
    }
    let snapshot = snapshot_settings(source, &mut raw, &kind, &kind_name)?;
    let mut environment = IndexMap::new();
    for (key, value) in raw.environment.unwrap_or_default() {
        let valid = key
            .get_ref()
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(source.error(
                key.span(),
                format!(
                    "`{}` is not a valid environment variable name",
                    key.get_ref()
                ),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            ));
        }
        environment.insert(key.into_inner(), value.into_inner());
    }
    let after_spans = raw.after.iter().flatten().map(Spanned::span).collect();
    let stage = Stage {
        name: name.get_ref().clone(),
        job,
        description: raw.description,
        // Resolved later: explicit names are checked, absent means "the previous stage".
        after: raw
            .after
            .map(|after| after.into_iter().map(Spanned::into_inner).collect())
            .unwrap_or_else(|| vec![IMPLICIT_AFTER.to_string()]),
        required: raw.required.unwrap_or(true),
        timeout: raw
            .timeout
            .map(|text| stage_timeout(source, &text))
            .transpose()?,
        nice: raw.nice.map(Spanned::into_inner),
        io_class,
        cpu_weight: raw.cpu_weight.map(Spanned::into_inner),
        when_mounted: raw.when_mounted.map(Spanned::into_inner),
        environment,
        store: raw.store.map(Spanned::into_inner),
        snapshot,
        kind,
    };
    Ok((stage, after_spans))
}

/// Builds one `[store.NAME]`.
fn store(
    source: &Source,
    name: Spanned<String>,
    value: Spanned<DeValue>,
) -> Result<Store, ConfigError> {
    let raw = RawStore::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, None))?;
    let remote_span = raw.remote.span();
    let remote = raw.remote.into_inner();
    if let Some(password) = &remote.password {
        return Err(source.error(
            password.span(),
            "the CIFS password does not belong in the config",
            Some("put it in a file readable by root only and set `password_file = \"/etc/backupctl/NAME-password\"`, or use a systemd credential: `password_credential = \"ID\"` (see systemd-creds(1))".into()),
        ));
    }
    let kind = match (&remote.kind, &remote.volume, &remote.device) {
        (Some(kind), _, _) => {
            match kind.get_ref().as_str() {
                "cifs" => "cifs",
                "block" => "block",
                other => {
                    return Err(source.error(
                    kind.span(),
                    format!("unknown remote type `{other}`"),
                    Some("use \"cifs\" (a SMB share) or \"block\" (a filesystem on a block device)".into()),
                ));
                }
            }
        }
        (None, Some(_), None) => "cifs",
        (None, None, Some(_)) => "block",
        _ => {
            return Err(source.error(
                remote_span,
                "the remote needs either `volume` (a CIFS share) or `device` (a block device)",
                Some("e.g. remote = { volume = \"//nas.local/backup\", username = \"sig\", password_file = \"/etc/backupctl/nas-password\" } or remote = { device = \"UUID=…\" }".into()),
            ));
        }
    };
    // Keys of the other type are mistakes; say which.
    let misplaced: Option<(Range<usize>, &str)> = if kind == "cifs" {
        remote.device.as_ref().map(|d| (d.span(), "device"))
    } else {
        remote
            .volume
            .as_ref()
            .map(|v| (v.span(), "volume"))
            .or(remote.username.as_ref().map(|v| (v.span(), "username")))
            .or(remote
                .password_file
                .as_ref()
                .map(|v| (v.span(), "password_file")))
            .or(remote
                .password_credential
                .as_ref()
                .map(|v| (v.span(), "password_credential")))
            .or(remote.options.first().map(|v| (v.span(), "options")))
    };
    if let Some((span, key)) = misplaced {
        return Err(source.error(
            span,
            format!("`{key}` does not apply to a {kind} remote"),
            Some("a CIFS remote has volume, username, password_file or password_credential, domain, options; a block remote has device".into()),
        ));
    }
    let remote = if kind == "cifs" {
        let volume = remote.volume.ok_or_else(|| {
            source.error(
                remote_span.clone(),
                "a CIFS remote needs `volume`",
                Some("e.g. volume = \"//nas.local/backup\"".into()),
            )
        })?;
        if !volume.get_ref().starts_with("//") {
            return Err(source.error(
                volume.span(),
                format!("`{}` is not a CIFS volume", volume.get_ref()),
                Some(
                    "write it as //HOST/SHARE, e.g. \"//nas.local/backup\" (forward slashes)"
                        .into(),
                ),
            ));
        }
        let username = remote.username.ok_or_else(|| {
            source.error(
                remote_span.clone(),
                "a CIFS remote needs `username`",
                Some("the NAS account the share is mounted as".into()),
            )
        })?;
        let password = match (remote.password_file, remote.password_credential) {
            (Some(file), None) => {
                if !file.get_ref().is_absolute() {
                    return Err(source.error(
                        file.span(),
                        "`password_file` must be an absolute path",
                        Some("e.g. password_file = \"/etc/backupctl/nas-password\"".into()),
                    ));
                }
                source.normalized(file.span(), file.get_ref(), "password_file")?;
                Password::File(file.into_inner())
            }
            (None, Some(id)) => {
                let valid = !id.get_ref().is_empty()
                    && id
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !valid {
                    return Err(source.error(
                        id.span(),
                        format!("`{}` is not a valid credential name", id.get_ref()),
                        Some("use letters, digits, `-`, `_` and `.`".into()),
                    ));
                }
                Password::Credential(id.into_inner())
            }
            (Some(_), Some(id)) => {
                return Err(source.error(
                    id.span(),
                    "give either `password_file` or `password_credential`, not both",
                    None,
                ));
            }
            (None, None) => {
                return Err(source.error(
                    remote_span,
                    "a CIFS remote needs `password_file` or `password_credential`",
                    Some("the password is never written in the config: put it in a root-only file, or in a systemd credential".into()),
                ));
            }
        };
        for option in &remote.options {
            let text = option.get_ref();
            if text.contains(',') || text.starts_with("password") || text.starts_with("credentials")
            {
                return Err(source.error(
                    option.span(),
                    format!("`{text}` cannot be a mount option here"),
                    Some("give one option per entry, e.g. options = [\"vers=3.0\", \"seal\"]; the credentials come from password_file".into()),
                ));
            }
        }
        Remote::Cifs {
            volume: volume.into_inner(),
            username: username.into_inner(),
            password,
            domain: remote.domain,
            options: remote
                .options
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
        }
    } else {
        let device = remote.device.expect("block remotes have a device");
        let text = device.get_ref();
        if !(text.starts_with('/')
            || text.starts_with("UUID=")
            || text.starts_with("LABEL=")
            || text.starts_with("PARTUUID="))
        {
            return Err(source.error(
                device.span(),
                format!("`{text}` is not a block device"),
                Some("use UUID=… (see `blkid`), LABEL=…, PARTUUID=… or a path under /dev".into()),
            ));
        }
        if text.starts_with('/') {
            source.normalized(device.span(), Path::new(text), "device")?;
        }
        Remote::Block {
            device: device.into_inner(),
        }
    };
    let image = raw.image;
    if image.get_ref().is_empty()
        || image.get_ref().contains('/')
        || image.get_ref().starts_with('.')
    {
        return Err(source.error(
            image.span(),
            format!("`{}` is not a file name", image.get_ref()),
            Some(
                "the image is one file at the top of the remote, e.g. image = \"backup.luks\""
                    .into(),
            ),
        ));
    }
    let size = raw
        .size
        .map(|text| {
            size::parse_size(text.get_ref())
                .ok()
                .filter(|bytes| *bytes >= 128 << 20)
                .ok_or_else(|| {
                    source.error(
                        text.span(),
                        format!("invalid size `{}`", text.get_ref()),
                        Some(
                            "a size of at least 128M (btrfs needs room), e.g. size = \"500G\""
                                .into(),
                        ),
                    )
                })
        })
        .transpose()?;
    if !raw.keyfile.get_ref().is_absolute() {
        return Err(source.error(
            raw.keyfile.span(),
            "`keyfile` must be an absolute path",
            Some("keep it on this machine, e.g. keyfile = \"/etc/backupctl/nas.key\"".into()),
        ));
    }
    source.normalized(raw.keyfile.span(), raw.keyfile.get_ref(), "keyfile")?;
    Ok(Store {
        name: name.into_inner(),
        remote,
        image: image.into_inner(),
        size,
        keyfile: raw.keyfile.into_inner(),
    })
}

/// The snapshot keys of a stage: `snapshot` turns them on, the others need it; only kinds
/// that read local sources can use them.
fn snapshot_settings(
    source: &Source,
    raw: &mut RawCommon,
    kind: &stages::KindSpec,
    kind_name: &str,
) -> Result<Option<snapshot::Settings>, ConfigError> {
    let absolute = |path: &Spanned<PathBuf>, key: &str| {
        if path.get_ref().is_absolute() {
            source.normalized(path.span(), path.get_ref(), key)?;
            Ok(path.get_ref().clone())
        } else {
            Err(source.error(
                path.span(),
                format!("`{key}` needs absolute paths"),
                Some("write the full path, starting with /".into()),
            ))
        }
    };
    let mode = match raw.snapshot.take() {
        None => {
            let stray = [
                raw.snapshot_prefix
                    .as_ref()
                    .map(|p| ("snapshot_prefix", p.span())),
                raw.exec_before_snapshot
                    .as_ref()
                    .map(|p| ("exec_before_snapshot", p.span())),
            ]
            .into_iter()
            .flatten()
            .chain(
                raw.snapshot_locations
                    .iter()
                    .flat_map(|map| map.keys().next())
                    .map(|key| ("snapshot_locations", key.span())),
            )
            .next();
            return match stray {
                Some((key, span)) => Err(source.error(
                    span,
                    format!("`{key}` has no effect without `snapshot`"),
                    Some(
                        "add `snapshot = \"btrfs\"` (or \"auto\") to the stage, or remove the key"
                            .into(),
                    ),
                )),
                None => Ok(None),
            };
        }
        Some(mode) => mode,
    };
    let mode_value = match mode.get_ref().as_str() {
        "none" => return Ok(None),
        "btrfs" => snapshot::Mode::Btrfs,
        "auto" => snapshot::Mode::Auto,
        other => {
            return Err(source.error(
                mode.span(),
                format!("unknown snapshot kind `{other}`"),
                Some("use \"btrfs\", \"auto\" (btrfs where possible, else the live files) or \"none\"".into()),
            ));
        }
    };
    if kind.needs().sources.is_empty() {
        return Err(source.error(
            mode.span(),
            format!("a `{kind_name}` stage reads no local sources to snapshot"),
            Some(format!(
                "`snapshot` applies to stages that read local sources: {}",
                stages::names(|entry| entry.reads_local_sources).join(", ")
            )),
        ));
    }
    let prefix = raw
        .snapshot_prefix
        .as_ref()
        .map(|p| absolute(p, "snapshot_prefix"))
        .transpose()?;
    let mut locations = IndexMap::new();
    for (key, stem) in raw.snapshot_locations.take().unwrap_or_default() {
        let key = Spanned::new(key.span(), PathBuf::from(key.get_ref()));
        locations.insert(
            absolute(&key, "snapshot_locations")?,
            absolute(&stem, "snapshot_locations")?,
        );
    }
    let exec_before = match raw.exec_before_snapshot.take() {
        Some(argv) if argv.get_ref().is_empty() => {
            return Err(source.error(
                argv.span(),
                "`exec_before_snapshot` is empty",
                Some("give a command and its arguments, e.g. [\"mount\", \"/mnt/top\"], or remove the key".into()),
            ));
        }
        Some(argv) => argv.into_inner(),
        None => Vec::new(),
    };
    Ok(Some(snapshot::Settings {
        mode: mode_value,
        prefix,
        locations,
        exec_before,
    }))
}

/// Placeholder in `after` for "the stage before me in this job", resolved below; it cannot
/// clash with a real name because names cannot start with `<`.
const IMPLICIT_AFTER: &str = "<previous>";

/// Resolves `after` (file order by default), checks the names and rejects cycles.
fn resolve_after(
    source: &Source,
    stages: &mut [Stage],
    after_spans: &[Vec<Range<usize>>],
) -> Result<(), ConfigError> {
    // Lookups by name and "the job's previous stage" through maps: searching the stage list
    // for each stage made loading a long chain quadratic.
    let by_name: HashMap<String, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, stage)| (stage.name.clone(), i))
        .collect();
    let mut previous_of_job: HashMap<String, usize> = HashMap::new();
    for index in 0..stages.len() {
        let previous = previous_of_job.insert(stages[index].job.clone(), index);
        if stages[index].after.first().map(String::as_str) == Some(IMPLICIT_AFTER) {
            stages[index].after = previous
                .map(|previous| vec![stages[previous].name.clone()])
                .unwrap_or_default();
            continue;
        }
        for (position, parent) in stages[index].after.iter().enumerate() {
            let span = after_spans[index][position].clone();
            let stage = &stages[index];
            if *parent == stage.name {
                return Err(source.error(
                    span,
                    format!("stage `{}` cannot run after itself", stage.name),
                    Some("remove it from `after`".into()),
                ));
            }
            match by_name.get(parent).map(|&i| &stages[i]) {
                None => {
                    let known: Vec<&str> = stages
                        .iter()
                        .filter(|s| s.job == stage.job)
                        .map(|s| s.name.as_str())
                        .collect();
                    return Err(source.error(
                        span,
                        format!(
                            "stage `{}` runs after `{parent}`, which is not a stage",
                            stage.name
                        ),
                        Some(format!(
                            "stages of job `{}`: {}",
                            stage.job,
                            known.join(", ")
                        )),
                    ));
                }
                Some(other) if other.job != stage.job => {
                    return Err(source.error(
                        span,
                        format!(
                            "stage `{}` (job `{}`) cannot run after `{parent}` of job `{}`",
                            stage.name, stage.job, other.job
                        ),
                        Some(
                            "`after` orders stages within one job; jobs are independent units"
                                .into(),
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    let edges: Vec<Vec<usize>> = stages
        .iter()
        .map(|stage| {
            stage
                .after
                .iter()
                .filter_map(|parent| by_name.get(parent).copied())
                .collect()
        })
        .collect();
    if let Some(cycle) = dag::find_cycle(&edges) {
        // Point at an explicit `after` entry in the cycle (implicit ones have no span).
        let start = (0..cycle.len())
            .find(|&i| !after_spans[cycle[i]].is_empty())
            .unwrap_or(0);
        let cycle: Vec<usize> = cycle[start..]
            .iter()
            .chain(&cycle[..start])
            .copied()
            .collect();
        let first = cycle[0];
        let next = cycle[1 % cycle.len()];
        let position = stages[first]
            .after
            .iter()
            .position(|parent| *parent == stages[next].name)
            .unwrap_or(0);
        let names: Vec<&str> = cycle
            .iter()
            .chain(std::iter::once(&first))
            .map(|&i| stages[i].name.as_str())
            .collect();
        return Err(source.error(
            after_spans[first].get(position).cloned().unwrap_or(0..0),
            format!("the stages form a cycle: {}", names.join(" → after → ")),
            Some("remove one of these `after` entries so that the order has a start".into()),
        ));
    }
    Ok(())
}
