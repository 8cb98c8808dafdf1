//! The command channel (sendmail, msmtp, a script): the message on stdin, mail-shaped
//! (`Subject:`, optional `To:`, a blank line, the text), and the event's plain facts in
//! `BACKUPCTL_NOTIFY_*` variables. Nothing secret goes into argv or the environment.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ChannelError;
use super::event::Event;
use crate::config::notify::CommandChannel;

pub fn send(
    channel: &CommandChannel,
    event: &Event,
    timeout: Duration,
) -> Result<(), ChannelError> {
    let mut message = format!("Subject: {}\n", event.title());
    if let Some(to) = &channel.to {
        message.push_str(&format!("To: {to}\n"));
    }
    message.push_str("Content-Type: text/plain; charset=utf-8\n\n");
    message.push_str(&event.text());

    let program = &channel.command[0];
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
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| ChannelError::Command(format!("cannot run {program}: {e}")))?;
    // Written from a thread: a command that does not read its stdin must not block us past
    // the timeout once the pipe is full.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(message.as_bytes());
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChannelError::Command(format!(
                    "{program} did not finish within {}s and was killed",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(ChannelError::Command(format!("waiting for {program}: {e}"))),
        }
    };
    let _ = writer.join();
    if status.success() {
        Ok(())
    } else {
        Err(ChannelError::Command(format!(
            "{program} exited with {status}"
        )))
    }
}
