//! What state one repository is in, read in-process with gitoxide (`gix`): remotes, branch,
//! HEAD, upstream and ahead/behind, uncommitted and untracked files, stashes, and commits
//! that no remote-tracking branch has. No `git` process is spawned: for hundreds of
//! repositories the process start-ups cost more than the work (see `scripts/bench.d`).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use gix::bstr::ByteSlice;
use serde::Serialize;

use super::find::{Found, Layout};

/// A remote: its name and fetch URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remote {
    pub name: String,
    pub url: String,
}

/// Everything recorded about one repository (one object in `repos.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepoState {
    pub path: String,
    /// `worktree`, `bare`, `submodule` or `linked-worktree`.
    pub kind: &'static str,
    pub git_dir: String,
    pub remotes: Vec<Remote>,
    /// The checked-out branch (short name); `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The commit HEAD points to; `None` in a repository without commits.
    pub head: Option<String>,
    /// The branch's upstream (e.g. `origin/main`), when one is configured and fetched.
    pub upstream: Option<String>,
    pub ahead: Option<u64>,
    pub behind: Option<u64>,
    /// Tracked paths with changes, staged or not.
    pub uncommitted: u64,
    /// Untracked, not ignored files.
    pub untracked: u64,
    pub stashes: u64,
    /// Commits on local branches, tags or HEAD that no remote-tracking branch contains.
    pub unpushed: u64,
    /// Linked worktrees of this repository (their state is not in this record).
    pub linked_worktrees: u64,
    /// Everything is on a remote and nothing is uncommitted, untracked or stashed: a fresh
    /// clone plus this tree's ignored files gives it back.
    pub pushed: bool,
    /// Why the repository could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads one repository's state; a repository that cannot be read gets `error` set.
pub fn inspect(found: &Found) -> RepoState {
    let mut state = RepoState {
        path: found.path.display().to_string(),
        kind: match found.layout {
            Layout::Bare => "bare",
            Layout::Worktree => "worktree",
            Layout::Gitlink => "submodule",
        },
        ..RepoState::default()
    };
    if let Err(error) = read(&found.path, &mut state) {
        state.error = Some(format!("{error:#}"));
        state.pushed = false;
    }
    state
}

fn open(path: &Path) -> anyhow::Result<gix::Repository> {
    // Isolated: no global or system config and no environment, so the answer does not depend
    // on who runs us. Repositories owned by others (root backing up /home) are still opened.
    let options = gix::open::Options::isolated();
    Ok(gix::open_opts(path, options)?)
}

