//! One `[stage.NAME]` table into a [`Stage`], and the resolution of `after` across all
//! stages once they are parsed (file order by default, names checked, no cycles).
//!
//! A stage table is split in two: the keys every stage has (deserialized here) and the keys
//! of its kind (deserialized by the kind, see `crate::stages`), each strict about unknown keys.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::job::Located;
use super::source::{Source, timespan};
use super::{ConfigError, DEFAULT_JOB, IoClass, Stage, Store, Timespan};
use crate::dag;
use crate::stages::{self, SpecError};

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
    cleanup: Option<Spanned<Vec<String>>>,
    lock_wait: Option<Spanned<String>>,
    environment_file: Option<Spanned<OneOrMany<PathBuf>>>,
    on_ac_power: Option<bool>,
    skip_on_metered: Option<Spanned<bool>>,
}

/// A string or a list of them (`environment_file = "/a"` or `["/a", "/b"]`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// Keys every stage accepts besides those of its kind: `kind` and the fields of
/// [`RawCommon`], read from its `Deserialize` so that the list cannot drift from the struct.
fn common_keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        // `extends` is taken out before (see `defaults`), but a stage may write it.
        let mut keys = vec!["kind", super::defaults::EXTENDS];
        keys.extend(field_names::<RawCommon>());
        keys.extend(super::limits::KEYS);
        keys
    })
}

/// The field names serde's derive gives a struct: its `Deserialize` names them when it asks
/// for a struct, which [`FieldNames`] answers with an error once it has noted them.
pub(super) fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom(
            "only a struct's field names are asked for",
        ))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// `cleanup` becomes `ExecStopPost=`, which systemd runs directly: the program must be an
/// absolute path or a plain name (searched in systemd's fixed PATH), and must not start with
/// one of systemd's prefix characters (`-`, `@`, `:`, `+`, `!`), which would change its meaning.
fn cleanup(source: &Source, command: Spanned<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let example = "e.g. cleanup = [\"/usr/bin/rm\", \"-f\", \"/var/backup/db.sql\"]";
    let Some(program) = command.get_ref().first() else {
        return Err(source.error(
            command.span(),
            "`cleanup` is empty",
            Some(format!("give the program and its arguments, {example}")),
        ));
    };
    let plain_name = program.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && !program.contains('/');
    if !program.starts_with('/') && !plain_name {
        return Err(source.error(
            command.span(),
            format!(
                "the `cleanup` program {program:?} is neither an absolute path nor a plain name"
            ),
            Some(format!(
                "systemd runs it directly (no shell, no working directory): {example}"
            )),
        ));
    }
    Ok(command.into_inner())
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
pub(super) fn parse(
    source: &Source,
    name: Spanned<String>,
    value: Spanned<DeValue>,
    jobs: &[Located],
    stores: &[Store],
    repositories: &stages::Repositories,
) -> Result<(Stage, Vec<Range<usize>>), ConfigError> {
    let stage_span = value.span();
    let mut keys = split_keys(source, &name, value)?;
    let own_limits = super::limits::split_off(&mut keys.common);
    let raw =
        RawCommon::deserialize(Spanned::new(stage_span.clone(), keys.common).into_deserializer())
            .map_err(|error| source.toml(error, None))?;
    let own_limits = super::limits::parse(source, stage_span.clone(), own_limits)?;
    let store_root = store_root(source, raw.store.as_ref(), stores)?;
    // Errors without a position of their own point at `store` when the stage has one (the
    // kind cannot write into a store), else at the stage.
    let fallback = raw
        .store
        .as_ref()
        .map_or(stage_span.clone(), |store| store.span());
    let (kind_name, kind_span) = keys.kind;
    let entry = kind_entry(source, &kind_name, kind_span)?;
    let job = job_name(source, &name, raw.job.as_ref(), jobs)?;
    let job_settings = jobs
        .iter()
        .find(|(_, known)| known.name == job)
        .map(|(_, known)| known);
    let mut specific = keys.specific;
    if let Some(job) = job_settings {
        inherit_bandwidth(&mut specific, entry, job);
    }
    let kind = entry
        .parse(
            Spanned::new(stage_span, specific),
            store_root.as_deref(),
            repositories,
        )
        .map_err(|error| match error {
            // The kind's keys are listed in the message; the keys of every stage are not.
            SpecError::Toml(error) if error.message().starts_with("unknown field") => {
                source.unknown_stage_key(error, &kind_name, common_keys())
            }
            other => source.spec(other, fallback),
        })?;
    // A stage's own limits over its job's, key by key.
    let job_limits = job_settings
        .map(|job| job.limits.clone())
        .unwrap_or_default();
    let limits = own_limits.over(&job_limits);
    check_scheduling(source, &raw)?;
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
    let snapshot_keys = super::snapshot::Keys {
        snapshot: raw.snapshot,
        snapshot_prefix: raw.snapshot_prefix,
        snapshot_locations: raw.snapshot_locations,
        exec_before_snapshot: raw.exec_before_snapshot,
    };
    let snapshot = super::snapshot::settings(source, snapshot_keys, &kind, &kind_name)?;
    let environment = environment(source, raw.environment.unwrap_or_default())?;
    let environment_files = environment_files(source, raw.environment_file)?;
    let cleanup = raw.cleanup.map(|c| cleanup(source, c)).transpose()?;
    let conditions = super::conditions::Conditions::parse(
        source,
        raw.on_ac_power,
        raw.skip_on_metered,
        kind.needs().network,
    )?;
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
        limits,
        when_mounted: raw.when_mounted.map(Spanned::into_inner),
        environment,
        environment_files,
        store: raw.store.map(Spanned::into_inner),
        snapshot,
        cleanup,
        lock_wait: raw
            .lock_wait
            .map(|text| timespan(source, &text, "lock_wait"))
            .transpose()?,
        conditions,
        spec: kind,
    };
    Ok((stage, after_spans))
}

