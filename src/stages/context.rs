//! What a running stage may use ([`StageContext`]), built by the executor for each run.

use std::io::Read;
use std::path::PathBuf;

use tracing::info;

use crate::config::{Config, Stage};
use crate::paths::Scope;
use crate::report::Reporter;
use crate::stage_lock::StageLock;

/// What a running stage may use.
pub struct StageContext<'a> {
    pub config: &'a Config,
    pub stage: &'a Stage,
    pub scope: Scope,
    pub state_dir: PathBuf,
    pub report: &'a Reporter,
    pub run_id: String,
    /// The stage's lock, held for the whole run: what only one run at a time may do (e.g.
    /// removing what a killed run left behind) takes it as proof.
    pub lock: &'a StageLock,
}

impl StageContext<'_> {
    /// A line a tool printed that is worth keeping in the journal.
    pub fn log_output(&self, line: &str) {
        if !line.trim().is_empty() {
            info!("{line}");
        }
    }
}

/// 128 random bits in hex, the shape of systemd's invocation ids.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // Unique enough for a run id when /dev/urandom is unavailable.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_invocation_ids() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
    }
}
