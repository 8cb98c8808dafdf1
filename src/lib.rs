//! backupctl: systemd-native backups. A TOML config becomes systemd units (`generator`); each
//! unit runs one stage through the `executor`; `runner` runs a whole job for people.

pub mod bandwidth;
pub mod btrfs;
pub mod cli;
pub mod commands;
pub mod config;
pub mod coverage;
pub mod dag;
pub mod executor;
pub mod exit;
pub mod generator;
pub mod job_run;
pub mod logs;
pub mod metrics;
pub mod mounts;
pub mod needs;
pub mod notify;
pub mod out;
pub mod paths;
pub mod patterns;
pub mod preflight;
pub mod process;
pub mod report;
pub mod rotate;
pub mod run_records;
pub mod runner;
pub mod schedule;
pub mod secret_file;
pub mod signals;
pub mod snapshot;
pub mod stage_lock;
pub mod stages;
pub mod status;
pub mod store;
pub mod trust;
pub mod units;
