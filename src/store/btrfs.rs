//! The btrfs layer: make the filesystem, mount it, and the subvolume operations rotation
//! needs (create, read-only snapshot, delete).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::{Access, StoreError, run_tool};

pub fn mkfs(device: &Path, label: &str) -> Result<(), StoreError> {
    run_tool(
        Command::new("mkfs.btrfs")
            .args(["--quiet", "--nodiscard", "--label", label])
            .arg(device),
    )?;
    Ok(())
}

pub fn mount(device: &Path, target: &Path, access: Access) -> Result<(), StoreError> {
    let options = match access {
        Access::ReadOnly => "ro,noatime",
        Access::ReadWrite => "rw,noatime",
    };
    run_tool(
        Command::new("mount")
            .args(["-t", "btrfs", "-o", options])
            .arg(device)
            .arg(target),
    )?;
    Ok(())
}

pub fn umount(target: &Path) -> Result<(), StoreError> {
    run_tool(Command::new("umount").arg(target))?;
    Ok(())
}

/// A subvolume's root directory has inode 256 on btrfs; a plain directory never does.
pub fn is_subvolume(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_dir() && meta.ino() == 256)
}

pub fn create_subvolume(path: &Path) -> Result<(), StoreError> {
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(path),
    )?;
    Ok(())
}

pub fn snapshot_read_only(source: &Path, target: &Path) -> Result<(), StoreError> {
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(source)
            .arg(target),
    )?;
    Ok(())
}

pub fn delete_subvolume(path: &Path) -> Result<(), StoreError> {
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(path),
    )?;
    Ok(())
}
