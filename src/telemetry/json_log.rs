//! JSON lines for production logs: one object per event, carrying the
//! OpenTelemetry trace and span ids of the call the event belongs to.

use std::{fmt, io::Write};

use chrono::{SecondsFormat, Utc};
use opentelemetry::trace::TraceContextExt;
use serde_json::Value;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{fmt::MakeWriter, layer::Context, registry::LookupSpan};

/// Keys the layer writes itself; event fields with these names are kept
/// under `field.<name>` so they cannot pass for them.
const RESERVED: [&str; 7] = [
    "timestamp",
    "level",
    "target",
    "message",
    "span",
    "trace_id",
    "span_id",
];

/// A `tracing` layer writing each event as one JSON object on one line:
/// `timestamp`, `level`, `target`, `message`, the event's fields, the
/// innermost span's name and, inside a traced call, `trace_id` and
/// `span_id`. Span fields are not written: they may hold anything, events
/// are reviewed for PII one by one.
pub struct JsonLines<W> {
    make_writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(make_writer: W) -> Self {
        JsonLines { make_writer }
    }
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);

        let mut line: Vec<(String, Value)> = vec![
            (
                "timestamp".into(),
                Utc::now()
                    .to_rfc3339_opts(SecondsFormat::Micros, true)
                    .into(),
            ),
            ("level".into(), meta.level().as_str().into()),
            ("target".into(), meta.target().into()),
            ("message".into(), fields.message.unwrap_or_default().into()),
        ];
        line.extend(fields.values);
        if let Some(span) = ctx.event_span(event) {
            line.push(("span".into(), span.name().into()));
        }
        // The OpenTelemetry layer attaches a span's context while the span is
        // entered, so the current context is the one of the event's span.
        let context = opentelemetry::Context::current();
        let otel_span = context.span();
        let ids = otel_span.span_context();
        if ids.is_valid() {
            line.push(("trace_id".into(), ids.trace_id().to_string().into()));
            line.push(("span_id".into(), ids.span_id().to_string().into()));
        }

        let mut bytes = Vec::with_capacity(256);
        bytes.push(b'{');
        for (i, (key, value)) in line.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            // Writing JSON strings and values to memory cannot fail.
            let _ = serde_json::to_writer(&mut bytes, key);
            bytes.push(b':');
            let _ = serde_json::to_writer(&mut bytes, value);
        }
        bytes.extend_from_slice(b"}\n");
        // One write per line keeps lines whole when threads log at once.
        let _ = self.make_writer.make_writer_for(meta).write_all(&bytes);
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    values: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else if RESERVED.contains(&name) {
            self.values.push((format!("field.{name}"), value));
        } else {
            self.values.push((name.to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn lines_are_json_with_the_ids_of_the_entered_span() {
        let captured = Captured::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(JsonLines::new(captured.clone()));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!(port = 7, "outside any call");
            let span = tracing::info_span!("GetCustomer");
            let ids = span.context().span().span_context().clone();
            span.in_scope(|| tracing::warn!(level = "spoof", code = "NOT_FOUND", "inside"));
            (ids.trace_id().to_string(), ids.span_id().to_string())
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message"], "outside any call");
        assert_eq!(lines[0]["port"], 7);
        assert_eq!(lines[0]["level"], "INFO");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["field.level"], "spoof");
        assert_eq!(lines[1]["code"], "NOT_FOUND");
        assert_eq!(lines[1]["span"], "GetCustomer");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(trace_id.len(), 32);
    }
}
