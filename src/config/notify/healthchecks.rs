//! `[notify.healthchecks]`: healthchecks-style pings, the only channel told when a job starts
//! and of every success.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::ChannelSpec;
use super::secret::{Secret, url};
use crate::config::ConfigError;
use crate::config::load::Source;

#[derive(Debug, Clone, PartialEq)]
pub struct Healthchecks {
    /// The check's ping URL; `/start` and `/fail` are appended.
    pub url: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthchecks {
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
    url_credential: Option<Spanned<PathBuf>>,
}

impl ChannelSpec for Healthchecks {
    const NAME: &'static str = "healthchecks";
    type Raw = RawHealthchecks;

    fn parse(
        source: &Source,
        table: Range<usize>,
        raw: RawHealthchecks,
    ) -> Result<Self, ConfigError> {
        Ok(Healthchecks {
            url: url(
                source,
                table,
                Self::NAME,
                raw.url,
                raw.url_file,
                raw.url_credential,
            )?,
        })
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.url]
    }

    fn pings_on_start(&self) -> bool {
        true
    }

    /// Without the success ping, healthchecks would report the check as down.
    fn always_on_success(&self) -> bool {
        true
    }
}
