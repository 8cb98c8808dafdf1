//! The `[job]` table (the default job) and `[jobs.NAME]` (more jobs): parsed and checked
//! into [`Job`]s, each with the span of its name for errors found once the stages are known.

use std::ops::Range;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::source::{Source, check_name, table, timespan};
use super::{ConfigError, DEFAULT_JOB, Job, calendar};

/// A job and where its name is written (`None`: the implicit default job).
pub(super) type Located = (Option<Range<usize>>, Job);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    description: Option<String>,
    schedule: Option<Spanned<String>>,
    randomized_delay: Option<Spanned<String>>,
    persistent: Option<bool>,
    on_boot: Option<Spanned<String>>,
    accuracy: Option<Spanned<String>>,
    wake_system: Option<bool>,
    inhibit_sleep: Option<bool>,
    timer: Option<indexmap::IndexMap<Spanned<String>, Spanned<super::timer::RawValue>>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

/// `[job]`, found under the key at `key_span`.
pub(super) fn default_table(
    source: &Source,
    key_span: Range<usize>,
    value: Spanned<DeValue>,
) -> Result<Located, ConfigError> {
    Ok((Some(key_span), job_table(source, DEFAULT_JOB, value)?))
}

/// `[jobs.NAME]`, in file order.
pub(super) fn named_tables(
    source: &Source,
    value: Spanned<DeValue>,
) -> Result<Vec<Located>, ConfigError> {
    let mut jobs = Vec::new();
    for (name, value) in table(
        source,
        value,
        "`jobs` must be a table of jobs, e.g. [jobs.offsite]",
    )? {
        check_name(source, &name, "job")?;
        if name.get_ref() == DEFAULT_JOB {
            return Err(source.error(
                name.span(),
                format!("job name `{DEFAULT_JOB}` is reserved for the [job] table"),
                Some("describe the default job under [job], or give this one another name".into()),
            ));
        }
        let job = job_table(source, name.get_ref(), value)?;
        jobs.push((Some(name.span()), job));
    }
    Ok(jobs)
}

/// The default job when stages use it without a `[job]` table: no timer.
pub(super) fn default_job() -> Job {
    Job {
        name: DEFAULT_JOB.into(),
        description: None,
        schedule: None,
        randomized_delay: None,
        persistent: true,
        on_boot: None,
        accuracy: None,
        wake_system: false,
        inhibit_sleep: false,
        timer: Vec::new(),
        user: None,
        group: None,
        limits: Default::default(),
    }
}

/// A job's table: its limit keys (`super::limits`) split off, the rest read strictly.
fn job_table(source: &Source, name: &str, value: Spanned<DeValue>) -> Result<Job, ConfigError> {
    let span = value.span();
    let (value, limits) = match value.into_inner() {
        DeValue::Table(mut table) => {
            let limits = super::limits::split_off(&mut table);
            (Spanned::new(span.clone(), DeValue::Table(table)), limits)
        }
        other => (Spanned::new(span.clone(), other), Default::default()),
    };
    let raw =
        RawJob::deserialize(value.into_deserializer()).map_err(|error| source.toml(error, None))?;
    let mut job = job(source, name, raw)?;
    job.limits = super::limits::parse(source, span, limits)?;
    Ok(job)
}

fn job(source: &Source, name: &str, raw: RawJob) -> Result<Job, ConfigError> {
    // The timer is written only for a schedule: its settings alone would be lost silently.
    if raw.schedule.is_none() {
        for (key, span) in [
            (
                "randomized_delay",
                raw.randomized_delay.as_ref().map(Spanned::span),
            ),
            ("on_boot", raw.on_boot.as_ref().map(Spanned::span)),
            ("accuracy", raw.accuracy.as_ref().map(Spanned::span)),
            (
                "timer",
                raw.timer
                    .as_ref()
                    .and_then(|timer| timer.keys().next())
                    .map(Spanned::span),
            ),
        ] {
            if let Some(span) = span {
                return Err(source.error(
                    span,
                    format!("`{key}` is a timer setting, but job `{name}` has no `schedule`"),
                    Some(
                        "add a `schedule` (the job gets a timer only with one), or remove the key"
                            .into(),
                    ),
                ));
            }
        }
    }
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
        on_boot: raw
            .on_boot
            .map(|text| timespan(source, &text, "on_boot"))
            .transpose()?,
        accuracy: raw
            .accuracy
            .map(|text| timespan(source, &text, "accuracy"))
            .transpose()?,
        wake_system: raw.wake_system.unwrap_or(false),
        inhibit_sleep: raw.inhibit_sleep.unwrap_or(false),
        timer: super::timer::directives(source, raw.timer.unwrap_or_default())?,
        limits: Default::default(),
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
