//! What a drill compares restored files with ([`Truth`]), and the tally of the comparison.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::File;
use crate::stages::StageError;
use crate::stages::manifest::{self, format::Manifest};

/// What a restored file is compared with.
pub(super) enum Truth {
    /// The live source file, when unchanged since the backup.
    Source,
    /// The manifests of a manifest stage, by their roots.
    Manifest(Vec<Manifest>),
}

pub(super) fn load_manifests(
    spec: &manifest::Spec,
    state_dir: &Path,
    stage: &str,
) -> Result<Vec<Manifest>, StageError> {
    let output = spec.output_dir(state_dir, stage);
    let mut manifests = Vec::new();
    for source in spec.sources.get_ref() {
        let file = manifest::Spec::manifest_file(&output, source.get_ref());
        let data = std::fs::read(&file).map_err(|e| {
            StageError::io(
                format!(
                    "cannot read the manifest {} (has stage `{stage}` run?)",
                    file.display()
                ),
                e,
            )
        })?;
        let manifest = Manifest::decode(&data)
            .map_err(|e| StageError::Failed(format!("manifest {}: {e}", file.display())))?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

impl Truth {
    /// The expected BLAKE3 of `file`; `Ok(None)` when there is no truth for it.
    fn expected(&self, file: &File) -> Result<Option<[u8; 32]>, Skip> {
        match self {
            Truth::Source => {
                let meta = std::fs::symlink_metadata(&file.source).map_err(|_| Skip::Changed)?;
                if !meta.is_file() || meta.len() != file.size {
                    return Err(Skip::Changed);
                }
                if let Some(blob) = &file.git_blob {
                    let (live_blob, hash) =
                        hash_file_as_git_too(&file.source, file.size).map_err(|_| Skip::Changed)?;
                    return if live_blob == *blob {
                        Ok(Some(hash))
                    } else {
                        Err(Skip::Changed)
                    };
                }
                let mtime = Timestamp::new(meta.mtime(), meta.mtime_nsec() as i32)
                    .map_err(|_| Skip::Changed)?;
                // Some copies keep whole seconds only.
                let same_time = mtime == file.mtime
                    || (file.mtime.subsec_nanosecond() == 0
                        && mtime.as_second() == file.mtime.as_second());
                if !same_time {
                    return Err(Skip::Changed);
                }
                hash_file(&file.source).map(Some).map_err(|_| Skip::Changed)
            }
            Truth::Manifest(manifests) => {
                for manifest in manifests {
                    if let Ok(rel) = file.source.strip_prefix(&manifest.root) {
                        let key = rel.as_os_str().as_bytes();
                        if let Ok(index) = manifest
                            .entries
                            .binary_search_by(|entry| entry.path.as_slice().cmp(key))
                        {
                            return Ok(manifest.entries[index].hash);
                        }
                    }
                }
                Err(Skip::Unlisted)
            }
        }
    }
}

pub(super) enum Skip {
    Changed,
    Unlisted,
}

#[derive(Default)]
pub(super) struct Tally {
    pub files: u64,
    pub bytes: u64,
    pub changed: u64,
    pub unlisted: u64,
    pub mismatches: Vec<Mismatch>,
}

impl Tally {
    pub fn check(&mut self, file: &File, restored: &Path, truth: &Truth) -> Result<(), StageError> {
        let expected = match truth.expected(file) {
            Ok(Some(hash)) => hash,
            Ok(None) => {
                self.unlisted += 1;
                return Ok(());
            }
            Err(Skip::Changed) => {
                self.changed += 1;
                return Ok(());
            }
            Err(Skip::Unlisted) => {
                self.unlisted += 1;
                return Ok(());
            }
        };
        let actual = match hash_file(restored) {
            Ok(hash) => Some(hash),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(StageError::io(
                    format!("cannot read the restored {}", restored.display()),
                    error,
                ));
            }
        };
        if actual == Some(expected) {
            self.files += 1;
            self.bytes += file.size;
        } else {
            self.mismatches.push(Mismatch {
                path: file.source.clone(),
                expected,
                actual,
            });
        }
        Ok(())
    }
}

pub(super) struct Mismatch {
    path: PathBuf,
    expected: [u8; 32],
    /// `None`: the restore did not bring the file back.
    actual: Option<[u8; 32]>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let expected = blake3::Hash::from(self.expected).to_hex();
        match &self.actual {
            Some(actual) => write!(
                f,
                "{} (expected BLAKE3 {expected}, restored {})",
                self.path.display(),
                blake3::Hash::from(*actual).to_hex()
            ),
            None => write!(
                f,
                "{} (expected BLAKE3 {expected}, not restored)",
                self.path.display()
            ),
        }
    }
}

/// BLAKE3 of a file, as `b3sum` computes it: memory-mapped and on every core for large
/// files (the drill competes with `restic restore` + `b3sum -c`, see scripts/bench.d/drill.sh).
fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path)?;
    Ok(*hasher.finalize().as_bytes())
}

/// The git blob id and the BLAKE3 of a file of `size` bytes, in one read: a live source
/// still holding what a git commit recorded gives the drill its expected hash.
fn hash_file_as_git_too(path: &Path, size: u64) -> std::io::Result<(gix::ObjectId, [u8; 32])> {
    let mut git = gix::hash::hasher(gix::hash::Kind::Sha1);
    git.update(format!("blob {size}\0").as_bytes());
    let mut blake = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        git.update(&buffer[..n]);
        blake.update(&buffer[..n]);
        read += n as u64;
    }
    if read != size {
        // Changed while being read: the header hashed the wrong size.
        return Err(std::io::Error::other("the file changed while it was read"));
    }
    let id = git.try_finalize().map_err(std::io::Error::other)?;
    Ok((id, *blake.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_git_blob_id_is_the_one_git_computes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "hello\n").unwrap();
        let (id, hash) = hash_file_as_git_too(&path, 6).unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(id.to_string(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(hash, *blake3::hash(b"hello\n").as_bytes());
        assert!(hash_file_as_git_too(&path, 7).is_err());
    }
}
