//! The private mount namespace a snapshotting stage runs in: the snapshots are bind-mounted
//! over the original paths there, so the tools see (and record) the real paths, while the rest
//! of the system keeps seeing the live files.
//!
//! The namespace belongs to the calling thread (`unshare(CLONE_NEWNS)` is per task): the
//! executor runs a snapshotting stage on a thread of its own, so that `run --here` goes on in
//! the original namespace afterwards, and tools spawned from that thread inherit it.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "cannot enter a private mount namespace: {0} (needs CAP_SYS_ADMIN; under systemd the stage's drop-in grants it)"
    )]
    Unshare(#[source] nix::Error),
    #[error("cannot make the mounts of the private namespace private: {0}")]
    Propagation(#[source] nix::Error),
    #[error("cannot bind-mount {source_path} over {target}: {error}")]
    Bind {
        source_path: PathBuf,
        target: PathBuf,
        #[source]
        error: nix::Error,
    },
    #[error("cannot unmount {target}: {error}")]
    Unmount {
        target: PathBuf,
        #[source]
        error: nix::Error,
    },
}

/// Moves the calling thread into a new mount namespace whose mounts do not propagate back
/// (recursively slave: mounts made outside still appear inside, ours never leave).
pub fn enter_private() -> Result<(), NamespaceError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(NamespaceError::Unshare)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(NamespaceError::Propagation)
}

/// Bind-mounts `source` over `target` (a read-only snapshot stays read-only through it).
pub fn bind(source: &Path, target: &Path) -> Result<(), NamespaceError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|error| NamespaceError::Bind {
        source_path: source.to_path_buf(),
        target: target.to_path_buf(),
        error,
    })
}

/// Detaches the mount at `target`, so that the snapshot under it can be deleted.
pub fn unmount(target: &Path) -> Result<(), NamespaceError> {
    umount2(target, MntFlags::MNT_DETACH).map_err(|error| NamespaceError::Unmount {
        target: target.to_path_buf(),
        error,
    })
}
