//! The repository's figures (`crate::repository_figures`) refreshed at the end of a run, so
//! that no reader needs the repository's password. What each figure costs decides when it
//! is refreshed (docs/repository-figures.md):
//!
//! - the snapshot count and the newest snapshot per host: `restic snapshots --json
//!   --no-lock` (one key derivation and one read of every snapshot file, no pack read),
//!   after every successful backup, forget and prune: the runs that change them;
//! - the sizes: `restic stats --mode raw-data` (walks every tree once) and `--mode
//!   restore-size` (walks every snapshot's tree), after a successful prune or check (which
//!   are slow anyway) and otherwise only when the last measure is older than
//!   [`SIZES_MAX_AGE`], so a backup pays for them at most once a day;
//! - the last successful check and prune: not from the repository at all, but from the
//!   run records of the stages registered here with the role `check` or `prune`.
//!
//! Whatever fails here is a warning: the backup was made, a missing figure is not a
//! failed stage.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde::Deserialize;

use super::repo;
use super::spec::{Operation, Spec};
use crate::repository_figures::{self, Role, Sizes, Snapshots};
use crate::stages::StageContext;

/// How old the sizes may be before a backup or forget measures them again.
pub const SIZES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Registers the stage with its repository and, when the run succeeded, refreshes what the
/// run changed.
pub(super) fn after_run(
    spec: &Spec,
    ctx: &StageContext,
    env: &[(OsString, OsString)],
    succeeded: bool,
) {
    let Some(location) = location(env) else {
        return;
    };
    let role = role(spec.operation);
    let known = repository_figures::read_all(&ctx.state_dir)
        .unwrap_or_default()
        .into_iter()
        .find(|f| f.repository == repository_figures::display_location(&location));
    let listing = succeeded && role != Role::Check;
    let sizes_due = succeeded
        && (matches!(role, Role::Prune | Role::Check)
            || known
                .as_ref()
                .and_then(|f| f.sizes.as_ref())
                .is_none_or(|sizes| older_than(&sizes.refreshed, SIZES_MAX_AGE)));
    if listing || sizes_due {
        ctx.report
            .status("restic: refreshing the repository's figures");
    }
    let restic = Restic { spec, ctx, env };
    let snapshots = listing
        .then(|| restic.snapshots())
        .and_then(warn_on_error("list the snapshots"));
    let sizes = sizes_due
        .then(|| restic.sizes())
        .and_then(warn_on_error("measure the repository"));
    let updated = repository_figures::update(&ctx.state_dir, &location, |figures| {
        figures.stages.insert(ctx.stage.name.clone(), role);
        if let Some(snapshots) = snapshots {
            figures.snapshots = Some(snapshots);
        }
        if let Some(sizes) = sizes {
            figures.sizes = Some(sizes);
        }
    });
    if let Err(error) = updated {
        tracing::warn!("cannot write the repository's figures: {error}");
    }
}

/// What a run of this operation does to the repository.
fn role(operation: Operation) -> Role {
    match operation {
        Operation::Backup => Role::Backup,
        Operation::Forget => Role::Forget,
        Operation::Prune => Role::Prune,
        Operation::Check => Role::Check,
    }
}

/// The location restic was given: `RESTIC_REPOSITORY`, or the first line of
/// `RESTIC_REPOSITORY_FILE` (a file or a credential) read as restic reads it.
fn location(env: &[(OsString, OsString)]) -> Option<String> {
    let value = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    if let Some(location) = value("RESTIC_REPOSITORY") {
        return Some(location.to_string_lossy().trim().to_string());
    }
    let file = value("RESTIC_REPOSITORY_FILE")?;
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

fn older_than(time: &str, age: std::time::Duration) -> bool {
    match time.parse::<jiff::Timestamp>() {
        Ok(time) => jiff::Timestamp::now().duration_since(time).as_secs() > age.as_secs() as i64,
        Err(_) => true,
    }
}

fn warn_on_error<T>(what: &'static str) -> impl FnOnce(Result<T, String>) -> Option<T> {
    move |result| {
        result
            .map_err(|error| tracing::warn!("cannot {what} for the figures: {error}"))
            .ok()
    }
}

/// The short restic commands of a refresh; `--no-lock`: they only read, and a lock file
/// written and removed costs two round trips to a remote repository (and a lock an
/// append-only endpoint keeps).
struct Restic<'a> {
    spec: &'a Spec,
    ctx: &'a StageContext<'a>,
    env: &'a [(OsString, OsString)],
}

