//! The model of `[store.NAME]`: an encrypted store on a NAS or SAN (the mnemosyne seed).
//!
//! A store is three layers, opened in this order and closed in reverse by
//! `backup-store@NAME.service` (see `crate::store`): the remote (a CIFS share, or a
//! filesystem on a block device) mounted at [`Store::remote_dir`]; a LUKS2 image file inside
//! it, opened as `/dev/mapper/backupctl-NAME` with a key kept on this machine; and the btrfs
//! filesystem inside, mounted at [`Store::mount_point`], where stages with `store = "NAME"`
//! write.

use std::path::{Path, PathBuf};

/// Where opened stores and their bookkeeping live (a tmpfs: nothing survives a reboot, which
/// is right, because no mount does either).
pub const RUN_DIR: &str = "/run/backupctl";

#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub name: String,
    pub remote: Remote,
    /// The image's file name inside the remote.
    pub image: String,
    /// The image's size in bytes; used only by `backupctl store init`.
    pub size: Option<u64>,
    /// The LUKS key file, on this machine (never on the NAS).
    pub keyfile: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Remote {
    /// A CIFS/SMB share, e.g. `//nas.local/backup`.
    Cifs {
        volume: String,
        username: String,
        password: Password,
        domain: Option<String>,
        /// Extra `mount -o` options, e.g. `vers=3.0`.
        options: Vec<String>,
    },
    /// A filesystem on a block device (iSCSI, SAN, a USB disk): `UUID=…`, `LABEL=…` or a path.
    Block { device: String },
}

/// Where the CIFS password comes from. Never the config itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Password {
    /// A file readable by root only.
    File(PathBuf),
    /// A systemd credential (`LoadCredential=ID`, found in /etc/credstore/ and friends).
    Credential(String),
}

impl Store {
    /// `backup-store@NAME.service`.
    pub fn unit(&self) -> String {
        crate::units::store_service(&self.name)
    }

    /// Where the btrfs filesystem of the store is mounted while the store is open.
    pub fn mount_point(&self) -> PathBuf {
        mount_point(&self.name)
    }

    /// Where the remote (share or block device filesystem) is mounted.
    pub fn remote_dir(&self) -> PathBuf {
        Path::new(RUN_DIR).join("remote").join(&self.name)
    }

    /// The image file, once the remote is mounted.
    pub fn image_path(&self) -> PathBuf {
        self.remote_dir().join(&self.image)
    }

    /// The device-mapper name of the opened image.
    pub fn mapper_name(&self) -> String {
        format!("backupctl-{}", self.name)
    }

    pub fn mapper_path(&self) -> PathBuf {
        Path::new("/dev/mapper").join(self.mapper_name())
    }

    /// The record of what an open created, so that a close undoes exactly that.
    pub fn state_file(&self) -> PathBuf {
        Path::new(RUN_DIR)
            .join("store-state")
            .join(format!("{}.json", self.name))
    }

    /// The name of the systemd credential the store unit loads the CIFS password as.
    pub fn credential_id(&self) -> Option<String> {
        match &self.remote {
            Remote::Cifs {
                password: Password::Credential(id),
                ..
            } => Some(id.clone()),
            Remote::Cifs {
                password: Password::File(_),
                ..
            } => Some(format!("backupctl-store-{}", self.name)),
            Remote::Block { .. } => None,
        }
    }
}

pub fn mount_point(store: &str) -> PathBuf {
    Path::new(RUN_DIR).join("store").join(store)
}
