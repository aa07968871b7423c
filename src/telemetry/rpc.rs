//! The per-call tower layer around the gRPC router: one SERVER span per call
//! that continues the caller's W3C trace context, call metrics by method and
//! status code, an access log line, the `x-trace-id` response header, and
//! (for the customer-facing services) the call's access event.
//!
//! It is also where a call's limits are kept: admission (a service-wide
//! concurrency limit that sheds excess calls with RESOURCE_EXHAUSTED at
//! once), the deadline (the caller's `grpc-timeout`, bounded for unary calls
//! by the server's own limit; answered DEADLINE_EXCEEDED and handed to the
//! database so no statement outlives it), and the panic safety net (a
//! handler that panics answers INTERNAL, is counted and logged).

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    api::status::layer_status,
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

/// How much earlier than the caller's deadline the server answers, at most.
const EARLY_ANSWER: Duration = Duration::from_millis(100);

/// How long a shed caller is asked to wait before retrying (`RetryInfo`).
const SHED_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Whether a method streams requests, responses or both, as its
/// descriptor declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodShape {
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// The limits the layer holds every call to.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// The server's own limit on a unary call (`server.request_timeout_secs`).
    /// Streams are bounded by the caller's deadline and their idle timeouts
    /// instead, so a long import is not cut at the unary limit.
    pub unary_timeout: Duration,
    /// Calls of the contract's services served at once
    /// (`server.max_concurrent_calls`); more are shed. Watch streams, health
    /// and reflection are not counted.
    pub max_concurrent_calls: usize,
}

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
    /// The server's own limit on a unary call.
    timeout: Duration,
    /// Permits of calls admitted now.
    admission: Arc<Semaphore>,
    /// `/package.Service/Method` paths served. Other paths are labelled
    /// `unknown` in metrics, so a client cannot grow their cardinality.
    methods: HashMap<String, MethodShape>,
    propagator: TraceContextPropagator,
    /// Records access events when auditing is on.
    audit: Option<AuditLog>,
}

