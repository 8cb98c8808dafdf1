//! `git`: git as a backup format. In `commit` mode the sources are copied (rsync, excludes
//! honoured) into a work tree backupctl owns, one top-level directory per source, and committed
//! when something changed; the commits are pushed to the configured remotes. In `pull` mode the
//! stage keeps a mirror of a remote repository (the Raspberry Pi's second copy).
//!
//! Why the `git` program and not a library: pushing over ssh must honour the user's ssh config,
//! keys and known hosts exactly as `git push` does, `git gc --auto` only exists there, and
//! measured against libgit2 (git2) it was as fast or faster in every case: the cost is reading
//! the tree, not starting processes (`scripts/bench.d/git.sh`, figures in
//! docs/git-and-rclone.md). The user's and the system's git config are ignored
//! (`GIT_CONFIG_GLOBAL=/dev/null`), so a `commit.gpgsign` or a hook setting elsewhere cannot
//! break a backup.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

use super::verbs::{HistoryArgs, RestoreArgs, Verb, VerbContext};
use super::{
    Needs, Outcome, SpecError, StageError, StageKind, require_absolute, require_normalized,
};
use crate::config::size::parse_size;
use crate::out::human_bytes;
use crate::outln;
use crate::process::Command;
use crate::process::ToolError;
use crate::report::Figures;
use crate::stages::StageContext;

/// rsync: "Partial transfer due to vanished source files" (normal on a live system).
const VANISHED: i32 = 24;
/// Files larger than this are left out (with a warning) unless `max_file_size` says otherwise:
/// git keeps every version of every file forever, and big binaries make that expensive.
const DEFAULT_MAX_FILE_SIZE: &str = "100M";
/// How many changed paths the commit message lists before "… and N more".
const MESSAGE_PATHS: usize = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy the sources into the work tree, commit, push.
    #[default]
    Commit,
    /// Mirror the (one) remote into `repository`.
    Pull,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub mode: Mode,
    /// Directories (or files) to back up; each becomes a top-level entry of the tree, named
    /// after its last component. `commit` mode only.
    pub sources: Option<Spanned<Vec<Spanned<PathBuf>>>>,
    /// The work tree backupctl owns (`commit`), or the bare mirror (`pull`).
    pub repository: Spanned<PathBuf>,
    /// Where commits are pushed (`commit`) or the one repository mirrored (`pull`): local
    /// paths (a bare repository is created there if missing) or git URLs (`ssh://…`).
    #[serde(default)]
    pub remotes: Vec<Spanned<String>>,
    /// The branch commits go to.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// rsync patterns left out of the copy (e.g. "*.tmp", "node_modules/").
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Larger files are left out with a warning, e.g. "50M" (default 100M).
    pub max_file_size: Option<Spanned<String>>,
    /// The ssh key for `ssh://` remotes.
    pub ssh_key: Option<Spanned<PathBuf>>,
    /// Extra `-o` options for ssh, e.g. ["Port=2222", "StrictHostKeyChecking=accept-new"].
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

fn default_branch() -> String {
    "main".into()
}

/// A local path remote (pushed to without network), as opposed to a URL.
fn is_local(remote: &str) -> bool {
    remote.starts_with('/') || remote.starts_with("file://")
}

