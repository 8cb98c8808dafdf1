//! Where a channel's URL or token comes from (inline, a file, a systemd credential), and the
//! parsing of the keys that name it, shared by the channels that have a URL or a token.
//!
//! Secrets are named by a file or a systemd credential, never written inline: a `token` key
//! is an error that says where it belongs, and URLs — which often embed a key (a
//! healthchecks UUID, a webhook token) — are never echoed in a message.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use crate::config::ConfigError;
use crate::config::load::Source;

/// Where a URL or token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    /// Written in the config (`url = "…"`): for URLs that carry no key.
    Inline(String),
    /// A file, read by the notifier (`url_file`, `token_file`).
    File(PathBuf),
    /// A file loaded as a systemd credential into the notifier unit
    /// (`LoadCredential=NAME:PATH`), read from `$CREDENTIALS_DIRECTORY/NAME`.
    Credential { name: String, path: PathBuf },
}

/// Exactly one of `url`, `url_file`, `url_credential`; an inline URL must be http(s).
pub(super) fn url(
    source: &Source,
    table: Range<usize>,
    channel: &str,
    inline: Option<Spanned<String>>,
    file: Option<Spanned<PathBuf>>,
    credential: Option<Spanned<PathBuf>>,
) -> Result<Secret, ConfigError> {
    let help = "give exactly one of `url`, `url_file` (a file holding the URL) or `url_credential` (that file loaded as a systemd credential); keep URLs with keys in a file".to_string();
    match (inline, file, credential) {
        (Some(url), None, None) => {
            let text = url.get_ref();
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                // The URL itself is not repeated: it may hold a key.
                return Err(source
                    .error(
                        url.span(),
                        format!("the {channel} URL must start with http:// or https://"),
                        None,
                    )
                    .hiding_value());
            }
            Ok(Secret::Inline(url.into_inner()))
        }
        (None, Some(file), None) => Ok(Secret::File(absolute(source, file, "url_file")?)),
        (None, None, Some(path)) => Ok(Secret::Credential {
            name: format!("backupctl-notify-{channel}-url"),
            path: absolute(source, path, "url_credential")?,
        }),
        (None, None, None) => {
            Err(source.error(table, format!("[notify.{channel}] needs a URL"), Some(help)))
        }
        (_, Some(second), _) => Err(source.error(
            second.span(),
            format!("[notify.{channel}] has more than one URL"),
            Some(help),
        )),
        (_, _, Some(second)) => Err(source.error(
            second.span(),
            format!("[notify.{channel}] has more than one URL"),
            Some(help),
        )),
    }
}

/// At most one of `token_file`, `token_credential`; `token` itself is refused.
pub(super) fn token(
    source: &Source,
    channel: &str,
    inline: Option<Spanned<toml::Value>>,
    file: Option<Spanned<PathBuf>>,
    credential: Option<Spanned<PathBuf>>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(token) = inline {
        return Err(source
            .error(
                token.span(),
                "the token does not belong in the config",
                Some(format!(
                    "put it in a file readable by root only and set `token_file = \"/etc/backupctl/{channel}-token\"`, or load that file as a systemd credential with `token_credential`"
                )),
            )
            .hiding_value());
    }
    match (file, credential) {
        (None, None) => Ok(None),
        (Some(file), None) => Ok(Some(Secret::File(absolute(source, file, "token_file")?))),
        (None, Some(path)) => Ok(Some(Secret::Credential {
            name: format!("backupctl-notify-{channel}-token"),
            path: absolute(source, path, "token_credential")?,
        })),
        (Some(_), Some(second)) => Err(source.error(
            second.span(),
            format!("[notify.{channel}] has both `token_file` and `token_credential`"),
            Some("give one of them".into()),
        )),
    }
}

fn absolute(source: &Source, path: Spanned<PathBuf>, key: &str) -> Result<PathBuf, ConfigError> {
    if path.get_ref().is_absolute() {
        source.normalized(path.span(), path.get_ref(), key)?;
        Ok(path.into_inner())
    } else {
        Err(source.error(
            path.span(),
            format!("`{key}` must be an absolute path"),
            Some(format!("e.g. {key} = \"/etc/backupctl/notify-secret\"")),
        ))
    }
}
