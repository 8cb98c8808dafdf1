//! The one check every secret file gets before it is used (password, repository, key, token
//! files): by `hello`, and by the stage (or notifier, or store) that reads it, so a config
//! without a `hello` stage does not use a world-readable password silently.
//!
//! A secret file must not be readable, writable or executable by its group or others, and
//! must belong to the user reading it or to root (a file another user owns can be swapped
//! under us). Credentials systemd copied into `$CREDENTIALS_DIRECTORY` are systemd's to
//! guard (`LoadCredential=`) and are not checked.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a secret file is refused. Messages name the file and its mode, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read the secret file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret file {} is {access} (mode {mode:04o}); run: chmod 600 {}", .path.display(), .path.display())]
    Exposed {
        path: PathBuf,
        access: String,
        mode: u32,
    },
    #[error("the secret file {} belongs to uid {owner}, not to uid {user} who reads it (nor to root); run: chown {user} {}", .path.display(), .path.display())]
    Foreign {
        path: PathBuf,
        owner: u32,
        user: u32,
    },
}

/// Checks one secret file; returns its permission bits (for `hello`'s table).
pub fn check(path: &Path) -> Result<u32, SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if is_systemd_credential(path) {
        return Ok(mode);
    }
    if let Some(access) = describe_access(mode) {
        return Err(SecretFileError::Exposed {
            path: path.to_path_buf(),
            access,
            mode,
        });
    }
    let user = nix::unistd::geteuid().as_raw();
    if meta.uid() != user && meta.uid() != 0 {
        return Err(SecretFileError::Foreign {
            path: path.to_path_buf(),
            owner: meta.uid(),
            user,
        });
    }
    Ok(mode)
}

/// Inside the unit's credentials directory: systemd made it, readable by the unit only.
fn is_systemd_credential(path: &Path) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|dir| !dir.is_empty() && path.starts_with(Path::new(&dir)))
}

/// What the group and other bits of `mode` allow, in words (shared with `crate::trust`).
pub use crate::trust::describe_access;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_the_real_rights_in_words() {
        assert_eq!(describe_access(0o600), None);
        assert_eq!(describe_access(0o400), None);
        assert_eq!(
            describe_access(0o640).as_deref(),
            Some("readable by its group")
        );
        assert_eq!(
            describe_access(0o644).as_deref(),
            Some("readable by its group and others")
        );
        assert_eq!(
            describe_access(0o604).as_deref(),
            Some("readable by others")
        );
        assert_eq!(
            describe_access(0o662).as_deref(),
            Some("readable and writable by its group, writable by others")
        );
    }

    #[test]
    fn regression_hello_called_a_group_readable_file_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = check(&secret).unwrap_err().to_string();
        assert!(
            error.contains("is readable by its group (mode 0640); run: chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check(&secret).unwrap(), 0o600);
        assert!(matches!(
            check(&dir.path().join("missing")),
            Err(SecretFileError::Unreadable { .. })
        ));
    }
}
