//! Writing a rendered unit set into a directory, all or nothing: every file is first written
//! beside its target under a temporary name, then all are renamed into place. Files that an
//! earlier run generated and this one does not (a removed stage) are deleted, using the list
//! kept in `.backupctl-generated`; files we did not generate are never touched.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Content, UnitFile};

/// The file listing what we generated last time (paths relative to the output directory).
pub const GENERATED_LIST: &str = ".backupctl-generated";

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", .path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// What a write changed, for `generate`'s report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<PathBuf>,
    /// Files that already held what we generated, left untouched.
    pub unchanged: usize,
    pub removed: Vec<PathBuf>,
}

pub fn write_units(dir: &Path, files: &[UnitFile]) -> Result<Written, WriteError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { path, source }
    };
    fs::create_dir_all(dir).map_err(at(dir))?;
    let suffix = format!(".backupctl-tmp-{}", std::process::id());
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut kept = 0;
    let result = (|| {
        for file in files {
            let target = dir.join(&file.path);
            if unchanged(&target, &file.content) {
                // Rewriting an identical unit costs a create and a rename for nothing.
                kept += 1;
                continue;
            }
            let parent = target.parent().unwrap_or(dir);
            fs::create_dir_all(parent).map_err(at(parent))?;
            let mut temporary = target.clone().into_os_string();
            temporary.push(&suffix);
            let temporary = PathBuf::from(temporary);
            stage_file(&temporary, &file.content).map_err(at(&target))?;
            staged.push((temporary, target));
        }
        let list = dir.join(GENERATED_LIST);
        let mut temporary = list.clone().into_os_string();
        temporary.push(&suffix);
        let listing: String = files
            .iter()
            .map(|f| format!("{}\n", f.path.display()))
            .collect();
        stage_file(Path::new(&temporary), &Content::Text(listing)).map_err(at(&list))?;
        staged.push((PathBuf::from(temporary), list));
        Ok(())
    })();
    if let Err(error) = result {
        for (temporary, _) in &staged {
            let _ = fs::remove_file(temporary);
        }
        return Err(error);
    }

    // No fsync per file: units are derived data, rebuilt from the config by the next
    // `generate` or boot, and a 500-stage config would pay 500 flushes. Renaming over an
    // existing file still never exposes half a file (temporary file + rename).
    let previous = previous_files(dir);
    let mut written = Written {
        unchanged: kept,
        ..Written::default()
    };
    for (temporary, target) in staged {
        fs::rename(&temporary, &target).map_err(at(&target))?;
        if !target.ends_with(GENERATED_LIST) {
            written.files.push(target);
        }
    }
    // A set: searching the file list for each previous file made regenerating quadratic.
    let current: HashSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    for old in previous {
        if !current.contains(old.as_path()) {
            let path = dir.join(&old);
            if fs::symlink_metadata(&path).is_ok() {
                fs::remove_file(&path).map_err(at(&path))?;
                // An emptied `backup@S.service.d/` goes too; a non-empty one holds the admin's.
                if let Some(parent) = path.parent()
                    && parent != dir
                {
                    let _ = fs::remove_dir(parent);
                }
                written.removed.push(path);
            }
        }
    }
    Ok(written)
}

/// Whether `path` already holds exactly `content`.
fn unchanged(path: &Path, content: &Content) -> bool {
    match content {
        Content::Text(text) => fs::read(path).is_ok_and(|old| old == text.as_bytes()),
        Content::Symlink(target) => fs::read_link(path).is_ok_and(|old| old == *target),
    }
}

fn stage_file(path: &Path, content: &Content) -> std::io::Result<()> {
    let _ = fs::remove_file(path);
    match content {
        Content::Text(text) => fs::File::create(path)?.write_all(text.as_bytes()),
        Content::Symlink(target) => std::os::unix::fs::symlink(target, path),
    }
}

fn previous_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string(dir.join(GENERATED_LIST))
        .map(|text| {
            text.lines()
                .filter(|line| !line.is_empty() && !line.starts_with('/') && !line.contains(".."))
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> UnitFile {
        UnitFile {
            path: PathBuf::from(path),
            content: Content::Text(text.into()),
        }
    }

    #[test]
    fn writes_and_removes_what_it_no_longer_generates() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("admin.service");
        fs::write(&own, "mine").unwrap();
        write_units(
            dir.path(),
            &[file("a.service", "A"), file("b.service.d/x.conf", "B")],
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("b.service.d/x.conf")).unwrap(),
            "B"
        );
        let written = write_units(dir.path(), &[file("a.service", "A2")]).unwrap();
        assert_eq!(written.removed, [dir.path().join("b.service.d/x.conf")]);
        assert!(!dir.path().join("b.service.d").exists());
        assert_eq!(
            fs::read_to_string(dir.path().join("a.service")).unwrap(),
            "A2"
        );
        assert_eq!(fs::read_to_string(own).unwrap(), "mine");
    }

    #[test]
    fn leaves_nothing_behind_when_a_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where a directory should go makes the second file fail.
        fs::write(dir.path().join("sub"), "").unwrap();
        let error = write_units(
            dir.path(),
            &[file("a.service", "A"), file("sub/b.conf", "B")],
        );
        assert!(error.is_err());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["sub"], "no a.service, no temporary files");
    }
}
