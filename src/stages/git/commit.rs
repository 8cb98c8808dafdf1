//! `mode = "commit"`: the sources copied into the work tree (rsync), committed when something
//! changed, pushed to every remote.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{MESSAGE_PATHS, Spec, VANISHED, capture, head, is_local, remove, with_author};
use crate::out::human_bytes;
use crate::process::Command;
use crate::process::ToolError;
use crate::report::Figures;
use crate::stages::{Outcome, StageContext, StageError};

/// The receive-pack a push to a local remote runs: objects and refs fsynced, as the stage's
/// own git calls do (see `Spec::git`). Remote hosts are left as they are: a forge may refuse
/// any command but its own `git-receive-pack`.
const LOCAL_RECEIVE_PACK: &str =
    "--receive-pack=git -c core.fsync=committed,index -c core.fsyncMethod=fsync receive-pack";

/// What one commit-mode run changed (from `git diff --cached --name-status`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub deleted: Vec<String>,
}

impl Changes {
    pub fn parse(lines: &[String]) -> Changes {
        let mut changes = Changes::default();
        for line in lines {
            let Some((status, path)) = line.split_once('\t') else {
                continue;
            };
            let list = match status.chars().next() {
                Some('A') => &mut changes.added,
                Some('D') => &mut changes.deleted,
                _ => &mut changes.modified,
            };
            list.push(path.to_string());
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.deleted.is_empty()
    }

    /// `3 added, 1 modified, 0 deleted`.
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} modified, {} deleted",
            self.added.len(),
            self.modified.len(),
            self.deleted.len()
        )
    }

    /// The commit message: time and summary as the subject, the changed paths as the body.
    pub fn message(&self, when: &str) -> String {
        let mut message = format!("backup {when}: {}\n\n", self.summary());
        let all = self
            .added
            .iter()
            .map(|p| ('A', p))
            .chain(self.modified.iter().map(|p| ('M', p)))
            .chain(self.deleted.iter().map(|p| ('D', p)));
        let total = self.added.len() + self.modified.len() + self.deleted.len();
        for (status, path) in all.take(MESSAGE_PATHS) {
            message.push_str(&format!("{status} {path}\n"));
        }
        if total > MESSAGE_PATHS {
            message.push_str(&format!("… and {} more\n", total - MESSAGE_PATHS));
        }
        message
    }
}

impl Spec {
    pub(super) fn run_commit(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let repo = self.repository();
        // Fail before copying anything: a missing source (an unmounted disk) would otherwise
        // be committed as "everything deleted".
        for source in self.sources() {
            let source = source.get_ref();
            if !source.exists() {
                return Err(StageError::Preflight(format!(
                    "source {} does not exist (not mounted?); nothing was committed",
                    source.display()
                )));
            }
        }
        self.init_work_tree(ctx)?;

        // Hook for `snapshot = "btrfs"` (a common stage key the executor handles): when it
        // lands, the sources are read from the snapshot's paths instead of the live ones —
        // the tree names stay those of the configured sources.
        ctx.report
            .status("git: copying the sources into the work tree");
        let limit = self.max_file_size();
        let mut too_large = Vec::new();
        let mut warnings = Vec::new();
        let mut rsync = Command::new("rsync")
            .args([
                // What git can keep (contents, symlinks, the executable bit) plus mtimes for
                // rsync's quick check; no owners, so root needs no CAP_CHOWN for it.
                "--recursive",
                "--links",
                "--perms",
                "--times",
                "--delete",
                "--delete-excluded",
                "--info=skip1",
                // Nanosecond mtimes: an edit in the same second as the last copy, keeping the
                // size, must not be taken for "unchanged".
                "--modify-window=-1",
                // The repository's own .git is never touched; nested repositories in the
                // sources are left out (their files are copied, their history is not).
                "--filter=P /.git",
                "--exclude=.git",
            ])
            .arg(format!("--max-size={limit}"));
        rsync = rsync.args(self.exclude.iter().map(|p| format!("--exclude={p}")));
        rsync = rsync.arg("--").args(self.sources().iter().map(|s| {
            // No trailing slash: each source lands in a directory of its own name.
            let text = s.get_ref().to_string_lossy();
            PathBuf::from(text.trim_end_matches('/'))
        }));
        let finished = rsync
            .arg(format!("{}/", repo.display()))
            .ok_codes(&[VANISHED])
            .on_line(|line| {
                if let Some(path) = line.strip_suffix(" is over max-size") {
                    too_large.push(path.to_string());
                }
            })
            .on_stderr(|line| tracing::warn!("rsync: {line}"))
            .run()?;
        if finished.code == VANISHED {
            warnings.push("some source files vanished during the copy (rsync exit 24)".into());
        }
        self.remove_stale_entries(&too_large)?;
        if !too_large.is_empty() {
            warnings.push(format!(
                "{} file(s) larger than max_file_size ({}) were left out of the git backup: {}; \
                 raise max_file_size, exclude them, or back them up with another stage (restic, rsync)",
                too_large.len(),
                human_bytes(limit),
                too_large.join(", ")
            ));
        }

        ctx.report.status("git: recording changes");
        // --force: .gitignore files inside the sources must not hide files from the backup.
        self.git_in_tree()
            .args(["add", "--all", "--force", "--", "."])
            .on_stderr(|line| tracing::warn!("git add: {line}"))
            .run()?;
        let lines = capture(self.git_in_tree().args([
            "diff",
            "--cached",
            "--name-status",
            "--no-renames",
        ]))?;
        let changes = Changes::parse(&lines);
        let mut figures = Figures::default();
        if changes.is_empty() {
            tracing::info!("no changes since the last commit; nothing committed");
            ctx.report.status("git: no changes");
        } else {
            let when = jiff::Zoned::now()
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string();
            ctx.report
                .status(&format!("git: committing ({})", changes.summary()));
            with_author(self.git_in_tree())
                .args(["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m"])
                .arg(changes.message(&when))
                .run()?;
            tracing::info!("committed: {}", changes.summary());
            figures.files_new = Some(changes.added.len() as u64);
            figures.files_changed = Some((changes.modified.len() + changes.deleted.len()) as u64);
        }
        figures.snapshot_id = head(self.git_in_tree())?;
        // Cheap when there is nothing to do; packs loose objects as they pile up.
        self.git_in_tree()
            .args(["gc", "--auto", "--quiet"])
            .on_stderr(|line| tracing::info!("git gc: {line}"))
            .run()?;
        if figures.snapshot_id.is_some() {
            self.push_all(ctx)?;
        }
        Ok(Outcome { warnings, figures })
    }

