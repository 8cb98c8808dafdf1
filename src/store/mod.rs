//! Opening and closing an encrypted store (`[store.NAME]`): remote → LUKS → btrfs, and back.
//!
//! `backup-store@NAME.service` calls [`open`] as its start and [`close`] as its stop; the
//! manual `backupctl mount` / `umount` use the same functions with another target directory.
//! Every layer this process creates is recorded in a state file under `/run/backupctl/`
//! before the next one is attempted, and closing undoes only what is recorded: a share, a
//! mapping or a mount that was there before (someone else's) is used but never torn down.
//! So a mapper device this code did not open is never closed by it.

pub mod cifs;
pub mod init;
pub mod luks;
pub mod preflight;

use crate::process::Command;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::btrfs;
use crate::config::store::{Remote, Store};
use crate::mounts;
use crate::paths::{self, Fsync};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Tool(#[from] crate::process::ToolError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Runs a short tool to its end, capturing its output ([`Command::output`]).
pub fn run_tool(command: Command) -> Result<String, StoreError> {
    Ok(command.output()?)
}

/// What an open created, kept in `/run/backupctl/store-state/NAME.json`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// We mounted the remote (share or block device filesystem).
    pub remote: bool,
    /// We opened the LUKS mapping.
    pub mapper: bool,
    /// btrfs mounts we made (the store's mount point, manual `backupctl mount` targets).
    pub mounts: Vec<PathBuf>,
}

impl State {
    pub fn load(store: &Store) -> Result<State, StoreError> {
        match fs::read_to_string(store.state_file()) {
            Ok(text) => serde_json::from_str(&text).map_err(|error| {
                StoreError::Refused(format!(
                    "the state file {} is damaged ({error}); check what is mounted (findmnt, dmsetup ls) and remove it",
                    store.state_file().display()
                ))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(error) => Err(StoreError::io(
                format!("cannot read {}", store.state_file().display()),
                error,
            )),
        }
    }

    fn is_empty(&self) -> bool {
        !self.remote && !self.mapper && self.mounts.is_empty()
    }

    /// Written before the next layer is attempted, so a crash leaves an accurate record.
    fn save(&self, store: &Store) -> Result<(), StoreError> {
        let path = store.state_file();
        if self.is_empty() {
            return match fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(
                    format!("cannot remove {}", path.display()),
                    error,
                )),
                _ => Ok(()),
            };
        }
        let parent = path.parent().expect("state files live in a directory");
        make_private_dir(parent)?;
        let text = serde_json::to_string_pretty(self).expect("state serializes") + "\n";
        // On a tmpfs (`/run`): an fsync would buy nothing.
        paths::write_atomically(&path, text.as_bytes(), Fsync::No, None)
            .map_err(|error| StoreError::io(format!("cannot write {}", path.display()), error))
    }
}

pub fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| StoreError::io(format!("cannot create {}", dir.display()), error))
}

/// One store operation at a time (the unit, a manual mount, `snapshots`): an flock held
/// until the guard is dropped.
struct Lock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

fn lock(store: &Store) -> Result<Lock, StoreError> {
    let path = store.state_file().with_extension("lock");
    make_private_dir(path.parent().expect("in a directory"))?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|error| StoreError::io(format!("cannot open {}", path.display()), error))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(Lock)
        .map_err(|(_, errno)| {
            StoreError::io(format!("cannot lock {}", path.display()), errno.into())
        })
}

pub fn is_mount_point(path: &Path) -> bool {
    mounts::is_mount_point(path)
}

/// Mount points whose source is this store's mapping.
fn mounts_of_mapper(store: &Store) -> Vec<PathBuf> {
    let mapper = store.mapper_path();
    let resolved = fs::canonicalize(&mapper).ok();
    mounts::read()
        .into_iter()
        .filter(|mount| {
            let source = Path::new(&mount.source);
            source == mapper || resolved.as_deref() == Some(source)
        })
        .map(|mount| mount.target)
        .collect()
}