/// The registry entry of the kind named in `kind = "…"` (at `span`).
fn kind_entry(
    source: &Source,
    name: &str,
    span: Range<usize>,
) -> Result<&'static stages::Entry, ConfigError> {
    stages::kind(name).ok_or_else(|| {
        source.error(
            span,
            format!("unknown stage kind `{name}`"),
            Some(format!(
                "use one of: {}",
                stages::names(|_| true).join(", ")
            )),
        )
    })
}

/// The job's bandwidth keys that the stage's kind takes and the stage does not set (itself or
/// through `extends`), copied into the kind's keys with the job's positions: the kind reads
/// them as its own, and a value it refuses is reported where the job writes it.
fn inherit_bandwidth(specific: &mut DeTable, kind: &stages::Entry, job: &super::Job) {
    for default in &job.bandwidth {
        if kind.bandwidth_keys.contains(&default.key) && !specific.contains_key(default.key) {
            specific.insert(
                Spanned::new(default.key_span.clone(), default.key.into()),
                Spanned::new(
                    default.span.clone(),
                    DeValue::String(default.text.clone().into()),
                ),
            );
        }
    }
}

/// A stage table split into the keys every stage has and those of its kind, and the kind's
/// name with its position.
struct StageKeys<'a> {
    common: DeTable<'a>,
    specific: DeTable<'a>,
    kind: (String, Range<usize>),
}