impl Restic<'_> {
    fn output(&self, args: &[&str]) -> Result<String, String> {
        repo::command(self.spec, self.env, &self.ctx.stage.environment)
            .args(args.iter().map(OsString::from).collect::<Vec<_>>())
            .output()
            .map_err(|error| error.to_string())
    }

    fn snapshots(&self) -> Result<Snapshots, String> {
        let refreshed = jiff::Timestamp::now().to_string();
        let text = self.output(&["snapshots", "--json", "--no-lock"])?;
        snapshots_of(&text, refreshed)
    }

    fn sizes(&self) -> Result<Sizes, String> {
        let refreshed = jiff::Timestamp::now().to_string();
        let stored = self.stats("raw-data")?;
        let restore = self.stats("restore-size")?;
        Ok(Sizes {
            refreshed,
            stored_bytes: stored,
            restore_bytes: Some(restore),
        })
    }

    /// `total_size` of `restic stats --mode MODE --json`.
    fn stats(&self, mode: &str) -> Result<u64, String> {
        #[derive(Deserialize)]
        struct Stats {
            total_size: u64,
        }
        let text = self.output(&["stats", "--mode", mode, "--json", "--no-lock"])?;
        let line = text.lines().rfind(|l| l.starts_with('{')).unwrap_or("");
        serde_json::from_str::<Stats>(line)
            .map(|stats| stats.total_size)
            .map_err(|error| format!("restic stats printed no figures ({error})"))
    }
}

/// The count and the newest snapshot per host of `restic snapshots --json`.
fn snapshots_of(text: &str, refreshed: String) -> Result<Snapshots, String> {
    #[derive(Deserialize)]
    struct Snapshot {
        time: String,
        #[serde(default)]
        hostname: String,
    }
    let list: Vec<Snapshot> = serde_json::from_str(text.trim())
        .map_err(|error| format!("restic snapshots printed no list ({error})"))?;
    let mut newest: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    for snapshot in &list {
        let Ok(time) = snapshot.time.parse::<jiff::Timestamp>() else {
            continue;
        };
        let entry = newest.entry(snapshot.hostname.clone()).or_insert(time);
        *entry = (*entry).max(time);
    }
    Ok(Snapshots {
        refreshed,
        count: list.len() as u64,
        newest_by_host: newest
            .into_iter()
            .map(|(host, time)| (host, time.to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_snapshots_and_finds_each_hosts_newest() {
        let text = r#"[
            {"time":"2026-01-01T00:00:00.5Z","hostname":"a","id":"x"},
            {"time":"2026-01-03T00:00:00Z","hostname":"a","id":"y"},
            {"time":"2026-01-02T00:00:00Z","hostname":"b","id":"z"}
        ]"#;
        let snapshots = snapshots_of(text, "now".into()).unwrap();
        assert_eq!(snapshots.count, 3);
        assert_eq!(snapshots.newest_by_host["a"], "2026-01-03T00:00:00Z");
        assert_eq!(snapshots.newest_by_host["b"], "2026-01-02T00:00:00Z");
        assert_eq!(snapshots_of("[]", "now".into()).unwrap().count, 0);
        assert!(snapshots_of("", "now".into()).is_err());
    }

    #[test]
    fn reads_the_location_from_the_variable_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repository");
        std::fs::write(&file, "rest:http://h/r\n").unwrap();
        let env = |k: &str, v: &std::path::Path| vec![(OsString::from(k), v.into())];
        assert_eq!(
            location(&env("RESTIC_REPOSITORY", std::path::Path::new("/srv/r"))).as_deref(),
            Some("/srv/r")
        );
        assert_eq!(
            location(&env("RESTIC_REPOSITORY_FILE", &file)).as_deref(),
            Some("rest:http://h/r")
        );
        assert_eq!(location(&[]), None);
    }

    #[test]
    fn sizes_are_due_when_old_or_unreadable() {
        let day = std::time::Duration::from_secs(86400);
        assert!(older_than("2020-01-01T00:00:00Z", day));
        assert!(older_than("garbage", day));
        assert!(!older_than(&jiff::Timestamp::now().to_string(), day));
    }
}
