//! healthchecks-style pings (healthchecks.io, its self-hosted form, and the services that
//! copied its protocol): `URL/start` when the job starts, `URL` when it succeeded, `URL/fail`
//! with the log tail as body when it failed. Only what fails the job is a failure here: a
//! failed optional stage is followed by the job's success ping.

use super::event::{Event, EventKind};
use super::{ChannelError, Context, Deliver, secret};
use crate::config::notify::Healthchecks;

/// healthchecks keeps at most 100 kB of a ping's body.
const MAX_BODY: usize = 100_000;

/// The URL pinged for an event.
/// A query string (e.g. `?rid=…`) stays at the end.
pub fn ping_url(base: &str, kind: EventKind) -> String {
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (base, String::new()),
    };
    let path = path.trim_end_matches('/');
    match kind {
        EventKind::Start => format!("{path}/start{query}"),
        EventKind::Success => format!("{path}{query}"),
        EventKind::Failure => format!("{path}/fail{query}"),
    }
}

impl Deliver for Healthchecks {
    fn wants(&self, event: &Event, _: &Context) -> bool {
        match event.event {
            // The job's start and end; stages never succeed "for" the check.
            EventKind::Start | EventKind::Success => event.stage.is_none(),
            EventKind::Failure => event.fails_job,
        }
    }

    fn send(&self, event: &Event, context: &Context) -> Result<(), ChannelError> {
        let base = secret::read(&self.url, "healthchecks URL")?;
        let body = match event.event {
            EventKind::Start => String::new(),
            _ => event.text(),
        };
        let body = super::event::keep_end(&body, MAX_BODY);
        context.http.post(
            &ping_url(&base, event.event),
            "text/plain; charset=utf-8",
            &[],
            body.as_bytes(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_start_and_fail() {
        let base = "https://hc-ping.com/0e2e6a4b-uuid/";
        assert_eq!(
            ping_url(base, EventKind::Start),
            "https://hc-ping.com/0e2e6a4b-uuid/start"
        );
        assert_eq!(
            ping_url(base, EventKind::Success),
            "https://hc-ping.com/0e2e6a4b-uuid"
        );
        assert_eq!(
            ping_url(base, EventKind::Failure),
            "https://hc-ping.com/0e2e6a4b-uuid/fail"
        );
        assert_eq!(
            ping_url(
                "https://hc.example/ping/key/slug?create=1",
                EventKind::Failure
            ),
            "https://hc.example/ping/key/slug/fail?create=1"
        );
    }
}
