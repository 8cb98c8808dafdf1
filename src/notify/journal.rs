//! The log tail sent with a failure: the stage's recent journal records, found by our own
//! fields (`BACKUPCTL_STAGE`, `BACKUPCTL_RUN`), not by unit name — user units of root have no
//! `_SYSTEMD_USER_UNIT` on every machine, and our fields are on every record a stage writes.

use std::time::{Duration, Instant};

use crate::logs::{self, Record, Selection};
use crate::report::messages;

/// How long to wait for the stage's last record to be readable (journald writes
/// asynchronously; the notifier starts the moment the stage exited).
const SETTLE: Duration = Duration::from_secs(2);

/// The last `lines` records of the stage's run `run` (or of its recent runs when `run` is
/// unknown), as `TIME MESSAGE` lines. Empty when journalctl is absent or finds nothing.
pub fn tail(selection: &Selection, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let records = query(selection, lines);
        // The stage's last word is its success or failure record; wait for it a little.
        let complete = records.iter().any(|record| {
            let id = record.fields.get("MESSAGE_ID").and_then(|id| id.as_str());
            id == Some(messages::STAGE_FAILED) || id == Some(messages::STAGE_SUCCEEDED)
        });
        if complete || selection.run.is_none() || Instant::now() >= deadline {
            return records.iter().map(line).collect();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The records through `backupctl logs`' own selection and parser.
fn query(selection: &Selection, lines: usize) -> Vec<Record> {
    // Whatever it printed, even when it failed: a notification goes out with what there is.
    let Ok(output) = logs::journalctl(selection, &[format!("--lines={lines}")]).capture() else {
        return Vec::new();
    };
    output.stdout.lines().filter_map(Record::parse).collect()
}

/// `2026-01-01T03:00:00Z message`: UTC, to the second, for readers anywhere.
fn line(record: &Record) -> String {
    let time = jiff::Timestamp::from_second((record.realtime_usec / 1_000_000) as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    format!("{time} {}", record.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_text_and_binary_messages() {
        let record =
            Record::parse(r#"{"__REALTIME_TIMESTAMP":"1767225600000000","MESSAGE":[104,105]}"#)
                .unwrap();
        assert_eq!(line(&record), "2026-01-01T00:00:00Z hi");
    }
}
