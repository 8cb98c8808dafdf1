//! `[notify.ntfy]`: a message to an ntfy topic, with a priority and tags. Its table is
//! [`UrlTable`], the shape it shares with the webhook.

use std::ops::Range;

use toml::Spanned;

use super::ChannelSpec;
use super::secret::Secret;
use super::url_table::UrlTable;
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

impl ChannelSpec for Ntfy {
    const NAME: &'static str = "ntfy";
    type Raw = UrlTable;

    fn parse(source: &Source, table: Range<usize>, mut raw: UrlTable) -> Result<Self, ConfigError> {
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