fn read(path: &Path, state: &mut RepoState) -> anyhow::Result<()> {
    let mut repo = open(path).context("cannot open the repository")?;
    // HEAD's commit and tree are read by several of the questions below: decode them once.
    repo.object_cache_size_if_unset(4 << 20);
    state.git_dir = repo.git_dir().display().to_string();
    if state.kind == "submodule" && repo.kind() == gix::repository::Kind::LinkedWorkTree {
        state.kind = "linked-worktree";
    }

    for name in repo.remote_names() {
        let remote = repo.find_remote(name.as_bstr())?;
        let url = remote
            .url(gix::remote::Direction::Fetch)
            .map(|url| url.to_bstring().to_string())
            .unwrap_or_default();
        state.remotes.push(Remote {
            name: name.to_string(),
            url,
        });
    }

    let head_name = repo.head_name()?;
    state.branch = head_name.as_ref().map(|n| n.shorten().to_string());
    let head = repo.head_id().ok().map(|id| id.detach());
    state.head = head.map(|id| id.to_string());

    if let (Some(name), Some(head)) = (&head_name, head)
        && let Some(Ok(upstream)) =
            repo.branch_remote_tracking_ref_name(name.as_ref(), gix::remote::Direction::Fetch)
        && let Ok(Some(mut reference)) = repo.try_find_reference(upstream.as_ref())
    {
        state.upstream = Some(upstream.shorten().to_string());
        if let Ok(upstream_id) = reference.peel_to_id() {
            let upstream_id = upstream_id.detach();
            // The usual case, in sync, needs no walk.
            if upstream_id == head {
                (state.ahead, state.behind) = (Some(0), Some(0));
            } else {
                state.ahead = Some(count(&repo, [head], [upstream_id])?);
                state.behind = Some(count(&repo, [upstream_id], [head])?);
            }
        }
    }

    // Local tips against everything the remotes have.
    let mut tips = Vec::new();
    let mut remote_tips = Vec::new();
    let references = repo.references()?;
    for reference in references.local_branches()?.chain(references.tags()?) {
        let Ok(mut reference) = reference else {
            continue;
        };
        if let Ok(id) = reference.peel_to_commit() {
            tips.push(id.id);
        }
    }
    tips.extend(head);
    for reference in references.remote_branches()? {
        let Ok(mut reference) = reference else {
            continue;
        };
        if let Ok(commit) = reference.peel_to_commit() {
            remote_tips.push(commit.id);
        }
    }
    tips.sort();
    tips.dedup();
    remote_tips.sort();
    // Every local tip is a remote tip (the usual case for a pushed repository): no walk.
    state.unpushed = if tips
        .iter()
        .all(|tip| remote_tips.binary_search(tip).is_ok())
    {
        0
    } else {
        count(&repo, tips, remote_tips)?
    };

    // A full name: no search through refs/tags/refs/stash and the like.
    let stash_name = gix::refs::FullName::try_from("refs/stash").expect("a valid name");
    state.stashes = match repo.try_find_reference(stash_name.as_ref())? {
        Some(stash) => {
            let mut log = stash.log_iter();
            match log.all()? {
                Some(entries) => entries.count() as u64,
                // A stash ref without a reflog still holds one stash.
                None => 1,
            }
        }
        None => 0,
    };

    let worktrees = repo.common_dir().join("worktrees");
    state.linked_worktrees = std::fs::read_dir(&worktrees)
        .map(|dir| dir.flatten().count() as u64)
        .unwrap_or(0);

    if repo.workdir().is_some() {
        worktree_status(&repo, state)?;
    }

    state.pushed = !state.remotes.is_empty()
        && state.unpushed == 0
        && state.uncommitted == 0
        && state.untracked == 0
        && state.stashes == 0
        && state.linked_worktrees == 0;
    Ok(())
}

/// Commits reachable from `tips` but not from `hidden`.
fn count(
    repo: &gix::Repository,
    tips: impl IntoIterator<Item = gix::ObjectId>,
    hidden: impl IntoIterator<Item = gix::ObjectId>,
) -> anyhow::Result<u64> {
    let walk = repo.rev_walk(tips).with_hidden(hidden).all()?;
    let mut commits = 0;
    for info in walk {
        info?;
        commits += 1;
    }
    Ok(commits)
}

