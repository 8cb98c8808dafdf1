//! Where log records go: the journal (with our own fields) when systemd runs us, stderr
//! otherwise. Fields on every stage record: `BACKUPCTL_JOB`, `BACKUPCTL_STAGE`,
//! `BACKUPCTL_RUN`, from the span `executor::run_stage` opens; tracing-journald turns
//! `backupctl_stage` into `BACKUPCTL_STAGE` (no prefix, see below).

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Log filter from `BACKUPCTL_LOG` (tracing's env-filter syntax), default `info`.
fn filter() -> EnvFilter {
    EnvFilter::try_from_env("BACKUPCTL_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// True when our stderr already goes to the journal (systemd sets `JOURNAL_STREAM`), so
/// records should be sent natively, with fields, instead of as plain lines.
fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() && Path::new(JOURNAL_SOCKET).exists()
}

/// Sets up logging once for the process. Never fails: without a journal, stderr is used.
pub fn init() {
    if under_journal()
        && let Ok(layer) = tracing_journald::layer()
    {
        // No prefix: our field names are already namespaced (`BACKUPCTL_*`) and
        // `MESSAGE_ID` must keep its standard name.
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("backupctl".into());
        let _ = tracing_subscriber::registry()
            .with(filter())
            .with(layer)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}
