//! `[notify.ntfy]`: a message to an ntfy topic, with a priority and tags. Its table shape is
//! shared with the webhook, which refuses the ntfy-only keys by name.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::ChannelSpec;
use super::secret::{Secret, token, url};
use crate::config::ConfigError;
use crate::config::load::Source;

const NTFY_PRIORITIES: &[&str] = &["min", "low", "default", "high", "max", "urgent"];

#[derive(Debug, Clone, PartialEq)]
pub struct Ntfy {
    /// The topic URL, e.g. `https://ntfy.sh/my-backups`.
    pub url: Secret,
    pub token: Option<Secret>,
    /// ntfy's priority of failure messages (successes are sent with `default`).
    pub priority: String,
    pub tags: Vec<String>,
}

/// Keys of the webhook and ntfy tables (`priority` and `tags` only apply to ntfy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUrlChannel {
    pub(super) url: Option<Spanned<String>>,
    pub(super) url_file: Option<Spanned<PathBuf>>,
    pub(super) url_credential: Option<Spanned<PathBuf>>,
    /// Accepted only to say where the token belongs instead.
    pub(super) token: Option<Spanned<toml::Value>>,
    pub(super) token_file: Option<Spanned<PathBuf>>,
    pub(super) token_credential: Option<Spanned<PathBuf>>,
    priority: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
}

impl RawUrlChannel {
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
    raw: &RawUrlChannel,
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

impl ChannelSpec for Ntfy {
    const NAME: &'static str = "ntfy";
    type Raw = RawUrlChannel;

    fn parse(
        source: &Source,
        table: Range<usize>,
        mut raw: RawUrlChannel,
    ) -> Result<Self, ConfigError> {
        let priority = match raw.priority.take() {
            None => "high".to_string(),
            Some(priority) if NTFY_PRIORITIES.contains(&priority.get_ref().as_str()) => {
                priority.into_inner()
            }
            Some(priority) => {
                return Err(source.error(
                    priority.span(),
                    format!("unknown ntfy priority `{}`", priority.get_ref()),
                    Some(format!("use one of: {}", NTFY_PRIORITIES.join(", "))),
                ));
            }
        };
        let (url, token) = raw.secrets(source, table, Self::NAME)?;
        Ok(Ntfy {
            url,
            token,
            priority,
            tags: raw.tags.map(Spanned::into_inner).unwrap_or_default(),
        })
    }

    fn secrets(&self) -> Vec<&Secret> {
        [Some(&self.url), self.token.as_ref()]
            .into_iter()
            .flatten()
            .collect()
    }
}
