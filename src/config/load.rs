//! Loading a config text into [`Config`]: parse the TOML, hand each top-level table to the
//! parser next to its model, and assemble the result.
//!
//! The document is parsed once into toml's spanned tree, so that every error, including the
//! ones found after deserialization (unknown `after` targets, cycles), points at its source.

use std::path::Path;

use toml::de::DeTable;

use super::source::{check_name, table};
use super::{Config, ConfigError, DEFAULT_JOB, defaults, job, repository, stage, store};

// `notify` and `metrics` import these from here.
pub(super) use super::source::{Source, timespan};

const TOP_LEVEL_KEYS: &str =
    "job, jobs, stage, defaults, repository, store, notify, metrics, units, coverage, slice";

/// Parses and validates a whole config.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source::new(file, text);
    let root = DeTable::parse(text).map_err(|error| source.toml(error, None))?;
    // Before any key is read: no string anywhere may carry what could reshape a unit file.
    super::text::check_document(&source, &root)?;

    let mut jobs: Vec<job::Located> = Vec::new();
    let mut stage_entries = Vec::new();
    let mut stores = Vec::new();
    let mut repositories = Vec::new();
    let mut stage_defaults = defaults::Defaults::default();
    let mut notify = None;
    let mut metrics = None;
    let mut coverage = None;
    let mut units = Default::default();
    let mut slice = Default::default();
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "job" => jobs.push(job::default_table(&source, key.span(), value)?),
            "jobs" => jobs.extend(job::named_tables(&source, value)?),
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
                    stores.push(store::parse(&source, name, value)?);
                }
            }
            "repository" => repositories = repository::parse_all(&source, value)?,
            "defaults" => stage_defaults.add_all(&source, value)?,
            "notify" => notify = Some(super::notify::notify(&source, key.span(), value)?),
            "metrics" => metrics = Some(super::metrics::metrics(&source, value)?),
            "coverage" => coverage = Some(super::coverage::coverage(&source, value)?),
            "units" => units = super::units::units(&source, value)?,
            "slice" => slice = super::limits::slice_table(&source, value)?,
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
    let mut after_spans: Vec<Vec<std::ops::Range<usize>>> = Vec::new();
    for (name, mut value) in stage_entries {
        check_name(&source, &name, "stage")?;
        stage_defaults.apply(&source, &mut value)?;
        let (stage, spans) = stage::parse(&source, name, value, &jobs, &stores, &repositories)?;
        stages.push(stage);
        after_spans.push(spans);
    }
    // A stage without `job` belongs to [job]; that job exists even when [job] is absent.
    if !jobs.iter().any(|(_, job)| job.name == DEFAULT_JOB)
        && stages.iter().any(|stage| stage.job == DEFAULT_JOB)
    {
        jobs.insert(0, (None, job::default_job()));
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
    stage_defaults.check_used(&source)?;
    stage::resolve_after(&source, &mut stages, &after_spans)?;
    stage::resolve_references(&source, &mut stages)?;

    Ok(Config {
        file: file.to_path_buf(),
        text: text.to_string(),
        jobs: jobs.into_iter().map(|(_, job)| job).collect(),
        stages,
        stores,
        repositories,
        notify,
        metrics,
        coverage,
        units,
        slice,
        stage_index: Default::default(),
    })
}
