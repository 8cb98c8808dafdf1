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
//!
//! This file holds the spec (keys, checks, needs) and what both modes share (the `git`
//! command line, the identity of backup commits); `commit.rs` and `pull.rs` are the two
//! modes, `verbs.rs` is what `restore` and `history` do with the commits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

mod commit;
mod pull;
mod stale_locks;
mod verbs;

pub use commit::Changes;
pub(crate) use verbs::Pathspecs;

use super::verbs::{HistoryArgs, RestoreArgs, Verb};
use super::{
    Needs, Outcome, SpecError, StageError, StageKind, require_absolute, require_normalized,
};
use crate::config::size::parse_size;
use crate::process::Command;
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
    /// repository marked safe (it may belong to another user when root backs it up), and
    /// objects, refs and index fsynced (git's default leaves them to the page cache: after a
    /// power cut the work tree's repository held empty object files and every later run
    /// failed). A local remote's receive-pack does not see `-c`: see `commit::push_all`.
    fn git<'a>(&self) -> Command<'a> {
        let mut command = Command::new("git")
            .args(["-c", "safe.directory=*", "-c", "core.quotepath=false"])
            .args([
                "-c",
                "core.fsync=committed,index",
                "-c",
                "core.fsyncMethod=fsync",
            ])
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

    fn excludes(&self) -> crate::stages::ToolExcludes {
        // As `commit` mode's rsync is told (nested repositories' .git left out).
        crate::stages::ToolExcludes {
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
            trusted: vec![],
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
