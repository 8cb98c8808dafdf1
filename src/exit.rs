//! Documented exit codes (also in the man page and README).
//!
//! `backupctl stage` uses them so systemd and `run` can tell failures apart; other verbs use
//! 0, 1 (did the work, found a problem: a failed job, an invalid config under `check`) and 2.

/// Success (possibly with warnings, which are in the journal and the run record).
pub const OK: u8 = 0;
/// The stage or job failed.
pub const FAILED: u8 = 1;
/// Usage or config error: nothing was run.
pub const USAGE: u8 = 2;
/// `hello`'s preflight found a problem (tool missing, destination not writable, …).
pub const PREFLIGHT: u8 = 3;
/// A failure that may pass by itself (network, lock); units may restart on it.
pub const TEMPORARY: u8 = 75;
/// Stopped by SIGTERM/SIGINT (`systemctl stop`, Ctrl-C) before it finished.
pub const INTERRUPTED: u8 = 130;