impl RpcLayer {
    pub fn new(
        metrics: Metrics,
        local_addr: SocketAddr,
        limits: CallLimits,
        methods: HashMap<String, MethodShape>,
    ) -> Self {
        RpcLayer {
            shared: Arc::new(Shared {
                metrics,
                local_addr,
                timeout: limits.unary_timeout,
                admission: Arc::new(Semaphore::new(limits.max_concurrent_calls.max(1))),
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
    S::Future: Send + 'static,
    ResBody: Body + Default + Send + 'static,
{
    type Response = Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future = RpcFuture<ResBody, S::Error>;

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
        let shape = shared.methods.get(path).copied();
        let labels = if shape.is_some() {
            (service.to_string(), method.to_string())
        } else {
            ("unknown".to_string(), "unknown".to_string())
        };
        let traced = service != UNTRACED_SERVICE;
        let shape = shape.unwrap_or_default();
        let streaming = shape.client_streaming || shape.server_streaming;
        // The caller's deadline is answered a little early (a tenth, at most
        // 100 ms), so that DEADLINE_EXCEEDED reaches the caller before its
        // own timer, started before the request left, gives up on the call.
        let caller_timeout =
            grpc_timeout(request.headers()).map(|t| t.saturating_sub((t / 10).min(EARLY_ANSWER)));
        let timeout = if streaming {
            caller_timeout
        } else {
            Some(caller_timeout.map_or(shared.timeout, |t| t.min(shared.timeout)))
        };

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

        let served = shared.methods.contains_key(path);
        if !served {
            // tonic's routers answer an unknown method of a known service
            // with a bare UNIMPLEMENTED; every answer carries ErrorInfo.
            let call = Call::start(&shared, labels, &span, None, None);
            return RpcFuture::answered(
                crate::api::unimplemented::unknown_method().into_http(),
                call,
                trace_id,
            );
        }
        // The contract's own methods are admitted against the limit; health
        // and reflection must answer under any load, and a watch stream
        // holds no connection while it waits.
        let limited = served && !path.starts_with("/grpc.") && !shape.server_streaming;
        let permit = if limited {
            match shared.admission.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    shared.metrics.call_shed();
                    let call = Call::start(&shared, labels, &span, timeout, None);
                    return RpcFuture::answered(
                        layer_status(
                            Code::ResourceExhausted,
                            crate::error::ErrorReason::Overloaded,
                            "the service is at its concurrency limit; retry with backoff",
                            Some(SHED_RETRY_DELAY),
                        )
                        .into_http(),
                        call,
                        trace_id,
                    );
                }
            }
        } else {
            None
        };

        // Only methods the server serves: a made-up path under an audited
        // service is answered UNIMPLEMENTED without touching any data.
        let audit = shared
            .audit
            .as_ref()
            .filter(|_| served && AuditLog::audits(path))
            .map(|log| log.begin(path, request.headers(), trace_id.as_deref()));
        if let Some(audit) = &audit {
            request.extensions_mut().insert(audit.note());
        }
        // The method, for the per-method permissions of calling systems
        // (tonic's interceptors do not see the path).
        let called = CalledMethod(Arc::from(request.uri().path()));
        request.extensions_mut().insert(called);

        let call = Call::start(&shared, labels, &span, timeout, audit);
        let deadline = timeout.map(|t| tokio::time::Instant::from_std(call.started) + t);
        let handler = crate::store::with_deadline(deadline, self.inner.call(request));
        RpcFuture {
            state: State::Running(Box::pin(handler.instrument(span))),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            body_deadline: shape.server_streaming,
            permit,
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
    /// The call's time limit, if it has one.
    deadline: Option<Duration>,
    finished: bool,
    audit: Option<AuditedCall>,
}

impl Call {
    /// A call that starts now, counted as started; `deadline` is its time
    /// limit, if it has one.
    fn start(
        shared: &Arc<Shared>,
        (service, method): (String, String),
        span: &Span,
        deadline: Option<Duration>,
        audit: Option<AuditedCall>,
    ) -> Call {
        shared.metrics.call_started();
        Call {
            shared: shared.clone(),
            service,
            method,
            span: span.clone(),
            started: Instant::now(),
            deadline,
            finished: false,
            audit,
        }
    }

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
    /// A call dropped before its status was sent was cut off by the client:
    /// after its deadline passed, or going away before.
    fn drop(&mut self) {
        if !self.finished {
            // A caller's timer starts before its request leaves, so it may
            // give up a little before the server's deadline.
            let code = if self.deadline.is_some_and(|deadline| {
                self.started.elapsed() + (deadline / 10).min(EARLY_ANSWER) >= deadline
            }) {
                DEADLINE_EXCEEDED
            } else {
                CANCELLED
            };
            self.finish(code);
        }
    }
}

type Handler<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

enum State<B, E> {
    /// The handler is running.
    Running(Handler<B, E>),
    /// The layer answered itself (the call was shed, or its method is unknown).
    Answered(Option<Response<B>>),
}

/// The answer to a call: the handler's, or the layer's own when the
/// deadline passes first or the handler panics.
pub struct RpcFuture<B, E> {
    state: State<B, E>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A server stream keeps the deadline for its messages.
    body_deadline: bool,
    /// Held while the handler runs.
    permit: Option<OwnedSemaphorePermit>,
    call: Option<Call>,
    trace_id: Option<String>,
}

/// Logs a panic caught in a call and counts it. The panic hook
/// (`telemetry::log_panics`) has already logged where it happened.
fn panicked(call: Option<&Call>) -> Status {
    if let Some(call) = call {
        call.shared.metrics.call_panicked();
        let _entered = call.span.enter();
        tracing::error!(
            rpc.service = %call.service,
            rpc.method = %call.method,
            "handler panicked; answered INTERNAL"
        );
    }
    layer_status(
        Code::Internal,
        crate::error::ErrorReason::Internal,
        "internal error; it has been logged",
        None,
    )
}

/// True once `deadline` has passed (registering a wake-up until then).
fn expired(deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>, cx: &mut Context<'_>) -> bool {
    deadline
        .as_mut()
        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
}

fn deadline_exceeded() -> Status {
    layer_status(
        Code::DeadlineExceeded,
        crate::error::ErrorReason::DeadlineExceeded,
        "the call did not finish before its deadline",
        None,
    )
}

// The response waiting in `State::Answered` is moved, never pinned.
impl<B, E> RpcFuture<B, E> {
    /// The layer's own answer, given without calling the handler.
    fn answered(response: Response<B>, call: Call, trace_id: Option<String>) -> Self {
        RpcFuture {
            state: State::Answered(Some(response)),
            deadline: None,
            body_deadline: false,
            permit: None,
            call: Some(call),
            trace_id,
        }
    }
}

impl<B, E> Unpin for RpcFuture<B, E> {}

impl<B, E> Future for RpcFuture<B, E>
where
    B: Body + Default,
{
    type Output = Result<Response<RpcBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = match &mut this.state {
            State::Answered(response) => Ok(response.take().unwrap_or_default()),
            State::Running(handler) => {
                match catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(cx))) {
                    Ok(Poll::Ready(result)) => result,
                    // Dropping the handler ends its transaction; its
                    // statements were bounded by the same deadline.
                    Ok(Poll::Pending) if expired(&mut this.deadline, cx) => {
                        Ok(deadline_exceeded().into_http())
                    }
                    Ok(Poll::Pending) => return Poll::Pending,
                    Err(_) => Ok(panicked(this.call.as_ref()).into_http()),
                }
            }
        };
        this.state = State::Answered(None);
        this.permit = None;
        let mut call = this.call.take();
        let deadline = if this.body_deadline {
            this.deadline.take()
        } else {
            None
        };
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
                    RpcBody {
                        inner: body,
                        call,
                        deadline,
                        ended: false,
                    },
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
    /// The response body; finishes the call when the trailers pass. A server
    /// stream ends with DEADLINE_EXCEEDED when the caller's deadline passes,
    /// and with INTERNAL when producing a message panics.
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        ended: bool,
    }
}

/// A trailers frame carrying `status`.
fn trailers<D>(status: Status) -> Frame<D> {
    let mut headers = HeaderMap::new();
    // Only fails for metadata that is not a valid header, which the layer
    // never builds; the status code alone is then sent.
    let _ = status.add_header(&mut headers);
    if headers.get("grpc-status").is_none() {
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    Frame::trailers(headers)
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        let mut inner = this.inner;
        let frame = match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll_frame(cx))) {
            Ok(Poll::Ready(frame)) => frame,
            Ok(Poll::Pending) if expired(this.deadline, cx) => {
                *this.ended = true;
                Some(Ok(trailers(deadline_exceeded())))
            }
            Ok(Poll::Pending) => return Poll::Pending,
            Err(_) => {
                *this.ended = true;
                Some(Ok(trailers(panicked(this.call.as_ref()))))
            }
        };
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
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(metrics: &Metrics, max_concurrent_calls: usize) -> RpcLayer {
        RpcLayer::new(
            metrics.clone(),
            "127.0.0.1:50051".parse().unwrap(),
            CallLimits {
                unary_timeout: Duration::from_secs(30),
                max_concurrent_calls,
            },
            HashMap::from([("/pkg.Svc/Get".to_string(), MethodShape::default())]),
        )
    }

