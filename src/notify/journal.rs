//! The log tail sent with a failure: the stage's recent journal records, found by our own
//! fields (`BACKUPCTL_STAGE`, `BACKUPCTL_RUN`), not by unit name — user units of root have no
//! `_SYSTEMD_USER_UNIT` on every machine, and our fields are on every record a stage writes.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::messages;

/// How long to wait for the stage's last record to be readable (journald writes
/// asynchronously; the notifier starts the moment the stage exited).
const SETTLE: Duration = Duration::from_secs(2);

/// The last `lines` records of the stage's run `run` (or of its recent runs when `run` is
/// unknown), as `TIME MESSAGE` lines. Empty when journalctl is absent or finds nothing.
pub fn tail(job: &str, stage: &str, run: Option<&str>, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let records = query(job, stage, run, lines);
        // The stage's last word is its success or failure record; wait for it a little.
        let complete = records.iter().any(|(id, _)| {
            id.as_deref() == Some(messages::STAGE_FAILED)
                || id.as_deref() == Some(messages::STAGE_SUCCEEDED)
        });
        if complete || run.is_none() || Instant::now() >= deadline {
            return records.into_iter().map(|(_, line)| line).collect();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn query(job: &str, stage: &str, run: Option<&str>, lines: usize) -> Vec<(Option<String>, String)> {
    let mut command = Command::new("journalctl");
    command
        .args(["--no-pager", "--quiet", "--output=json", "--lines"])
        .arg(lines.to_string())
        .arg(format!("BACKUPCTL_JOB={job}"))
        .arg(format!("BACKUPCTL_STAGE={stage}"));
    if let Some(run) = run {
        command.arg(format!("BACKUPCTL_RUN={run}"));
    }
    let Ok(output) = command.output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|record| {
            let id = record["MESSAGE_ID"].as_str().map(String::from);
            (id, format_record(&record))
        })
        .collect()
}

/// `2026-01-01T03:00:00Z message`. journalctl gives a message that is not valid UTF-8 as an
/// array of bytes.
fn format_record(record: &serde_json::Value) -> String {
    let time = record["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|us| us.parse::<i64>().ok())
        .and_then(|us| jiff::Timestamp::from_second(us / 1_000_000).ok())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let message = match &record["MESSAGE"] {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(bytes) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().map(|b| b as u8))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::new(),
    };
    format!("{time} {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_text_and_binary_messages() {
        let record = serde_json::json!({
            "__REALTIME_TIMESTAMP": "1767225600000000",
            "MESSAGE": [104, 105],
        });
        assert_eq!(format_record(&record), "2026-01-01T00:00:00Z hi");
    }
}
