//! A btrfs filesystem on a loop device, made for one test and taken down when it ends, even
//! when the test panics (`Drop`). It lives under `CARGO_TARGET_TMPDIR`, not `/tmp`, so that
//! units with `PrivateTmp=yes` see it.

use std::path::PathBuf;
use std::process::Command;

use super::{ok, require_tool};

pub struct Btrfs {
    /// Where the filesystem's top-level subvolume is mounted.
    pub mount: PathBuf,
    device: String,
    _dir: tempfile::TempDir,
}

impl Btrfs {
    /// A fresh 512 MiB filesystem (sparse image).
    #[track_caller]
    pub fn new() -> Self {
        for tool in ["mkfs.btrfs", "btrfs", "losetup", "mount", "umount"] {
            require_tool(tool);
        }
        let dir = tempfile::Builder::new()
            .prefix("btrfs-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temporary directory");
        let image = dir.path().join("image");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        ok(Command::new("mkfs.btrfs").arg("-q").arg(&image));
        let device = ok(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))
        .trim()
        .to_string();
        assert!(
            device.starts_with("/dev/loop"),
            "losetup printed {device:?}"
        );
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let fs = Btrfs {
            mount,
            device,
            _dir: dir,
        };
        ok(Command::new("mount").arg(&fs.device).arg(&fs.mount));
        fs
    }

    /// Creates the subvolume `mount/name` and returns its path.
    pub fn subvolume(&self, name: &str) -> PathBuf {
        let path = self.mount.join(name);
        ok(Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&path));
        path
    }

    /// Paths (relative to the top level) of all subvolumes whose name holds `@backupctl.`:
    /// the snapshots backupctl made and has not deleted.
    pub fn snapshots(&self) -> Vec<String> {
        ok(Command::new("btrfs")
            .args(["subvolume", "list", "-o"])
            .arg(&self.mount))
        .lines()
        .filter_map(|line| line.split(" path ").nth(1))
        .filter(|path| path.contains("@backupctl."))
        .map(String::from)
        .collect()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.mount.join(relative)
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        // Lazy unmount: a process still inside (a killed run's tool) must not keep it.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}
