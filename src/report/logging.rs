//! Where log records go: the journal (with our own fields) when systemd runs us, stderr
//! otherwise. Fields on every stage record: `BACKUPCTL_JOB`, `BACKUPCTL_STAGE`,
//! `BACKUPCTL_RUN`, from the span `executor::run_stage` opens; tracing-journald turns
//! `backupctl_stage` into `BACKUPCTL_STAGE` (no prefix, see below).

use std::io::IsTerminal;
use std::path::Path;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Log filter from `BACKUPCTL_LOG` (tracing's env-filter syntax), default `info`.
fn filter() -> EnvFilter {
    secrets_kept_out(
        EnvFilter::try_from_env("BACKUPCTL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
    )
}

/// At trace level, ureq logs each request byte for byte (through `log`, which reaches us):
/// a notification URL with its key, the `Authorization` header. Its debug level redacts both,
/// so a filter that goes as far as trace stops there for ureq.
fn secrets_kept_out(filter: EnvFilter) -> EnvFilter {
    if filter.max_level_hint() != Some(tracing::level_filters::LevelFilter::TRACE) {
        return filter;
    }
    ["ureq=debug", "ureq_proto=debug"]
        .into_iter()
        .fold(filter, |filter, directive| {
            filter.add_directive(directive.parse().expect("a valid directive"))
        })
}

/// True when our stderr already goes to the journal (systemd sets `JOURNAL_STREAM`), so
/// records should be sent natively, with fields, instead of as plain lines.
fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() && Path::new(JOURNAL_SOCKET).exists()
}

/// Sets up logging once for the process. Never fails: without a journal, stderr is used.
pub fn init() {
    if under_journal()
        && let Ok(layer) = tracing_journald::layer()
    {
        // No prefix: our field names are already namespaced (`BACKUPCTL_*`) and
        // `MESSAGE_ID` must keep its standard name.
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("backupctl".into());
        let _ = tracing_subscriber::registry()
            .with(filter())
            .with(layer)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(Plain)
        .try_init();
}

/// Lines for people on a terminal: `stage: message`, with the level only when it matters.
/// The structured fields are for the journal; here they would be noise.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let stage = ctx.event_scope().and_then(|scope| {
            scope.from_root().find_map(|span| {
                let extensions = span.extensions();
                let fields = extensions.get::<FormattedFields<N>>()?;
                let value = fields.fields.split("backupctl_stage=").nth(1)?;
                Some(
                    value
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string(),
                )
            })
        });
        let level = *event.metadata().level();
        let ansi = writer.has_ansi_escapes();
        let (start, end) = match level {
            Level::ERROR if ansi => ("\x1b[1;31merror: ", "\x1b[0m"),
            Level::ERROR => ("error: ", ""),
            Level::WARN if ansi => ("\x1b[33mwarning: ", "\x1b[0m"),
            Level::WARN => ("warning: ", ""),
            _ => ("", ""),
        };
        let mut message = MessageOnly(String::new());
        event.record(&mut message);
        match stage {
            Some(stage) => writeln!(writer, "{stage:>10}: {start}{}{end}", message.0),
            None => writeln!(writer, "{start}{}{end}", message.0),
        }
    }
}

/// Keeps only the `message` field of an event.
struct MessageOnly(String);

impl Visit for MessageOnly {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the events that pass the filter.
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many of ureq's trace event, ureq's debug event and our own trace event `spec` lets
    /// through.
    fn passed(spec: &str) -> usize {
        let count = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(secrets_kept_out(EnvFilter::new(spec)))
            .with(Count(count.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "ureq_proto::util", "POST /ping/secret-uuid");
            tracing::debug!(target: "ureq::run", "POST /******");
            tracing::trace!("ours");
        });
        count.load(Ordering::Relaxed)
    }

    /// Regression: `BACKUPCTL_LOG=trace` put ureq's raw requests, notification URLs with
    /// their keys and `Authorization` headers, into the journal.
    #[test]
    fn trace_stops_at_debug_for_ureq() {
        assert_eq!(
            passed("trace"),
            2,
            "ureq's debug and our trace, not ureq's trace"
        );
        assert_eq!(passed("info,ureq_proto=trace"), 1, "ureq's debug only");
        // Below trace nothing changes: ureq stays as quiet as the rest.
        assert_eq!(passed("info"), 0);
        assert_eq!(passed("debug"), 1);
    }
}
