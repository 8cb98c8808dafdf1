//! Journal `MESSAGE_ID`s of backupctl's records. The catalog in `units/backupctl.catalog`
//! explains each one (`journalctl -x`); keep the two in step (a test checks it).

pub const STAGE_STARTED: &str = "887dcb042d634215b78ece3614d3b841";
pub const STAGE_SUCCEEDED: &str = "edee025d3a2744be8e6fbea7d3476beb";
pub const STAGE_FAILED: &str = "a15fdbc89a1b4109a1f14755f63b7100";
pub const STAGE_WARNED: &str = "447968e63341482790f079a19bed1463";
pub const STAGE_SKIPPED: &str = "f71a8d8f9ff4453a9bc139d75d6f4d58";
pub const JOB_FINISHED: &str = "40fbb6111b4a487db99843eb4ae69a2a";
/// A notification channel (webhook, ping, ntfy, command) could not deliver.
pub const NOTIFY_FAILED: &str = "58cdbf8d13bd4a5caeafebfecdc9f76f";

/// All ids, for the catalog check.
pub const ALL: &[&str] = &[
    STAGE_STARTED,
    STAGE_SUCCEEDED,
    STAGE_FAILED,
    STAGE_WARNED,
    STAGE_SKIPPED,
    JOB_FINISHED,
    NOTIFY_FAILED,
];
