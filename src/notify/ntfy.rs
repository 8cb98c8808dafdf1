//! ntfy: a POST to the topic URL, the message as body, `Title`, `Priority` and `Tags` headers
//! (ntfy turns tag names that are emoji short codes into emoji).

use super::event::{Event, EventKind, keep_end};
use super::{ChannelError, Context, Deliver, secret};
use crate::config::notify::Ntfy;

/// ntfy takes a body of 4096 bytes or more as a file: a server without attachment storage
/// (the default) refuses it with HTTP 400, and ntfy.sh shows `attachment.txt` instead of the
/// text. So the message stays below, its end kept (the newest log lines, the failure).
const MAX_BODY: usize = 4095;

impl Deliver for Ntfy {
    fn send(&self, event: &Event, context: &Context) -> Result<(), ChannelError> {
        let url = secret::read(&self.url, "ntfy URL")?;
        let (priority, mark) = match event.event {
            EventKind::Failure => (self.priority.as_str(), "rotating_light"),
            _ => ("default", "white_check_mark"),
        };
        let mut tags = vec![mark.to_string()];
        tags.extend(self.tags.iter().cloned());
        let mut headers = vec![
            // HTTP header values are ASCII; a host or stage name never needs more.
            (
                "Title",
                event
                    .title()
                    .replace(|c: char| !c.is_ascii() || c.is_ascii_control(), "?"),
            ),
            ("Priority", priority.to_string()),
            ("Tags", tags.join(",")),
        ];
        if let Some(token) = &self.token {
            let token = secret::read(token, "ntfy token")?;
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        context.http.post(
            &url,
            "text/plain; charset=utf-8",
            &headers,
            keep_end(&event.text(), MAX_BODY).as_bytes(),
        )?;
        Ok(())
    }
}
