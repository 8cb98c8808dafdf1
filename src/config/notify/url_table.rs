//! The table shape of the channels that deliver to a URL (`[notify.webhook]`, `[notify.ntfy]`):
//! the URL and an optional token, each given inline, by file or by credential. ntfy adds
//! `priority` and `tags`; the webhook refuses them by name ([`ntfy_only_keys`]) rather than
//! with serde's generic "unknown field", so a key written under the wrong channel says where
//! it belongs.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::secret::{Secret, token, url};
use crate::config::ConfigError;
use crate::config::load::Source;

/// Keys of the webhook and ntfy tables (`priority` and `tags` only apply to ntfy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlTable {
    pub(super) url: Option<Spanned<String>>,
    pub(super) url_file: Option<Spanned<PathBuf>>,
    pub(super) url_credential: Option<Spanned<PathBuf>>,
    /// Accepted only to say where the token belongs instead.
    pub(super) token: Option<Spanned<toml::Value>>,
    pub(super) token_file: Option<Spanned<PathBuf>>,
    pub(super) token_credential: Option<Spanned<PathBuf>>,
    /// ntfy's own keys (see [`ntfy_only_keys`]).
    pub(super) priority: Option<Spanned<String>>,
    pub(super) tags: Option<Spanned<Vec<String>>>,
}

impl UrlTable {
    /// The channel's URL and token, checked as for every channel with this table shape.
    pub(super) fn secrets(
        &mut self,
        source: &Source,
        table: Range<usize>,
        channel: &str,
    ) -> Result<(Secret, Option<Secret>), ConfigError> {
        let url = url(
            source,
            table,
            channel,
            self.url.take(),
            self.url_file.take(),
            self.url_credential.take(),
        )?;
        let token = token(
            source,
            channel,
            self.token.take(),
            self.token_file.take(),
            self.token_credential.take(),
        )?;
        Ok((url, token))
    }
}

/// Refuses `priority` and `tags` in a table of `channel`, which is not ntfy.
pub(super) fn ntfy_only_keys(
    source: &Source,
    raw: &UrlTable,
    channel: &str,
) -> Result<(), ConfigError> {
    let misplaced = raw
        .priority
        .as_ref()
        .map(|p| (p.span(), "priority"))
        .or(raw.tags.as_ref().map(|t| (t.span(), "tags")));
    if let Some((span, key)) = misplaced {
        return Err(source.error(
            span,
            format!("`{key}` does not apply to [notify.{channel}]"),
            Some("`priority` and `tags` are keys of [notify.ntfy]".into()),
        ));
    }
    Ok(())
}
