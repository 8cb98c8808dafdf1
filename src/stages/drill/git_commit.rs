//! A drill's git target: the newest commit on the stage's branch in its own repository (what
//! `backupctl restore` reads) or in one of its local remotes (`remote`), listed with gix and the sample checked out with `git checkout`
//! into the drill's scratch directory, through a throw-away index.
//!
//! git records no mtimes, so "the newest files" are those the newest commit changed, and a
//! live source file counts as unchanged when it still hashes to the blob id the commit holds.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gix::bstr::{BString, ByteSlice};
use jiff::Timestamp;

use super::{Backup, DrillContext, Drillable, File, RestoreSample, Spec};
use crate::stages::{Needs, Outcome, SpecError, StageError, git};

impl Drillable for git::Spec {
    fn drillable(&self) -> Result<(), String> {
        if self.mode != git::Mode::Commit {
            return Err(
                "it mirrors a remote repository (`mode = \"pull\"`); there is no local source \
                 to compare with: drill the stage that makes the commits"
                    .into(),
            );
        }
        Ok(())
    }

    /// `remote` names one of the stage's local remotes (ssh remotes are never contacted).
    fn check_drill(&self, drill: &Spec) -> Result<(), SpecError> {
        let Some(remote) = &drill.remote else {
            return Ok(());
        };
        let name = drill.stage.get_ref();
        let local: Vec<PathBuf> = self.local_remotes().collect();
        let wanted = remote.get_ref();
        if local.iter().any(|path| path == wanted) {
            return Ok(());
        }
        let listed: Vec<String> = local.iter().map(|p| p.display().to_string()).collect();
        Err(SpecError::invalid(
            Some(remote.span()),
            format!(
                "{} is not a local remote of stage `{name}`",
                wanted.display()
            ),
            if listed.is_empty() {
                "the stage has no local remotes (a drill reads ssh remotes through \
                 nothing); remove `remote`"
                    .to_string()
            } else {
                format!("its local remotes: {}", listed.join(", "))
            },
        ))
    }

    /// The stage's own repository is read, never its remotes: no ssh, no network.
    fn drill_needs(&self) -> Needs {
        Needs {
            tools: vec!["git"],
            ..Needs::default()
        }
    }

    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError> {
        let remote = ctx.drill.remote.as_ref().map(|r| r.get_ref().as_path());
        super::verify_sample(ctx, newest(self, remote)?)
    }
}

