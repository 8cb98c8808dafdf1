//! The one rule for every string of a config: no character that could change the shape of a
//! unit file. Config values end up in systemd units (`Description=`, `User=`, paths in
//! `ReadWritePaths=`, the config path in `ExecStart=`, …), where a line break starts a new
//! setting or section, a trailing backslash joins the next line, and systemd ignores
//! assignments that are "not UTF-8 clean" (Unicode non-characters).
//!
//! Rather than each key checking its own value, the whole parsed document is walked once
//! before anything else reads it: every string value and every table key anywhere (values
//! added to the config later included) either passes here or the config does not load.

use std::borrow::Cow;
use std::fmt;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::source::Source;

/// What makes a string unfit for a unit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// A C0 control character (tab and line breaks included), DEL, or a C1 control character.
    Control(char),
    /// U+FDD0..U+FDEF or U+xFFFE/U+xFFFF: systemd calls such text "not UTF-8 clean".
    NonCharacter(char),
    /// The last character is `\`: systemd would join the next unit line to this one.
    TrailingBackslash,
}

/// The first flaw of `text`, if any.
pub fn flaw(text: &str) -> Option<Flaw> {
    for c in text.chars() {
        if c.is_control() {
            return Some(Flaw::Control(c));
        }
        if is_non_character(c) {
            return Some(Flaw::NonCharacter(c));
        }
    }
    text.ends_with('\\').then_some(Flaw::TrailingBackslash)
}

/// Unicode non-characters, as systemd's `unichar_is_valid()` refuses them.
fn is_non_character(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Flaw::Control(c) => {
                let name = match c {
                    '\0' => "a NUL character",
                    '\t' => "a tab",
                    '\n' => "a line feed",
                    '\r' => "a carriage return",
                    '\u{0b}' => "a vertical tab",
                    '\u{0c}' => "a form feed",
                    '\u{1b}' => "an escape character",
                    '\u{7f}' => "a delete character",
                    '\u{85}' => "a next-line character",
                    c if u32::from(c) < 0x80 => "a control character",
                    _ => "a C1 control character",
                };
                write!(f, "{name} (U+{:04X})", u32::from(c))
            }
            Flaw::NonCharacter(c) => {
                write!(f, "the Unicode non-character U+{:04X}", u32::from(c))
            }
            Flaw::TrailingBackslash => f.write_str("a backslash at its end"),
        }
    }
}

impl Flaw {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            Flaw::Control(_) => {
                "remove it: config values are written into systemd unit files, where a line \
                 break would start a new setting and other control characters are not text; \
                 a multi-line shell script belongs in a file that `command` runs"
            }
            Flaw::NonCharacter(_) => {
                "remove it: it is no text character, and systemd ignores unit settings holding \
                 one (\"not UTF-8 clean\")"
            }
            Flaw::TrailingBackslash => {
                "remove the trailing `\\`: in a unit file it would join the next line to this \
                 value (a directory path needs no trailing backslash)"
            }
        }
    }
}

/// Keys whose value may hold a secret (a URL with a key): their errors do not show it.
const HIDDEN: &[&str] = &["url", "token", "password"];

/// Checks every key and string value of the document.
pub(super) fn check_document(source: &Source, root: &Spanned<DeTable>) -> Result<(), ConfigError> {
    table(source, "", root.get_ref())
}

fn table(source: &Source, path: &str, entries: &DeTable) -> Result<(), ConfigError> {
    for (key, value) in entries {
        if let Some(flaw) = flaw(key.get_ref()) {
            let place = if path.is_empty() {
                "a top-level key".to_string()
            } else {
                format!("a key of `{path}`")
            };
            return Err(source.error(
                key.span(),
                format!("{place} holds {flaw}"),
                Some(flaw.help().to_string()),
            ));
        }
        let child = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", dotted(key.get_ref()))
        };
        let hidden = HIDDEN.contains(&key.get_ref().as_ref());
        self::value(source, &child, value, hidden)?;
    }
    Ok(())
}

fn value(
    source: &Source,
    path: &str,
    value: &Spanned<DeValue>,
    hidden: bool,
) -> Result<(), ConfigError> {
    match value.get_ref() {
        DeValue::String(text) => match flaw(text) {
            None => Ok(()),
            Some(flaw) => {
                let error = source.error(
                    value.span(),
                    format!("the value of `{path}` holds {flaw}"),
                    Some(flaw.help().to_string()),
                );
                Err(if hidden { error.hiding_value() } else { error })
            }
        },
        DeValue::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            self::value(source, &format!("{path}[{index}]"), item, hidden)
        }),
        DeValue::Table(entries) => table(source, path, entries),
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {
            Ok(())
        }
    }
}

/// A key as written in a dotted path: quoted unless it is a bare key.
fn dotted(key: &str) -> Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_control_characters_non_characters_and_trailing_backslashes() {
        assert_eq!(flaw("Nightly copy to the NAS"), None);
        assert_eq!(flaw("C:\\backup\\x"), None);
        assert_eq!(flaw("über 100% $HOME ; # [x] = \"q\""), None);
        assert_eq!(flaw("a\nb"), Some(Flaw::Control('\n')));
        assert_eq!(flaw("a\tb"), Some(Flaw::Control('\t')));
        assert_eq!(flaw("\u{7f}"), Some(Flaw::Control('\u{7f}')));
        assert_eq!(flaw("\u{9b}"), Some(Flaw::Control('\u{9b}')));
        assert_eq!(flaw("x\u{fdd0}"), Some(Flaw::NonCharacter('\u{fdd0}')));
        assert_eq!(flaw("\u{1fffe}"), Some(Flaw::NonCharacter('\u{1fffe}')));
        assert_eq!(flaw("\u{10ffff}"), Some(Flaw::NonCharacter('\u{10ffff}')));
        assert_eq!(flaw("\u{fffd}"), None);
        assert_eq!(flaw("C:\\backup\\"), Some(Flaw::TrailingBackslash));
    }

    #[test]
    fn names_the_character() {
        assert_eq!(Flaw::Control('\n').to_string(), "a line feed (U+000A)");
        assert_eq!(
            Flaw::Control('\u{1}').to_string(),
            "a control character (U+0001)"
        );
        assert_eq!(
            Flaw::NonCharacter('\u{ffff}').to_string(),
            "the Unicode non-character U+FFFF"
        );
    }
}
