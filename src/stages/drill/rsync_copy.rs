//! A drill's rsync target: the destination itself, or its newest rotated snapshot; files
//! are read where they are, nothing is restored.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{Backup, DrillContext, Drillable, File, RestoreSample};
use crate::stages::{Needs, Outcome, StageError, StageKind, rsync};

impl Drillable for rsync::Spec {
    fn drillable(&self) -> Result<(), String> {
        if rsync::is_remote(self.destination.get_ref()) {
            return Err("its destination is remote; a drill reads a local destination".into());
        }
        if self
            .sources
            .get_ref()
            .iter()
            .any(|s| rsync::is_remote(s.get_ref()))
        {
            return Err("its sources are remote; a drill compares with local sources".into());
        }
        Ok(())
    }

    /// The stage's own needs (its store, its sources to compare with) but rsync: the drill
    /// reads the destination itself.
    fn drill_needs(&self) -> Needs {
        let mut needs = StageKind::needs(self);
        needs.tools.retain(|tool| *tool != "rsync");
        needs
    }

    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError> {
        super::verify_sample(ctx, newest(self)?)
    }
}

/// The files are readable where the backup keeps them: nothing to restore.
struct InPlace;

impl RestoreSample for InPlace {
    fn restore(&self, _: &[File], _: bool, _: &Path) -> Result<PathBuf, StageError> {
        Ok(PathBuf::from("/"))
    }
}

/// The newest copy the stage `spec` made.
fn newest(spec: &rsync::Spec) -> Result<Backup<'static>, StageError> {
    let destination = PathBuf::from(spec.destination.get_ref().trim_end_matches('/'));
    // With `rotate`, the newest snapshot is a backup no later run has touched.
    let (root, taken) = match &spec.rotate {
        Some(_) => match crate::rotate::list(&destination)
            .map_err(|e| StageError::Failed(e.to_string()))?
            .pop()
        {
            Some(snapshot) => (snapshot.path, Some(snapshot.taken)),
            None => (destination.clone(), None),
        },
        None => (destination.clone(), None),
    };
    let taken = match taken {
        Some(taken) => Some(taken),
        None => std::fs::metadata(&root)
            .ok()
            .and_then(|m| Timestamp::new(m.mtime(), m.mtime_nsec() as i32).ok()),
    };
    let mut files = Vec::new();
    for source in spec.sources.get_ref() {
        let source = source.get_ref();
        // `/a/b/` copies b's contents into the destination, `/a/b` copies b itself.
        let source_root = PathBuf::from(source.trim_end_matches('/'));
        let stored_root = if source.ends_with('/') {
            root.clone()
        } else {
            match source_root.file_name() {
                Some(name) => root.join(name),
                None => root.clone(),
            }
        };
        walk(&stored_root, &mut |stored, meta| {
            let rel = stored.strip_prefix(&stored_root).unwrap_or(stored);
            if let Ok(mtime) = Timestamp::new(meta.mtime(), meta.mtime_nsec() as i32) {
                files.push(File {
                    source: source_root.join(rel),
                    stored: stored.to_path_buf(),
                    size: meta.len(),
                    mtime,
                    git_blob: None,
                });
            }
        })
        .map_err(|e| StageError::io(format!("cannot read {}", stored_root.display()), e))?;
    }
    if files.is_empty() {
        return Err(StageError::Failed(format!(
            "{} holds no files of the stage's sources; run the backup first",
            root.display()
        )));
    }
    Ok(Backup {
        files,
        taken,
        snapshot_id: None,
        label: root.display().to_string(),
        restore: Box::new(InPlace),
    })
}

/// Every regular file under `dir` (symlinks not followed).
fn walk(dir: &Path, found: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), found)?;
        } else if meta.is_file() {
            found(&entry.path(), &meta);
        }
    }
    Ok(())
}
