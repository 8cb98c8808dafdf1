//! `backupctl stage NAME`: run one stage; the `ExecStart=` of `backup@.service`.

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::Cli;
use crate::executor;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage name (the instance name of backup@NAME.service).
    pub name: String,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let Some(stage) = config.stage(&args.name) else {
        let names: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no stage `{}` in {}; its stages are: {}",
            args.name,
            config.file.display(),
            names.join(", ")
        );
    };
    crate::signals::install()?;
    let report = Reporter::for_environment(&stage.name);
    let record = executor::run_stage(&config, stage, cli.scope(), &executor::run_id(), &report);
    Ok(ExitCode::from(record.exit_code))
}