    /// Creates the work tree on the first run; refuses a non-empty directory that is not one.
    fn init_work_tree(&self, ctx: &StageContext) -> Result<(), StageError> {
        let repo = self.repository();
        if repo.join(".git").is_dir() {
            super::stale_locks::remove_left_before_this_boot(&repo.join(".git"));
            return Ok(());
        }
        let empty = match std::fs::read_dir(repo) {
            Ok(mut entries) => entries.next().is_none(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => {
                return Err(StageError::io(
                    format!("cannot read the repository {}", repo.display()),
                    error,
                ));
            }
        };
        if !empty {
            return Err(StageError::Failed(format!(
                "{} is neither empty nor a git work tree; the git stage owns its `repository` \
                 and will not take over a directory holding other files: choose an empty or new one",
                repo.display()
            )));
        }
        std::fs::create_dir_all(repo).map_err(|e| {
            StageError::io(
                format!("cannot create the repository {}", repo.display()),
                e,
            )
        })?;
        ctx.report.status("git: creating the repository");
        self.git()
            .args(["init", "--quiet", "--initial-branch", &self.branch])
            .arg(repo)
            .run()?;
        // The tree is a faithful copy: no line-ending conversion, executable bits kept.
        for (key, value) in [
            ("core.autocrlf", "false"),
            ("core.safecrlf", "false"),
            ("core.filemode", "true"),
            ("core.symlinks", "true"),
            ("gc.auto", "6700"),
        ] {
            self.git_in_tree().args(["config", key, value]).run()?;
        }
        Ok(())
    }

    /// Removes what the copy must not leave behind: top-level entries of sources no longer
    /// configured (rsync only deletes inside the directories it copies), and stale copies of
    /// files that have grown past the size limit.
    fn remove_stale_entries(&self, too_large: &[String]) -> Result<(), StageError> {
        let repo = self.repository();
        let names: BTreeSet<String> = self
            .sources()
            .iter()
            .filter_map(|s| Self::tree_name(s.get_ref()))
            .collect();
        let entries = std::fs::read_dir(repo)
            .map_err(|e| StageError::io(format!("cannot read {}", repo.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" || names.contains(&name) {
                continue;
            }
            remove(&entry.path())?;
        }
        for path in too_large {
            let path = repo.join(path);
            if path.symlink_metadata().is_ok() {
                remove(&path)?;
            }
        }
        Ok(())
    }

    fn push_all(&self, ctx: &StageContext) -> Result<(), StageError> {
        for remote in &self.remotes {
            let remote = remote.get_ref();
            let local = remote.strip_prefix("file://").unwrap_or(remote);
            if is_local(remote) {
                // A bare remote of ours: its receive-pack's ref locks too.
                super::stale_locks::remove_left_before_this_boot(Path::new(local));
            }
            if is_local(remote) && !Path::new(local).join("HEAD").exists() {
                std::fs::create_dir_all(local)
                    .map_err(|e| StageError::io(format!("cannot create the remote {local}"), e))?;
                self.git()
                    .args([
                        "init",
                        "--quiet",
                        "--bare",
                        "--initial-branch",
                        &self.branch,
                    ])
                    .arg(local)
                    .run()?;
                // gitweb and cgit show this as the project's description.
                let description = format!(
                    "backup of {} (backupctl stage {})\n",
                    self.sources()
                        .iter()
                        .map(|s| s.get_ref().display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    ctx.stage.name
                );
                let _ = std::fs::write(Path::new(local).join("description"), description);
            }
            ctx.report.status(&format!("git: pushing to {remote}"));
            let refspec = format!("refs/heads/{0}:refs/heads/{0}", self.branch);
            let mut push = self.git_in_tree().args(["push", "--quiet"]);
            if is_local(remote) {
                // A local remote's receive-pack is a git of its own that reads only that
                // repository's config (git clears `-c` settings when it enters another
                // repository), so it wrote objects unsynced: a power cut during the push left
                // empty object files in the remote and every later push was refused.
                push = push.arg(LOCAL_RECEIVE_PACK);
            }
            push.args([remote, &refspec])
                .on_stderr(|line| tracing::info!("git push: {line}"))
                .run()
                .map_err(|error| match error {
                    // The commit is safe locally; the next run pushes it.
                    ToolError::Failed { stderr, .. } => StageError::Temporary(format!(
                        "pushing to {remote} failed (the commit is kept and pushed next run): {}",
                        stderr.trim()
                    )),
                    other => other.into(),
                })?;
        }
        Ok(())
    }
}
