//! The per-call tower layer around the gRPC router: one SERVER span per call
//! that continues the caller's W3C trace context, call metrics by method and
//! status code, an access log line, the `x-trace-id` response header, and
//! (for the customer-facing services) the call's access event.

use std::{
    collections::HashSet,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    audit::{AuditLog, AuditedCall},
    metrics::{Metrics, code_name},
};

/// The response header that carries the call's trace id (32 hex digits), so
/// an operator can look the call up from `grpcurl -v`.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;

/// Health probes arrive every few seconds from every kubelet; they are
/// counted but neither traced nor access-logged.
const UNTRACED_SERVICE: &str = "grpc.health.v1.Health";

/// The gRPC path of the call (`/package.Service/Method`), in the request's
/// extensions for everything behind the layer.
#[derive(Debug, Clone)]
pub struct CalledMethod(pub Arc<str>);

/// Wraps the router; see the module documentation.
#[derive(Clone)]
pub struct RpcLayer {
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Metrics,
    /// The listener's address, for `server.address`/`server.port` when a
    /// request carries no `:authority`.
    local_addr: SocketAddr,
    /// The server's own limit on a call, as tonic's timeout layer (which sits
    /// outside this one) applies it.
    timeout: Duration,
    /// `/package.Service/Method` paths served. Other paths are labelled
    /// `unknown` in metrics, so a client cannot grow their cardinality.
    methods: HashSet<String>,
    propagator: TraceContextPropagator,
    /// Records access events when auditing is on.
    audit: Option<AuditLog>,
}

impl RpcLayer {
    pub fn new(
        metrics: Metrics,
        local_addr: SocketAddr,
        timeout: Duration,
        methods: HashSet<String>,
    ) -> Self {
        RpcLayer {
            shared: Arc::new(Shared {
                metrics,
                local_addr,
                timeout,
                methods,
                propagator: TraceContextPropagator::new(),
                audit: None,
            }),
        }
    }

    /// Records an access event for every call of the audited services.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("with_audit is called while building, before the layer is cloned")
            .audit = Some(audit);
        self
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Reads W3C trace context from request headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future = RpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = self.shared.clone();
        let path = request.uri().path();
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("", ""));
        let labels = if shared.methods.contains(path) {
            (service.to_string(), method.to_string())
        } else {
            ("unknown".to_string(), "unknown".to_string())
        };
        let traced = service != UNTRACED_SERVICE;
        let deadline =
            grpc_timeout(request.headers()).map_or(shared.timeout, |t| t.min(shared.timeout));

        let (span, trace_id) = if traced {
            let (address, port) = server_address(&request, shared.local_addr);
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %path.trim_start_matches('/'),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = Empty,
                server.address = address,
                server.port = port,
            );
            let parent = shared
                .propagator
                .extract(&HeaderExtractor(request.headers()));
            let parent_trace = parent.span().span_context().clone();
            // Fails only when no tracing subscriber takes spans (tests of
            // the library); the call is then simply untraced.
            let _ = span.set_parent(parent);
            let own = span.context().span().span_context().clone();
            let trace_id = [own, parent_trace]
                .into_iter()
                .find(|c| c.is_valid())
                .map(|c| c.trace_id().to_string());
            (span, trace_id)
        } else {
            (Span::none(), None)
        };

        // Only methods the server serves: a made-up path under an audited
        // service is answered UNIMPLEMENTED without touching any data.
        let audit = shared
            .audit
            .as_ref()
            .filter(|_| shared.methods.contains(path) && AuditLog::audits(path))
            .map(|log| log.begin(path, request.headers(), trace_id.as_deref()));
        if let Some(audit) = &audit {
            request.extensions_mut().insert(audit.note());
        }
        // The method, for the per-method permissions of calling systems
        // (tonic's interceptors do not see the path).
        let called = CalledMethod(Arc::from(request.uri().path()));
        request.extensions_mut().insert(called);

        shared.metrics.call_started();
        let call = Call {
            shared: shared.clone(),
            service: labels.0,
            method: labels.1,
            span: span.clone(),
            started: Instant::now(),
            deadline,
            finished: false,
            audit,
        };
        RpcFuture {
            inner: self.inner.call(request).instrument(span),
            call: Some(call),
            trace_id,
        }
    }
}

