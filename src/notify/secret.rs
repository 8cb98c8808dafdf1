//! Reading a URL or token named by the config (`Secret`). Errors name the file, never what is
//! in it.

use std::path::{Path, PathBuf};

use crate::config::notify::Secret;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the {what} from {}: {source}", .path.display())]
pub struct SecretError {
    what: String,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The secret's value, without a trailing newline.
pub fn read(secret: &Secret, what: &str) -> Result<String, SecretError> {
    let path = match secret {
        Secret::Inline(value) => return Ok(value.clone()),
        Secret::File(path) => path.clone(),
        // systemd copied the file into the unit's credentials directory; outside a unit
        // (a manual `backupctl notify`) the file itself is read.
        Secret::Credential { name, path } => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if Path::new(&dir).join(name).exists() => Path::new(&dir).join(name),
            _ => path.clone(),
        },
    };
    let error = |source| SecretError {
        what: what.to_string(),
        path: path.clone(),
        source,
    };
    // The notifier is the stage that reads this one: same check as every secret file
    // (a missing file is left to the read below, whose error is the same as ever).
    match crate::secret_file::check(&path) {
        Err(refused @ crate::secret_file::SecretFileError::Unreadable { .. }) => drop(refused),
        Err(refused) => return Err(error(std::io::Error::other(refused.to_string()))),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(&path).map_err(error)?;
    let value = text.trim();
    if value.is_empty() {
        // Sent as is, it would fail as "the URL is not valid", far from its cause.
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_token_file_others_may_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tok-secret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).unwrap();
        let error = read(&Secret::File(file), "ntfy token")
            .unwrap_err()
            .to_string();
        assert!(error.contains("readable by others (mode 0604)"), "{error}");
        assert!(!error.contains("tok-secret"), "{error}");
    }

    #[test]
    fn reads_a_file_and_never_shows_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "https://hc.example/ping/secret-uuid\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read(&Secret::File(file.clone()), "url").unwrap(),
            "https://hc.example/ping/secret-uuid"
        );
        let missing = read(&Secret::File(dir.path().join("nope")), "webhook URL").unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read the webhook URL from ")
        );
        std::fs::write(&file, "\n").unwrap();
        let empty = read(&Secret::File(file.clone()), "ntfy token").unwrap_err();
        assert!(
            empty.to_string().ends_with("/url: the file is empty"),
            "{empty}"
        );
    }
}
