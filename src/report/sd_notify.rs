//! `STATUS=` through sd_notify, throttled to about once a second as systemd asks.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::{Progress, Sink};

const INTERVAL: Duration = Duration::from_secs(1);

pub struct NotifySink {
    last: Option<Instant>,
}

impl NotifySink {
    /// Only when systemd gave us a notification socket.
    pub fn from_env() -> Option<Self> {
        std::env::var_os("NOTIFY_SOCKET").map(|_| NotifySink { last: None })
    }

    fn send(&mut self, text: &str) {
        // Errors are ignored: a lost status line must never fail a backup.
        let _ = sd_notify::notify(&[NotifyState::Status(text)]);
        self.last = Some(Instant::now());
    }
}

impl Sink for NotifySink {
    fn progress(&mut self, _stage: &str, progress: &Progress) {
        if self.last.is_none_or(|last| last.elapsed() >= INTERVAL) {
            self.send(&progress.line());
        }
    }

    fn status(&mut self, _stage: &str, text: &str) {
        self.send(text);
    }
}
