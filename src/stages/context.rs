//! What a running stage may use ([`StageContext`]), built by the executor for each run.

use std::io::Read;
use std::path::PathBuf;

use tracing::info;

use crate::config::{Config, Stage};
use crate::paths::Scope;
use crate::repo_lock::{LockFailed, RepositoryLocks, RepositoryUse};
use crate::report::Reporter;
use crate::stage_lock::StageLock;
use crate::stages::StageError;

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
    /// The repository locks the run holds ([`crate::repo_lock`]): the executor takes those
    /// of `StageKind::repositories`; a step that needs another mode calls
    /// [`StageContext::hold_repository`].
    pub repositories: &'a RepositoryLocks,
}

impl StageContext<'_> {
    /// Holds `used`'s repository in its mode for the rest of the run, waiting (up to the
    /// stage's `lock_wait`) for the stages in the way, and saying so in `STATUS=` (which
    /// `systemctl status` and `backupctl status` show) and the journal.
    pub fn hold_repository(&self, used: &RepositoryUse) -> Result<(), StageError> {
        let result = self.repositories.hold(used, |waiting| {
            let holders: Vec<String> = waiting.holders.iter().map(|h| h.stage.clone()).collect();
            info!(
                message_id = crate::report::messages::REPOSITORY_WAIT,
                backupctl_repository = %waiting.name,
                backupctl_lock_mode = waiting.mode.as_str(),
                backupctl_lock_holders = %holders.join(" "),
                "{waiting}"
            );
            self.report.status(&waiting.to_string());
        });
        match result {
            Ok(()) => Ok(()),
            Err(LockFailed::Stopped(_)) => Err(StageError::Interrupted),
            Err(timed_out @ LockFailed::TimedOut { .. }) => {
                Err(StageError::LockWait(timed_out.to_string()))
            }
            Err(LockFailed::Lock(error)) => Err(StageError::Failed(format!(
                "{error}: {}",
                std::error::Error::source(&error).map_or(String::new(), |e| e.to_string())
            ))),
        }
    }

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
