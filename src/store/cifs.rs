//! Mounting a CIFS share. The password is read from its file or systemd credential and
//! handed to mount.cifs in a `credentials=` file (mode 0600, removed right after), never on
//! the command line, in the environment or in the config.

use std::fs;
use std::path::{Path, PathBuf};

use super::{StoreError, run_tool, write_private_file};
use crate::config::store::{Password, Remote, Store};
use crate::process::Command;

/// Where systemd looks for credentials that `LoadCredential=ID` names without a path; we
/// look there too when run by hand.
const CREDSTORES: &[&str] = &["/etc/credstore", "/run/credstore", "/usr/lib/credstore"];

/// The password, from the unit's credentials directory when systemd loaded it, else from
/// the configured file or credential store.
pub fn password(store: &Store) -> Result<String, StoreError> {
    let Remote::Cifs { password, .. } = &store.remote else {
        unreachable!("only CIFS remotes have a password");
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let (Some(dir), Some(id)) = (
        std::env::var_os("CREDENTIALS_DIRECTORY"),
        store.credential_id(),
    ) {
        candidates.push(Path::new(&dir).join(id));
    }
    match password {
        Password::File(path) => candidates.push(path.clone()),
        Password::Credential(id) => {
            candidates.extend(CREDSTORES.iter().map(|dir| Path::new(dir).join(id)));
        }
    }
    for path in &candidates {
        match fs::read_to_string(path) {
            Ok(text) => return Ok(text.trim_end_matches(['\n', '\r']).to_string()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(StoreError::io(
                    format!("cannot read the CIFS password from {}", path.display()),
                    error,
                ));
            }
        }
    }
    Err(StoreError::Refused(format!(
        "store `{}`: the CIFS password is missing; looked in {}",
        store.name,
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The `credentials=` file mount.cifs reads.
pub fn credentials_text(username: &str, password: &str, domain: Option<&str>) -> String {
    let mut text = format!("username={username}\npassword={password}\n");
    if let Some(domain) = domain {
        text.push_str(&format!("domain={domain}\n"));
    }
    text
}

/// The `-o` options of the mount (the credentials file is added separately).
pub fn mount_options(extra: &[String]) -> Vec<String> {
    // Root owns everything on the share; the image is the only file we use.
    let mut options: Vec<String> = ["uid=0", "gid=0", "file_mode=0600", "dir_mode=0700"]
        .map(String::from)
        .to_vec();
    options.extend(extra.iter().cloned());
    options
}

pub fn mount(store: &Store, dir: &Path) -> Result<(), StoreError> {
    let Remote::Cifs {
        volume,
        username,
        domain,
        options,
        ..
    } = &store.remote
    else {
        unreachable!("cifs::mount is called for CIFS remotes");
    };
    let password = password(store)?;
    let credentials = store.state_file().with_extension("credentials");
    let _ = fs::remove_file(&credentials);
    write_private_file(
        &credentials,
        credentials_text(username, &password, domain.as_deref()).as_bytes(),
        0o600,
    )?;
    let mut all = mount_options(options);
    all.push(format!("credentials={}", credentials.display()));
    let result = run_tool(
        Command::new("mount")
            .args(["-t", "cifs", volume])
            .arg(dir)
            .args(["-o", &all.join(",")]),
    );
    let _ = fs::remove_file(&credentials);
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_has_mount_cifs_format() {
        assert_eq!(
            credentials_text("sig", "s3cret", Some("HOME")),
            "username=sig\npassword=s3cret\ndomain=HOME\n"
        );
    }

    #[test]
    fn options_never_carry_the_password() {
        let options = mount_options(&["vers=3.0".into()]);
        assert!(options.iter().all(|o| !o.starts_with("pass")));
        assert!(options.contains(&"vers=3.0".to_string()));
    }
}
