//! Traces, logs and the lifecycle of the real binary: `customer-knowledge
//! serve` runs as a child process (telemetry is process-wide), exports to an
//! OTLP/gRPC receiver running in the test, writes JSON logs to stdout and is
//! stopped with SIGTERM.

use std::{
    collections::HashMap,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use customer_knowledge::pb::v1::{
    self as pb, customer::Kind, customer_service_client::CustomerServiceClient,
};
use futures::StreamExt;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use serde_json::Value;
use sqlx::Connection;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    task::JoinHandle,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{Bearer, Caller, fresh_database, http_get, sample, test_env};

/// The grace period the child runs with; it must exit within it.
const GRACE_SECS: u64 = 20;

/// Values seeded into the customer that must never leave in telemetry.
const PII: [&str; 7] = [
    "Wei Zhang-Q7X2",
    "张伟强",
    "+86 139 5550 7321",
    "11010119900307X7Q2",
    "wei.zhang.q7x2@example.cn",
    "北京市朝阳区建国路88号",
    "CIF-99887766",
];

/// An OTLP/gRPC trace receiver that keeps every export request.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a port of 127.0.0.1 chosen by the system.
    async fn start() -> (Collector, u16) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (collector, port)
    }

    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.received.lock().unwrap().clone()
    }
}

/// `customer-knowledge serve` as a child process with JSON logs on stdout.
struct ServiceProcess {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
    port: u16,
    admin_port: u16,
    database_url: String,
}

impl ServiceProcess {
    async fn start(changes: &[(&str, String)]) -> ServiceProcess {
        let database_url = fresh_database().await;
        let mut env: HashMap<String, String> = test_env(&database_url);
        env.insert("CK__LOG__FORMAT".into(), "json".into());
        env.insert(
            "CK__SERVER__SHUTDOWN_GRACE_SECS".into(),
            GRACE_SECS.to_string(),
        );
        for (key, value) in changes {
            env.insert(key.to_string(), value.clone());
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_customer-knowledge"))
            .arg("serve")
            .env_clear()
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start customer-knowledge serve");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn({
            let lines = lines.clone();
            async move {
                let mut stdout = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = stdout.next_line().await {
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }
        });
        let (mut port, mut admin_port) = (None, None);
        while port.is_none() || admin_port.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await
                .expect("the service starts")
                .expect("the service exited before serving");
            let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let logged_port = json["port"].as_u64().map(|p| p as u16);
            if json["message"] == "serving gRPC" {
                port = logged_port;
            } else if json["message"] == "serving admin HTTP" {
                admin_port = logged_port;
            }
        }
        ServiceProcess {
            child,
            lines,
            reader,
            port: port.unwrap(),
            admin_port: admin_port.unwrap(),
            database_url,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .expect("connect to the service")
    }

    /// Sends SIGTERM, as Kubernetes does when it stops a pod.
    fn sigterm(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// SIGTERM; waits (at most the grace period) for the exit and returns
    /// its status with every line written to stdout.
    async fn terminate(self) -> (ExitStatus, Vec<String>) {
        self.sigterm();
        self.exited().await
    }

    /// Waits (at most the grace period) for the exit after SIGTERM.
    async fn exited(mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(Duration::from_secs(GRACE_SECS), self.child.wait())
            .await
            .expect("the service exits within its grace period")
            .unwrap();
        self.reader.await.unwrap();
        let lines = self.lines.lock().unwrap().clone();
        (status, lines)
    }
}

fn random_hex(digits: usize) -> String {
    format!("{:032x}", rand::random::<u128>())[..digits].to_string()
}

fn with_traceparent<T>(message: T, trace_id: &str, parent_span_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span_id}-01")
            .parse()
            .unwrap(),
    );
    request
}

