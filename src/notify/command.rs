//! The command channel (sendmail, msmtp, a script): the message on stdin, mail-shaped
//! (`Subject:`, optional `To:`, a blank line, the text), and the event's plain facts in
//! `BACKUPCTL_NOTIFY_*` variables. Nothing secret goes into argv or the environment.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::event::Event;
use super::{ChannelError, Context, Deliver};
use crate::config::notify::CommandChannel;
use crate::process::{Command, kill_group};

fn send(channel: &CommandChannel, event: &Event, timeout: Duration) -> Result<(), ChannelError> {
    let mut message = format!("Subject: {}\n", event.title());
    if let Some(to) = &channel.to {
        message.push_str(&format!("To: {to}\n"));
    }
    message.push_str("Content-Type: text/plain; charset=utf-8\n\n");
    message.push_str(&event.text());

    let program = &channel.command[0];
    // Run as root by a system notifier: refused when anyone else may change it.
    if let Some(path) = crate::needs::program_path(&channel.command) {
        crate::trust::check(&path, "the file", crate::trust::Reader::current())
            .map_err(|error| ChannelError::Command(error.to_string()))?;
    }
    let mut child = Command::new(program)
        .args(&channel.command[1..])
        .env("BACKUPCTL_NOTIFY_EVENT", event.event.as_str())
        .env("BACKUPCTL_NOTIFY_JOB", &event.job)
        .env(
            "BACKUPCTL_NOTIFY_STAGE",
            event.stage.as_deref().unwrap_or(""),
        )
        .env("BACKUPCTL_NOTIFY_UNIT", &event.unit)
        .env("BACKUPCTL_NOTIFY_RESULT", &event.result)
        .env("BACKUPCTL_NOTIFY_HOST", &event.host)
        .spawn(Stdio::piped(), Stdio::inherit())
        .map_err(|e| ChannelError::Command(e.to_string()))?;
    // Written from a thread: a command that does not read its stdin must not block us past
    // the timeout once the pipe is full. The thread is never joined: a process the command
    // left behind may hold the pipe open without reading, and the write would never end.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::thread::spawn(move || {
        let _ = stdin.write_all(message.as_bytes());
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // The whole group: what the command started (a mailer's helpers) goes too.
                kill_group(&child);
                let _ = child.wait();
                return Err(ChannelError::Command(format!(
                    "{program} did not finish within {}s and was killed",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(ChannelError::Command(format!("waiting for {program}: {e}"))),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(ChannelError::Command(format!(
            "{program} exited with {status}"
        )))
    }
}

impl Deliver for CommandChannel {
    fn send(&self, event: &Event, context: &Context) -> Result<(), ChannelError> {
        send(self, event, context.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;

    fn failure_with_log(bytes: usize) -> Event {
        Event {
            event: EventKind::Failure,
            job: "job".into(),
            stage: Some("copy".into()),
            unit: "backup@copy.service".into(),
            result: "exit-code".into(),
            fails_job: true,
            host: "nas".into(),
            started: None,
            finished: None,
            time: "2026-01-01T00:00:00Z".into(),
            exit_code: Some(1),
            error: None,
            log: vec!["x".repeat(bytes)],
            run: None,
        }
    }

    /// Regression: the message was written by a thread that was joined after the command
    /// exited, so a process the command left behind holding stdin (unread, the pipe full)
    /// kept the notifier waiting past its timeout.
    #[test]
    fn a_leftover_process_holding_stdin_does_not_hold_us() {
        let channel = CommandChannel {
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "exec 3<&0; sleep 20 <&3 >/dev/null 2>&1 & exit 0".into(),
            ],
            to: None,
        };
        let started = Instant::now();
        send(
            &channel,
            &failure_with_log(1 << 20),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