/// Read-only or writable btrfs mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Opens the store and mounts its btrfs filesystem at `target`. Layers already there are
/// used as they are and left alone by [`close`]; what this call creates is recorded first,
/// and undone again when a later layer fails.
pub fn open(store: &Store, target: &Path, access: Access) -> Result<(), StoreError> {
    let _lock = lock(store)?;
    let mut state = State::load(store)?;
    let before = state.clone();
    let result = open_layers(store, target, access, &mut state);
    if result.is_err() {
        // Undo exactly what this call added; keep what was there before.
        let added: Vec<PathBuf> = state
            .mounts
            .iter()
            .filter(|m| !before.mounts.contains(m))
            .cloned()
            .collect();
        for mount in added {
            if btrfs::umount(&mount).is_ok() {
                state.mounts.retain(|m| *m != mount);
            }
        }
        if state.mapper && !before.mapper && luks::close(store).is_ok() {
            state.mapper = false;
        }
        if state.remote && !before.remote && umount_remote(store).is_ok() {
            state.remote = false;
        }
        let _ = state.save(store);
    }
    result
}

fn open_layers(
    store: &Store,
    target: &Path,
    access: Access,
    state: &mut State,
) -> Result<(), StoreError> {
    mount_remote(store, state)?;
    let image = store.image_path();
    if !image.is_file() {
        return Err(StoreError::Refused(format!(
            "store `{}`: no image {} on the remote; create it with `backupctl store init {}`",
            store.name,
            image.display(),
            store.name
        )));
    }
    if !store.mapper_path().exists() {
        luks::open(store)?;
        state.mapper = true;
        state.save(store)?;
    }
    match mounts::read()
        .into_iter()
        .find(|mount| mount.target == target)
    {
        Some(mount) => {
            let source = mount.source.to_string_lossy();
            if !mounts_of_mapper(store).iter().any(|m| m == target) {
                return Err(StoreError::Refused(format!(
                    "{} is already a mount point of {source}, not of store `{}`; choose another directory",
                    target.display(),
                    store.name
                )));
            }
            // Already ours: opening is idempotent.
        }
        None => {
            make_private_dir(target)?;
            btrfs::mount(&store.mapper_path(), target, access == Access::ReadOnly)?;
            state.mounts.push(target.to_path_buf());
            state.save(store)?;
        }
    }
    Ok(())
}

fn mount_remote(store: &Store, state: &mut State) -> Result<(), StoreError> {
    let dir = store.remote_dir();
    if is_mount_point(&dir) {
        return Ok(());
    }
    make_private_dir(&dir)?;
    match &store.remote {
        Remote::Cifs { .. } => cifs::mount(store, &dir)?,
        Remote::Block { device } => {
            run_tool(Command::new("mount").arg(device).arg(&dir))?;
        }
    }
    state.remote = true;
    state.save(store)
}

fn umount_remote(store: &Store) -> Result<(), StoreError> {
    run_tool(Command::new("umount").arg(store.remote_dir()))?;
    Ok(())
}

/// Unmounts `targets` (those of them this store's opens created) and then, when no mount of
/// the store is left, closes the mapping and unmounts the remote if we created them.
/// `targets = None` closes every mount we made.
pub fn close(store: &Store, targets: Option<&[PathBuf]>) -> Result<(), StoreError> {
    let _lock = lock(store)?;
    let mut state = State::load(store)?;
    let chosen: Vec<PathBuf> = state
        .mounts
        .iter()
        .filter(|m| targets.is_none_or(|t| t.contains(m)))
        .cloned()
        .collect();
    for mount in chosen {
        if is_mount_point(&mount) {
            btrfs::umount(&mount)?;
        }
        let _ = fs::remove_dir(&mount);
        state.mounts.retain(|m| *m != mount);
        state.save(store)?;
    }
    if !state.mounts.is_empty() || !mounts_of_mapper(store).is_empty() {
        // Still in use (another of our mounts, or someone else's): leave the lower layers.
        return Ok(());
    }
    if state.mapper {
        if store.mapper_path().exists() {
            luks::close(store)?;
        }
        state.mapper = false;
        state.save(store)?;
    }
    if state.remote {
        if is_mount_point(&store.remote_dir()) {
            umount_remote(store)?;
        }
        let _ = fs::remove_dir(store.remote_dir());
        state.remote = false;
        state.save(store)?;
    }
    Ok(())
}

/// Writes `content` to a new file only root can read; fails if the file exists.
pub fn write_private_file(path: &Path, content: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| StoreError::io(format!("cannot create {}", path.display()), error))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|error| StoreError::io(format!("cannot write {}", path.display()), error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_is_not_written() {
        assert!(State::default().is_empty());
        let state = State {
            mounts: vec!["/x".into()],
            ..State::default()
        };
        assert!(!state.is_empty());
    }
}
