//! Prometheus metrics of one running application: gRPC calls, the database
//! pool and the sizes of append batches, rendered for the admin port.

use std::{sync::Arc, time::Duration};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Canonical names of gRPC status codes, the values of the `code` label.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The canonical name of a gRPC status code (`UNKNOWN` for codes outside
/// the standard range).
pub fn code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// A cheap, cloneable handle on the application's metrics. Each
/// `Application` has its own registry, so parallel test servers do not mix
/// their figures.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGauge,
    pool_size: IntGauge,
    pool_idle: IntGauge,
    pool_in_use: IntGauge,
    pool_max: IntGauge,
    pool_waiters: IntGauge,
    append_batch: Histogram,
    audit_written: IntCounter,
    audit_lost: IntCounter,
    audit_refused: IntCounter,
    audit_write_failures: IntCounter,
    audit_queue: IntGauge,
    shed: IntCounter,
    panics: IntCounter,
    stale_reads: IntCounterVec,
    standby_fallbacks: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "ck_grpc_requests_total",
                "gRPC calls finished, by service, method and status code",
            ),
            &["service", "method", "code"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "ck_grpc_errors_total",
                "gRPC calls finished with a status other than OK, by service, method and code",
            ),
            &["service", "method", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ck_grpc_request_duration_seconds",
                "Time from a call's arrival to its status, by service and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["service", "method"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "ck_grpc_requests_in_flight",
            "gRPC calls started and not yet finished",
        )
        .expect("valid metric");
        let pool_size = IntGauge::new(
            "ck_db_pool_connections",
            "Connections the database pool holds (idle and in use)",
        )
        .expect("valid metric");
        let pool_idle = IntGauge::new(
            "ck_db_pool_idle_connections",
            "Pooled connections waiting for work",
        )
        .expect("valid metric");
        let pool_in_use = IntGauge::new(
            "ck_db_pool_in_use_connections",
            "Pooled connections checked out by a call",
        )
        .expect("valid metric");
        let pool_max = IntGauge::new(
            "ck_db_pool_max_connections",
            "Upper bound of the database pool (database.max_connections)",
        )
        .expect("valid metric");
        let pool_waiters = IntGauge::new(
            "ck_db_pool_waiters",
            "Calls waiting for a pooled connection",
        )
        .expect("valid metric");
        let append_batch = Histogram::with_opts(
            HistogramOpts::new(
                "ck_append_batch_size",
                "Interactions written per append (LogInteraction, BatchLogInteractions, \
                 ImportInteractions)",
            )
            .buckets(vec![
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                10000.0,
            ]),
        )
        .expect("valid metric");

        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let audit_written = counter(
            "ck_audit_events_written_total",
            "Access events committed to the audit chain",
        );
        let audit_lost = counter(
            "ck_audit_events_lost_total",
            "Access events that could not be queued, or were still unwritten when shutdown \
             ran out of time",
        );
        let audit_refused = counter(
            "ck_audit_calls_refused_total",
            "Calls refused with UNAVAILABLE because the audit queue was full",
        );
        let audit_write_failures = counter(
            "ck_audit_write_failures_total",
            "Failed audit append transactions (each is retried)",
        );
        let audit_queue = IntGauge::new(
            "ck_audit_queue_length",
            "Access events waiting for the writer after its last append",
        )
        .expect("valid metric");

        let shed = counter(
            "ck_grpc_calls_shed_total",
            "Calls refused with RESOURCE_EXHAUSTED because the service was at its \
             concurrency limit (server.max_concurrent_calls)",
        );
        let panics = counter(
            "ck_grpc_panics_total",
            "Calls whose handler panicked (answered INTERNAL); each one is a bug",
        );

        let stale_reads = IntCounterVec::new(
            Opts::new(
                "ck_db_stale_tolerant_reads_total",
                "Reads that tolerate staleness (lists, search, 360, reports), by the server \
                 that answered them: standby or primary",
            ),
            &["server"],
        )
        .expect("valid metric");
        let standby_fallbacks = IntCounterVec::new(
            Opts::new(
                "ck_db_standby_fallbacks_total",
                "Stale-tolerant reads sent to the primary although a standby is configured, \
                 by reason: lagging (it had not replayed the caller's last write in time) or \
                 unavailable (it could not be reached)",
            ),
            &["reason"],
        )
        .expect("valid metric");

        let registry = Registry::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
            Box::new(pool_size.clone()),
            Box::new(pool_idle.clone()),
            Box::new(pool_in_use.clone()),
            Box::new(pool_max.clone()),
            Box::new(pool_waiters.clone()),
            Box::new(append_batch.clone()),
            Box::new(audit_written.clone()),
            Box::new(audit_lost.clone()),
            Box::new(audit_refused.clone()),
            Box::new(audit_write_failures.clone()),
            Box::new(audit_queue.clone()),
            Box::new(shed.clone()),
            Box::new(panics.clone()),
            Box::new(stale_reads.clone()),
            Box::new(standby_fallbacks.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics(Arc::new(Inner {
            registry,
            requests,
            errors,
            latency,
            in_flight,
            pool_size,
            pool_idle,
            pool_in_use,
            pool_max,
            pool_waiters,
            append_batch,
            audit_written,
            audit_lost,
            audit_refused,
            audit_write_failures,
            audit_queue,
            shed,
            panics,
            stale_reads,
            standby_fallbacks,
        }))
    }

    /// Records how many interactions one append wrote. The interaction append
    /// path (`LogInteraction`: 1, `BatchLogInteractions`, `ImportInteractions`)
    /// calls this once per committed batch.
    pub fn observe_append_batch(&self, interactions: usize) {
        self.0.append_batch.observe(interactions as f64);
    }

    /// `written` events committed; `queued` still wait.
    pub(crate) fn audit_events_written(&self, written: u64, queued: usize) {
        self.0.audit_written.inc_by(written);
        self.0
            .audit_queue
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    pub(crate) fn audit_events_lost(&self, lost: u64) {
        self.0.audit_lost.inc_by(lost);
    }

    pub(crate) fn audit_call_refused(&self) {
        self.0.audit_refused.inc();
    }

    pub(crate) fn audit_write_failed(&self) {
        self.0.audit_write_failures.inc();
    }

    /// A stale-tolerant read was answered by `server` ("standby" or
    /// "primary").
    pub(crate) fn stale_tolerant_read(&self, server: &str) {
        self.0.stale_reads.with_label_values(&[server]).inc();
    }

    /// A stale-tolerant read went to the primary for `reason` ("lagging" or
    /// "unavailable").
    pub(crate) fn standby_fallback(&self, reason: &str) {
        self.0.standby_fallbacks.with_label_values(&[reason]).inc();
    }

    pub(crate) fn call_shed(&self) {
        self.0.shed.inc();
    }

    pub(crate) fn call_panicked(&self) {
        self.0.panics.inc();
    }

    pub(crate) fn call_started(&self) {
        self.0.in_flight.inc();
    }

    pub(crate) fn call_finished(&self, service: &str, method: &str, code: i32, took: Duration) {
        let inner = &self.0;
        inner.in_flight.dec();
        let code = code_name(code);
        inner
            .requests
            .with_label_values(&[service, method, code])
            .inc();
        if code != "OK" {
            inner
                .errors
                .with_label_values(&[service, method, code])
                .inc();
        }
        inner
            .latency
            .with_label_values(&[service, method])
            .observe(took.as_secs_f64());
    }

    /// Copies the pool's current figures into the gauges; `waiting` is what
    /// `Db` counts (sqlx does not tell how many callers wait).
    pub fn observe_pool(&self, pool: &sqlx::PgPool, waiting: i64) {
        let inner = &self.0;
        inner.pool_waiters.set(waiting);
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        inner.pool_size.set(size);
        inner.pool_idle.set(idle);
        inner.pool_in_use.set((size - idle).max(0));
        inner
            .pool_max
            .set(i64::from(pool.options().get_max_connections()));
    }

    /// The Prometheus text exposition format of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.0.registry.gather(), &mut buffer)
            .expect("encoding to memory cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code_and_errors_apart() {
        let metrics = Metrics::new();
        metrics.call_started();
        metrics.call_finished("svc", "Get", 0, Duration::from_millis(3));
        metrics.call_started();
        metrics.call_finished("svc", "Get", 5, Duration::from_millis(3));
        metrics.observe_append_batch(7);
        let text = metrics.render();
        assert!(text.contains(r#"ck_grpc_requests_total{code="OK",method="Get",service="svc"} 1"#));
        assert!(
            text.contains(
                r#"ck_grpc_requests_total{code="NOT_FOUND",method="Get",service="svc"} 1"#
            )
        );
        assert!(
            text.contains(r#"ck_grpc_errors_total{code="NOT_FOUND",method="Get",service="svc"} 1"#)
        );
        assert!(!text.contains(r#"ck_grpc_errors_total{code="OK""#));
        assert!(
            text.contains(
                r#"ck_grpc_request_duration_seconds_count{method="Get",service="svc"} 2"#
            )
        );
        assert!(text.contains("ck_grpc_requests_in_flight 0"));
        assert!(text.contains("ck_append_batch_size_count 1"));
        assert!(text.contains("ck_append_batch_size_sum 7"));
    }

    #[test]
    fn code_names_follow_the_grpc_table() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(17), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
    }
}
