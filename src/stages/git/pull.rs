//! `mode = "pull"`: a bare mirror of the one remote, fetched.

use super::{Spec, capture, head};
use crate::process::ToolError;
use crate::report::Figures;
use crate::stages::{Outcome, StageContext, StageError};

impl Spec {
    pub(super) fn run_pull(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let repo = self.repository();
        let remote = self.remotes[0].get_ref();
        let exists = repo.join("HEAD").is_file();
        if exists {
            super::stale_locks::remove_left_before_this_boot(repo);
        }
        let before = if exists { head(self.git_at())? } else { None };
        let temporary = |error: ToolError| match error {
            ToolError::Failed { stderr, .. } => {
                StageError::Temporary(format!("fetching {remote} failed: {}", stderr.trim()))
            }
            other => other.into(),
        };
        if exists {
            ctx.report.status(&format!("git: fetching {remote}"));
            self.git_at()
                .args(["remote", "set-url", "origin", remote])
                .run()?;
            self.git_at()
                .args(["fetch", "--prune", "--quiet", "origin"])
                .on_stderr(|line| tracing::info!("git fetch: {line}"))
                .run()
                .map_err(temporary)?;
        } else {
            if std::fs::read_dir(repo).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(StageError::Failed(format!(
                    "{} holds files but no git repository; the mirror needs an empty or new \
                     directory",
                    repo.display()
                )));
            }
            ctx.report.status(&format!("git: cloning {remote}"));
            std::fs::create_dir_all(repo).map_err(|e| {
                StageError::io(format!("cannot create the mirror {}", repo.display()), e)
            })?;
            self.git()
                .args(["clone", "--mirror", "--quiet", remote])
                .arg(repo)
                .on_stderr(|line| tracing::info!("git clone: {line}"))
                .run()
                .map_err(temporary)?;
        }
        self.git_at()
            .args(["gc", "--auto", "--quiet"])
            .on_stderr(|line| tracing::info!("git gc: {line}"))
            .run()?;
        let after = head(self.git_at())?;
        let new_commits = match (&before, &after) {
            (Some(before), Some(after)) => {
                capture(
                    self.git_at()
                        .args(["rev-list", "--count", &format!("{before}..{after}")]),
                )?
                .first()
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
            }
            (None, Some(after)) => capture(self.git_at().args(["rev-list", "--count", after]))?
                .first()
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0),
            _ => 0,
        };
        tracing::info!(
            "mirror of {remote} is at {}, {new_commits} new commit(s)",
            after.as_deref().unwrap_or("no commit yet")
        );
        ctx.report
            .status(&format!("git: {new_commits} new commit(s) pulled"));
        Ok(Outcome {
            warnings: vec![],
            figures: Figures {
                snapshot_id: after,
                ..Figures::default()
            },
        })
    }
}
