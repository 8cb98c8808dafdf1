//! btrfs subvolumes through the kernel's ioctls: find the subvolume that holds a path, take a
//! read-only snapshot of it, delete a snapshot.
//!
//! ioctls rather than spawning `btrfs subvolume snapshot -r`: one system call instead of a
//! process per subvolume, errors as `errno` we can explain, and no dependency on
//! btrfs-progs at run time (`scripts/bench.d/snapshot.sh` compares both).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{BTRFS_SUPER_MAGIC, statfs};

/// The inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
const SUBVOLUME_ROOT_INODE: u64 = 256;
/// `BTRFS_SUBVOL_RDONLY`: the snapshot is created read-only.
const SUBVOL_RDONLY: u64 = 1 << 1;
const PATH_NAME_MAX: usize = 4087;
const SUBVOL_NAME_MAX: usize = 4039;

/// `struct btrfs_ioctl_vol_args` (linux/btrfs.h).
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2` (linux/btrfs.h), with the qgroup union unused.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_MAX + 1],
}

nix::ioctl_write_ptr!(snap_destroy, 0x94, 15, VolArgs);
nix::ioctl_write_ptr!(snap_create_v2, 0x94, 23, VolArgsV2);

#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    #[error("{path} is not on a btrfs filesystem")]
    NotBtrfs { path: PathBuf },
    #[error(
        "{path} is the top of a mount that is not a btrfs subvolume (a bind mount of a directory?); list the path it comes from instead"
    )]
    NotSubvolumeRoot { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot name {name:?} is too long")]
    NameTooLong { name: String },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BtrfsError + 'a {
    move |source| BtrfsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// True when `path` lies on btrfs.
pub fn is_btrfs(path: &Path) -> Result<bool, BtrfsError> {
    let stat = statfs(path).map_err(|errno| BtrfsError::Io {
        what: "cannot inspect",
        path: path.to_path_buf(),
        source: errno.into(),
    })?;
    Ok(stat.filesystem_type() == BTRFS_SUPER_MAGIC)
}

/// The root directory of the subvolume holding `path` (which must exist and be absolute).
/// Each subvolume has its own device number, so the root is the highest ancestor that still
/// has the path's device; it must have inode 256, or the path is a bind mount of a plain
/// directory and has no subvolume of its own to snapshot.
pub fn subvolume_root(path: &Path) -> Result<PathBuf, BtrfsError> {
    if !is_btrfs(path)? {
        return Err(BtrfsError::NotBtrfs {
            path: path.to_path_buf(),
        });
    }
    let path = path
        .canonicalize()
        .map_err(io_error("cannot resolve", path))?;
    let mut root = if path.is_dir() {
        path.clone()
    } else {
        path.parent().unwrap_or(Path::new("/")).to_path_buf()
    };
    let device = root
        .metadata()
        .map_err(io_error("cannot inspect", &root))?
        .dev();
    while let Some(parent) = root.parent() {
        let parent_device = parent
            .metadata()
            .map_err(io_error("cannot inspect", parent))?
            .dev();
        if parent_device != device {
            break;
        }
        root = parent.to_path_buf();
    }
    let inode = root
        .metadata()
        .map_err(io_error("cannot inspect", &root))?
        .ino();
    if inode != SUBVOLUME_ROOT_INODE {
        return Err(BtrfsError::NotSubvolumeRoot { path: root });
    }
    Ok(root)
}

fn copy_name<const N: usize>(name: &str, into: &mut [u8; N]) -> Result<(), BtrfsError> {
    let bytes = CString::new(name)
        .map_err(|_| BtrfsError::NameTooLong { name: name.into() })?
        .into_bytes_with_nul();
    if bytes.len() > N {
        return Err(BtrfsError::NameTooLong { name: name.into() });
    }
    into[..bytes.len()].copy_from_slice(&bytes);
    Ok(())
}

/// Creates `directory/name` as a read-only snapshot of the subvolume `subvolume`.
/// Both must be on the same btrfs filesystem, and `directory` writable.
pub fn snapshot_read_only(
    subvolume: &Path,
    directory: &Path,
    name: &str,
) -> Result<(), BtrfsError> {
    let source = File::open(subvolume).map_err(io_error("cannot open", subvolume))?;
    let target = File::open(directory).map_err(io_error("cannot open", directory))?;
    let mut args = Box::new(VolArgsV2 {
        fd: source.as_raw_fd().into(),
        transid: 0,
        flags: SUBVOL_RDONLY,
        unused: [0; 4],
        name: [0; SUBVOL_NAME_MAX + 1],
    });
    copy_name(name, &mut args.name)?;
    // SAFETY: `args` is a valid, initialised `btrfs_ioctl_vol_args_v2` that outlives the call,
    // and both descriptors are open.
    unsafe { snap_create_v2(target.as_raw_fd(), &*args) }.map_err(|errno| BtrfsError::Io {
        what: "cannot create a snapshot in",
        path: directory.to_path_buf(),
        source: errno.into(),
    })?;
    Ok(())
}

/// Deletes the snapshot (subvolume) `directory/name`. Needs `CAP_SYS_ADMIN`, or the mount
/// option `user_subvol_rm_allowed` and write access.
pub fn delete_subvolume(directory: &Path, name: &str) -> Result<(), BtrfsError> {
    let parent = File::open(directory).map_err(io_error("cannot open", directory))?;
    let mut args = Box::new(VolArgs {
        fd: 0,
        name: [0; PATH_NAME_MAX + 1],
    });
    copy_name(name, &mut args.name)?;
    let path = directory.join(name);
    // SAFETY: as in `snapshot_read_only`.
    unsafe { snap_destroy(parent.as_raw_fd(), &*args) }.map_err(|errno| BtrfsError::Io {
        what: "cannot delete the snapshot",
        path,
        source: errno.into(),
    })?;
    Ok(())
}

/// True when `path` is the root of a subvolume (e.g. a snapshot of ours).
pub fn is_subvolume(path: &Path) -> bool {
    path.symlink_metadata()
        .is_ok_and(|m| m.is_dir() && m.ino() == SUBVOLUME_ROOT_INODE)
        && is_btrfs(path).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_argument_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<VolArgsV2>(), 4096);
    }

    #[test]
    fn names_are_nul_terminated_and_bounded() {
        let mut buffer = [0xffu8; 8];
        copy_name("abc", &mut buffer).unwrap();
        assert_eq!(&buffer[..4], b"abc\0");
        assert!(copy_name("12345678", &mut buffer).is_err());
    }
}
