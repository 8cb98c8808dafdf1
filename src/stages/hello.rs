//! `hello`: the preflight of a job. Before anything is copied it checks what the job's other
//! stages need: their tools (printing versions), their destinations (writable, with free
//! space), their secret files (present, not readable by others). It prints a table and fails
//! with one precise line per problem, so the job stops before a half-done backup.

use serde::Deserialize;
use toml::Spanned;

use super::{Needs, Outcome, SpecError, StageError, StageKind};
use crate::config::size::parse_size;
use crate::preflight::{print_table, run_checks};
use crate::stages::StageContext;

const DEFAULT_MIN_FREE: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Free space each local destination must have, e.g. "10G" (default 1G).
    pub min_free: Option<Spanned<String>>,
    /// More programs that must be present (besides those the job's stages use).
    #[serde(default)]
    pub tools: Vec<String>,
}

impl Spec {
    fn min_free(&self) -> u64 {
        self.min_free
            .as_ref()
            .and_then(|text| parse_size(text.get_ref()).ok())
            .unwrap_or(DEFAULT_MIN_FREE)
    }
}

/// Under the checks: each stage's conditions and bandwidth limits, as they apply now (a
/// stage that may be skipped on battery, or copies at 1 MiB/s, says so before its first run).
pub fn print_manners<'a>(
    stages: impl Iterator<Item = &'a crate::config::Stage>,
) -> std::io::Result<()> {
    for stage in stages {
        for line in stage.manners() {
            crate::outln!("stage {}: {line}", stage.name)?;
        }
    }
    Ok(())
}

impl StageKind for Spec {
    const NAME: &'static str = "hello";
    /// The unit probes the job's destinations: it may write there, and reach the network
    /// when a stage of the job does. Their tools, secrets and capabilities stay theirs.
    const JOB_NEEDS: Option<fn(&Self, &Needs) -> Needs> = Some(|_, job| Needs {
        writes: job.writes.clone(),
        network: job.network,
        ..Needs::default()
    });

    fn validate(&self) -> Result<(), SpecError> {
        if let Some(text) = &self.min_free {
            parse_size(text.get_ref()).map_err(|error| {
                SpecError::invalid(
                    Some(text.span()),
                    error.to_string(),
                    "e.g. min_free = \"10G\"",
                )
            })?;
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn purpose(&self) -> crate::stages::Purpose {
        crate::stages::Purpose::Preflight
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let needs = super::job_needs(ctx.config, Some(&ctx.stage.job));
        ctx.report
            .status("hello: checking tools, destinations and secrets");
        let checks = run_checks(&needs, &self.tools, self.min_free());
        // The table is for the reader; a closed stdout must not change the stage's result.
        let _ = print_table(&checks);
        let _ = print_manners(ctx.config.stages_of(&ctx.stage.job));
        let failures: Vec<String> = checks
            .iter()
            .filter(|check| !check.ok)
            .map(|check| format!("{} {}: {}", check.what, check.item, check.detail))
            .collect();
        let warnings = crate::preflight::missing_sources(&needs);
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        if failures.is_empty() {
            Ok(Outcome {
                warnings,
                ..Outcome::default()
            })
        } else {
            Err(StageError::Preflight(failures.join("; ")))
        }
    }
}
