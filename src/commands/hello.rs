//! `backupctl hello`: check the whole environment before a first run: every stage's tools, destinations and secrets, and for each store
//! its tools, key (present, mode 0400/0600), password file and whether its remote answers;
//! the `[notify]` secret files too.

use std::process::ExitCode;

use crate::commands::Context;
use crate::outln;
use crate::preflight::{print_table, run_checks};

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Free space a local destination should have for `hello` to pass.
const MIN_FREE: u64 = 1 << 30;

pub fn run(ctx: &Context, _args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    // A store's destinations exist only while it is open: its own checks cover it.
    let needs = crate::stages::job_needs(config, None);
    let mut checks = run_checks(&needs, &[], MIN_FREE);
    let state_dir = crate::paths::state_dir(ctx.scope());
    for stage in &config.stages {
        checks.extend(stage.spec.server_checks(&state_dir, &stage.name));
    }
    for store in &config.stores {
        checks.extend(crate::store::preflight::checks(store));
    }
    // Here, not in the hello stage: its unit's sandbox may hide a path systemd itself sees.
    let io_paths = config
        .stages
        .iter()
        .flat_map(|stage| stage.limits.io_paths())
        .chain(config.slice.io_paths());
    for path in io_paths.collect::<std::collections::BTreeSet<_>>() {
        checks.push(crate::preflight::check_io_limit_path(path));
    }
    print_table(&checks)?;
    crate::stages::hello::print_manners(config.stages.iter())?;
    print_limits(config)?;
    for warning in crate::preflight::missing_sources(&needs) {
        eprintln!("warning: {warning}");
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        outln!("all {} checks passed", checks.len())?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{failed} of {} checks failed", checks.len());
        Ok(ExitCode::from(crate::exit::PREFLIGHT))
    }
}

/// What applies to each stage besides its rights: its limits (its own over its job's) as the
/// directives its unit gets, and `backup.slice`'s, which cap all stages together. Nothing
/// when no limit is set.
fn print_limits(config: &crate::config::Config) -> anyhow::Result<()> {
    let mut rows: Vec<(String, Vec<String>)> = config
        .stages
        .iter()
        .map(|stage| (stage.name.clone(), applies_to(&stage.limits)))
        .collect();
    rows.push((crate::units::SLICE.to_string(), applies_to(&config.slice)));
    rows.retain(|(_, lines)| !lines.is_empty());
    if rows.is_empty() {
        return Ok(());
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    outln!("limits (the directives each stage's unit gets):")?;
    for (name, lines) in rows {
        outln!("  {name:width$}  {}", lines.join(" "))?;
    }
    Ok(())
}

/// One stage's settings that decide how (and whether) it runs: each limit as `Directive=value`.
/// Conditions a stage runs under belong in this list too, one entry each.
fn applies_to(limits: &crate::config::limits::Limits) -> Vec<String> {
    limits
        .directives()
        .into_iter()
        .map(|(_, directive, value)| format!("{directive}={value}"))
        .collect()
}