fn customer_with_pii() -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: format!("{} {}", PII[0], PII[1]),
            kind: Kind::Individual as i32,
            home_branch: "B01".into(),
            relationship_manager: "E1001".into(),
            phone: PII[2].into(),
            national_id: PII[3].into(),
            email: PII[4].into(),
            address: PII[5].into(),
            external_ids: vec![pb::ExternalId {
                system: "CIF".into(),
                value: PII[6].into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn trace_header(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("x-trace-id")
        .expect("the response carries x-trace-id")
        .to_str()
        .unwrap()
        .to_string()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|KeyValue { value, .. }| value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attribute(span, key) {
        Some(Any::StringValue(s)) => s,
        other => panic!("{key} of {} is {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Any::IntValue(i)) => *i,
        other => panic!("{key} of {} is {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one SERVER span of `method` in trace `trace_id`.
fn server_span<'a>(spans: &'a [Span], trace_id: &str, method: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32 && hex(&s.trace_id) == trace_id)
        .filter(|s| attribute(s, "rpc.method").is_some() && text(s, "rpc.method") == method)
        .collect();
    assert_eq!(found.len(), 1, "one server span of {method} in {trace_id}");
    found[0]
}

/// True when `span` descends from `ancestor` through spans of the export.
fn descends_from(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut current = span;
    loop {
        if current.parent_span_id == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == current.parent_span_id) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_continuing_the_callers_trace_without_pii() {
    let (collector, collector_port) = Collector::start().await;
    let service = ServiceProcess::start(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{collector_port}"),
        ),
        ("OTEL_SERVICE_NAME", "ck-under-test".into()),
    ])
    .await;
    let channel = service.channel().await;
    let mut client =
        CustomerServiceClient::with_interceptor(channel.clone(), Bearer::of(&Caller::rm("B01")));

    // A call that continues the caller's trace.
    let (trace_id, parent_span_id) = (random_hex(32), random_hex(16));
    let created = client
        .create_customer(with_traceparent(
            customer_with_pii(),
            &trace_id,
            &parent_span_id,
        ))
        .await
        .unwrap();
    assert_eq!(trace_header(created.metadata()), trace_id);
    let name = created.into_inner().name;

    // Reads that put PII in the request: search by name, lookup by CIF.
    let read_trace = random_hex(32);
    client
        .search_customers(with_traceparent(
            pb::SearchCustomersRequest {
                query: PII[0].into(),
                ..Default::default()
            },
            &read_trace,
            &random_hex(16),
        ))
        .await
        .unwrap();
    client
        .lookup_customer(with_traceparent(
            pb::LookupCustomerRequest {
                system: "CIF".into(),
                value: PII[6].into(),
            },
            &read_trace,
            &random_hex(16),
        ))
        .await
        .unwrap();

    // A trailers-only error, and a call rejected by the auth interceptor.
    let missing_trace = random_hex(32);
    // An admin reaches every customer, so a missing one is NOT_FOUND.
    let missing =
        CustomerServiceClient::with_interceptor(channel.clone(), Bearer::of(&Caller::admin()))
            .get_customer(with_traceparent(
                pb::GetCustomerRequest {
                    name: "customers/nobody".into(),
                    ..Default::default()
                },
                &missing_trace,
                &random_hex(16),
            ))
            .await
            .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(trace_header(missing.metadata()), missing_trace);
    let anonymous_trace = random_hex(32);
    let anonymous = CustomerServiceClient::new(channel.clone())
        .get_customer(with_traceparent(
            pb::GetCustomerRequest {
                name: name.clone(),
                ..Default::default()
            },
            &anonymous_trace,
            &random_hex(16),
        ))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // Without traceparent the server starts a trace and names it.
    let fresh = client
        .get_customer(pb::GetCustomerRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let fresh_trace = trace_header(fresh.metadata());
    assert_eq!(fresh_trace.len(), 32);
    assert_ne!(fresh_trace, trace_id);

    drop((client, channel));
    let service_port = service.port;
    let (status, lines) = service.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let flushed = lines.iter().position(|l| l.contains("telemetry flushed"));
    let stopped = lines
        .iter()
        .position(|l| l.contains(r#""message":"stopped""#));
    assert!(
        matches!((stopped, flushed), (Some(s), Some(f)) if s < f),
        "flush after the drain: {lines:#?}"
    );

    let requests = collector.requests();
    assert!(!requests.is_empty(), "the collector received spans");
    for request in &requests {
        for resource in &request.resource_spans {
            let service_name = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.as_ref());
            assert_eq!(
                service_name,
                Some(&Any::StringValue("ck-under-test".into()))
            );
        }
        // The bytes a collector receives: no seeded PII value, in any field.
        let bytes = request.encode_to_vec();
        for value in PII {
            assert!(
                !bytes
                    .windows(value.len())
                    .any(|window| window == value.as_bytes()),
                "{value:?} was exported"
            );
        }
    }
    let spans: Vec<Span> = requests
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();

    let create = server_span(&spans, &trace_id, "CreateCustomer");
    assert_eq!(hex(&create.parent_span_id), parent_span_id);
    assert_eq!(
        create.name,
        "bank.customerknowledge.v1.CustomerService/CreateCustomer"
    );
    assert_eq!(text(create, "rpc.system"), "grpc");
    assert_eq!(
        text(create, "rpc.service"),
        "bank.customerknowledge.v1.CustomerService"
    );
    assert_eq!(int(create, "rpc.grpc.status_code"), 0);
    assert_eq!(text(create, "server.address"), "127.0.0.1");
    assert_eq!(int(create, "server.port"), i64::from(service_port));

    let statements: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id && attribute(s, "db.system").is_some())
        .collect();
    assert!(
        statements
            .iter()
            .any(|s| text(s, "db.operation") == "INSERT" && text(s, "db.sql.table") == "customers"),
        "an INSERT into customers is traced"
    );
    for statement in &statements {
        assert_eq!(text(statement, "db.system"), "postgresql");
        assert!(
            ["SELECT", "INSERT", "UPDATE", "DELETE"].contains(&text(statement, "db.operation"))
        );
        assert!(!text(statement, "db.sql.table").is_empty());
        assert_eq!(statement.kind, SpanKind::Client as i32);
        assert!(
            descends_from(&spans, statement, create),
            "{} descends from the server span",
            statement.name
        );
        for kv in &statement.attributes {
            assert!(
                !["db.statement", "db.query.text"].contains(&kv.key.as_str()),
                "no SQL text is exported"
            );
        }
    }

    for method in ["SearchCustomers", "LookupCustomer"] {
        let read = server_span(&spans, &read_trace, method);
        assert_eq!(int(read, "rpc.grpc.status_code"), 0);
        assert!(
            spans
                .iter()
                .any(|s| attribute(s, "db.operation").is_some() && descends_from(&spans, s, read)),
            "{method} has database spans"
        );
    }
    let not_found = server_span(&spans, &missing_trace, "GetCustomer");
    assert_eq!(
        int(not_found, "rpc.grpc.status_code"),
        Code::NotFound as i64
    );
    let rejected = server_span(&spans, &anonymous_trace, "GetCustomer");
    assert_eq!(
        int(rejected, "rpc.grpc.status_code"),
        Code::Unauthenticated as i64
    );
    let started_here = server_span(&spans, &fresh_trace, "GetCustomer");
    assert!(started_here.parent_span_id.is_empty(), "a new trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_with_the_trace_id_and_sigterm_exits_cleanly() {
    // Exporting is off (no endpoint): ids still reach the logs.
    let service = ServiceProcess::start(&[]).await;
    let channel = service.channel().await;
    let mut client =
        CustomerServiceClient::with_interceptor(channel, Bearer::of(&Caller::rm("B01")));
    let trace_id = random_hex(32);
    let created = client
        .create_customer(with_traceparent(
            customer_with_pii(),
            &trace_id,
            &random_hex(16),
        ))
        .await
        .unwrap();
    assert_eq!(trace_header(created.metadata()), trace_id);
    drop(client);

    let (status, lines) = service.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let records: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for record in &records {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(record.get(key).is_some(), "{key} missing: {record}");
        }
    }
    let in_call: Vec<&Value> = records
        .iter()
        .filter(|r| r["trace_id"] == trace_id.as_str())
        .collect();
    assert!(!in_call.is_empty(), "a line carries the caller's trace id");
    for record in &in_call {
        assert_eq!(record["span_id"].as_str().map(str::len), Some(16));
    }
    assert!(in_call.iter().any(|r| r["message"] == "call finished"
        && r["rpc.method"] == "CreateCustomer"
        && r["code"] == "OK"));
    for value in PII {
        assert!(
            !lines.iter().any(|line| line.contains(value)),
            "{value:?} was logged"
        );
    }
    // SIGTERM → NOT_SERVING → drain → stop, in that order.
    let at = |message: &str| {
        records
            .iter()
            .position(|r| r["message"] == message)
            .unwrap_or_else(|| panic!("{message:?} not logged"))
    };
    assert!(at("shutting down: NOT_SERVING, draining in-flight calls") < at("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_call_in_flight_then_flushes_its_span_and_exits() {
    let (collector, collector_port) = Collector::start().await;
    let service = ServiceProcess::start(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{collector_port}"),
    )])
    .await;
    let channel = service.channel().await;
    let mut client =
        CustomerServiceClient::with_interceptor(channel.clone(), Bearer::of(&Caller::rm("B01")));
    let name = client
        .create_customer(customer_with_pii())
        .await
        .unwrap()
        .into_inner()
        .name;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut status = watch.next().await.unwrap().unwrap().status;
    while status != ServingStatus::Serving as i32 {
        status = watch.next().await.unwrap().unwrap().status;
    }

    // Hold the customer's row lock so an update stays in flight.
    let mut blocker = sqlx::PgConnection::connect(&service.database_url)
        .await
        .unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(name.trim_start_matches("customers/"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let trace_id = random_hex(32);
    let in_flight = tokio::spawn(async move {
        client
            .update_customer(with_traceparent(
                pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        name,
                        display_name: "Renamed".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                &trace_id,
                &random_hex(16),
            ))
            .await
            .map(|response| trace_header(response.metadata()))
    });
    let mut in_flight_count = 0.0;
    for _ in 0..100 {
        let (_, metrics) = http_get(service.admin_port, "/metrics").await;
        in_flight_count = sample(&metrics, "ck_grpc_requests_in_flight");
        if in_flight_count >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_flight_count, 2.0, "the health watch and the update");

    service.sigterm();
    let status = watch.next().await.unwrap().unwrap().status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    drop((watch, health));
    assert_eq!(http_get(service.admin_port, "/readyz").await.0, 503);
    assert!(
        !service
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(r#""message":"stopped""#)),
        "the drain waits for the update"
    );

    tx.rollback().await.unwrap();
    let trace_id = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes during the drain");
    drop(channel);
    let (exit, lines) = service.exited().await;
    assert!(exit.success(), "exit status {exit:?}");
    let at = |message: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!(r#""message":"{message}""#)))
            .unwrap_or_else(|| panic!("{message:?} not logged: {lines:#?}"))
    };
    assert!(at("shutting down: NOT_SERVING, draining in-flight calls") < at("stopped"));
    assert!(at("stopped") < at("telemetry flushed"));

    let spans: Vec<Span> = collector
        .requests()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let update = server_span(&spans, &trace_id, "UpdateCustomer");
    assert_eq!(int(update, "rpc.grpc.status_code"), 0);
}
