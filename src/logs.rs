//! Reading backupctl's journal records back (`backupctl logs`). Records are selected by our
//! own fields (`BACKUPCTL_JOB`, `BACKUPCTL_STAGE`, `BACKUPCTL_RUN`, `BACKUPCTL_JOB_RUN`), not by
//! unit names: journald derives `_SYSTEMD_USER_UNIT` from the sender's cgroup, which is not
//! always there (a user manager outside logind's slice, a short-lived process, `run --here`
//! from a shell), while our fields travel inside every record.
//!
//! Why `journalctl` is spawned rather than the journal files read in-process: journalctl is
//! always there where a journal is, knows every journal file format and compression systemd
//! may write (the pure-Rust `libsystemd` crate has no reader; the `systemd` crate would link
//! the C library and its version), applies the reader's permissions the way the admin
//! expects (group `adm`/`systemd-journal`, per-user files), and `-f` follows rotations.
//! `-o json` with field matches gives exact records back; we only format them.

use crate::process::{Command, ToolError};
use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::Config;
use crate::paths::Scope;
use crate::report::messages;
use crate::report::terminal::{RED, YELLOW, local_time, paint};

/// Which records: a job (or several), maybe one stage, maybe one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub jobs: Vec<String>,
    pub stage: Option<String>,
    /// A job run (`BACKUPCTL_JOB_RUN`) or a stage run (`BACKUPCTL_RUN`).
    pub run: Option<String>,
    /// Only records written by these uids (none: any). User scope: one's own, not another
    /// user's job of the same name; system scope: root's and the jobs' `user`'s, not a
    /// user's own user-scope job of the same name.
    pub uids: Vec<u32>,
}

impl Selection {
    /// journalctl match arguments: fields within a group are ANDed (the same field twice:
    /// ORed), groups are ORed with `+`.
    pub fn matches(&self) -> Vec<String> {
        let common = |extra: Option<String>| {
            let mut group: Vec<String> = self
                .jobs
                .iter()
                .map(|job| format!("BACKUPCTL_JOB={job}"))
                .collect();
            group.extend(self.stage.iter().map(|s| format!("BACKUPCTL_STAGE={s}")));
            group.extend(self.uids.iter().map(|uid| format!("_UID={uid}")));
            group.extend(extra);
            group
        };
        match &self.run {
            None => common(None),
            Some(run) => {
                let mut args = common(Some(format!("BACKUPCTL_JOB_RUN={run}")));
                args.push("+".into());
                args.extend(common(Some(format!("BACKUPCTL_RUN={run}"))));
                args
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Journalctl(#[from] ToolError),
}

/// `journalctl -o json` with our matches, the caller's extra options first.
pub fn journalctl(selection: &Selection, options: &[String]) -> Command<'static> {
    Command::new("journalctl")
        .args(["--no-pager", "--quiet", "--output=json"])
        .args(options)
        .args(selection.matches())
}

/// The newest run among the selected records: the job run of the newest "stage started"
/// record (its stage run when it has no job run). `None` when there is none.
pub fn last_run(selection: &Selection) -> Result<Option<String>, LogsError> {
    let mut selection = selection.clone();
    selection.run = None;
    let output = journalctl(
        &selection,
        &[
            "--reverse".into(),
            "--lines=1".into(),
            format!("MESSAGE_ID={}", messages::STAGE_STARTED),
        ],
    )
    .output()?;
    Ok(output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|record| {
            let field = |name| record.get(name).and_then(Value::as_str).map(String::from);
            field("BACKUPCTL_JOB_RUN").or_else(|| field("BACKUPCTL_RUN"))
        }))
}

/// One journal record, the fields people read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub realtime_usec: u64,
    pub priority: u8,
    pub job: Option<String>,
    pub stage: Option<String>,
    pub message: String,
    pub fields: BTreeMap<String, Value>,
}

/// A field's text: journald writes non-UTF-8 values as arrays of bytes.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Array(bytes) => Some(
            String::from_utf8_lossy(
                &bytes
                    .iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect::<Vec<u8>>(),
            )
            .into_owned(),
        ),
        _ => None,
    }
}

