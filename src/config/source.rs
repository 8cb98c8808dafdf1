//! What every table parser shares: [`Source`], which turns spans of the config text into
//! located [`ConfigError`]s, and the helpers for the shapes many tables have (a table of
//! named tables, a name that becomes part of a unit name, a systemd time span).

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::DeValue;

use super::{ConfigError, Timespan};
use crate::stages::SpecError;

/// Where a reader finds every key explained: in the source tree and in the Debian package.
const EVERY_KEY: &str = "examples/full.toml (installed: /usr/share/doc/backupctl/examples/full.toml) shows each key with what it does";

/// The config text and its file name, to turn spans into located errors.
pub(super) struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Source { file, text }
    }

    pub(super) fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) -> ConfigError {
        ConfigError::at(self.file, self.text, Some(span), message, help.into())
    }

    pub(super) fn toml(&self, error: toml::de::Error, help: Option<String>) -> ConfigError {
        let message = error.message().trim_end().to_string();
        let help = help.or_else(|| hint_for_toml_message(&message));
        ConfigError::at(self.file, self.text, error.span(), message, help)
    }

    /// serde's "unknown field `x`, expected …" in a stage: it lists the kind's keys only, so
    /// the help names the keys every stage takes (`common`) and the closest of all.
    pub(super) fn unknown_stage_key(
        &self,
        error: toml::de::Error,
        kind: &str,
        common: &[&str],
    ) -> ConfigError {
        let message = error.message().trim_end();
        let mut help = String::new();
        if let Some((unknown, expected)) = unknown_field(message) {
            let known = expected.iter().copied().chain(common.iter().copied());
            if let Some(close) = closest(unknown, known) {
                help.push_str(&format!("did you mean `{close}`? "));
            }
        }
        help.push_str(&format!(
            "`{kind}` stages take the keys above, and every stage takes {}; {EVERY_KEY}",
            common.join(", ")
        ));
        self.toml(error, Some(help))
    }

    /// Checks a path value against the one rule of [`super::pathname`].
    pub(super) fn normalized(
        &self,
        span: Range<usize>,
        path: &Path,
        key: &str,
    ) -> Result<(), ConfigError> {
        let text = path.to_string_lossy();
        super::pathname::check(&text)
            .map_err(|problem| self.error(span, problem.message(key, &text), problem.help()))
    }

    pub(super) fn spec(&self, error: SpecError, fallback: Range<usize>) -> ConfigError {
        match error {
            SpecError::Toml(error) => self.toml(error, None),
            SpecError::Invalid {
                span,
                message,
                help,
            } => self.error(span.unwrap_or(fallback), message, help),
            SpecError::Conflict {
                span,
                other,
                message,
                help,
            } => {
                let at = other.start.min(self.text.len());
                let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
                let end = self.text[at..]
                    .find('\n')
                    .map_or(self.text.len(), |i| at + i);
                let here = if span.is_empty() && span.start == 0 {
                    other.clone()
                } else {
                    span
                };
                let help = format!(
                    "{help} (the other key is on line {}: `{}`)",
                    self.text[..at].matches('\n').count() + 1,
                    self.text[start..end].trim()
                );
                self.error(here, message, Some(help))
            }
        }
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`", or
/// "there are no fields"): the unknown key and the expected ones.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !word.is_empty())
        .collect();
    Some((unknown, expected))
}

/// The known key a misspelt one most likely meant, by clap's rule for misspelt
/// subcommands (Jaro similarity above 0.7).
pub(super) fn closest<'k>(
    unknown: &str,
    known: impl IntoIterator<Item = &'k str>,
) -> Option<&'k str> {
    known
        .into_iter()
        .map(|key| (strsim::jaro(unknown, key), key))
        .filter(|(similarity, _)| *similarity > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, key)| key)
}

fn hint_for_toml_message(message: &str) -> Option<String> {
    if let Some((unknown, expected)) = unknown_field(message) {
        let guess = closest(unknown, expected)
            .map(|key| format!("did you mean `{key}`? "))
            .unwrap_or_default();
        Some(format!(
            "{guess}remove the key or fix its spelling: the keys this table takes are listed above; {EVERY_KEY}"
        ))
    } else if let Some(field) = message.strip_prefix("missing field ") {
        Some(format!("this table needs {field}; {EVERY_KEY}"))
    } else if message.contains("duplicate key") {
        Some("each table and key may appear once; stage names must be unique".into())
    } else {
        None
    }
}

/// A key of a table with its value, both with their positions.
pub(super) type Entry<'i> = (Spanned<String>, Spanned<DeValue<'i>>);

/// The entries of a table value, or an error at the value.
pub(super) fn table<'i>(
    source: &Source,
    value: Spanned<DeValue<'i>>,
    message: &str,
) -> Result<Vec<Entry<'i>>, ConfigError> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => Ok(table
            .into_iter()
            .map(|(key, value)| {
                let span = key.span();
                (Spanned::new(span, key.into_inner().into_owned()), value)
            })
            .collect()),
        _ => Err(source.error(span, message, None)),
    }
}

/// Stage and job names become systemd instance and unit names, so they are kept simple.
pub(super) fn check_name(
    source: &Source,
    name: &Spanned<String>,
    what: &str,
) -> Result<(), ConfigError> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(source.error(
            name.span(),
            format!("`{text}` is not a valid {what} name"),
            Some(format!(
                "a {what} name becomes part of a systemd unit name: use up to 64 letters, digits, `-` and `_`, starting with a letter or digit"
            )),
        ))
    }
}

/// A systemd time span under `key`, e.g. `timeout = "2h"`.
pub(super) fn timespan(
    source: &Source,
    text: &Spanned<String>,
    key: &str,
) -> Result<Timespan, ConfigError> {
    Timespan::parse(text.get_ref()).map_err(|error| {
        source.error(
            text.span(),
            format!("invalid `{key}`: {error}"),
            Some("use a systemd time span, e.g. \"90s\", \"30min\", \"2h\" or \"1h 30min\"".into()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_serdes_unknown_field_messages() {
        assert_eq!(
            unknown_field("unknown field `schedul`, expected one of `description`, `schedule`"),
            Some(("schedul", vec!["description", "schedule"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `min_free` or `tools`"),
            Some(("x", vec!["min_free", "tools"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `textfile`"),
            Some(("x", vec!["textfile"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, there are no fields"),
            Some(("x", vec![]))
        );
        assert_eq!(unknown_field("missing field `stage`"), None);
    }

    #[test]
    fn suggests_a_close_key_and_nothing_for_a_stranger() {
        let keys = ["sources", "destination", "required", "timeout"];
        assert_eq!(closest("requred", keys), Some("required"));
        assert_eq!(closest("source", keys), Some("sources"));
        assert_eq!(closest("destiantion", keys), Some("destination"));
        assert_eq!(closest("zzz", keys), None);
    }
}
