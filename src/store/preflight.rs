//! What `hello` checks for a store: the tools, the key
//! (present, mode 0400 or 0600), the CIFS password file, and whether the remote answers.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::store::{Password, Remote, Store};
use crate::preflight::{Check, check_secret, check_tool};

const CIFS_PORT: u16 = 445;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub fn checks(store: &Store) -> Vec<Check> {
    let mut tools = vec!["cryptsetup", "btrfs", "mkfs.btrfs", "mount", "umount"];
    if matches!(store.remote, Remote::Cifs { .. }) {
        tools.push("mount.cifs");
    }
    let mut checks: Vec<Check> = tools.into_iter().map(check_tool).collect();
    checks.push(check_secret(&store.keyfile));
    if let Remote::Cifs {
        password: Password::File(path),
        ..
    } = &store.remote
    {
        checks.push(check_secret(path));
    }
    checks.push(check_remote(store));
    checks
}

/// `//host/share` → `host`.
pub fn cifs_host(volume: &str) -> Option<&str> {
    volume
        .strip_prefix("//")?
        .split('/')
        .next()
        .filter(|host| !host.is_empty())
}

/// `UUID=…` and friends → the udev link that appears when the device is there.
pub fn device_path(device: &str) -> PathBuf {
    for (prefix, dir) in [
        ("UUID=", "/dev/disk/by-uuid"),
        ("LABEL=", "/dev/disk/by-label"),
        ("PARTUUID=", "/dev/disk/by-partuuid"),
    ] {
        if let Some(id) = device.strip_prefix(prefix) {
            return Path::new(dir).join(id);
        }
    }
    PathBuf::from(device)
}

fn check_remote(store: &Store) -> Check {
    match &store.remote {
        Remote::Cifs { volume, .. } => {
            let item = volume.clone();
            let Some(host) = cifs_host(volume) else {
                return Check {
                    what: "remote",
                    item,
                    ok: false,
                    detail: "not of the form //HOST/SHARE".into(),
                };
            };
            let reached = (host, CIFS_PORT).to_socket_addrs().map(|addrs| {
                addrs
                    .into_iter()
                    .any(|addr| TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok())
            });
            match reached {
                Ok(true) => Check {
                    what: "remote",
                    item,
                    ok: true,
                    detail: format!("{host}:{CIFS_PORT} answers"),
                },
                Ok(false) => Check {
                    what: "remote",
                    item,
                    ok: false,
                    detail: format!(
                        "{host}:{CIFS_PORT} does not answer (NAS off, or SMB not enabled?)"
                    ),
                },
                Err(error) => Check {
                    what: "remote",
                    item,
                    ok: false,
                    detail: format!("cannot resolve {host}: {error}"),
                },
            }
        }
        Remote::Block { device } => {
            let path = device_path(device);
            Check {
                what: "remote",
                item: device.clone(),
                ok: path.exists(),
                detail: if path.exists() {
                    format!("{} is present", path.display())
                } else {
                    format!(
                        "{} is missing (disk not attached, or iSCSI session not logged in?)",
                        path.display()
                    )
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_host_of_a_volume() {
        assert_eq!(cifs_host("//nas.local/backup"), Some("nas.local"));
        assert_eq!(cifs_host("//127.0.0.1/a/b"), Some("127.0.0.1"));
        assert_eq!(cifs_host("nas/backup"), None);
    }

    #[test]
    fn maps_device_specs_to_udev_links() {
        assert_eq!(
            device_path("UUID=ab-cd"),
            Path::new("/dev/disk/by-uuid/ab-cd")
        );
        assert_eq!(device_path("/dev/vdb"), Path::new("/dev/vdb"));
    }
}
