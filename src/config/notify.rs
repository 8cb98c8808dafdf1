//! The model and validation of `[notify]` (where failures and successes are reported: a
//! webhook, healthchecks-style pings, ntfy, a command). See docs/notify.md for what each
//! channel sends.
//!
//! Secrets (URLs with keys, tokens) are named by a file or a systemd credential, never
//! written inline: a `token` key is an error that says where it belongs, and URLs — which
//! often embed a key (a healthchecks UUID, a webhook token) — are never echoed in a message.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::load::Source;
use super::{ConfigError, Timespan};

/// Longest per-request timeout: a notifier must never hold anything up for long.
pub const MAX_TIMEOUT_SECS: u64 = 60;
const DEFAULT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_LOG_LINES: usize = 30;
const MAX_LOG_LINES: usize = 500;

/// `[notify]`: the channels and when they are used.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// Also report successful jobs through the webhook, ntfy and the command (healthchecks
    /// always gets its success ping: without it, it would report the check as down).
    pub on_success: bool,
    /// Bound of one request (and of the command).
    pub timeout: Timespan,
    /// Lines of the failed stage's journal sent along.
    pub log_lines: usize,
    pub webhook: Option<Webhook>,
    pub healthchecks: Option<Healthchecks>,
    pub ntfy: Option<Ntfy>,
    pub command: Option<CommandChannel>,
}

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

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: Secret,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Healthchecks {
    /// The check's ping URL; `/start` and `/fail` are appended.
    pub url: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ntfy {
    /// The topic URL, e.g. `https://ntfy.sh/my-backups`.
    pub url: Secret,
    pub token: Option<Secret>,
    /// ntfy's priority of failure messages (successes are sent with `default`).
    pub priority: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandChannel {
    /// argv; the message goes to its stdin, never into argv.
    pub command: Vec<String>,
    /// Adds a `To:` header to the message (for `sendmail -t` and the like).
    pub to: Option<String>,
}

/// One configured channel, borrowed: the generator (timeouts, credentials, the start-ping
/// unit), `hello` and the notifier iterate these instead of naming each field, so a channel's
/// secrets, start ping and success rule are stated once, here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Channel<'a> {
    Webhook(&'a Webhook),
    Healthchecks(&'a Healthchecks),
    Ntfy(&'a Ntfy),
    Command(&'a CommandChannel),
}

impl<'a> Channel<'a> {
    /// The URLs and tokens this channel reads.
    pub fn secrets(self) -> Vec<&'a Secret> {
        match self {
            Channel::Webhook(w) => [Some(&w.url), w.token.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            Channel::Healthchecks(h) => vec![&h.url],
            Channel::Ntfy(n) => [Some(&n.url), n.token.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            Channel::Command(_) => Vec::new(),
        }
    }

    /// Whether it is told when a job starts (through the start-ping unit).
    pub fn pings_on_start(self) -> bool {
        matches!(self, Channel::Healthchecks(_))
    }

    /// Whether it hears of every success, `on_success` or not (healthchecks would otherwise
    /// report the check as down).
    pub fn always_on_success(self) -> bool {
        matches!(self, Channel::Healthchecks(_))
    }
}

/// The systemd credentials that units delivering through `channels` load, as `(NAME, PATH)`.
pub fn credentials<'a>(channels: impl IntoIterator<Item = Channel<'a>>) -> Vec<(String, PathBuf)> {
    channels
        .into_iter()
        .flat_map(Channel::secrets)
        .filter_map(|secret| match secret {
            Secret::Credential { name, path } => Some((name.clone(), path.clone())),
            _ => None,
        })
        .collect()
}

impl Notify {
    /// The configured channels, in a fixed order (webhook, healthchecks, ntfy, command).
    pub fn channels(&self) -> impl Iterator<Item = Channel<'_>> {
        [
            self.webhook.as_ref().map(Channel::Webhook),
            self.healthchecks.as_ref().map(Channel::Healthchecks),
            self.ntfy.as_ref().map(Channel::Ntfy),
            self.command.as_ref().map(Channel::Command),
        ]
        .into_iter()
        .flatten()
    }

    /// Every URL and token of the channels.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.channels().flat_map(Channel::secrets)
    }

    /// The systemd credentials the notifier units load, as `(NAME, PATH)`.
    pub fn credentials(&self) -> Vec<(String, PathBuf)> {
        credentials(self.channels())
    }

    /// The files holding URLs and tokens, for `hello`'s secret checks (present, not readable
    /// by group or others).
    pub fn secret_files(&self) -> Vec<PathBuf> {
        self.secrets()
            .filter_map(|secret| match secret {
                Secret::Inline(_) => None,
                Secret::File(path) | Secret::Credential { path, .. } => Some(path.clone()),
            })
            .collect()
    }

    /// Whether any channel pings when a job starts (the job then wants the start-ping unit).
    pub fn pings_on_start(&self) -> bool {
        self.channels().any(Channel::pings_on_start)
    }

    /// Whether the job unit routes `OnSuccess=` to the notifier.
    pub fn wants_success(&self) -> bool {
        self.on_success || self.channels().any(Channel::always_on_success)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    on_success: Option<bool>,
    timeout: Option<Spanned<String>>,
    log_lines: Option<Spanned<i64>>,
    webhook: Option<Spanned<RawUrlChannel>>,
    healthchecks: Option<Spanned<RawHealthchecks>>,
    ntfy: Option<Spanned<RawUrlChannel>>,
    command: Option<Spanned<RawCommand>>,
}

/// Keys of the webhook and ntfy tables (`priority` and `tags` only apply to ntfy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrlChannel {
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
    url_credential: Option<Spanned<PathBuf>>,
    /// Accepted only to say where the token belongs instead.
    token: Option<Spanned<toml::Value>>,
    token_file: Option<Spanned<PathBuf>>,
    token_credential: Option<Spanned<PathBuf>>,
    priority: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthchecks {
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
    url_credential: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    command: Spanned<Vec<String>>,
    to: Option<String>,
}

const NTFY_PRIORITIES: &[&str] = &["min", "low", "default", "high", "max", "urgent"];

/// Builds `[notify]`; `span` is the table's key, for errors about the table as a whole.
pub(super) fn notify(
    source: &Source,
    span: Range<usize>,
    value: Spanned<DeValue>,
) -> Result<Notify, ConfigError> {
    let raw = RawNotify::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, None))?;
    let timeout = match &raw.timeout {
        None => Timespan(std::time::Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
        Some(text) => {
            let timeout = super::load::timespan(source, text, "timeout")?;
            if timeout.0.as_secs_f64() > MAX_TIMEOUT_SECS as f64 || timeout.0.is_zero() {
                return Err(source.error(
                    text.span(),
                    format!("notification timeout {timeout} is out of range"),
                    Some(format!(
                        "use at most {MAX_TIMEOUT_SECS}s: a notification must not hold up the job"
                    )),
                ));
            }
            timeout
        }
    };
    let log_lines = match &raw.log_lines {
        None => DEFAULT_LOG_LINES,
        Some(lines) => usize::try_from(*lines.get_ref())
            .ok()
            .filter(|n| (1..=MAX_LOG_LINES).contains(n))
            .ok_or_else(|| {
                source.error(
                    lines.span(),
                    format!("log_lines {} is out of range", lines.get_ref()),
                    Some(format!("use 1 to {MAX_LOG_LINES}")),
                )
            })?,
    };
    let webhook = raw
        .webhook
        .map(|raw| {
            let span = raw.span();
            let raw = raw.into_inner();
            ntfy_only_keys(source, &raw, "webhook")?;
            Ok(Webhook {
                url: url(
                    source,
                    span,
                    "webhook",
                    raw.url,
                    raw.url_file,
                    raw.url_credential,
                )?,
                token: token(
                    source,
                    "webhook",
                    raw.token,
                    raw.token_file,
                    raw.token_credential,
                )?,
            })
        })
        .transpose()?;
    let healthchecks = raw
        .healthchecks
        .map(|raw| {
            let span = raw.span();
            let raw = raw.into_inner();
            Ok(Healthchecks {
                url: url(
                    source,
                    span,
                    "healthchecks",
                    raw.url,
                    raw.url_file,
                    raw.url_credential,
                )?,
            })
        })
        .transpose()?;
    let ntfy = raw
        .ntfy
        .map(|raw| {
            let span = raw.span();
            let raw = raw.into_inner();
            let priority = match raw.priority {
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
            Ok(Ntfy {
                url: url(
                    source,
                    span,
                    "ntfy",
                    raw.url,
                    raw.url_file,
                    raw.url_credential,
                )?,
                token: token(
                    source,
                    "ntfy",
                    raw.token,
                    raw.token_file,
                    raw.token_credential,
                )?,
                priority,
                tags: raw.tags.map(Spanned::into_inner).unwrap_or_default(),
            })
        })
        .transpose()?;
    let command = raw
        .command
        .map(|raw| {
            let raw = raw.into_inner();
            let argv = raw.command;
            match argv.get_ref().first() {
                Some(program) if Path::new(program).is_absolute() => Ok(CommandChannel {
                    command: argv.into_inner(),
                    to: raw.to,
                }),
                _ => Err(source.error(
                    argv.span(),
                    "the notification command must start with an absolute path",
                    Some("e.g. command = [\"/usr/bin/msmtp\", \"--read-recipients\"]; the message goes to its stdin".into()),
                )),
            }
        })
        .transpose()?;
    if webhook.is_none() && healthchecks.is_none() && ntfy.is_none() && command.is_none() {
        return Err(source.error(
            span,
            "[notify] has no channel",
            Some(
                "add at least one of [notify.webhook], [notify.healthchecks], [notify.ntfy], [notify.command]"
                    .into(),
            ),
        ));
    }
    Ok(Notify {
        on_success: raw.on_success.unwrap_or(false),
        timeout,
        log_lines,
        webhook,
        healthchecks,
        ntfy,
        command,
    })
}

fn ntfy_only_keys(source: &Source, raw: &RawUrlChannel, channel: &str) -> Result<(), ConfigError> {
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

/// Exactly one of `url`, `url_file`, `url_credential`; an inline URL must be http(s).
fn url(
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
fn token(
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> crate::config::Config {
        crate::config::parse(
            Path::new("c.toml"),
            &format!("{text}\n[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_and_credentials() {
        let config = parse(
            "[notify.webhook]\nurl_credential = \"/etc/b/hook\"\ntoken_file = \"/etc/b/token\"\n\
             [notify.ntfy]\nurl = \"https://ntfy.sh/x\"\n",
        );
        let notify = config.notify.unwrap();
        assert!(!notify.on_success && !notify.wants_success());
        assert_eq!(notify.timeout.0.as_secs(), 10);
        assert_eq!(notify.log_lines, 30);
        assert_eq!(notify.ntfy.as_ref().unwrap().priority, "high");
        assert_eq!(
            notify.credentials(),
            [(
                "backupctl-notify-webhook-url".to_string(),
                PathBuf::from("/etc/b/hook")
            )]
        );
        assert_eq!(
            notify.secret_files(),
            [PathBuf::from("/etc/b/hook"), PathBuf::from("/etc/b/token")]
        );
        assert!(config.metrics.is_none());
    }

    #[test]
    fn healthchecks_needs_the_success_route() {
        let config = parse(
            "[notify.healthchecks]\nurl = \"https://hc-ping.com/u\"\n\
             [metrics]\ntextfile = \"/var/lib/node_exporter/textfile_collector/b.prom\"\n",
        );
        assert!(config.notify.unwrap().wants_success());
    }
}
