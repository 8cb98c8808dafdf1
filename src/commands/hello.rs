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
    print_table(&checks)?;
    crate::stages::hello::print_manners(config.stages.iter())?;
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