/// The newest commit of the stage `spec` configures, in its repository or in `remote`, one of
/// its local remotes.
fn newest<'a>(spec: &'a git::Spec, remote: Option<&Path>) -> Result<Backup<'a>, StageError> {
    let git_dir = match remote {
        Some(remote) => remote.to_path_buf(),
        None => {
            spec.require_repository()?;
            spec.git_dir()
        }
    };
    let unreadable = |what: &str, error: &dyn std::fmt::Display| {
        StageError::Failed(format!(
            "drill: cannot read {what} in {}, the backup does not restore: {error}",
            git_dir.display()
        ))
    };
    let repo = gix::open_opts(&git_dir, gix::open::Options::isolated())
        .map_err(|e| unreadable("the repository", &e))?;
    let Ok(tip) = repo.rev_parse_single(spec.branch.as_str()) else {
        return Err(StageError::Failed(format!(
            "{} has no commit on branch `{}` yet; run the backup first",
            git_dir.display(),
            spec.branch
        )));
    };
    let commit = tip
        .object()
        .and_then(|object| object.try_into_commit())
        .map_err(|e| unreadable("the newest commit", &e))?;
    let taken = commit_time(&commit).map_err(|e| unreadable("the newest commit", &e))?;
    let listed = |commit: &gix::Commit<'_>| -> Result<Vec<_>, StageError> {
        commit
            .tree()
            .map_err(|e| unreadable("a commit's tree", &e))?
            .traverse()
            .breadthfirst
            .files()
            .map_err(|e| unreadable("a commit's tree", &e))
    };
    // What the parent held: files whose blob differs changed in the newest commit.
    let (before, parent_time): (HashMap<BString, gix::ObjectId>, Timestamp) =
        match commit.parent_ids().next() {
            Some(parent) => {
                let parent = parent
                    .object()
                    .and_then(|object| object.try_into_commit())
                    .map_err(|e| unreadable("the parent commit", &e))?;
                let time = commit_time(&parent).map_err(|e| unreadable("a commit", &e))?;
                let entries = listed(&parent)?;
                (
                    entries.into_iter().map(|e| (e.filepath, e.oid)).collect(),
                    time,
                )
            }
            None => (HashMap::new(), Timestamp::UNIX_EPOCH),
        };
    // Unchanged files rank below the changed ones even when both commits fell in one second.
    let parent_time = parent_time.min(
        taken
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .unwrap_or(Timestamp::UNIX_EPOCH),
    );
    // The tree's top-level names are the sources' last components (see git::Spec::tree_path).
    let sources: HashMap<&[u8], &Path> = spec
        .sources()
        .iter()
        .filter_map(|source| {
            let source = source.get_ref().as_path();
            Some((source.file_name()?.as_bytes(), source))
        })
        .collect();
    let mut files = Vec::new();
    for entry in listed(&commit)? {
        // Regular files only: symlinks and submodules hold no data to verify.
        if !entry.mode.is_blob() {
            continue;
        }
        let path = entry.filepath.as_bytes();
        let (top, rest) = match path.find_byte(b'/') {
            Some(slash) => (&path[..slash], &path[slash + 1..]),
            None => (path, &b""[..]),
        };
        let Some(source) = sources.get(top) else {
            continue;
        };
        let size = repo
            .find_header(entry.oid)
            .map_err(|e| unreadable(&format!("the object of {}", entry.filepath), &e))?
            .size();
        let changed = before.get(&entry.filepath) != Some(&entry.oid);
        files.push(File {
            source: if rest.is_empty() {
                source.to_path_buf()
            } else {
                source.join(OsStr::from_bytes(rest))
            },
            stored: PathBuf::from(OsStr::from_bytes(path)),
            size,
            mtime: if changed { taken } else { parent_time },
            git_blob: Some(entry.oid),
        });
    }
    if files.is_empty() {
        return Err(StageError::Failed(format!(
            "the newest commit in {} holds no files of the stage's sources; run the backup first",
            git_dir.display()
        )));
    }
    let id = commit.id.to_string();
    let short: String = id.chars().take(8).collect();
    Ok(Backup {
        files,
        taken: Some(taken),
        snapshot_id: Some(short.clone()),
        label: format!("git commit {short} in {}", git_dir.display()),
        restore: Box::new(Checkout {
            spec,
            git_dir: git_dir.clone(),
            commit: id,
        }),
    })
}

fn commit_time(commit: &gix::Commit<'_>) -> Result<Timestamp, Box<dyn std::error::Error>> {
    Ok(Timestamp::from_second(commit.time()?.seconds)?)
}

/// `git checkout COMMIT` of the sample into a scratch work tree.
struct Checkout<'a> {
    spec: &'a git::Spec,
    /// The repository checked out from: the stage's own or one of its local remotes.
    git_dir: PathBuf,
    commit: String,
}

impl RestoreSample for Checkout<'_> {
    /// Checks the chosen files (or the whole commit) out under `scratch/tree`, through an
    /// index in `scratch` (the repository's own index and work tree stay as they are); the
    /// tree paths go through a file, so neither the argument list's limit nor glob
    /// characters in names matter.
    fn restore(
        &self,
        chosen: &[File],
        everything_chosen: bool,
        scratch: &Path,
    ) -> Result<PathBuf, StageError> {
        let tree = scratch.join("tree");
        std::fs::create_dir(&tree)
            .map_err(|e| StageError::io(format!("cannot create {}", tree.display()), e))?;
        let list = scratch.join("paths");
        let everything = [".".to_string()];
        let pathspecs = if everything_chosen {
            git::Pathspecs::Given(&everything)
        } else {
            let mut paths = Vec::new();
            for file in chosen {
                paths.extend_from_slice(file.stored.as_os_str().as_bytes());
                paths.push(0);
            }
            std::fs::write(&list, paths)
                .map_err(|e| StageError::io(format!("cannot write {}", list.display()), e))?;
            git::Pathspecs::Listed(&list)
        };
        self.spec
            .checkout_into(
                &self.git_dir,
                &self.commit,
                pathspecs,
                &tree,
                &scratch.join("index"),
            )
            .map_err(|error| match error {
                crate::process::ToolError::Interrupted => StageError::Interrupted,
                other => StageError::Failed(format!(
                    "drill: git could not check out the sample, the backup does not restore: {other}"
                )),
            })?;
        Ok(tree)
    }
}
