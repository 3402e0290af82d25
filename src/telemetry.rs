//! Logging: application logs (JSON or pretty) on stderr, audit records as bare JSON lines on
//! stdout. Set up once per process.

use std::io::Write;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, filter};

/// How application logs are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Installs the global subscriber writing to stderr (logs) and stdout (audit).
/// `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    subscriber(format, filter, std::io::stderr, std::io::stdout).try_init()?;
    Ok(())
}

/// The subscriber [`init`] installs, with explicit writers (tests capture both).
pub fn subscriber<L, A>(
    format: LogFormat,
    filter: EnvFilter,
    logs: L,
    audit: A,
) -> impl Subscriber + Send + Sync + 'static
where
    L: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    A: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let not_audit = filter::filter_fn(|metadata| metadata.target() != "audit");
    let app = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            // The list too: a line written inside a nested span (kube's `HTTP` client span
            // within a request) shows only that span as `span`; the request id is in `spans`.
            .with_span_list(true)
            .with_writer(logs)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(logs).boxed(),
    };
    tracing_subscriber::registry()
        .with(app.with_filter(not_audit).with_filter(filter))
        .with(
            AuditLayer { writer: audit }
                .with_filter(filter::filter_fn(|metadata| metadata.target() == "audit")),
        )
}

/// Writes the message of every `audit` event verbatim, one per line.
struct AuditLayer<W> {
    writer: W,
}

impl<S, W> Layer<S> for AuditLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = MessageOnly(String::new());
        event.record(&mut message);
        let mut line = message.0.into_bytes();
        line.push(b'\n');
        let _ = self.writer.make_writer().write_all(&line);
    }
}

struct MessageOnly(String);

impl Visit for MessageOnly {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}
