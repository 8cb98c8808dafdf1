//! Progress for people: a bar on a terminal, or a log line every 10 s when output is a pipe
//! or a file (e.g. CI), so that long work is visible either way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Progress, Sink};

pub fn is_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NOTIFY_SOCKET").is_none()
}

/// Whether what we print on stdout (`status`, `logs`) gets colour: only on a terminal, and
/// not when `NO_COLOR` is set (no-color.org).
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// SGR codes of the words people scan for.
pub const BOLD: &str = "1";
pub const RED: &str = "1;31";
pub const YELLOW: &str = "33";
pub const GREEN: &str = "32";
pub const BLUE: &str = "1;34";

/// `text` in the SGR colour `code` when `color`, else as it is.
pub fn paint(color: bool, code: &str, text: &str) -> String {
    if color && !code.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A time for people reading a table or a log: local, to the second.
pub fn local_time(time: jiff::Timestamp) -> String {
    time.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub struct BarSink {
    bar: Option<ProgressBar>,
}

impl BarSink {
    pub fn new() -> Self {
        BarSink { bar: None }
    }

    fn bar(&mut self, stage: &str) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>12.bold} [{bar:30}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(stage.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        })
    }
}

impl Sink for BarSink {
    fn progress(&mut self, stage: &str, progress: &Progress) {
        let bar = self.bar(stage);
        if let Some(percent) = progress.percent {
            bar.set_position(percent.clamp(0.0, 100.0) as u64);
        }
        bar.set_message(progress.line());
    }

    fn status(&mut self, stage: &str, text: &str) {
        self.bar(stage).set_message(text.to_string());
    }

    fn finish(&mut self, _stage: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

const LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct LogSink {
    last: Instant,
}

impl LogSink {
    pub fn new() -> Self {
        LogSink {
            last: Instant::now(),
        }
    }
}

impl Sink for LogSink {
    fn progress(&mut self, _stage: &str, progress: &Progress) {
        if self.last.elapsed() >= LOG_INTERVAL {
            self.last = Instant::now();
            tracing::info!("progress: {}", progress.line());
        }
    }

    fn status(&mut self, _stage: &str, text: &str) {
        tracing::debug!("{text}");
    }
}
