//! The repository section of `status` (and the `repositories` array of `--json`): what the
//! stages left in `crate::repository_figures`, with the last successful check and prune
//! taken from the run records of the stages that check and prune each repository.

use serde::Serialize;

use crate::config::Config;
use crate::repository_figures::{Figures, Role};
use crate::run_records::{RunRecord, RunResult};

#[derive(Debug, Clone, Serialize)]
pub struct RepositoryStatus {
    /// The location as the stages resolve it (a URL's password hidden).
    pub repository: String,
    /// The configured stages that use it, with their role (`backup`, `forget`, `prune`,
    /// `check`).
    pub stages: Vec<RepositoryStage>,
    /// Snapshots when last listed (after a backup, forget or prune); `null`: never.
    pub snapshots: Option<u64>,
    /// The newest snapshot per host, oldest first.
    pub hosts: Vec<HostSnapshot>,
    /// When the snapshots were listed (RFC 3339).
    pub snapshots_refreshed: Option<String>,
    /// Bytes its unique data takes as stored (`restic stats --mode raw-data`).
    pub stored_bytes: Option<u64>,
    /// Bytes all its snapshots would take restored (`restic stats --mode restore-size`).
    pub restore_bytes: Option<u64>,
    /// When the sizes were measured (RFC 3339).
    pub sizes_refreshed: Option<String>,
    /// The newest successful run of a `check` stage of it (RFC 3339); `null`: none on record.
    pub last_check: Option<String>,
    /// The newest successful run of a `prune` stage of it.
    pub last_prune: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositoryStage {
    pub name: String,
    pub role: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostSnapshot {
    pub host: String,
    /// RFC 3339.
    pub newest: String,
    /// Seconds between the newest snapshot and the status.
    pub age_secs: Option<u64>,
}

/// The repositories the configured stages use, from their figures.
pub fn of(
    config: &Config,
    figures: &[Figures],
    records: &[RunRecord],
    now: jiff::Timestamp,
) -> Vec<RepositoryStatus> {
    figures
        .iter()
        .filter_map(|figures| {
            let stages: Vec<RepositoryStage> = figures
                .stages
                .iter()
                .filter(|(name, _)| config.stages.iter().any(|s| &s.name == *name))
                .map(|(name, role)| RepositoryStage {
                    name: name.clone(),
                    role: role.as_str(),
                })
                .collect();
            if stages.is_empty() {
                return None;
            }
            Some(one(figures, stages, records, now))
        })
        .collect()
}

fn one(
    figures: &Figures,
    stages: Vec<RepositoryStage>,
    records: &[RunRecord],
    now: jiff::Timestamp,
) -> RepositoryStatus {
    let last_success_of = |role: Role| {
        last_success(
            records,
            stages
                .iter()
                .filter(|s| s.role == role.as_str())
                .map(|s| s.name.as_str()),
        )
    };
    let mut hosts: Vec<HostSnapshot> = figures
        .snapshots
        .iter()
        .flat_map(|s| &s.newest_by_host)
        .map(|(host, newest)| HostSnapshot {
            host: host.clone(),
            newest: newest.clone(),
            age_secs: newest
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| now.duration_since(t).as_secs().max(0) as u64),
        })
        .collect();
    hosts.sort_by(|a, b| a.newest.cmp(&b.newest));
    RepositoryStatus {
        repository: figures.repository.clone(),
        snapshots: figures.snapshots.as_ref().map(|s| s.count),
        hosts,
        snapshots_refreshed: figures.snapshots.as_ref().map(|s| s.refreshed.clone()),
        stored_bytes: figures.sizes.as_ref().map(|s| s.stored_bytes),
        restore_bytes: figures.sizes.as_ref().and_then(|s| s.restore_bytes),
        sizes_refreshed: figures.sizes.as_ref().map(|s| s.refreshed.clone()),
        last_check: last_success_of(Role::Check),
        last_prune: last_success_of(Role::Prune),
        stages,
    }
}

/// The lines under a repository's heading in `status`.
pub fn render(repository: &RepositoryStatus) -> String {
    use crate::out::human_bytes;
    use std::fmt::Write as _;
    let local = |time: &Option<String>| {
        time.as_deref()
            .map_or_else(|| "never".to_string(), super::table::local)
    };
    let age = |secs: Option<u64>| {
        secs.map_or_else(
            || "?".to_string(),
            |s| crate::report::short_duration(std::time::Duration::from_secs(s)),
        )
    };
    let mut out = String::new();
    let stages: Vec<String> = repository
        .stages
        .iter()
        .map(|s| format!("{} ({})", s.name, s.role))
        .collect();
    let _ = writeln!(out, "  stages: {}", stages.join(", "));
    match repository.snapshots {
        Some(count) => {
            let hosts: Vec<String> = repository
                .hosts
                .iter()
                .map(|h| format!("{} {} ago", h.host, age(h.age_secs)))
                .collect();
            let _ = writeln!(
                out,
                "  snapshots: {count} (listed {}); newest: {}",
                local(&repository.snapshots_refreshed),
                if hosts.is_empty() {
                    "-".to_string()
                } else {
                    hosts.join(", ")
                }
            );
        }
        None => out.push_str("  snapshots: not listed yet (after the next backup)\n"),
    }
    match repository.stored_bytes {
        Some(stored) => {
            let restored = repository
                .restore_bytes
                .map(|b| format!(", {} restored", human_bytes(b)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  size: {} stored{restored} (measured {})",
                human_bytes(stored),
                local(&repository.sizes_refreshed)
            );
        }
        None => out.push_str("  size: not measured yet (after the next check or prune)\n"),
    }
    let _ = writeln!(
        out,
        "  last check: {}; last prune: {}",
        local(&repository.last_check),
        local(&repository.last_prune)
    );
    out
}

/// When the newest successful run of any of `stages` finished.
pub fn last_success<'a>(
    records: &[RunRecord],
    stages: impl Iterator<Item = &'a str> + Clone,
) -> Option<String> {
    records
        .iter()
        .rev()
        .find(|r| r.result == RunResult::Success && stages.clone().any(|s| s == r.stage))
        .map(|r| r.finished.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository_figures::{Sizes, Snapshots};

    fn record(stage: &str, result: RunResult, finished: &str) -> RunRecord {
        crate::run_records::sample_record(stage, "restic", result, finished)
    }

    #[test]
    fn takes_the_last_check_and_prune_from_the_records_of_their_stages() {
        let config = crate::config::parse(
            std::path::Path::new("/c.toml"),
            "[stage.home]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
             [stage.check]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let figures = Figures {
            repository: "/srv/r".into(),
            stages: [
                ("home".to_string(), Role::Backup),
                ("check".to_string(), Role::Check),
                ("gone".to_string(), Role::Prune),
            ]
            .into(),
            snapshots: Some(Snapshots {
                refreshed: "2026-01-02T00:00:00Z".into(),
                count: 5,
                newest_by_host: [
                    ("b".to_string(), "2026-01-01T12:00:00Z".to_string()),
                    ("a".to_string(), "2026-01-01T00:00:00Z".to_string()),
                ]
                .into(),
            }),
            sizes: Some(Sizes {
                refreshed: "2026-01-02T00:00:00Z".into(),
                stored_bytes: 100,
                restore_bytes: Some(300),
            }),
        };
        let records = [
            record("check", RunResult::Success, "2026-01-01T01:00:00Z"),
            record("check", RunResult::Failed, "2026-01-01T02:00:00Z"),
            record("home", RunResult::Success, "2026-01-01T03:00:00Z"),
        ];
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let all = of(&config, std::slice::from_ref(&figures), &records, now);
        let repo = &all[0];
        assert_eq!(
            repo.stages
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["check", "home"],
            "a stage gone from the config is not shown"
        );
        assert_eq!(repo.last_check.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(repo.last_prune, None);
        assert_eq!(repo.snapshots, Some(5));
        assert_eq!(repo.hosts[0].host, "a", "oldest first");
        assert_eq!(repo.hosts[0].age_secs, Some(86400));
        assert_eq!(repo.stored_bytes, Some(100));
        assert_eq!(repo.restore_bytes, Some(300));
    }
}
