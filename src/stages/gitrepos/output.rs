//! The files a `gitrepos` run leaves: the JSON report, the restore script and the exclude
//! file. Each is written beside its target and renamed into place.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::inspect::RepoState;
use crate::stages::StageError;
use crate::stages::manifest::write_atomically;

#[derive(Serialize)]
struct Report<'a> {
    /// Bumped when a field changes meaning.
    version: u32,
    stage: &'a str,
    generated: String,
    roots: &'a [PathBuf],
    repositories: &'a [RepoState],
}

pub fn write_report(
    path: &Path,
    stage: &str,
    roots: &[PathBuf],
    repos: &[RepoState],
) -> Result<(), StageError> {
    let report = Report {
        version: 1,
        stage,
        generated: jiff::Timestamp::now().to_string(),
        roots,
        repositories: repos,
    };
    let mut json = serde_json::to_vec_pretty(&report).expect("the report serializes");
    json.push(b'\n');
    write_atomically(path, &json)
}

/// Which repositories a clone restores whole, so their git directory need not be backed up:
/// pushed and clean, and so is every submodule whose git directory lives inside theirs.
/// Submodules and linked worktrees are never listed themselves (their objects are the
/// superproject's).
pub fn excludable(repos: &[RepoState]) -> Vec<bool> {
    repos
        .iter()
        .map(|repo| {
            if !repo.pushed || !matches!(repo.kind, "worktree" | "bare") {
                return false;
            }
            let git_dir = Path::new(&repo.git_dir);
            repos
                .iter()
                .filter(|other| Path::new(&other.git_dir).starts_with(git_dir))
                .all(|other| other.pushed)
        })
        .collect()
}

/// The directory to leave out for an excludable repository: `.git`, or a bare repository.
pub fn excluded_path(repo: &RepoState) -> PathBuf {
    if repo.kind == "bare" {
        PathBuf::from(&repo.path)
    } else {
        Path::new(&repo.path).join(".git")
    }
}

pub fn write_excludes(
    path: &Path,
    repos: &[RepoState],
    excludable: &[bool],
) -> Result<(), StageError> {
    let mut text = Vec::from(
        "# Written by backupctl's gitrepos stage: git directories of repositories whose every\n\
         # commit is on a remote, with nothing uncommitted, untracked or stashed.\n\
         # restore-repos.sh beside this file brings them back. Absolute paths, wildcards escaped.\n"
            .as_bytes(),
    );
    for (repo, _) in repos.iter().zip(excludable).filter(|(_, yes)| **yes) {
        let excluded = excluded_path(repo);
        // A line cannot hold a newline: such a repository is simply backed up.
        if !excluded.as_os_str().as_encoded_bytes().contains(&b'\n') {
            text.extend_from_slice(crate::patterns::escape(&excluded).as_encoded_bytes());
            text.push(b'\n');
        }
    }
    write_atomically(path, &text)
}

/// Single-quotes a word for sh.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

pub fn write_restore_script(
    path: &Path,
    stage: &str,
    repos: &[RepoState],
) -> Result<(), StageError> {
    let script = restore_script(stage, &jiff::Timestamp::now().to_string(), repos);
    write_atomically(path, script.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| StageError::io(format!("cannot make {} executable", path.display()), e))
}

/// The restore script's fixed part: its functions; a `restore` line per repository follows.
const RESTORE_TEMPLATE: &str = include_str!("restore-repos.sh");

/// The restore script: the template with the stage's name and the time filled in, then one
/// `restore` line per repository that has a remote. Stage names are letters, digits, `-` and
/// `_`, so they go into the comment as they are.
fn restore_script(stage: &str, now: &str, repos: &[RepoState]) -> String {
    let mut script = RESTORE_TEMPLATE
        .replace("@STAGE@", stage)
        .replace("@NOW@", now);
    for repo in repos.iter().filter(|r| !r.remotes.is_empty()) {
        // Clone from the upstream's remote when there is one, else from the first remote.
        let upstream_remote = repo
            .upstream
            .as_deref()
            .and_then(|u| u.split_once('/'))
            .map(|(remote, _)| remote);
        let first = repo
            .remotes
            .iter()
            .position(|r| Some(r.name.as_str()) == upstream_remote)
            .unwrap_or(0);
        let mut line = format!(
            "restore {} {} {} {} {} {}",
            quote(&repo.path),
            if repo.kind == "bare" {
                "bare"
            } else {
                "worktree"
            },
            quote(repo.branch.as_deref().unwrap_or("")),
            quote(repo.head.as_deref().unwrap_or("")),
            quote(&repo.remotes[first].name),
            quote(&repo.remotes[first].url),
        );
        for (index, remote) in repo.remotes.iter().enumerate() {
            if index != first {
                line.push_str(&format!(" {} {}", quote(&remote.name), quote(&remote.url)));
            }
        }
        line.push_str(" || failed=1\n");
        script.push_str(&line);
    }
    script.push_str("\nexit $failed\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::gitrepos::inspect::Remote;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// A script for a bare repository, a worktree with two remotes (its upstream's second)
    /// and names that need quoting, and a repository without remotes (no line).
    fn rendered() -> String {
        let remote = |name: &str, url: &str| Remote {
            name: name.into(),
            url: url.into(),
        };
        let repos = [
            RepoState {
                path: "/srv/it's.git".into(),
                kind: "bare",
                remotes: vec![remote("origin", "https://example.org/a.git")],
                ..RepoState::default()
            },
            RepoState {
                path: "/home/me/src/$(tool)".into(),
                kind: "worktree",
                remotes: vec![remote("mirror", "ssh://m/x"), remote("origin", "git@h:x y")],
                branch: Some("main".into()),
                head: Some("0123abcd".into()),
                upstream: Some("origin/main".into()),
                ..RepoState::default()
            },
            RepoState {
                path: "/home/me/local-only".into(),
                kind: "worktree",
                ..RepoState::default()
            },
        ];
        restore_script("repos", "2026-01-02T03:04:05Z", &repos)
    }

    /// Runs `program args` with `script` on its stdin; panics with its stderr unless it exits 0.
    fn check_with(program: &str, args: &[&str], script: &str) {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program}: {e} (scripts/setup-deps installs it)")
            });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} rejects the restore script:\n{}{}\n--- script ---\n{script}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn the_restore_script_fills_the_template_and_quotes_every_word() {
        let script = rendered();
        assert!(script.starts_with(
            "#!/bin/sh\n# Written by backupctl's gitrepos stage `repos` on 2026-01-02T03:04:05Z.\n"
        ));
        assert!(!script.contains("@STAGE@") && !script.contains("@NOW@"));
        assert!(script.contains(
            "restore '/srv/it'\\''s.git' bare '' '' 'origin' 'https://example.org/a.git' || failed=1\n"
        ));
        assert!(script.contains(
            "restore '/home/me/src/$(tool)' worktree 'main' '0123abcd' 'origin' 'git@h:x y' 'mirror' 'ssh://m/x' || failed=1\n"
        ));
        assert!(!script.contains("local-only"));
        assert!(script.ends_with("|| failed=1\n\nexit $failed\n"));
    }

    #[test]
    fn the_restore_script_parses_with_sh() {
        check_with("sh", &["-n"], &rendered());
    }

    /// shellcheck finds what `sh -n` does not (unquoted expansions, bashisms).
    #[test]
    fn the_restore_script_passes_shellcheck() {
        check_with("shellcheck", &["--shell=sh", "-"], &rendered());
    }
}
