//! The `[job]` table (the default job) and `[jobs.NAME]` (more jobs): parsed and checked
//! into [`Job`]s, each with the span of its name for errors found once the stages are known.

use std::ops::Range;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::source::{Source, check_name, table, timespan};
use super::{BandwidthDefault, ConfigError, DEFAULT_JOB, Job, calendar};

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
        bandwidth: Vec::new(),
    }
}

/// A job's table: its limit and bandwidth keys split off, the rest read strictly.
fn job_table(source: &Source, name: &str, value: Spanned<DeValue>) -> Result<Job, ConfigError> {
    let span = value.span();
    let (value, limits, bandwidth) = match value.into_inner() {
        DeValue::Table(mut table) => {
            let limits = super::limits::split_off(&mut table);
            let bandwidth = bandwidth_defaults(source, &mut table)?;
            let value = Spanned::new(span.clone(), DeValue::Table(table));
            (value, limits, bandwidth)
        }
        other => (
            Spanned::new(span.clone(), other),
            Default::default(),
            Vec::new(),
        ),
    };
    let raw =
        RawJob::deserialize(value.into_deserializer()).map_err(|error| source.toml(error, None))?;
    let mut job = job(source, name, raw)?;
    job.limits = super::limits::parse(source, span, limits)?;
    job.bandwidth = bandwidth;
    Ok(job)
}

/// The job's bandwidth keys (every kind's, `stages::bandwidth_keys`), taken out of its table
/// and checked here, so that a bad value is reported even when no stage takes it.
fn bandwidth_defaults(
    source: &Source,
    table: &mut DeTable,
) -> Result<Vec<BandwidthDefault>, ConfigError> {
    let mut defaults = Vec::new();
    for key in crate::stages::bandwidth_keys() {
        let Some((name, value)) = table.remove_entry(key) else {
            continue;
        };
        let help = || {
            Some(format!(
                "a rate such as \"1M\" or a timetable such as \"08:00 1M, 19:00 off\"; the job's \
                 `{key}` applies to its stages that take `{key}` and do not set it"
            ))
        };
        let Some(text) = value.get_ref().as_str() else {
            return Err(source.error(value.span(), format!("`{key}` must be a string"), help()));
        };
        if let Err(error) = crate::bandwidth::parse(text) {
            return Err(source.error(value.span(), error.to_string(), help()));
        }
        defaults.push(BandwidthDefault {
            key,
            text: text.to_string(),
            key_span: name.span(),
            span: value.span(),
        });
    }
    Ok(defaults)
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
        bandwidth: Vec::new(),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::bandwidth::{Limit, parse};
    use crate::config::{Config, ConfigError};

    fn load(text: &str) -> Result<Config, ConfigError> {
        crate::config::parse(Path::new("/etc/backupctl/backup.toml"), text)
    }

    /// Each stage's bandwidth keys and values, as its kind applies them.
    fn bandwidth(config: &Config, stage: &str) -> Vec<(&'static str, Limit)> {
        let stage = config.stages.iter().find(|s| s.name == stage).unwrap();
        stage
            .spec
            .bandwidth()
            .into_iter()
            .map(|applied| (applied.key, applied.limit.clone()))
            .collect()
    }

    const STAGES: &str = r#"
[stage.home]
kind = "restic"
repository = "/srv/restic"
password_file = "/etc/backupctl/restic.pass"
paths = ["/home"]

[stage.own]
kind = "restic"
repository = "/srv/restic"
password_file = "/etc/backupctl/restic.pass"
paths = ["/etc"]
upload_limit = "2M"

[stage.mirror]
kind = "rsync"
sources = ["/home/"]
destination = "nas:/backup/"

[stage.hello]
kind = "exec"
command = ["/bin/true"]
"#;

    #[test]
    fn a_jobs_bandwidth_is_the_default_of_the_stages_that_take_the_key() {
        let config = load(&format!(
            "[job]\nupload_limit = \"08:00 1M, 19:00 off\"\nbandwidth = \"500K\"\n{STAGES}"
        ))
        .unwrap();
        let timetable = parse("08:00 1M, 19:00 off").unwrap();
        assert_eq!(bandwidth(&config, "home"), [("upload_limit", timetable)]);
        // The stage's own key wins, whole.
        assert_eq!(
            bandwidth(&config, "own"),
            [("upload_limit", parse("2M").unwrap())]
        );
        assert_eq!(
            bandwidth(&config, "mirror"),
            [("bandwidth", parse("500K").unwrap())]
        );
        // A kind without bandwidth keys takes none, and is no error.
        assert!(bandwidth(&config, "hello").is_empty());
    }

    #[test]
    fn a_stage_of_another_job_does_not_take_it() {
        let config = load(&format!(
            "[jobs.slow]\nupload_limit = \"1M\"\n[job]\n{STAGES}\n\
             [stage.later]\nkind = \"exec\"\njob = \"slow\"\ncommand = [\"/bin/true\"]\n"
        ))
        .unwrap();
        assert!(bandwidth(&config, "home").is_empty());
    }

    #[test]
    fn a_bad_job_value_is_reported_where_the_job_writes_it() {
        let error = load(&format!("[job]\nupload_limit = \"fast\"\n{STAGES}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("backup.toml:2:16"), "{error}");
        assert!(error.contains("`fast` is not a rate"), "{error}");
        let error = load(&format!("[job]\nbandwidth = 500\n{STAGES}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`bandwidth` must be a string"), "{error}");
    }
}
