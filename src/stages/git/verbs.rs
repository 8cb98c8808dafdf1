//! What `backupctl restore` and `history` do with a git stage's commits.

use std::path::Path;
use std::process::ExitCode;

use super::{HistoryEntry, Spec, capture};
use crate::outln;
use crate::process::ToolError;
use crate::stages::StageError;
use crate::stages::verbs::{HistoryArgs, RestoreArgs, VerbContext};

impl Spec {
    /// `backupctl restore STAGE`: files from a commit (`--commit`, default the newest).
    pub(super) fn restore_files(
        &self,
        _: &VerbContext,
        args: &RestoreArgs,
    ) -> anyhow::Result<ExitCode> {
        let files = self.restore(&args.commit, &args.include, &args.target)?;
        outln!(
            "restored {files} file(s) from {} into {}",
            args.commit,
            args.target.display()
        )?;
        Ok(ExitCode::SUCCESS)
    }

    /// `backupctl history STAGE [PATH]`: the commits that touched PATH, newest first.
    pub(super) fn print_history(
        &self,
        _: &VerbContext,
        args: &HistoryArgs,
    ) -> anyhow::Result<ExitCode> {
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
