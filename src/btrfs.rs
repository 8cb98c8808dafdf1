//! btrfs through its command-line tools: make the filesystem and mount it (a store's inner
//! layer), and the subvolume operations rotation needs (create, read-only snapshot, delete).
//! Below both `store` and the rsync stage. (`snapshot::btrfs` takes a stage's source
//! snapshots through the kernel's ioctls instead.)

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::process::{Command, ToolError};

fn run_tool(command: Command) -> Result<String, ToolError> {
    command.output()
}

pub fn mkfs(device: &Path, label: &str) -> Result<(), ToolError> {
    run_tool(
        Command::new("mkfs.btrfs")
            .args(["--quiet", "--nodiscard", "--label", label])
            .arg(device),
    )?;
    Ok(())
}

pub fn mount(device: &Path, target: &Path, read_only: bool) -> Result<(), ToolError> {
    let options = if read_only {
        "ro,noatime"
    } else {
        "rw,noatime"
    };
    run_tool(
        Command::new("mount")
            .args(["-t", "btrfs", "-o", options])
            .arg(device)
            .arg(target),
    )?;
    Ok(())
}

pub fn umount(target: &Path) -> Result<(), ToolError> {
    run_tool(Command::new("umount").arg(target))?;
    Ok(())
}

/// A subvolume's root directory has inode 256 on btrfs; a plain directory never does.
pub fn is_subvolume(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_dir() && meta.ino() == 256)
}

pub fn create_subvolume(path: &Path) -> Result<(), ToolError> {
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(path),
    )?;
    Ok(())
}

pub fn snapshot_read_only(source: &Path, target: &Path) -> Result<(), ToolError> {
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(source)
            .arg(target),
    )?;
    Ok(())
}

pub fn delete_subvolume(path: &Path) -> Result<(), ToolError> {
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(path),
    )?;
    Ok(())
}
