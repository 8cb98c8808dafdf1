//! The LUKS2 layer: format an image, open it as `/dev/mapper/backupctl-NAME`, close it.
//! The key is passed as a file (`--key-file`); cryptsetup attaches a loop device for the
//! image by itself and releases it when the mapping closes.

use std::path::Path;

use super::{StoreError, run_tool};
use crate::config::store::Store;
use crate::process::Command;

pub fn open(store: &Store) -> Result<(), StoreError> {
    // The key opens every backup in the store: refused when others may read or swap it.
    crate::secret_file::check(&store.keyfile)
        .map_err(|error| StoreError::Refused(error.to_string()))?;
    run_tool(
        Command::new("cryptsetup")
            .args(["open", "--type", "luks2", "--key-file"])
            .arg(&store.keyfile)
            .arg(store.image_path())
            .arg(store.mapper_name()),
    )?;
    Ok(())
}

pub fn close(store: &Store) -> Result<(), StoreError> {
    run_tool(
        Command::new("cryptsetup")
            .arg("close")
            .arg(store.mapper_name()),
    )?;
    Ok(())
}

/// Key-derivation settings for `luksFormat`; the defaults are cryptsetup's (argon2id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kdf {
    pub pbkdf: Option<String>,
    pub iterations: Option<u32>,
}

pub fn format_arguments(image: &Path, keyfile: &Path, kdf: &Kdf) -> Vec<String> {
    let mut args: Vec<String> = [
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--key-file",
    ]
    .map(String::from)
    .to_vec();
    args.push(keyfile.display().to_string());
    if let Some(pbkdf) = &kdf.pbkdf {
        args.extend(["--pbkdf".into(), pbkdf.clone()]);
    }
    if let Some(iterations) = kdf.iterations {
        args.extend(["--pbkdf-force-iterations".into(), iterations.to_string()]);
    }
    args.push(image.display().to_string());
    args
}

pub fn format(store: &Store, kdf: &Kdf) -> Result<(), StoreError> {
    run_tool(Command::new("cryptsetup").args(format_arguments(
        &store.image_path(),
        &store.keyfile,
        kdf,
    )))?;
    Ok(())
}