/// Counts changed tracked paths (index vs HEAD and worktree vs index) and untracked files,
/// with gitoxide's lower-level calls rather than `repo.status()`: that one always builds an
/// index from HEAD's tree to diff against and reads `.gitmodules` for the submodule check,
/// which for a small repository cost more than the files' `lstat`s.
fn worktree_status(repo: &gix::Repository, state: &mut RepoState) -> anyhow::Result<()> {
    use gix::status::index_worktree::BuiltinSubmoduleStatus;
    use gix::status::tree_index::TrackRenames;

    let index = repo.index_or_empty()?;
    let mut changed: BTreeSet<Vec<u8>> = BTreeSet::new();

    // Staged changes. A valid cache-tree extension whose root is HEAD's tree says the index
    // holds exactly HEAD's tree (git's own shortcut): nothing to diff.
    let head_tree = repo.head_tree_id_or_empty()?.detach();
    if !index_is_tree(&index, head_tree) {
        repo.tree_index_status(
            &head_tree,
            &index,
            None,
            // Like `git status`: a staged rename is one changed path.
            TrackRenames::AsConfigured,
            |change, _, _| {
                changed.insert(change.location().to_vec());
                Ok(std::ops::ControlFlow::Continue(()))
            },
        )?;
    }

    // Unstaged changes and untracked files.
    let options = gix::status::index_worktree::Options {
        dirwalk_options: Some(
            repo.dirwalk_options()?
                .emit_untracked(gix::dir::walk::EmissionMode::Matching),
        ),
        // One thread a repository: the repositories themselves are read in parallel, and
        // per-repository threads would cost more to start than small repositories take (gix
        // is built without its `parallel` feature for the same reason).
        thread_limit: Some(1),
        rewrites: None,
        sorting: None,
    };
    let interrupt = std::sync::atomic::AtomicBool::new(false);
    let has_submodules = index
        .entries()
        .iter()
        .any(|entry| entry.mode == gix::index::entry::Mode::COMMIT);
    let untracked = if has_submodules {
        // Submodules are inspected as repositories of their own; here only their commit counts.
        let submodules = BuiltinSubmoduleStatus::new(
            repo.clone().into_sync(),
            gix::status::Submodule::Given {
                ignore: gix::submodule::config::Ignore::Dirty,
                check_dirty: false,
            },
        )?;
        let mut recorder = Recorder::default();
        repo.index_worktree_status(
            &index,
            std::iter::empty::<&gix::bstr::BStr>(),
            &mut recorder,
            gix::status::plumbing::index_as_worktree::traits::FastEq,
            submodules,
            &mut gix::progress::Discard,
            &interrupt,
            options,
        )?;
        count_worktree_changes(recorder.records, &mut changed)
    } else {
        let mut recorder = Recorder::default();
        repo.index_worktree_status(
            &index,
            std::iter::empty::<&gix::bstr::BStr>(),
            &mut recorder,
            gix::status::plumbing::index_as_worktree::traits::FastEq,
            NoSubmodules,
            &mut gix::progress::Discard,
            &interrupt,
            options,
        )?;
        count_worktree_changes(recorder.records, &mut changed)
    };
    state.uncommitted = changed.len() as u64;
    state.untracked = untracked;
    Ok(())
}

type Recorder<'index, U> =
    gix::status::plumbing::index_as_worktree_with_renames::Recorder<'index, (), U>;

/// Whether the index's cache-tree proves it holds exactly `tree`.
fn index_is_tree(index: &gix::index::State, tree: gix::ObjectId) -> bool {
    index.tree().is_some_and(|root| {
        root.id == tree && root.num_entries == Some(index.entries().len() as u32)
    })
}

/// Adds the paths of modified tracked files to `changed`; returns the untracked files.
fn count_worktree_changes<U>(
    records: Vec<gix::status::plumbing::index_as_worktree_with_renames::Entry<'_, (), U>>,
    changed: &mut BTreeSet<Vec<u8>>,
) -> u64 {
    use gix::status::plumbing::index_as_worktree::EntryStatus;
    use gix::status::plumbing::index_as_worktree_with_renames::Entry;
    let mut untracked = 0;
    for record in records {
        match record {
            // Only the stat information is out of date: the contents are what the index has.
            Entry::Modification {
                status: EntryStatus::NeedsUpdate(_),
                ..
            } => {}
            Entry::Modification { rela_path, .. } => {
                changed.insert(rela_path.to_vec());
            }
            Entry::DirectoryContents { entry, .. } => {
                if entry.status == gix::dir::entry::Status::Untracked {
                    untracked += 1;
                }
            }
            Entry::Rewrite { .. } => untracked += 1,
        }
    }
    untracked
}

/// Reports no submodule as changed: for an index without submodules, where gix's own check
/// would read `.gitmodules` for nothing.
#[derive(Clone)]
struct NoSubmodules;

impl gix::status::plumbing::index_as_worktree::traits::SubmoduleStatus for NoSubmodules {
    type Output = ();

    fn status(
        &mut self,
        _entry: &gix::index::Entry,
        _rela_path: &gix::bstr::BStr,
    ) -> gix::Result<Option<()>> {
        Ok(None)
    }
}
