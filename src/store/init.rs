//! Setting a store up (`backupctl store init-key` and `store init`): a random key kept on
//! this machine, then the image on the remote: created at `size`, LUKS2-formatted with the
//! key, btrfs inside. Both refuse to overwrite what exists: a lost key or image is a lost
//! backup.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::{State, StoreError, luks, make_private_dir, write_private_file};
use crate::btrfs;
use crate::config::store::Store;

/// 4096 random bits: far beyond what LUKS needs, and still a tiny file to keep safe.
const KEY_BYTES: usize = 512;

pub fn init_key(store: &Store) -> Result<(), StoreError> {
    let path = &store.keyfile;
    if fs::symlink_metadata(path).is_ok() {
        return Err(StoreError::Refused(format!(
            "the key {} exists already; refusing to overwrite it (the store it opens would be lost)",
            path.display()
        )));
    }
    if let Some(parent) = path.parent() {
        make_private_dir(parent)?;
    }
    let mut key = vec![0u8; KEY_BYTES];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .map_err(|error| StoreError::io("cannot read /dev/urandom", error))?;
    write_private_file(path, &key, 0o400)
}

/// Creates the image on the remote. The remote is mounted for this and unmounted again if
/// this call mounted it.
pub fn init_store(store: &Store, kdf: &luks::Kdf) -> Result<(), StoreError> {
    let Some(size) = store.size else {
        return Err(StoreError::Refused(format!(
            "store `{}` has no `size`; add e.g. size = \"500G\" to [store.{}]",
            store.name, store.name
        )));
    };
    if !store.keyfile.is_file() {
        return Err(StoreError::Refused(format!(
            "the key {} is missing; create it with `backupctl store init-key {}`",
            store.keyfile.display(),
            store.name
        )));
    }
    let _lock = super::lock(store)?;
    let mut state = State::load(store)?;
    let mounted_here = !state.remote && !super::is_mount_point(&store.remote_dir());
    super::mount_remote(store, &mut state)?;
    let result = create_image(store, size, kdf);
    if mounted_here && state.remote {
        super::umount_remote(store)?;
        let _ = fs::remove_dir(store.remote_dir());
        state.remote = false;
        state.save(store)?;
    }
    result
}

fn create_image(store: &Store, size: u64, kdf: &luks::Kdf) -> Result<(), StoreError> {
    let image = store.image_path();
    if fs::symlink_metadata(&image).is_ok() {
        return Err(StoreError::Refused(format!(
            "the image {} exists already on the remote; refusing to touch it",
            image.display()
        )));
    }
    if store.mapper_path().exists() {
        return Err(StoreError::Refused(format!(
            "{} is open already; close it before initialising",
            store.mapper_path().display()
        )));
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&image)
        .map_err(|error| StoreError::io(format!("cannot create {}", image.display()), error))?;
    let made = file
        .set_len(size)
        .map_err(|error| StoreError::io(format!("cannot size {}", image.display()), error))
        .and_then(|()| luks::format(store, kdf))
        .and_then(|()| luks::open(store))
        .and_then(|()| {
            let made = btrfs::mkfs(&store.mapper_path(), &format!("backupctl-{}", store.name))
                .map_err(StoreError::from);
            let closed = luks::close(store);
            made.and(closed)
        });
    if made.is_err() {
        // A half-made image would be refused by the next init: remove it.
        let _ = fs::remove_file(&image);
    }
    made
}

/// For `hello`: whether the key file is where it should be, with a safe mode.
pub fn key_is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 == 0)
}
