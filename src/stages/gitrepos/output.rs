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
    let mut script = format!(
        r#"#!/bin/sh
# Written by backupctl's gitrepos stage `{stage}` on {now}.
# Clones every repository that has a remote back to where it was found.
#
# Usage: restore-repos.sh [PREFIX]     PREFIX is put before every path (e.g. /mnt/restore).
#
# A repository whose directory is missing is cloned. One whose directory was restored from a
# backup without its .git (see exclude-pushed.txt) gets its history back under the restored
# files, which are left as they are. Repositories with a .git already are left alone.
# Submodules are cloned as repositories of their own; `git submodule absorbgitdirs` in the
# superproject moves them under it again.
set -u
prefix="${{1:-}}"
failed=0

# clone TARGET GIT-CLONE-OPTION...: on the recorded branch if the remote has it, else its default.
clone() {{
    target="$1"
    shift
    git clone --quiet "$@" ${{branch:+--branch "$branch"}} -- "$url" "$target" 2>/dev/null ||
        {{ rm -rf "$target"; git clone --quiet "$@" -- "$url" "$target"; }}
}}

# has_head: the recorded commit is in the clone (else it was never pushed: left at the
# remote's branch, with a note).
has_head() {{
    [ -n "$head" ] || return 1
    git -C "$dest" cat-file -e "$head^{{commit}}" 2>/dev/null && return 0
    echo "note: $dest: commit $head is not on $url; left at the remote's branch" >&2
    return 1
}}

# restore PATH KIND BRANCH HEAD REMOTE URL [REMOTE URL]...
restore() {{
    dest="$prefix$1" kind="$2" branch="$3" head="$4" origin="$5" url="$6"
    shift 6
    if [ -e "$dest/.git" ] || {{ [ "$kind" = bare ] && [ -e "$dest/HEAD" ]; }}; then
        echo "present: $dest"
        return 0
    fi
    if [ "$kind" = bare ]; then
        clone "$dest" --bare --origin "$origin" || return 1
    elif [ -d "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
        tmp=$(mktemp -d "$dest.restore-XXXXXX") || return 1
        clone "$tmp" --no-checkout --origin "$origin" &&
            mv "$tmp/.git" "$dest/.git" && rmdir "$tmp" || {{ rm -rf "$tmp"; return 1; }}
        # Index from the recorded commit, files untouched: what differs shows as modified.
        if has_head; then
            [ -n "$branch" ] || git -C "$dest" update-ref --no-deref HEAD "$head" || return 1
            git -C "$dest" reset --quiet "$head" || return 1
        else
            git -C "$dest" reset --quiet || return 1
        fi
    else
        clone "$dest" --origin "$origin" || return 1
        if has_head && [ -n "$branch" ]; then
            git -C "$dest" reset --quiet --hard "$head" || return 1
        elif has_head; then
            git -C "$dest" checkout --quiet --detach "$head" || return 1
        fi
    fi
    while [ $# -ge 2 ]; do
        git -C "$dest" remote add "$1" "$2" || return 1
        shift 2
    done
    echo "restored: $dest"
}}

"#,
        now = jiff::Timestamp::now(),
    );
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
    write_atomically(path, script.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| StageError::io(format!("cannot make {} executable", path.display()), e))
}
