//! The webhook: the event as JSON (see [`Event`]), `Authorization: Bearer` when a token is set.

use super::event::Event;
use super::http::Http;
use super::{ChannelError, Context, Deliver, secret};
use crate::config::notify::Webhook;

pub fn send(webhook: &Webhook, event: &Event, http: &Http) -> Result<(), ChannelError> {
    let url = secret::read(&webhook.url, "webhook URL")?;
    let mut headers = Vec::new();
    if let Some(token) = &webhook.token {
        let token = secret::read(token, "webhook token")?;
        headers.push(("Authorization", format!("Bearer {token}")));
    }
    let body = serde_json::to_vec(event).expect("an event serializes");
    http.post(&url, "application/json", &headers, &body)?;
    Ok(())
}

impl Deliver for Webhook {
    fn send(&self, event: &Event, context: &Context) -> Result<(), ChannelError> {
        send(self, event, &context.http)
    }
}