impl Record {
    /// Parses one line of `journalctl -o json`.
    pub fn parse(line: &str) -> Option<Record> {
        let fields: BTreeMap<String, Value> = serde_json::from_str(line).ok()?;
        let get = |name: &str| fields.get(name).and_then(text);
        Some(Record {
            realtime_usec: get("__REALTIME_TIMESTAMP")?.parse().ok()?,
            priority: get("PRIORITY").and_then(|p| p.parse().ok()).unwrap_or(6),
            job: get("BACKUPCTL_JOB"),
            stage: get("BACKUPCTL_STAGE"),
            message: get("MESSAGE").unwrap_or_default(),
            fields,
        })
    }

    /// `2026-05-20 03:00:01 copy: message`, with `error:` / `warning:` as the priority says.
    pub fn line(&self, color: bool) -> String {
        let time = jiff::Timestamp::from_microsecond(self.realtime_usec as i64)
            .map(local_time)
            .unwrap_or_default();
        let who = match (&self.stage, &self.job) {
            (Some(stage), _) => stage.clone(),
            (None, Some(job)) => format!("job {job}"),
            (None, None) => "backupctl".into(),
        };
        let (label, code) = match self.priority {
            0..=3 => ("error: ", RED),
            4 => ("warning: ", YELLOW),
            _ => ("", ""),
        };
        let message = paint(color, code, &format!("{label}{}", self.message));
        format!("{time} {who}: {message}")
    }
}

/// The uids whose records belong to `jobs` in `scope` (for [`Selection::uids`]). User scope:
/// one's own (another user's job may have the same names).
pub fn writers(config: &Config, scope: Scope, jobs: &[String]) -> Vec<u32> {
    match scope {
        Scope::User => vec![nix::unistd::getuid().as_raw()],
        Scope::System => system_uids(config, jobs),
    }
}

/// Who writes the system-scope records of `jobs`: root (stages, the job's summary) and each
/// job's `user`. A user's own user-scope job of the same name (`job` is everyone's default)
/// writes as that user and stays out. Empty (no filter) when a `user` is unknown here.
fn system_uids(config: &Config, jobs: &[String]) -> Vec<u32> {
    let mut uids = vec![0];
    for user in jobs
        .iter()
        .filter_map(|job| config.job(job)?.user.as_deref())
    {
        let uid = user.parse::<u32>().ok().or_else(|| {
            nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        });
        match uid {
            Some(uid) => uids.push(uid),
            None => return Vec::new(),
        }
    }
    uids.sort_unstable();
    uids.dedup();
    uids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_within_a_group_and_or_between_run_kinds() {
        let selection = Selection {
            jobs: vec!["job".into()],
            stage: Some("copy".into()),
            run: Some("abc".into()),
            uids: vec![1000],
        };
        assert_eq!(
            selection.matches(),
            [
                "BACKUPCTL_JOB=job",
                "BACKUPCTL_STAGE=copy",
                "_UID=1000",
                "BACKUPCTL_JOB_RUN=abc",
                "+",
                "BACKUPCTL_JOB=job",
                "BACKUPCTL_STAGE=copy",
                "_UID=1000",
                "BACKUPCTL_RUN=abc",
            ]
        );
        let all = Selection {
            jobs: vec!["job".into(), "offsite".into()],
            ..Selection::default()
        };
        assert_eq!(
            all.matches(),
            ["BACKUPCTL_JOB=job", "BACKUPCTL_JOB=offsite"]
        );
        let system = Selection {
            jobs: vec!["job".into()],
            uids: vec![0, 990],
            ..Selection::default()
        };
        assert_eq!(
            system.matches(),
            ["BACKUPCTL_JOB=job", "_UID=0", "_UID=990"]
        );
    }

    #[test]
    fn parses_records_with_byte_array_messages() {
        let record = Record::parse(
            r#"{"__REALTIME_TIMESTAMP":"1779246001000000","PRIORITY":"3","BACKUPCTL_STAGE":"copy","BACKUPCTL_JOB":"job","MESSAGE":[104,105,255]}"#,
        )
        .unwrap();
        assert_eq!(record.priority, 3);
        assert_eq!(record.stage.as_deref(), Some("copy"));
        assert_eq!(record.message, "hi\u{fffd}");
        assert!(record.line(false).ends_with(" copy: error: hi\u{fffd}"));
        assert!(Record::parse("not json").is_none());
    }
}
