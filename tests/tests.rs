//! The integration and end-to-end tests: one test binary, one module per area (ripgrep's
//! layout). Every test runs the real tools; one that cannot run here fails and says what is
//! missing (`util::require_tool`), it is never skipped silently.

mod util;

mod bandwidth;
mod calendar;
mod conditions;
mod config_error_unit;
mod config_errors;
mod coverage;
mod databases;
mod drill;
mod examples;
mod exit_codes;
mod fleet;
mod function_length;
mod gaps;
mod generate;
mod gitsync;
mod inventory;
mod layering;
mod limits;
mod manpages;
mod nixos_module;
mod notify;
mod package;
mod patterns;
mod powercut;
mod prometheus;
mod repo_lock;
mod restic;
mod run_here;
mod sandbox;
mod snapshot;
mod stage_lock;
mod store;
mod systemd_e2e;
mod trust;
mod unit_injection;
mod watch;
