//! Journal `MESSAGE_ID`s of backupctl's records. The catalog in `units/backupctl.catalog`
//! explains each one (`journalctl -x`); keep the two in step (a test checks it).

pub const STAGE_STARTED: &str = "887dcb042d634215b78ece3614d3b841";
pub const STAGE_SUCCEEDED: &str = "edee025d3a2744be8e6fbea7d3476beb";
pub const STAGE_FAILED: &str = "a15fdbc89a1b4109a1f14755f63b7100";
pub const STAGE_WARNED: &str = "447968e63341482790f079a19bed1463";
pub const STAGE_SKIPPED: &str = "f71a8d8f9ff4453a9bc139d75d6f4d58";
/// A stage did not start: another run of it holds its lock (exit 75).
pub const STAGE_BUSY: &str = "c3b1e8a0f65e4d2a9d7f0b5e6a4c2d19";
/// A stage waits for a restic repository another stage holds (`repo_lock`) or another host
/// has locked (restic's own lock).
pub const REPOSITORY_WAIT: &str = "9e2b6c41d8a04f7f86d2a3b5c7e90f14";
/// A stage was killed by its memory limit (`Result=oom-kill`), recorded by `stage-ended`.
pub const STAGE_LIMIT_KILLED: &str = "3e6f0b9a2c8d4f17a5b1e4c7d9026f83";
pub const JOB_FINISHED: &str = "40fbb6111b4a487db99843eb4ae69a2a";
/// A restore drill found restored files that differ from what was backed up.
pub const DRILL_MISMATCH: &str = "5a94c8d232014863aa36186810241ac7";
/// A notification channel (webhook, ping, ntfy, command) could not deliver.
pub const NOTIFY_FAILED: &str = "58cdbf8d13bd4a5caeafebfecdc9f76f";

/// All ids, for the catalog check.
pub const ALL: &[&str] = &[
    STAGE_STARTED,
    STAGE_SUCCEEDED,
    STAGE_FAILED,
    STAGE_WARNED,
    STAGE_SKIPPED,
    STAGE_BUSY,
    REPOSITORY_WAIT,
    STAGE_LIMIT_KILLED,
    JOB_FINISHED,
    DRILL_MISMATCH,
    NOTIFY_FAILED,
];

/// Our journal fields, as the catalog may use them in `@FIELD@` substitutions.
pub const FIELDS: &[&str] = &[
    "BACKUPCTL_JOB",
    "BACKUPCTL_STAGE",
    "BACKUPCTL_RUN",
    "BACKUPCTL_JOB_RUN",
    "BACKUPCTL_KIND",
    "BACKUPCTL_EXIT_CODE",
    "BACKUPCTL_DURATION_SECS",
    "BACKUPCTL_FILES",
    "BACKUPCTL_FILES_NEW",
    "BACKUPCTL_FILES_CHANGED",
    "BACKUPCTL_BYTES_READ",
    "BACKUPCTL_BYTES_ADDED",
    "BACKUPCTL_SNAPSHOT_ID",
    "BACKUPCTL_WARNINGS",
    "BACKUPCTL_FAILED_OPTIONAL",
    "BACKUPCTL_DRILL_TARGET",
    "BACKUPCTL_DRILL_MISMATCHES",
    "BACKUPCTL_NOTIFY_UNIT",
    "BACKUPCTL_NOTIFY_CHANNEL",
    "BACKUPCTL_REPOSITORY",
    "BACKUPCTL_LOCK_MODE",
    "BACKUPCTL_LOCK_HOLDERS",
    "BACKUPCTL_LIMIT",
];

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = include_str!("../../units/backupctl.catalog");

    /// The catalog's entries: id → (header lines, body).
    fn entries() -> Vec<(String, Vec<String>, String)> {
        let mut entries = Vec::new();
        for chunk in CATALOG.split("\n-- ").skip(1) {
            let (id, rest) = chunk.split_once('\n').unwrap();
            let (headers, body) = rest.split_once("\n\n").unwrap();
            entries.push((
                id.trim().to_string(),
                headers.lines().map(String::from).collect(),
                body.to_string(),
            ));
        }
        entries
    }

    #[test]
    fn the_catalog_has_one_entry_per_message_id_and_no_other() {
        let mut ids: Vec<String> = entries().into_iter().map(|(id, ..)| id).collect();
        let mut expected: Vec<String> = ALL.iter().map(|id| id.to_string()).collect();
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected, "units/backupctl.catalog and messages::ALL");
    }

    #[test]
    fn every_entry_has_subject_definer_documentation_and_a_body_with_our_fields() {
        for (id, headers, body) in entries() {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert!(
                headers.iter().any(|h| h.starts_with("Subject: ")),
                "{id}: Subject"
            );
            assert!(
                headers.iter().any(|h| h == "Defined-By: backupctl"),
                "{id}: Defined-By"
            );
            assert!(
                headers.iter().any(|h| h.starts_with("Documentation: ")),
                "{id}: Documentation"
            );
            assert!(body.contains("What to do") || id == STAGE_STARTED, "{id}");
            // `@NAME@` with NAME a field name: only fields we write.
            let text = format!("{}\n{body}", headers.join("\n"));
            let mut parts = text.split('@');
            parts.next();
            while let Some(name) = parts.next() {
                if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                    assert!(
                        FIELDS.contains(&name),
                        "{id}: @{name}@ is not a field of ours"
                    );
                    parts.next();
                }
            }
        }
    }
}
