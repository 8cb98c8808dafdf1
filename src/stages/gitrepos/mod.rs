//! `gitrepos`: find every git repository under the configured roots and record its state
//! (remotes, branch, HEAD, upstream with ahead/behind, uncommitted and untracked files,
//! stashes, unpushed commits) in `repos.json`; write `restore-repos.sh`, which clones every
//! repository that has a remote back to where it was; and with `exclude_pushed = true`,
//! `exclude-pushed.txt`, the git directories of repositories a clone fully restores, for
//! restic's `--exclude-file`, rsync's `--exclude-from` and the `manifest` stage's
//! `exclude_from`.

pub mod find;
pub mod inspect;
mod output;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use serde::Deserialize;
use toml::Spanned;

use super::{Needs, Outcome, SpecError, StageError, StageKind, require_absolute};
use crate::patterns::{Dialect, Matcher};
use crate::report::{Figures, Progress};
use crate::stages::StageContext;

pub use inspect::RepoState;

/// File names in the output directory.
pub const REPORT_FILE: &str = "repos.json";
pub const RESTORE_SCRIPT: &str = "restore-repos.sh";
pub const EXCLUDE_FILE: &str = "exclude-pushed.txt";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Where to look for repositories.
    pub roots: Spanned<Vec<Spanned<PathBuf>>>,
    /// Where the report, the restore script and the exclude file go
    /// (default: `STATE/gitrepos/STAGE/`).
    pub output: Option<Spanned<PathBuf>>,
    /// Directories not to search (restic's pattern syntax).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Write `exclude-pushed.txt`: the git directories of fully pushed, clean repositories.
    #[serde(default)]
    pub exclude_pushed: bool,
}

impl Spec {
    pub fn output_dir(&self, state_dir: &Path, stage: &str) -> PathBuf {
        self.output
            .as_ref()
            .map(|o| o.get_ref().clone())
            .unwrap_or_else(|| state_dir.join("gitrepos").join(stage))
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "gitrepos";

    fn validate(&self) -> Result<(), SpecError> {
        if self.roots.get_ref().is_empty() {
            return Err(SpecError::invalid(
                Some(self.roots.span()),
                "`roots` is empty",
                "list where to look for repositories, e.g. roots = [\"/home/sig\"]",
            ));
        }
        require_absolute(self.roots.get_ref(), "roots")?;
        if let Some(output) = &self.output {
            require_absolute(std::slice::from_ref(output), "output")?;
        }
        crate::stages::manifest::exclude::check_patterns(&self.exclude)?;
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs {
            writes: self.output.iter().map(|o| o.get_ref().clone()).collect(),
            ..Needs::default()
        }
    }

    fn other_reads(&self) -> Vec<PathBuf> {
        let roots = self.roots.get_ref().iter();
        roots.map(|root| root.get_ref().clone()).collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let output = self.output_dir(&ctx.state_dir, &ctx.stage.name);
        std::fs::create_dir_all(&output)
            .map_err(|e| StageError::io(format!("cannot create {}", output.display()), e))?;
        let excludes = Matcher::new(
            Dialect::Restic,
            &crate::stages::manifest::exclude::pattern_texts(&self.exclude),
        )
        .map_err(|error| StageError::Failed(error.to_string()))?;
        let roots: Vec<PathBuf> = self
            .roots
            .get_ref()
            .iter()
            .map(|r| r.get_ref().clone())
            .collect();

        ctx.report.status("gitrepos: searching for repositories");
        let (found, problems) = find::find(&roots, &excludes);
        if crate::signals::stopped() {
            return Err(StageError::Interrupted);
        }
        ctx.report
            .status(&format!("gitrepos: reading {} repositories", found.len()));
        let repos = inspect_all(ctx, &found);
        if crate::signals::stopped() {
            return Err(StageError::Interrupted);
        }

        let pushed = output::excludable(&repos);
        output::write_report(&output.join(REPORT_FILE), &ctx.stage.name, &roots, &repos)?;
        output::write_restore_script(&output.join(RESTORE_SCRIPT), &ctx.stage.name, &repos)?;
        if self.exclude_pushed {
            output::write_excludes(&output.join(EXCLUDE_FILE), &repos, &pushed)?;
        }

        let mut warnings: Vec<String> = problems;
        for repo in repos.iter().filter(|r| r.error.is_some()) {
            warnings.push(format!(
                "cannot read the repository {}: {}",
                repo.path,
                repo.error.as_deref().unwrap_or_default()
            ));
        }
        let local = repos.iter().filter(|r| !r.pushed).count();
        tracing::info!(
            "{} repositories: {} fully pushed and clean, {} with local work; report in {}",
            repos.len(),
            repos.len() - local,
            local,
            output.display()
        );
        Ok(Outcome {
            warnings,
            figures: Figures {
                files: Some(repos.len() as u64),
                ..Figures::default()
            },
        })
    }
}

/// Inspects every repository in parallel, reporting progress about once a second.
fn inspect_all(ctx: &StageContext, found: &[find::Found]) -> Vec<RepoState> {
    let done = AtomicU64::new(0);
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reporter = scope.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_secs(1));
                let done = done.load(Ordering::Relaxed);
                ctx.report.progress(&Progress {
                    percent: (!found.is_empty()).then(|| done as f64 * 100.0 / found.len() as f64),
                    text: Some(format!("{done}/{} repositories", found.len())),
                    ..Progress::default()
                });
            }
        });
        let repos = found
            .par_iter()
            .map(|repo| {
                if crate::signals::stopped() {
                    return RepoState::default();
                }
                let state = inspect::inspect(repo);
                done.fetch_add(1, Ordering::Relaxed);
                state
            })
            .collect();
        finished.store(true, Ordering::Relaxed);
        reporter.thread().unpark();
        repos
    })
}

/// Inspects the repositories under `roots` without a stage context (tests, benchmarks).
pub fn scan(roots: &[PathBuf]) -> Vec<RepoState> {
    let (found, _) = find::find(roots, &Matcher::default());
    found.par_iter().map(inspect::inspect).collect()
}
