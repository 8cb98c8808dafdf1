//! Config errors that know where they are: file, line, column, the offending line with a
//! caret under it, and a hint saying what to do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An error located in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
    /// 1-based line and column of the start of `span`.
    pub line: usize,
    pub column: usize,
    /// The full source line and the caret's length on it.
    source_line: String,
    caret_len: usize,
    pub help: Option<String>,
}

impl ConfigError {
    /// Locates `span` (byte offsets into `text`) and keeps what the rendering needs.
    pub fn at(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let span = span.unwrap_or(0..0);
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let source_line = text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = span.end.clamp(start, line_end);
        let caret_len = text[start..end].chars().count().max(1);
        ConfigError {
            file: file.to_path_buf(),
            message: message.into(),
            line,
            column,
            source_line,
            caret_len,
            help,
        }
    }

    /// The same error with the value under the caret shown as `"***"`: for a token, or a URL
    /// that may hold a key. The rendering quotes the line, and errors reach the journal and
    /// the kernel log when the systemd generator loads the config.
    pub fn hiding_value(mut self) -> Self {
        const MASK: &str = "\"***\"";
        let chars: Vec<char> = self.source_line.chars().collect();
        let start = (self.column - 1).min(chars.len());
        let end = (start + self.caret_len).min(chars.len());
        self.source_line = chars[..start]
            .iter()
            .chain(MASK.chars().collect::<Vec<_>>().iter())
            .chain(&chars[end..])
            .collect();
        self.caret_len = MASK.len();
        self
    }

    /// An error about the file as a whole (unreadable, empty, …).
    pub fn whole_file(file: &Path, message: impl Into<String>, help: Option<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            message: message.into(),
            line: 1,
            column: 1,
            source_line: String::new(),
            caret_len: 0,
            help,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        write!(
            f,
            "  --> {}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )?;
        if self.caret_len > 0 {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            let indent: String = self
                .source_line
                .chars()
                .take(self.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{pad} |\n{number} | {}\n{pad} | {indent}{}",
                self.source_line,
                "^".repeat(self.caret_len)
            )?;
        }
        if let Some(help) = &self.help {
            // Continuation lines line up under the first line of the help text.
            write!(f, "\n  = help: {}", help.replace('\n', "\n          "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_and_caret() {
        let text = "[job]\nschedule = \"daly\"\n";
        let at = text.find("\"daly\"").unwrap();
        let error = ConfigError::at(
            Path::new("c.toml"),
            text,
            Some(at..at + 6),
            "bad schedule",
            Some("use systemd calendar syntax".into()),
        );
        assert_eq!((error.line, error.column), (2, 12));
        assert_eq!(
            error.to_string(),
            "bad schedule\n  --> c.toml:2:12\n  |\n2 | schedule = \"daly\"\n  |            ^^^^^^\n  = help: use systemd calendar syntax"
        );
    }
}
