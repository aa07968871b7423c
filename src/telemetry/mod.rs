//! Telemetry: the tracing subscriber (JSON lines or human-readable logs that
//! carry trace and span ids), the OpenTelemetry tracer with its batching
//! OTLP/gRPC exporter, and the flush on exit.

pub mod json_log;
pub mod rpc;

use std::time::Duration;

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use secrecy::ExposeSecret;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Level;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, fmt, prelude::*};

use crate::config::{LogFormat, LogSettings, TelemetrySettings};

/// The instrumentation scope of every span this service makes.
const TRACER_NAME: &str = "customer-knowledge";

/// Owns the tracer provider; `shutdown` flushes what is still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

/// Installs the global subscriber and the tracer. Spans always get trace
/// and span ids (for logs and `x-trace-id`); they leave the process only
/// when `telemetry.otlp_endpoint` is set. Installing twice (tests) keeps the
/// first subscriber.
pub fn init(log: &LogSettings, telemetry: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let exporting = telemetry.endpoint().is_some();
    let provider = tracer_provider(telemetry)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let log_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Spans are traced whatever the log level, so turning logs down to
    // `warn` does not make traces disappear.
    let traced = Targets::new()
        .with_default(Level::WARN)
        .with_target("customer_knowledge", Level::INFO);
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_filter(traced);
    let logs = match log.format {
        LogFormat::Json => json_log::JsonLines::new(std::io::stdout)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Pretty => fmt::layer().with_filter(log_filter).boxed(),
    };
    if tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .try_init()
        .is_ok()
    {
        log_panics();
    }
    if let Some(endpoint) = telemetry.endpoint() {
        tracing::info!(
            endpoint,
            sampling_ratio = telemetry.sampling_ratio,
            "exporting traces over OTLP/gRPC"
        );
    }
    Ok(Telemetry {
        provider,
        exporting,
    })
}

/// Replaces the plain-text panic message on stderr with a log line (JSON by
/// default) inside the current span, so it carries the call's trace id. Only
/// a literal message is logged: a formatted one may hold request data.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(formatted message withheld: it may hold request data)");
        tracing::error!(panic.location = %location, panic.message = message, "panic");
    }));
}

fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<SdkTracerProvider> {
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // Parent-based: a caller's decision in `traceparent` is followed, so a
    // trace is never cut in half; only new traces are sampled by ratio.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        settings.sampling_ratio,
    )));
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource);
    if let Some(endpoint) = settings.endpoint() {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint);
        if let Some(headers) = &settings.otlp_headers {
            exporter = exporter.with_metadata(metadata(headers.expose_secret())?);
        }
        let exporter = exporter
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// `key=value,key2=value2` as gRPC metadata. Errors name the key, never the
/// value: these are often credentials.
fn metadata(headers: &str) -> anyhow::Result<MetadataMap> {
    let mut map = MetadataMap::new();
    for pair in headers.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("telemetry.otlp_headers: expected key=value"))?;
        let key = MetadataKey::from_bytes(key.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("telemetry.otlp_headers: invalid key {:?}", key.trim()))?;
        let value = MetadataValue::try_from(value.trim()).map_err(|_| {
            anyhow::anyhow!(
                "telemetry.otlp_headers: invalid value for {:?}",
                key.as_str()
            )
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter, giving up after
    /// `budget` so the process still ends within its grace period.
    pub async fn shutdown(self, budget: Duration) {
        let provider = self.provider;
        // The batch processor's shutdown blocks until its worker thread is
        // done; keep it off the async workers.
        let result =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(budget)).await;
        match result {
            Ok(Ok(())) if self.exporting => tracing::info!("telemetry flushed"),
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "telemetry not flushed completely"),
            Err(e) => tracing::warn!(error = %e, "telemetry flush failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_headers_become_metadata_and_errors_hide_values() {
        let map = metadata("api-key=s3cret, X-Tenant = bank").unwrap();
        assert_eq!(map.get("api-key").unwrap(), "s3cret");
        assert_eq!(map.get("x-tenant").unwrap(), "bank");
        let err = metadata("api-key=line\nbreak").unwrap_err().to_string();
        assert!(err.contains("api-key") && !err.contains("line"), "{err}");
    }
}
