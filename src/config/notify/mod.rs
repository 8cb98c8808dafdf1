//! The model and validation of `[notify]` (where failures and successes are reported: a
//! webhook, healthchecks-style pings, ntfy, a command). See docs/notify.md for what each
//! channel sends.
//!
//! Each channel is one file here implementing `ChannelSpec` (its model, its table's
//! parsing, its secrets, whether it pings on start) and one line in `for_each_channel!`,
//! the list of channels (a channel delivering to a URL shares its table shape, `url_table.rs`).
//! The [`Channel`] enum, [`CHANNEL_NAMES`], the keys `[notify]` takes and the dispatch
//! of the notifier (`crate::notify`) are generated from that list; the generator, `hello`
//! and the notifier iterate [`Notify::channels`], never naming a channel.

mod command;
mod healthchecks;
mod ntfy;
mod secret;
mod url_table;
mod webhook;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::de::{self, DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::DeValue;

use super::load::Source;
use super::{ConfigError, Timespan};
pub use command::CommandChannel;
pub use healthchecks::Healthchecks;
pub use ntfy::Ntfy;
pub use secret::Secret;
pub use webhook::Webhook;

/// The channels, one line each: `Variant(module::Type)`, in the order they are delivered to.
/// The type implements [`ChannelSpec`] (here) and `crate::notify::Deliver` (in
/// `src/notify/`); everything else follows from this list. `$then` is a macro that gets the
/// list, so each place that must name every channel (the enum here, the notifier's dispatch)
/// is generated from it.
macro_rules! for_each_channel {
    ($then:ident) => {
        $then! {
            Webhook(webhook::Webhook),
            Healthchecks(healthchecks::Healthchecks),
            Ntfy(ntfy::Ntfy),
            Command(command::CommandChannel),
        }
    };
}
pub(crate) use for_each_channel;

/// What the config needs of a channel (the generator and `hello` ask [`Channel`], which asks
/// this).
pub(super) trait ChannelSpec: Sized {
    /// Its table: `[notify.NAME]`; also in its credentials' names.
    const NAME: &'static str;
    /// Its table as read by serde (`deny_unknown_fields`), checked by [`ChannelSpec::parse`].
    type Raw: DeserializeOwned;

    /// The channel from its table; `table` is the table's span, for errors about it as a whole.
    fn parse(source: &Source, table: Range<usize>, raw: Self::Raw) -> Result<Self, ConfigError>;

    /// The URLs and tokens this channel reads.
    fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }

    /// Whether it is told when a job starts (through the start-ping unit).
    fn pings_on_start(&self) -> bool {
        false
    }

    /// Whether it hears of every success, `on_success` or not.
    fn always_on_success(&self) -> bool {
        false
    }
}

