//! Escaping values for unit files (systemd.unit(5), systemd.service(5)): `%` starts a
//! specifier, `$` an environment expansion in `Exec*=`, and spaces separate words in list
//! settings. Every value that comes from the config passes through here.
//!
//! The config loader refuses control characters, Unicode non-characters and trailing
//! backslashes in every string (`crate::config::text`). This module does not rely on it: no
//! escaped value can hold a line break or end in a backslash, whatever it is given, so a
//! value that some future loader forgot to check still cannot add a line to a unit. Debug
//! builds (and so the tests) panic on such a value instead, to find that loader.

use std::borrow::Cow;

use crate::config::text::{self, Flaw};

/// A value that is a setting's whole right-hand side (descriptions, single paths in
/// `Condition*=`, user names): `%` → `%%`.
pub fn value(text: &str) -> String {
    unfit_replaced(text).replace('%', "%%")
}

/// Text for a comment line (the header's config path): no specifiers there, but a line break
/// would still end the comment.
pub fn comment(text: &str) -> Cow<'_, str> {
    unfit_replaced(text)
}

/// `text`, or for text the loader should have refused, the same with each control character
/// and non-character (and a trailing backslash) replaced by U+FFFD: visibly wrong, but a single
/// line that ends where it should.
fn unfit_replaced(text: &str) -> Cow<'_, str> {
    let Some(flaw) = text::flaw(text) else {
        return Cow::Borrowed(text);
    };
    if cfg!(debug_assertions) {
        panic!("a value with {flaw} reached the unit renderer: the config loader must refuse it");
    }
    let mut replaced: String = text
        .chars()
        .map(|c| match text::flaw(c.encode_utf8(&mut [0; 4])) {
            Some(Flaw::Control(_) | Flaw::NonCharacter(_)) => char::REPLACEMENT_CHARACTER,
            _ => c,
        })
        .collect();
    if replaced.ends_with('\\') {
        replaced.pop();
        replaced.push(char::REPLACEMENT_CHARACTER);
    }
    Cow::Owned(replaced)
}

/// One word of a space-separated list (`ReadWritePaths=`, `ExecStart=` arguments, …): `%`
/// escaped, and quoted with C-style escapes when it holds whitespace, quotes, backslashes or
/// control characters. A quoted word ends in `"`, and every control character in it is
/// written as an escape, so no word can break or continue a line.
pub fn word(text: &str) -> String {
    let escaped = text.replace('%', "%%");
    if !escaped.is_empty()
        && !escaped.contains(|c: char| {
            c.is_whitespace() || c.is_control() || c == '"' || c == '\'' || c == '\\'
        })
    {
        return escaped;
    }
    let mut quoted = String::with_capacity(escaped.len() + 2);
    quoted.push('"');
    for c in escaped.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            // Other control characters as escapes that systemd reads back (`\u` for C1
            // ones: `\xNN` would be a raw byte, not the character).
            c if c.is_control() && c.is_ascii() => {
                quoted.push_str(&format!("\\x{:02x}", u32::from(c)))
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// One argument in `ExecStart=`: like [`word`], and `$` → `$$` so it is not expanded.
pub fn exec_arg(text: &str) -> String {
    word(&text.replace('$', "$$"))
}

/// `Environment=` assignment, always quoted: `"KEY=value"`.
pub fn environment(key: &str, value: &str) -> String {
    let assignment = format!("{key}={value}");
    let quoted = word(&assignment);
    if quoted.starts_with('"') {
        quoted
    } else {
        format!("\"{quoted}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specifiers() {
        assert_eq!(value("100% sure"), "100%% sure");
        assert_eq!(word("/data/50%"), "/data/50%%");
    }

    #[test]
    fn quotes_words_with_spaces_and_quotes() {
        assert_eq!(word("/home/sig/My Files"), "\"/home/sig/My Files\"");
        assert_eq!(word("a\"b"), "\"a\\\"b\"");
        assert_eq!(word("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(word(""), "\"\"");
    }

    #[test]
    fn escapes_exec_arguments() {
        assert_eq!(exec_arg("$HOME/x"), "$$HOME/x");
        assert_eq!(
            exec_arg("/etc/backupctl/config.toml"),
            "/etc/backupctl/config.toml"
        );
    }

    #[test]
    fn no_word_breaks_or_continues_a_line() {
        assert_eq!(word("a\nb"), "\"a\\nb\"");
        assert_eq!(word("a\rb"), "\"a\\rb\"");
        assert_eq!(word("nul\0"), "\"nul\\x00\"");
        assert_eq!(word("del\u{7f}"), "\"del\\x7f\"");
        assert_eq!(word("nel\u{85}"), "\"nel\\u0085\"");
        assert_eq!(word("C:\\backup\\"), "\"C:\\\\backup\\\\\"");
        for text in ["a\nb", "x\r", "\0", "\\", "e\\", "\u{2028}", "\u{85}"] {
            for escaped in [word(text), exec_arg(text), environment("K", text)] {
                assert!(!escaped.contains(['\n', '\r']), "{escaped:?}");
                assert!(
                    escaped.ends_with('"') || !escaped.ends_with('\\'),
                    "{escaped:?}"
                );
            }
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "the config loader must refuse it")]
    fn a_value_with_a_line_break_is_a_bug_in_debug_builds() {
        value("Nightly\n[Service]\nExecStartPre=/bin/x");
    }

    #[test]
    fn quotes_environment() {
        assert_eq!(environment("A", "b"), "\"A=b\"");
        assert_eq!(environment("A", "b c%"), "\"A=b c%%\"");
    }
}
