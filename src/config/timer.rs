//! A job's `timer` table: more `[Timer]` directives of its timer unit, passed through (the
//! NixOS restic module's `timerConfig`), but checked like every other key. A directive
//! backupctl writes from a typed key (`schedule` → `OnCalendar=`, …) is refused with that
//! key's name, so one setting never has two spellings that could disagree; unknown names
//! get "did you mean"; values are checked for their directive's type and escaped for the
//! unit file.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::source::{Source, closest};
use super::{ConfigError, Timespan};

/// A value as TOML gives it.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawValue {
    Bool(bool),
    Integer(i64),
    Text(String),
}

/// The `[Timer]` directives systemd.timer(5) documents that backupctl has no key for.
const SPANS: &[&str] = &[
    "OnActiveSec",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
];
const SWITCHES: &[&str] = &[
    "FixedRandomDelay",
    "DeferReactivation",
    "OnClockChange",
    "OnTimezoneChange",
    "RemainAfterElapse",
];
/// Directives written from typed keys, and `Unit=`, which names the job's own service.
const TYPED: &[(&str, &str)] = &[
    ("OnCalendar", "schedule"),
    ("Persistent", "persistent"),
    ("RandomizedDelaySec", "randomized_delay"),
    ("OnBootSec", "on_boot"),
    ("AccuracySec", "accuracy"),
    ("WakeSystem", "wake_system"),
];

/// The checked directives, as `Name=value` right-hand sides in file order.
pub(super) fn directives(
    source: &Source,
    raw: IndexMap<Spanned<String>, Spanned<RawValue>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut lines = Vec::new();
    for (name, value) in raw {
        let key = name.get_ref().as_str();
        if let Some((_, typed)) = TYPED.iter().find(|(directive, _)| *directive == key) {
            return Err(source.error(
                name.span(),
                format!("`{key}` has a key of its own in a job"),
                Some(format!(
                    "write `{typed} = …` in the job instead of timer.{key}"
                )),
            ));
        }
        if key == "Unit" {
            return Err(source.error(
                name.span(),
                "the timer's `Unit=` is the job's own service",
                Some("remove it: a job's timer starts that job".into()),
            ));
        }
        let text = if SPANS.contains(&key) {
            span_value(source, key, &value)?
        } else if SWITCHES.contains(&key) {
            match value.get_ref() {
                RawValue::Bool(on) => on.to_string(),
                _ => {
                    return Err(source.error(
                        value.span(),
                        format!("timer.{key} takes true or false"),
                        Some(format!("e.g. {key} = true")),
                    ));
                }
            }
        } else {
            let known = SPANS.iter().chain(SWITCHES).copied();
            let known = known.chain(TYPED.iter().map(|(directive, _)| *directive));
            let guess = closest(key, known)
                .map(|close| format!("did you mean `{close}`? "))
                .unwrap_or_default();
            return Err(source.error(
                name.span(),
                format!("`{key}` is not a [Timer] directive backupctl can pass on"),
                Some(format!(
                    "{guess}`timer` takes {} and {} (systemd.timer(5))",
                    SPANS.join(", "),
                    SWITCHES.join(", ")
                )),
            ));
        };
        lines.push((key.to_string(), text));
    }
    Ok(lines)
}

/// A time span directive: a systemd time span, or whole seconds.
fn span_value(
    source: &Source,
    key: &str,
    value: &Spanned<RawValue>,
) -> Result<String, ConfigError> {
    let help = Some(format!("a time span, e.g. {key} = \"15min\", or seconds"));
    match value.get_ref() {
        RawValue::Integer(seconds) if *seconds >= 0 => Ok(seconds.to_string()),
        RawValue::Text(text) => match Timespan::parse(text) {
            Ok(span) => Ok(span.to_string()),
            Err(error) => {
                Err(source.error(value.span(), format!("invalid timer.{key}: {error}"), help))
            }
        },
        _ => Err(source.error(value.span(), format!("timer.{key} takes a time span"), help)),
    }
}
