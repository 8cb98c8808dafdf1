//! `[notify.webhook]`: the event as JSON to a URL, with an optional bearer token.

use std::ops::Range;

use super::ChannelSpec;
use super::secret::Secret;
use super::url_table::{UrlTable, ntfy_only_keys};
use crate::config::ConfigError;
use crate::config::load::Source;

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: Secret,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<Secret>,
}

impl ChannelSpec for Webhook {
    const NAME: &'static str = "webhook";
    // The table shape of ntfy: its own keys are refused with a message saying so.
    type Raw = UrlTable;

    fn parse(source: &Source, table: Range<usize>, mut raw: UrlTable) -> Result<Self, ConfigError> {
        ntfy_only_keys(source, &raw, Self::NAME)?;
        let (url, token) = raw.secrets(source, table, Self::NAME)?;
        Ok(Webhook { url, token })
    }

    fn secrets(&self) -> Vec<&Secret> {
        [Some(&self.url), self.token.as_ref()]
            .into_iter()
            .flatten()
            .collect()
    }
}