    fn call() -> Request<tonic::body::Body> {
        Request::builder()
            .uri("/pkg.Svc/Get")
            .body(tonic::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_and_is_counted() {
        let metrics = Metrics::new();
        let mut service =
            layer(&metrics, 8).layer(tower::service_fn(|_: Request<tonic::body::Body>| async {
                if true {
                    panic!("a bug in a handler");
                }
                Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::empty()))
            }));
        let response = service.call(call()).await.unwrap();
        assert_eq!(status_code(response.headers()), Some(13));
        assert!(metrics.render().contains("ck_grpc_panics_total 1"));
        // The service still answers the next call.
        let response = service.call(call()).await.unwrap();
        assert_eq!(status_code(response.headers()), Some(13));
        assert!(metrics.render().contains("ck_grpc_panics_total 2"));
    }

    #[tokio::test]
    async fn a_call_beyond_the_limit_is_shed_without_reaching_the_handler() {
        let metrics = Metrics::new();
        let (release, released) = tokio::sync::watch::channel(false);
        let mut service =
            layer(&metrics, 1).layer(tower::service_fn(move |_: Request<tonic::body::Body>| {
                let mut released = released.clone();
                async move {
                    let _ = released.wait_for(|r| *r).await;
                    Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::empty()))
                }
            }));
        let first = tokio::spawn(service.call(call()));
        let shed = service.call(call()).await.unwrap();
        assert_eq!(status_code(shed.headers()), Some(8));
        assert!(metrics.render().contains("ck_grpc_calls_shed_total 1"));
        release.send(true).unwrap();
        first.await.unwrap().unwrap();
        // The permit is back: the next call is admitted.
        let admitted = service.call(call()).await.unwrap();
        assert_eq!(status_code(admitted.headers()), None);
    }

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
