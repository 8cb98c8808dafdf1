//! `[store.NAME]`: the model of an encrypted store on a NAS or SAN, and how the table is
//! parsed into it.
//!
//! A store is three layers, opened in this order and closed in reverse by
//! `backup-store@NAME.service` (see `crate::store`): the remote (a CIFS share, or a
//! filesystem on a block device) mounted at [`Store::remote_dir`]; a LUKS2 image file inside
//! it, opened as `/dev/mapper/backupctl-NAME` with a key kept on this machine; and the btrfs
//! filesystem inside, mounted at [`Store::mount_point`], where stages with `store = "NAME"`
//! write.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::source::Source;
use super::{ConfigError, size};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    remote: Spanned<RawRemote>,
    image: Spanned<String>,
    size: Option<Spanned<String>>,
    keyfile: Spanned<PathBuf>,
}

/// Both remote types' keys; which ones apply is checked in [`parse`] (a tagged enum would
/// lose the spans).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    volume: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    /// Accepted only to say where the password belongs instead.
    password: Option<Spanned<toml::Value>>,
    password_file: Option<Spanned<PathBuf>>,
    password_credential: Option<Spanned<String>>,
    domain: Option<String>,
    #[serde(default)]
    options: Vec<Spanned<String>>,
    device: Option<Spanned<String>>,
}

/// Builds one `[store.NAME]`.
pub(super) fn parse(
    source: &Source,
    name: Spanned<String>,
    value: Spanned<DeValue>,
) -> Result<Store, ConfigError> {
    let raw = RawStore::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, None))?;
    let remote_span = raw.remote.span();
    let remote = parse_remote(source, remote_span, raw.remote.into_inner())?;
    let image = raw.image;
    if image.get_ref().is_empty()
        || image.get_ref().contains('/')
        || image.get_ref().starts_with('.')
    {
        return Err(source.error(
            image.span(),
            format!("`{}` is not a file name", image.get_ref()),
            Some(
                "the image is one file at the top of the remote, e.g. image = \"backup.luks\""
                    .into(),
            ),
        ));
    }
    let size = raw
        .size
        .map(|text| {
            size::parse_size(text.get_ref())
                .ok()
                .filter(|bytes| *bytes >= 128 << 20)
                .ok_or_else(|| {
                    source.error(
                        text.span(),
                        format!("invalid size `{}`", text.get_ref()),
                        Some(
                            "a size of at least 128M (btrfs needs room), e.g. size = \"500G\""
                                .into(),
                        ),
                    )
                })
        })
        .transpose()?;
    if !raw.keyfile.get_ref().is_absolute() {
        return Err(source.error(
            raw.keyfile.span(),
            "`keyfile` must be an absolute path",
            Some("keep it on this machine, e.g. keyfile = \"/etc/backupctl/nas.key\"".into()),
        ));
    }
    source.normalized(raw.keyfile.span(), raw.keyfile.get_ref(), "keyfile")?;
    Ok(Store {
        name: name.into_inner(),
        remote,
        image: image.into_inner(),
        size,
        keyfile: raw.keyfile.into_inner(),
    })
}

/// `remote = { … }`: its type, given or read from its keys, and no key of the other type.
fn parse_remote(
    source: &Source,
    remote_span: Range<usize>,
    remote: RawRemote,
) -> Result<Remote, ConfigError> {
    if let Some(password) = &remote.password {
        return Err(source.error(
            password.span(),
            "the CIFS password does not belong in the config",
            Some("put it in a file readable by root only and set `password_file = \"/etc/backupctl/NAME-password\"`, or use a systemd credential: `password_credential = \"ID\"` (see systemd-creds(1))".into()),
        ));
    }
    let kind = match (&remote.kind, &remote.volume, &remote.device) {
        (Some(kind), _, _) => {
            match kind.get_ref().as_str() {
                "cifs" => "cifs",
                "block" => "block",
                other => {
                    return Err(source.error(
                    kind.span(),
                    format!("unknown remote type `{other}`"),
                    Some("use \"cifs\" (a SMB share) or \"block\" (a filesystem on a block device)".into()),
                ));
                }
            }
        }
        (None, Some(_), None) => "cifs",
        (None, None, Some(_)) => "block",
        _ => {
            return Err(source.error(
                remote_span,
                "the remote needs either `volume` (a CIFS share) or `device` (a block device)",
                Some("e.g. remote = { volume = \"//nas.local/backup\", username = \"sig\", password_file = \"/etc/backupctl/nas-password\" } or remote = { device = \"UUID=…\" }".into()),
            ));
        }
    };
    // Keys of the other type are mistakes; say which.
    let misplaced: Option<(Range<usize>, &str)> = if kind == "cifs" {
        remote.device.as_ref().map(|d| (d.span(), "device"))
    } else {
        remote
            .volume
            .as_ref()
            .map(|v| (v.span(), "volume"))
            .or(remote.username.as_ref().map(|v| (v.span(), "username")))
            .or(remote
                .password_file
                .as_ref()
                .map(|v| (v.span(), "password_file")))
            .or(remote
                .password_credential
                .as_ref()
                .map(|v| (v.span(), "password_credential")))
            .or(remote.options.first().map(|v| (v.span(), "options")))
    };
    if let Some((span, key)) = misplaced {
        return Err(source.error(
            span,
            format!("`{key}` does not apply to a {kind} remote"),
            Some("a CIFS remote has volume, username, password_file or password_credential, domain, options; a block remote has device".into()),
        ));
    }
    if kind == "cifs" {
        cifs(source, remote_span, remote)
    } else {
        block(source, remote)
    }
}