fn split_keys<'a>(
    source: &Source,
    name: &Spanned<String>,
    value: Spanned<DeValue<'a>>,
) -> Result<StageKeys<'a>, ConfigError> {
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
    let mut common = DeTable::new();
    let mut specific = DeTable::new();
    let mut kind = None;
    for (key, value) in entries {
        if key.get_ref() == "kind" {
            kind = Some(value);
        } else if common_keys().contains(&key.get_ref().as_ref()) {
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
    let Some(kind_name) = kind.get_ref().as_str().map(str::to_string) else {
        return Err(source.error(
            kind.span(),
            "`kind` must be a string",
            Some(format!("one of: {kinds}")),
        ));
    };
    Ok(StageKeys {
        common,
        specific,
        kind: (kind_name, kind.span()),
    })
}

/// The mount point of the store the stage names, which must be defined.
fn store_root(
    source: &Source,
    store: Option<&Spanned<String>>,
    stores: &[Store],
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(name) = store else {
        return Ok(None);
    };
    match stores.iter().find(|store| store.name == *name.get_ref()) {
        Some(store) => Ok(Some(store.mount_point())),
        None => {
            let known: Vec<&str> = stores.iter().map(|s| s.name.as_str()).collect();
            Err(source.error(
                name.span(),
                format!("store `{}` is not defined", name.get_ref()),
                Some(if known.is_empty() {
                    "define it as [store.NAME] with remote, image and keyfile".into()
                } else {
                    format!("defined stores: {}", known.join(", "))
                }),
            ))
        }
    }
}

/// The stage's job: the default one, or one defined as `[jobs.NAME]`.
fn job_name(
    source: &Source,
    name: &Spanned<String>,
    job: Option<&Spanned<String>>,
    jobs: &[Located],
) -> Result<String, ConfigError> {
    let Some(job) = job else {
        return Ok(DEFAULT_JOB.to_string());
    };
    if job.get_ref() != DEFAULT_JOB && !jobs.iter().any(|(_, known)| known.name == *job.get_ref()) {
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
    Ok(job.get_ref().clone())
}

/// `nice`, `cpu_weight` in systemd's ranges; `when_mounted` an absolute, normal path.
fn check_scheduling(source: &Source, raw: &RawCommon) -> Result<(), ConfigError> {
    if let Some(nice) = &raw.nice
        && !(-20..=19).contains(nice.get_ref())
    {
        return Err(source.error(
            nice.span(),
            format!("nice {} is out of range", nice.get_ref()),
            Some("use a value from -20 (first) to 19 (last)".into()),
        ));
    }
    if let Some(weight) = &raw.cpu_weight
        && !(1..=10000).contains(weight.get_ref())
    {
        return Err(source.error(
            weight.span(),
            format!("cpu_weight {} is out of range", weight.get_ref()),
            Some("use a value from 1 to 10000 (systemd's default is 100)".into()),
        ));
    }
    if let Some(path) = &raw.when_mounted {
        if !path.get_ref().is_absolute() {
            return Err(source.error(
                path.span(),
                "`when_mounted` must be an absolute path",
                Some("e.g. when_mounted = \"/mnt/usb\"".into()),
            ));
        }
        source.normalized(path.span(), path.get_ref(), "when_mounted")?;
    }
    Ok(())
}

/// `environment`: variable names systemd's `Environment=` takes.
fn environment(
    source: &Source,
    raw: IndexMap<Spanned<String>, Spanned<String>>,
) -> Result<IndexMap<String, String>, ConfigError> {
    let mut environment = IndexMap::new();
    for (key, value) in raw {
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
    Ok(environment)
}

/// `environment_file` (`EnvironmentFile=`): absolute, normal paths. Not read here: such a
/// file holds secrets (backend keys) and may be readable by the stage's user only.
fn environment_files(
    source: &Source,
    raw: Option<Spanned<OneOrMany<PathBuf>>>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    // serde gives the entries of a string-or-list no position of their own: errors point
    // at the value as a whole.
    let span = raw.span();
    let files = raw.into_inner().into_vec();
    if files.is_empty() {
        return Err(source.error(
            span,
            "`environment_file` is empty",
            Some("give a file of KEY=VALUE lines, e.g. environment_file = \"/etc/backupctl/s3.env\", or remove the key".into()),
        ));
    }
    for file in &files {
        if !file.is_absolute() {
            return Err(source.error(
                span.clone(),
                format!("`environment_file` {} is not an absolute path", file.display()),
                Some("systemd reads it before the stage starts: give the full path, e.g. \"/etc/backupctl/s3.env\"".into()),
            ));
        }
        source.normalized(span.clone(), file, "environment_file")?;
    }
    Ok(files)
}

/// Placeholder in `after` for "the stage before me in this job", resolved below; it cannot
/// clash with a real name because names cannot start with `<`.
const IMPLICIT_AFTER: &str = "<previous>";

/// Resolves `after` (file order by default), checks the names and rejects cycles.
/// Lets each stage's kind resolve what it refers to in other stages (see
/// `StageKind::resolve`), e.g. the stage a drill verifies.
pub(super) fn resolve_references(source: &Source, stages: &mut [Stage]) -> Result<(), ConfigError> {
    let all: Vec<(String, crate::stages::KindSpec)> = stages
        .iter()
        .map(|stage| (stage.name.clone(), stage.spec.clone()))
        .collect();
    for stage in stages.iter_mut() {
        stage
            .spec
            .resolve(&all)
            .map_err(|error| source.spec(error, 0..0))?;
    }
    // A stage that reads another's backup (a drill) needs that stage's store open too.
    let stores: HashMap<String, Option<String>> = stages
        .iter()
        .map(|stage| (stage.name.clone(), stage.store.clone()))
        .collect();
    for stage in stages.iter_mut().filter(|stage| stage.store.is_none()) {
        if let Some(target) = stage.spec.reads_backup_of() {
            stage.store = stores.get(target).cloned().flatten();
        }
    }
    Ok(())
}

pub(super) fn resolve_after(
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