/// Generates [`Channel`], its raw form and the dispatch of [`ChannelSpec`]'s methods.
macro_rules! channel_enum {
    ($($variant:ident($ty:path)),* $(,)?) => {
        /// One configured channel.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Channel {
            $($variant($ty),)*
        }

        /// The `[notify]` keys that are channels, in the list's order.
        pub const CHANNEL_NAMES: &[&str] = &[$(<$ty as ChannelSpec>::NAME),*];

        /// A channel's table as serde read it, before [`ChannelSpec::parse`].
        enum RawChannel {
            $($variant(Spanned<<$ty as ChannelSpec>::Raw>),)*
        }

        impl RawChannel {
            /// Reads the table of the channel named `name` (one of [`CHANNEL_NAMES`]).
            fn read<'de, D: Deserializer<'de>>(
                name: &str,
                table: D,
            ) -> Result<RawChannel, D::Error> {
                $(if name == <$ty as ChannelSpec>::NAME {
                    return Spanned::deserialize(table).map(RawChannel::$variant);
                })*
                unreachable!("`{name}` is not a channel")
            }

            /// Its place in the list: channels are built and delivered to in that order.
            fn index(&self) -> usize {
                let mut index = 0;
                $(
                    if let RawChannel::$variant(_) = self {
                        return index;
                    }
                    index += 1;
                )*
                unreachable!("{index} channels")
            }

            fn parse(self, source: &Source) -> Result<Channel, ConfigError> {
                match self {
                    $(RawChannel::$variant(raw) => {
                        let span = raw.span();
                        <$ty as ChannelSpec>::parse(source, span, raw.into_inner())
                            .map(Channel::$variant)
                    })*
                }
            }
        }

        impl Channel {
            /// Its table's name (`webhook`, …).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Channel::$variant(_) => <$ty as ChannelSpec>::NAME,)*
                }
            }

            /// The URLs and tokens this channel reads.
            pub fn secrets(&self) -> Vec<&Secret> {
                match self {
                    $(Channel::$variant(c) => c.secrets(),)*
                }
            }

            /// Whether it is told when a job starts (through the start-ping unit).
            pub fn pings_on_start(&self) -> bool {
                match self {
                    $(Channel::$variant(c) => c.pings_on_start(),)*
                }
            }

            /// Whether it hears of every success, `on_success` or not (healthchecks would
            /// otherwise report the check as down).
            pub fn always_on_success(&self) -> bool {
                match self {
                    $(Channel::$variant(c) => c.always_on_success(),)*
                }
            }
        }
    };
}
for_each_channel!(channel_enum);

/// Longest per-request timeout: a notifier must never hold anything up for long.
pub const MAX_TIMEOUT_SECS: u64 = 60;
const DEFAULT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_LOG_LINES: usize = 30;
const MAX_LOG_LINES: usize = 500;

/// `[notify]`: the channels and when they are used.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// Also report successful jobs through the channels that are not `always_on_success`
    /// (healthchecks always gets its success ping: without it, it would report the check
    /// as down).
    pub on_success: bool,
    /// Bound of one request (and of the command).
    pub timeout: Timespan,
    /// Lines of the failed stage's journal sent along.
    pub log_lines: usize,
    /// The configured channels, in the list's order (never empty).
    pub channels: Vec<Channel>,
}

/// The systemd credentials that units delivering through `channels` load, as `(NAME, PATH)`.
pub fn credentials<'a>(channels: impl IntoIterator<Item = &'a Channel>) -> Vec<(String, PathBuf)> {
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
    /// The configured channels, in the list's order (webhook, healthchecks, ntfy, command).
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.iter()
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

    /// The programs the channels run by path (the `command` channel's), for `hello`'s
    /// `trusted` lines.
    pub fn programs(&self) -> Vec<PathBuf> {
        self.channels()
            .filter_map(|channel| match channel {
                Channel::Command(command) => crate::needs::program_path(&command.command),
                _ => None,
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

/// The `[notify]` table as serde reads it: its own keys, and each channel's table read by
/// that channel's raw type, in the order of the file.
struct RawNotify {
    on_success: Option<bool>,
    timeout: Option<Spanned<String>>,
    log_lines: Option<Spanned<i64>>,
    channels: Vec<RawChannel>,
}

/// The keys of `[notify]` that are not channels.
const OWN_KEYS: &[&str] = &["on_success", "timeout", "log_lines"];

/// Every key of `[notify]`, for serde's "expected one of" (a `'static` list, built once).
fn notify_keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| OWN_KEYS.iter().chain(CHANNEL_NAMES).copied().collect())
}

/// Reads the table of one channel.
struct ChannelSeed(&'static str);

impl<'de> de::DeserializeSeed<'de> for ChannelSeed {
    type Value = RawChannel;
    fn deserialize<D: Deserializer<'de>>(self, table: D) -> Result<RawChannel, D::Error> {
        RawChannel::read(self.0, table)
    }
}

/// A key of `[notify]`; an unknown one is serde's usual error, located at the key.
enum Key {
    OnSuccess,
    Timeout,
    LogLines,
    Channel(&'static str),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                match key {
                    "on_success" => Ok(Key::OnSuccess),
                    "timeout" => Ok(Key::Timeout),
                    "log_lines" => Ok(Key::LogLines),
                    _ => CHANNEL_NAMES
                        .iter()
                        .find(|name| **name == key)
                        .map(|name| Key::Channel(name))
                        .ok_or_else(|| E::unknown_field(key, notify_keys())),
                }
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

// Written out because `#[derive(Deserialize)]` needs the keys spelled in the struct, and the
// channels' keys come from the list. It reads as the derived `deny_unknown_fields` struct
// did: the same "unknown field … expected one of" error, the channels' tables read in the
// file's order by their own derived types.
impl<'de> Deserialize<'de> for RawNotify {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawNotify, D::Error> {
        struct NotifyVisitor;
        impl<'de> de::Visitor<'de> for NotifyVisitor {
            type Value = RawNotify;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct RawNotify")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawNotify, A::Error> {
                let mut raw = RawNotify {
                    on_success: None,
                    timeout: None,
                    log_lines: None,
                    channels: Vec::new(),
                };
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::OnSuccess => raw.on_success = map.next_value()?,
                        Key::Timeout => raw.timeout = map.next_value()?,
                        Key::LogLines => raw.log_lines = map.next_value()?,
                        // Read here, as a derived struct reads its fields: in the file's
                        // order, before anything is checked, errors located by toml.
                        Key::Channel(name) => {
                            raw.channels.push(map.next_value_seed(ChannelSeed(name))?)
                        }
                    }
                }
                Ok(raw)
            }
        }
        deserializer.deserialize_struct("RawNotify", notify_keys(), NotifyVisitor)
    }
}

