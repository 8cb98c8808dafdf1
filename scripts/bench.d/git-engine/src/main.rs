//! `git-engine-bench REPO`: what the git stage does after copying the sources into the work
//! tree — stage everything (ignored files too), commit only when the tree changed — done
//! with libgit2 (the git2 crate), for scripts/bench.d/git.sh to compare with `git` itself.

use git2::{IndexAddOption, Repository, Signature};

fn main() -> Result<(), git2::Error> {
    let path = std::env::args().nth(1).expect("usage: git-engine-bench REPO");
    let repo = Repository::open(&path).or_else(|_| Repository::init(&path))?;
    let mut index = repo.index()?;
    // `git add --all --force .`
    index.add_all(["*"], IndexAddOption::FORCE, None)?;
    index.update_all(["*"], None)?;
    index.write()?;
    let tree_id = index.write_tree()?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
        return Ok(()); // nothing changed: no commit
    }
    let tree = repo.find_tree(tree_id)?;
    let me = Signature::now("backupctl", "backupctl@bench")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &me, &me, "backup", &tree, &parents)?;
    Ok(())
}