/// One commit that touched a path, for `backupctl history`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    pub commit: String,
    pub date: String,
    pub subject: String,
}

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
    pub(crate) fn sources(&self) -> &[Spanned<PathBuf>] {
        self.sources.as_ref().map_or(&[], |s| s.get_ref())
    }

    fn max_file_size(&self) -> u64 {
        let text = self
            .max_file_size
            .as_ref()
            .map_or(DEFAULT_MAX_FILE_SIZE, |s| s.get_ref());
        parse_size(text).unwrap_or(u64::MAX)
    }

    fn uses_ssh(&self) -> bool {
        self.remotes.iter().any(|r| !is_local(r.get_ref()))
    }

    fn repository(&self) -> &Path {
        self.repository.get_ref()
    }

    /// The git directory: `REPO/.git` for the work tree, `REPO` itself for a bare mirror.
    pub(crate) fn git_dir(&self) -> PathBuf {
        let dot_git = self.repository().join(".git");
        if dot_git.is_dir() {
            dot_git
        } else {
            self.repository().to_path_buf()
        }
    }

    /// `git` with the settings every call shares: no user/system config, no prompts, the
    /// repository marked safe (it may belong to another user when root backs it up).
    fn git<'a>(&self) -> Command<'a> {
        let mut command = Command::new("git")
            .args(["-c", "safe.directory=*", "-c", "core.quotepath=false"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C");
        if self.uses_ssh() {
            command = command.env("GIT_SSH_COMMAND", self.ssh_command());
        }
        command
    }

    /// `git --git-dir=… ` for reading (history, restore), which works for both layouts.
    pub(crate) fn git_at<'a>(&self) -> Command<'a> {
        self.git_in(&self.git_dir())
    }

    /// `git --git-dir=DIR` with this stage's settings: its repository or a local remote.
    pub(crate) fn git_in<'a>(&self, git_dir: &Path) -> Command<'a> {
        self.git().arg(format!("--git-dir={}", git_dir.display()))
    }

    /// The local remotes (paths), as the directories they name.
    pub(crate) fn local_remotes(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.remotes
            .iter()
            .map(|r| r.get_ref())
            .filter(|r| is_local(r))
            .map(|r| PathBuf::from(r.strip_prefix("file://").unwrap_or(r)))
    }

    /// `git -C REPO` for the work tree.
    fn git_in_tree<'a>(&self) -> Command<'a> {
        self.git().arg("-C").arg(self.repository())
    }

    fn ssh_command(&self) -> String {
        // git runs GIT_SSH_COMMAND with `sh -c`.
        super::ssh::command(
            super::ssh::Splitter::Shell,
            self.ssh_key.as_ref().map(|key| key.get_ref().as_path()),
            &self.ssh_options,
        )
    }

    /// The top-level name a source gets in the tree.
    fn tree_name(source: &Path) -> Option<String> {
        source
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    }

    /// Maps a path given by a person to a path in the tree: an absolute path inside a source
    /// becomes `SOURCE-NAME/rest`; anything else is taken as a tree path already.
    pub fn tree_path(&self, path: &str) -> String {
        let given = Path::new(path);
        if given.is_absolute() {
            for source in self.sources() {
                let source = source.get_ref();
                if let (Ok(rest), Some(name)) =
                    (given.strip_prefix(source), Self::tree_name(source))
                {
                    return Path::new(&name).join(rest).to_string_lossy().into_owned();
                }
            }
        }
        path.trim_start_matches("./")
            .trim_end_matches('/')
            .to_string()
    }

    fn run_commit(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
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
            self.git_in_tree()
                .args(["push", "--quiet", remote, &refspec])
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

    fn run_pull(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let repo = self.repository();
        let remote = self.remotes[0].get_ref();
        let exists = repo.join("HEAD").is_file();
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

    /// `backupctl history`: the commits that touched `path` (all commits without one).
    /// `backupctl restore STAGE`: files from a commit (`--commit`, default the newest).
    fn restore_files(&self, _: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
        let files = self.restore(&args.commit, &args.include, &args.target)?;
        outln!(
            "restored {files} file(s) from {} into {}",
            args.commit,
            args.target.display()
        )?;
        Ok(ExitCode::SUCCESS)
    }

    /// `backupctl history STAGE [PATH]`: the commits that touched PATH, newest first.
    fn print_history(&self, _: &VerbContext, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
        let entries = self.history(args.path.as_deref())?;
        for entry in &entries {
            if args.json {
                outln!("{}", serde_json::to_string(entry)?)?;
            } else {
                outln!("{}  {}  {}", &entry.commit[..12], entry.date, entry.subject)?;
            }
        }
        if entries.is_empty() && !args.json {
            eprintln!(
                "no commits touched {}",
                args.path.as_deref().unwrap_or("the backup")
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn history(&self, path: Option<&str>) -> Result<Vec<HistoryEntry>, StageError> {
        self.require_repository()?;
        let mut command = self
            .git_at()
            .args(["log", "--format=%H%x09%aI%x09%s", &self.branch]);
        if let Some(path) = path {
            command = command.arg("--").arg(self.tree_path(path));
        }
        Ok(capture(command)?
            .iter()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                Some(HistoryEntry {
                    commit: fields.next()?.to_string(),
                    date: fields.next()?.to_string(),
                    subject: fields.next().unwrap_or("").to_string(),
                })
            })
            .collect())
    }

    /// `backupctl restore`: writes `includes` (tree paths or source paths; everything when
    /// empty) as of `commit` under `target`, at their tree paths. The repository's own index
    /// and work tree are not touched. Returns the number of files written.
    pub fn restore(
        &self,
        commit: &str,
        includes: &[String],
        target: &Path,
    ) -> Result<usize, StageError> {
        self.require_repository()?;
        let resolved = capture(self.git_at().args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{commit}^{{commit}}"),
        ]))
        .ok()
        .and_then(|lines| lines.first().cloned())
        .ok_or_else(|| {
            StageError::Failed(format!(
                "no commit `{commit}` in {}; `backupctl history STAGE` lists them",
                self.repository().display()
            ))
        })?;
        let paths: Vec<String> = if includes.is_empty() {
            vec![".".into()]
        } else {
            includes.iter().map(|p| self.tree_path(p)).collect()
        };
        let files = capture(
            self.git_at()
                .args(["ls-tree", "-r", "--name-only", &resolved, "--"])
                .args(&paths),
        )?;
        if files.is_empty() {
            return Err(StageError::Failed(format!(
                "commit {} has none of {}",
                &resolved[..12.min(resolved.len())],
                paths.join(", ")
            )));
        }
        std::fs::create_dir_all(target).map_err(|e| {
            StageError::io(format!("cannot create the target {}", target.display()), e)
        })?;
        // A throw-away index, so that the repository's own index stays as it is.
        let index = std::env::temp_dir().join(format!(
            "backupctl-restore-{}-{}.index",
            std::process::id(),
            crate::stages::new_id()
        ));
        let result = self.checkout_into(
            &self.git_dir(),
            &resolved,
            Pathspecs::Given(&paths),
            target,
            &index,
        );
        let _ = std::fs::remove_file(&index);
        result?;
        Ok(files.len())
    }

    /// `git checkout COMMIT -- PATHS` from the repository at `git_dir` (the stage's own or a
    /// local remote) into `target`, through the throw-away index `index`: the repository's
    /// own index and work tree stay as they are.
    pub(crate) fn checkout_into(
        &self,
        git_dir: &Path,
        commit: &str,
        pathspecs: Pathspecs<'_>,
        target: &Path,
        index: &Path,
    ) -> Result<(), ToolError> {
        let command = self
            .git_in(git_dir)
            .arg(format!("--work-tree={}", target.display()))
            .args(["checkout", commit])
            .env("GIT_INDEX_FILE", index);
        let command = match pathspecs {
            Pathspecs::Given(paths) => command.arg("--").args(paths),
            Pathspecs::Listed(file) => command
                .arg(format!("--pathspec-from-file={}", file.display()))
                .arg("--pathspec-file-nul")
                .env("GIT_LITERAL_PATHSPECS", "1"),
        };
        command.run().map(|_| ())
    }

    pub(crate) fn require_repository(&self) -> Result<(), StageError> {
        if self.git_dir().join("HEAD").is_file() {
            Ok(())
        } else {
            Err(StageError::Failed(format!(
                "{} is not a git repository yet: run the stage first",
                self.repository().display()
            )))
        }
    }
}

/// What [`Spec::checkout_into`] checks out.
pub(crate) enum Pathspecs<'p> {
    /// Pathspecs as a person gives them (git's own matching).
    Given(&'p [String]),
    /// Exact tree paths, NUL-separated in a file: no limit on their number, no glob meaning.
    Listed(&'p Path),
}

/// The identity of backup commits: backupctl on this host.
fn with_author(mut command: Command<'_>) -> Command<'_> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let email = format!("backupctl@{host}");
    for role in ["AUTHOR", "COMMITTER"] {
        command = command
            .env(format!("GIT_{role}_NAME"), "backupctl")
            .env(format!("GIT_{role}_EMAIL"), &email);
    }
    command
}

/// The commit HEAD points at, or `None` in a repository without commits.
fn head(git: Command<'_>) -> Result<Option<String>, StageError> {
    let lines = capture(
        git.args(["rev-parse", "--verify", "--quiet", "HEAD"])
            .ok_codes(&[1]),
    )?;
    Ok(lines.first().map(|l| l.trim().to_string()))
}

/// Runs a command and returns its stdout lines.
fn capture(command: Command<'_>) -> Result<Vec<String>, StageError> {
    let mut lines = Vec::new();
    command.on_line(|line| lines.push(line.to_string())).run()?;
    Ok(lines)
}

fn remove(path: &Path) -> Result<(), StageError> {
    let result = if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(|e| StageError::io(format!("cannot remove {}", path.display()), e))
}

impl StageKind for Spec {
    const NAME: &'static str = "git";
    const READS_LOCAL_SOURCES: bool = true;
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(Self::restore_files);
    const HISTORY: Option<Verb<Self, HistoryArgs>> = Some(Self::print_history);
    const DRILL: Option<super::drill::Drill<Self>> =
        Some(super::drill::Drill::of("a git stage in commit mode"));

    fn excludes(&self) -> crate::stages::Excludes {
        // As `commit` mode's rsync is told (nested repositories' .git left out).
        crate::stages::Excludes {
            patterns: std::iter::once(".git".to_string())
                .chain(self.exclude.iter().cloned())
                .collect(),
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        require_absolute(std::slice::from_ref(&self.repository), "repository")?;
        for remote in &self.remotes {
            let text = remote.get_ref();
            if is_local(text) {
                let path = text.strip_prefix("file://").unwrap_or(text);
                require_normalized(remote.span(), path, "remotes")?;
            }
        }
        if let Some(key) = &self.ssh_key {
            require_absolute(std::slice::from_ref(key), "ssh_key")?;
        }
        if let Some(text) = &self.max_file_size {
            parse_size(text.get_ref()).map_err(|error| {
                SpecError::invalid(
                    Some(text.span()),
                    error.to_string(),
                    "e.g. max_file_size = \"50M\"",
                )
            })?;
        }
        match self.mode {
            Mode::Commit => {
                let Some(sources) = &self.sources else {
                    return Err(SpecError::invalid(
                        Some(self.repository.span()),
                        "a git stage in `commit` mode needs `sources`",
                        "list the directories to commit, e.g. sources = [\"/srv/sync/sig/Notes\"]",
                    ));
                };
                if sources.get_ref().is_empty() {
                    return Err(SpecError::invalid(
                        Some(sources.span()),
                        "`sources` is empty",
                        "list the directories to commit, e.g. sources = [\"/srv/sync/sig/Notes\"]",
                    ));
                }
                require_absolute(sources.get_ref(), "sources")?;
                let mut seen = BTreeSet::new();
                for source in sources.get_ref() {
                    let Some(name) = Self::tree_name(source.get_ref()) else {
                        return Err(SpecError::invalid(
                            Some(source.span()),
                            "`/` cannot be a source of a git stage",
                            "name the directories to back up",
                        ));
                    };
                    if !seen.insert(name.clone()) {
                        return Err(SpecError::invalid(
                            Some(source.span()),
                            format!("two sources would both be `{name}/` in the repository"),
                            "each source becomes a top-level directory named after its last \
                             component: use two stages, or sources with different names",
                        ));
                    }
                }
            }
            Mode::Pull => {
                if let Some(sources) = &self.sources {
                    return Err(SpecError::invalid(
                        Some(sources.span()),
                        "a git stage in `pull` mode has no `sources`",
                        "remove `sources`; `remotes` names the repository to mirror",
                    ));
                }
                if self.remotes.len() != 1 {
                    return Err(SpecError::invalid(
                        Some(self.repository.span()),
                        "a git stage in `pull` mode needs exactly one entry in `remotes`",
                        "e.g. remotes = [\"ssh://sig@server/srv/git/sig.git\"]",
                    ));
                }
            }
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        let mut writes = vec![self.repository().to_path_buf()];
        if self.mode == Mode::Commit {
            writes.extend(self.local_remotes());
        }
        let ssh = self.uses_ssh();
        let mut tools = vec!["git"];
        if self.mode == Mode::Commit {
            tools.push("rsync");
        }
        if ssh {
            tools.push("ssh");
        }
        Needs {
            writes,
            network: ssh,
            tools,
            secrets: self.ssh_key.iter().map(|k| k.get_ref().clone()).collect(),
            remotes: self
                .remotes
                .iter()
                .map(|r| r.get_ref())
                .filter(|r| !is_local(r))
                .cloned()
                .collect(),
            capabilities: vec![],
            credentials: vec![],
            // What `snapshot = "btrfs"` snapshots before the copy into the work tree.
            sources: self
                .sources
                .iter()
                .flat_map(|sources| sources.get_ref())
                .map(|s| s.get_ref().clone())
                .collect(),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        match self.mode {
            Mode::Commit => self.run_commit(ctx),
            Mode::Pull => self.run_pull(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> Spec {
        toml::from_str(toml_text).unwrap()
    }

    /// Issue 11: a `'` in `ssh_key` or `ssh_options` ended the single quotes of
    /// GIT_SSH_COMMAND and added words to the ssh command line. Real git runs the command
    /// here; a fake `ssh` first in PATH records the argv it got.
    #[test]
    fn git_ssh_command_quote_injection_in_ssh_options_and_key() {
        let dir = super::super::ssh::fake_ssh();
        let key = "/keys/it's here\\\"x\"";
        let spec = spec(&format!(
            "repository = \"/nonexistent/repo\"\nremotes = [\"ssh://injhost/r.git\"]\n\
             ssh_key = {}\nssh_options = {}\n",
            toml::Value::from(key),
            toml::Value::from(super::super::ssh::HOSTILE.to_vec()),
        ));
        let status = std::process::Command::new("git")
            .args(["ls-remote", "ssh://injhost/r.git"])
            .env("GIT_SSH_COMMAND", spec.ssh_command())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PATH", super::super::ssh::path_with(dir.path()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("this test needs git: run scripts/setup-deps");
        assert!(!status.success());
        let mut expected = vec!["-o", "BatchMode=yes", "-i", key];
        for option in super::super::ssh::HOSTILE {
            expected.extend(["-o", option]);
        }
        let seen = super::super::ssh::ssh_options_seen(dir.path(), "injhost");
        // git may add options of its own (e.g. `-o SendEnv=GIT_PROTOCOL`) after ours.
        assert_eq!(seen[..expected.len().min(seen.len())], expected[..]);
    }

    #[test]
    fn summarises_changes_for_the_commit_message() {
        let lines: Vec<String> = ["A\tNotes/new.md", "M\tNotes/todo.md", "D\tPhotos/old.jpg"]
            .map(String::from)
            .to_vec();
        let changes = Changes::parse(&lines);
        assert_eq!(changes.summary(), "1 added, 1 modified, 1 deleted");
        assert_eq!(
            changes.message("2025-06-01 03:00:00 UTC"),
            "backup 2025-06-01 03:00:00 UTC: 1 added, 1 modified, 1 deleted\n\n\
             A Notes/new.md\nM Notes/todo.md\nD Photos/old.jpg\n"
        );
        assert!(Changes::parse(&[]).is_empty());
    }

    #[test]
    fn maps_source_paths_to_tree_paths() {
        let spec = spec(
            r#"
            sources = ["/srv/sync/sig/Notes", "/home/sig/Photos/"]
            repository = "/var/lib/backupctl/git/sig"
            "#,
        );
        assert_eq!(
            spec.tree_path("/srv/sync/sig/Notes/todo.md"),
            "Notes/todo.md"
        );
        assert_eq!(spec.tree_path("/home/sig/Photos/2024"), "Photos/2024");
        assert_eq!(spec.tree_path("Notes/todo.md"), "Notes/todo.md");
        assert_eq!(spec.tree_path("./Notes/"), "Notes");
    }

    #[test]
    fn rejects_sources_with_the_same_name() {
        let spec = spec(
            r#"
            sources = ["/a/Notes", "/b/Notes"]
            repository = "/r"
            "#,
        );
        let Err(SpecError::Invalid { message, .. }) = spec.validate() else {
            panic!("expected an error");
        };
        assert!(message.contains("`Notes/`"), "{message}");
    }

    #[test]
    fn pull_mode_needs_one_remote_and_no_sources() {
        let ok = spec(
            r#"
            mode = "pull"
            repository = "/mnt/usb/git/sig.git"
            remotes = ["ssh://sig@server/srv/git/sig.git"]
            "#,
        );
        ok.validate().unwrap();
        let needs = ok.needs();
        assert!(needs.network);
        assert_eq!(needs.tools, ["git", "ssh"]);
        assert_eq!(needs.writes, [PathBuf::from("/mnt/usb/git/sig.git")]);
        let without = spec(
            r#"
            mode = "pull"
            repository = "/m"
            "#,
        );
        assert!(without.validate().is_err());
    }

    #[test]
    fn local_remotes_are_writes_not_network() {
        let spec = spec(
            r#"
            sources = ["/srv/sync/sig"]
            repository = "/var/lib/backupctl/git/sig"
            remotes = ["/srv/git/sig.git"]
            "#,
        );
        let needs = spec.needs();
        assert!(!needs.network);
        assert_eq!(
            needs.writes,
            [
                PathBuf::from("/var/lib/backupctl/git/sig"),
                PathBuf::from("/srv/git/sig.git")
            ]
        );
    }
}
