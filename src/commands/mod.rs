//! One file per subcommand.

pub mod check;
pub mod generate;
pub mod hello;
pub mod history;
pub mod internal;
pub mod logs;
pub mod man;
pub mod mount;
pub mod notify;
pub mod restore;
pub mod run;
pub mod snapshots;
pub mod stage;
pub mod status;
pub mod store;
pub mod verify;
pub mod watch;

use crate::config::{Config, Job, Stage};

/// The job named on the command line; the error (a usage error, exit 2) lists the config's
/// jobs.
pub fn job<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c Job> {
    config.job(name).ok_or_else(|| {
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        crate::exit::usage(format_args!(
            "no job `{name}` in {}; its jobs are: {}",
            config.file.display(),
            names.join(", ")
        ))
    })
}

/// The stage named on the command line; the error (a usage error, exit 2) lists the
/// config's stages.
pub fn stage<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c Stage> {
    config.stage(name).ok_or_else(|| {
        let names: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
        crate::exit::usage(format_args!(
            "no stage `{name}` in {}; its stages are: {}",
            config.file.display(),
            names.join(", ")
        ))
    })
}