/// `server.address` and `server.port`: the authority the client called,
/// else the listener's address.
fn server_address<B>(request: &Request<B>, local: SocketAddr) -> (String, i64) {
    let authority = request.uri().authority().cloned().or_else(|| {
        request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse().ok())
    });
    match authority {
        Some(a) => (
            a.host().to_string(),
            a.port_u16().map_or(i64::from(local.port()), i64::from),
        ),
        None => (local.ip().to_string(), i64::from(local.port())),
    }
}

/// The caller's deadline from `grpc-timeout` (`<digits><H|M|S|m|u|n>`).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The status code in `grpc-status`, `UNKNOWN` when absent or malformed.
fn status_code(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status").map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(UNKNOWN)
    })
}

/// One call from arrival to status: records metrics, the span's status and
/// the access log exactly once, even when the call is dropped half way.
struct Call {
    shared: Arc<Shared>,
    service: String,
    method: String,
    span: Span,
    started: Instant,
    deadline: Duration,
    finished: bool,
    audit: Option<AuditedCall>,
}

impl Call {
    fn finish(&mut self, code: i32) {
        if self.finished {
            return;
        }
        self.finished = true;
        let took = self.started.elapsed();
        self.shared
            .metrics
            .call_finished(&self.service, &self.method, code, took);
        if let Some(audit) = self.audit.take() {
            audit.finish(code);
        }
        let span = std::mem::replace(&mut self.span, Span::none());
        if span.is_none() {
            return;
        }
        span.record("rpc.grpc.status_code", i64::from(code));
        // Server spans are errors only for codes that mean the server failed
        // (OpenTelemetry's gRPC conventions); NOT_FOUND and the like are
        // answers, not failures.
        if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
            span.record("otel.status_code", "error");
        }
        let _entered = span.enter();
        tracing::info!(
            target: "customer_knowledge::access",
            duration_ms = (took.as_secs_f64() * 1e6).round() / 1e3,
            code = code_name(code),
            rpc.service = %self.service,
            rpc.method = %self.method,
            rpc.grpc.status_code = code,
            "call finished"
        );
    }
}

impl Drop for Call {
    /// A call dropped before its status was sent was cut off: by tonic's
    /// timeout layer once the deadline passed, else by the client going away.
    fn drop(&mut self) {
        if !self.finished {
            let code = if self.started.elapsed() >= self.deadline {
                DEADLINE_EXCEEDED
            } else {
                CANCELLED
            };
            self.finish(code);
        }
    }
}

pin_project! {
    pub struct RpcFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        call: Option<Call>,
        trace_id: Option<String>,
    }
}

impl<F, ResBody, E> Future for RpcFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<RpcBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(value) = this
                    .trace_id
                    .as_deref()
                    .and_then(|id| HeaderValue::from_str(id).ok())
                {
                    parts.headers.insert(TRACE_ID_HEADER, value);
                }
                // Trailers-only responses (most errors) carry the status in
                // the headers; the others in the trailers after the body.
                if let Some(code) = status_code(&parts.headers)
                    && let Some(mut call) = call.take()
                {
                    call.finish(code);
                }
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    RpcBody { inner: body, call },
                )))
            }
            Err(e) => {
                if let Some(mut call) = call {
                    call.finish(UNKNOWN);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// The response body; finishes the call when the trailers pass.
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| status_code(trailers).unwrap_or(UNKNOWN)),
            Some(Err(_)) | None => Some(UNKNOWN),
        };
        if let Some(code) = code
            && let Some(mut call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let timeout = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(timeout("5x"), None);
        assert_eq!(timeout("S"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn status_comes_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(status_code(&headers), Some(5));
        headers.insert("grpc-status", HeaderValue::from_static("five"));
        assert_eq!(status_code(&headers), Some(UNKNOWN));
    }
}