/// A CIFS remote: its share, its account and its password's file or credential.
fn cifs(
    source: &Source,
    remote_span: Range<usize>,
    remote: RawRemote,
) -> Result<Remote, ConfigError> {
    let volume = remote.volume.ok_or_else(|| {
        source.error(
            remote_span.clone(),
            "a CIFS remote needs `volume`",
            Some("e.g. volume = \"//nas.local/backup\"".into()),
        )
    })?;
    if !volume.get_ref().starts_with("//") {
        return Err(source.error(
            volume.span(),
            format!("`{}` is not a CIFS volume", volume.get_ref()),
            Some("write it as //HOST/SHARE, e.g. \"//nas.local/backup\" (forward slashes)".into()),
        ));
    }
    let username = remote.username.ok_or_else(|| {
        source.error(
            remote_span.clone(),
            "a CIFS remote needs `username`",
            Some("the NAS account the share is mounted as".into()),
        )
    })?;
    let password = password(
        source,
        &remote_span,
        remote.password_file,
        remote.password_credential,
    )?;
    for option in &remote.options {
        let text = option.get_ref();
        if text.contains(',') || text.starts_with("password") || text.starts_with("credentials") {
            return Err(source.error(
                option.span(),
                format!("`{text}` cannot be a mount option here"),
                Some("give one option per entry, e.g. options = [\"vers=3.0\", \"seal\"]; the credentials come from password_file".into()),
            ));
        }
    }
    Ok(Remote::Cifs {
        volume: volume.into_inner(),
        username: username.into_inner(),
        password,
        domain: remote.domain,
        options: remote
            .options
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
    })
}

/// Where a CIFS remote's password comes from: a root-only file or a systemd credential.
fn password(
    source: &Source,
    remote_span: &Range<usize>,
    password_file: Option<Spanned<PathBuf>>,
    password_credential: Option<Spanned<String>>,
) -> Result<Password, ConfigError> {
    match (password_file, password_credential) {
            (Some(file), None) => {
                if !file.get_ref().is_absolute() {
                    return Err(source.error(
                        file.span(),
                        "`password_file` must be an absolute path",
                        Some("e.g. password_file = \"/etc/backupctl/nas-password\"".into()),
                    ));
                }
                source.normalized(file.span(), file.get_ref(), "password_file")?;
                Ok(Password::File(file.into_inner()))
            }
            (None, Some(id)) => {
                let valid = !id.get_ref().is_empty()
                    && id
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !valid {
                    return Err(source.error(
                        id.span(),
                        format!("`{}` is not a valid credential name", id.get_ref()),
                        Some("use letters, digits, `-`, `_` and `.`".into()),
                    ));
                }
                Ok(Password::Credential(id.into_inner()))
            }
            (Some(_), Some(id)) => {
                Err(source.error(
                    id.span(),
                    "give either `password_file` or `password_credential`, not both",
                    None,
                ))
            }
            (None, None) => {
                Err(source.error(
                    remote_span.clone(),
                    "a CIFS remote needs `password_file` or `password_credential`",
                    Some("the password is never written in the config: put it in a root-only file, or in a systemd credential".into()),
                ))
            }
        }
}

/// A block remote: a device path, or `UUID=`, `LABEL=`, `PARTUUID=`.
fn block(source: &Source, remote: RawRemote) -> Result<Remote, ConfigError> {
    let device = remote.device.expect("block remotes have a device");
    let text = device.get_ref();
    if !(text.starts_with('/')
        || text.starts_with("UUID=")
        || text.starts_with("LABEL=")
        || text.starts_with("PARTUUID="))
    {
        return Err(source.error(
            device.span(),
            format!("`{text}` is not a block device"),
            Some("use UUID=… (see `blkid`), LABEL=…, PARTUUID=… or a path under /dev".into()),
        ));
    }
    if text.starts_with('/') {
        source.normalized(device.span(), Path::new(text), "device")?;
    }
    Ok(Remote::Block {
        device: device.into_inner(),
    })
}
