//! The `backupctl_repository_*` families: each repository's figures
//! (`crate::repository_figures`, written by the stages that use it) and its last successful
//! check and prune (from the run records), labelled `repository` with its location. Times,
//! not ages: an age in a text file is only true at the moment it was written, while
//! `time() - …` in a rule is true whenever it is evaluated.

use super::{escape_label, seconds, write_family};
use crate::config::Config;
use crate::repository_figures::{Figures, Role};
use crate::run_records::{RunRecord, RunResult};

/// The families of the repositories the configured stages use.
pub fn render(config: &Config, figures: &[Figures], records: &[RunRecord]) -> String {
    let configured = |stage: &str| config.stages.iter().any(|s| s.name == stage);
    let repositories: Vec<&Figures> = figures
        .iter()
        .filter(|f| f.stages.keys().any(|stage| configured(stage)))
        .collect();
    let each = |value: &dyn Fn(&Figures) -> Option<String>| -> Vec<(String, String)> {
        repositories
            .iter()
            .filter_map(|f| Some((label(f), value(f)?)))
            .collect()
    };
    // A repository with a check (prune) stage that never succeeded gets 0, "never": the
    // rule then fires; one without such a stage on this host has no sample (the fleet's
    // checks run elsewhere).
    let last = |role: Role| {
        move |f: &Figures| {
            let stages: Vec<&String> = f
                .stages
                .iter()
                .filter(|(stage, r)| **r == role && configured(stage))
                .map(|(stage, _)| stage)
                .collect();
            if stages.is_empty() {
                return None;
            }
            Some(
                records
                    .iter()
                    .rev()
                    .find(|r| r.result == RunResult::Success && stages.contains(&&r.stage))
                    .and_then(|r| seconds(&r.finished))
                    .unwrap_or_else(|| "0".into()),
            )
        }
    };
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(String, String)>| {
        write_family(&mut out, name, help, &samples);
    };
    family(
        "backupctl_repository_stage_info",
        "Which configured stage uses which repository, and what it does to it (role: backup, forget, prune, check).",
        stage_info(&repositories, &configured),
    );
    family(
        "backupctl_repository_snapshots",
        "Snapshots in the repository when last listed (after each backup, forget and prune).",
        each(&|f| f.snapshots.as_ref().map(|s| s.count.to_string())),
    );
    family(
        "backupctl_repository_snapshots_listed_timestamp_seconds",
        "When the repository's snapshots were last listed (Unix time).",
        each(&|f| f.snapshots.as_ref().and_then(|s| seconds(&s.refreshed))),
    );
    family(
        "backupctl_repository_newest_snapshot_timestamp_seconds",
        "The time of the newest snapshot of each host (snapshot_host) in the repository (Unix time).",
        newest_snapshots(&repositories),
    );
    family(
        "backupctl_repository_stored_bytes",
        "Bytes the repository's unique data takes as stored, deduplicated and compressed (restic stats --mode raw-data).",
        each(&|f| f.sizes.as_ref().map(|s| s.stored_bytes.to_string())),
    );
    family(
        "backupctl_repository_restore_bytes",
        "Bytes all the repository's snapshots would take restored, before deduplication (restic stats --mode restore-size).",
        each(&|f| {
            f.sizes
                .as_ref()
                .and_then(|s| s.restore_bytes)
                .map(|b| b.to_string())
        }),
    );
    family(
        "backupctl_repository_sizes_measured_timestamp_seconds",
        "When the repository's sizes were last measured (Unix time; after each check and prune, else at most daily).",
        each(&|f| f.sizes.as_ref().and_then(|s| seconds(&s.refreshed))),
    );
    family(
        "backupctl_repository_last_check_timestamp_seconds",
        "When a check stage of the repository last succeeded (Unix time; 0: never).",
        each(&last(Role::Check)),
    );
    family(
        "backupctl_repository_last_prune_timestamp_seconds",
        "When a prune stage of the repository last succeeded (Unix time; 0: never).",
        each(&last(Role::Prune)),
    );
    out
}

/// `repository="…"` of a repository's samples.
fn label(figures: &Figures) -> String {
    format!("repository=\"{}\"", escape_label(&figures.repository))
}

/// One sample per configured stage of each repository, with its role.
fn stage_info(
    repositories: &[&Figures],
    configured: &dyn Fn(&str) -> bool,
) -> Vec<(String, String)> {
    repositories
        .iter()
        .flat_map(|f| {
            f.stages
                .iter()
                .filter(|(stage, _)| configured(stage))
                .map(move |(stage, role)| {
                    let labels = format!(
                        "{},stage=\"{}\",role=\"{}\"",
                        label(f),
                        escape_label(stage),
                        role.as_str()
                    );
                    (labels, "1".to_string())
                })
        })
        .collect()
}

/// One sample per host with snapshots in each repository.
fn newest_snapshots(repositories: &[&Figures]) -> Vec<(String, String)> {
    repositories
        .iter()
        .flat_map(|f| {
            f.snapshots
                .iter()
                .flat_map(|s| &s.newest_by_host)
                .filter_map(move |(host, time)| {
                    let labels = format!("{},snapshot_host=\"{}\"", label(f), escape_label(host));
                    Some((labels, seconds(time)?))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository_figures::{Sizes, Snapshots};

    fn record(stage: &str, result: RunResult, finished: &str) -> RunRecord {
        crate::run_records::sample_record(stage, "restic", result, finished)
    }

    #[test]
    fn writes_each_repositorys_figures_with_its_label() {
        let config = crate::config::parse(
            std::path::Path::new("/c.toml"),
            "[stage.home]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
             [stage.check]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
             [stage.prune]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let figures = [
            Figures {
                repository: "/srv/a".into(),
                stages: [
                    ("home".to_string(), Role::Backup),
                    ("check".to_string(), Role::Check),
                    ("prune".to_string(), Role::Prune),
                ]
                .into(),
                snapshots: Some(Snapshots {
                    refreshed: "2026-01-02T00:00:00Z".into(),
                    count: 7,
                    newest_by_host: [("h1".to_string(), "2026-01-01T00:00:00Z".to_string())].into(),
                }),
                sizes: Some(Sizes {
                    refreshed: "2026-01-02T00:00:00Z".into(),
                    stored_bytes: 1000,
                    restore_bytes: Some(5000),
                }),
            },
            Figures {
                repository: "/srv/gone".into(),
                stages: [("removed".to_string(), Role::Backup)].into(),
                snapshots: None,
                sizes: None,
            },
        ];
        let records = [record("check", RunResult::Success, "2026-01-01T00:00:00Z")];
        let text = render(&config, &figures, &records);
        for line in [
            "backupctl_repository_snapshots{repository=\"/srv/a\"} 7",
            "backupctl_repository_newest_snapshot_timestamp_seconds{repository=\"/srv/a\",snapshot_host=\"h1\"} 1767225600.000",
            "backupctl_repository_stored_bytes{repository=\"/srv/a\"} 1000",
            "backupctl_repository_restore_bytes{repository=\"/srv/a\"} 5000",
            "backupctl_repository_last_check_timestamp_seconds{repository=\"/srv/a\"} 1767225600.000",
            "backupctl_repository_last_prune_timestamp_seconds{repository=\"/srv/a\"} 0",
            "backupctl_repository_stage_info{repository=\"/srv/a\",stage=\"home\",role=\"backup\"} 1",
            "# HELP backupctl_repository_stored_bytes Bytes the repository's unique data takes as stored, deduplicated and compressed (restic stats --mode raw-data).",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(
            !text.contains("/srv/gone"),
            "no configured stage uses it: {text}"
        );
    }
}