/// Builds `[notify]`; `span` is the table's key, for errors about the table as a whole.
pub(super) fn notify(
    source: &Source,
    span: Range<usize>,
    value: Spanned<DeValue>,
) -> Result<Notify, ConfigError> {
    let mut raw = RawNotify::deserialize(value.into_deserializer())
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
    // In the list's order, whatever the file's: that is the order of delivery too.
    raw.channels.sort_by_key(RawChannel::index);
    let channels = raw
        .channels
        .into_iter()
        .map(|channel| channel.parse(source))
        .collect::<Result<Vec<_>, _>>()?;
    if channels.is_empty() {
        let tables: Vec<String> = CHANNEL_NAMES
            .iter()
            .map(|name| format!("[notify.{name}]"))
            .collect();
        return Err(source.error(
            span,
            "[notify] has no channel",
            Some(format!("add at least one of {}", tables.join(", "))),
        ));
    }
    Ok(Notify {
        on_success: raw.on_success.unwrap_or(false),
        timeout,
        log_lines,
        channels,
    })
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
        let ntfy = notify.channels().find_map(|c| match c {
            Channel::Ntfy(ntfy) => Some(ntfy),
            _ => None,
        });
        assert_eq!(ntfy.unwrap().priority, "high");
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

    #[test]
    fn an_unknown_key_lists_every_key_and_channels_keep_the_lists_order() {
        let error = crate::config::parse(
            Path::new("c.toml"),
            "[notify]\nretries = 3\n[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "unknown field `retries`, expected one of `on_success`, `timeout`, `log_lines`, \
                 `webhook`, `healthchecks`, `ntfy`, `command`"
            ),
            "{error}"
        );
        let config = parse(
            "[notify.command]\ncommand = [\"/bin/cat\"]\n\
             [notify.healthchecks]\nurl = \"https://hc-ping.com/u\"\n\
             [notify.webhook]\nurl = \"https://example.org/hook\"\n",
        );
        let names: Vec<_> = config
            .notify
            .unwrap()
            .channels()
            .map(Channel::name)
            .collect();
        assert_eq!(names, ["webhook", "healthchecks", "command"]);
    }
}
