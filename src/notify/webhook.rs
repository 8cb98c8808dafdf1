//! The webhook: the event as JSON (see [`Event`]), `Authorization: Bearer` when a token is set.

use super::event::Event;
use super::{ChannelError, Context, Deliver, secret};
use crate::config::notify::Webhook;

impl Deliver for Webhook {
    fn send(&self, event: &Event, context: &Context) -> Result<(), ChannelError> {
        let url = secret::read(&self.url, "webhook URL")?;
        let mut headers = Vec::new();
        if let Some(token) = &self.token {
            let token = secret::read(token, "webhook token")?;
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        let body = serde_json::to_vec(event).expect("an event serializes");
        context
            .http
            .post(&url, "application/json", &headers, &body)?;
        Ok(())
    }
}
