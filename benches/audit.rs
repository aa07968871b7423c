//! What the access audit costs a read: GetCustomer through the real server
//! with auditing on and with it off, side by side in one run, against the
//! Postgres cluster at BENCH_DATABASE_URL (a base URL ending in `/`). Each
//! server gets its own fresh database; rounds alternate (off, on, off, on, …)
//! so that drift of the machine hits both alike.
//!
//!   BENCH_DATABASE_URL=$(scripts/postgres.sh bench) cargo bench --bench audit
//!
//! Knobs: BENCH_CALLS (calls per round, 20000), BENCH_CONCURRENCY (32),
//! BENCH_ROUNDS (3), BENCH_CUSTOMERS (100). It prints `RESULT key=value`
//! lines and the on/off ratio. Numbers from a shared or laptop machine are
//! only comparable within one run.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use customer_knowledge::{
    config::Settings,
    pb::v1::{self as pb, customer_service_client::CustomerServiceClient},
    startup::Application,
};
use sqlx::{Connection, PgConnection, PgPool};
use tonic::{Request, Status, service::Interceptor, transport::Channel};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Calls as a relationship manager of B01 in trusted-headers mode, with a
/// declared purpose (recorded with every audited call).
#[derive(Clone)]
struct RelationshipManager;

impl Interceptor for RelationshipManager {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let m = request.metadata_mut();
        m.insert("x-employee-id", "E1001".parse().unwrap());
        m.insert("x-branch", "B01".parse().unwrap());
        m.insert("x-roles", "relationship_manager".parse().unwrap());
        m.insert("x-purpose", "SERVICE_REQUEST".parse().unwrap());
        Ok(request)
    }
}

type Client = CustomerServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, RelationshipManager>,
>;

struct Server {
    client: Client,
    names: Vec<String>,
    db: PgPool,
}

async fn start(base: &str, audit: bool, customers: usize) -> anyhow::Result<Server> {
    let db_name = format!("ck_bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&format!("{base}postgres")).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin)
        .await?;
    let database_url = format!("{base}{db_name}");
    let env: HashMap<String, String> = [
        ("DATABASE_URL", database_url.as_str()),
        ("CK__SERVER__GRPC_ADDR", "127.0.0.1:0"),
        ("CK__SERVER__ADMIN_ADDR", "127.0.0.1:0"),
        ("CK__AUTH__MODE", "trusted_headers"),
        ("CK__DATABASE__MAX_CONNECTIONS", "40"),
        ("CK__LOG__LEVEL", "warn"),
        ("CK__AUDIT__ENABLED", if audit { "true" } else { "false" }),
        (
            "CK__AUDIT__PSEUDONYM_KEY",
            "bench-pseudonym-key-of-at-least-32-bytes",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let app = Application::build(Settings::load_from(None, &env)?).await?;
    let addr = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let channel = Channel::from_shared(addr)?.connect().await?;
    let mut client = CustomerServiceClient::with_interceptor(channel, RelationshipManager);
    let mut names = Vec::with_capacity(customers);
    for i in 0..customers {
        let created = client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: format!("Bench customer {i}"),
                    kind: pb::customer::Kind::Individual as i32,
                    home_branch: "B01".into(),
                    phone: "+86 138 0013 8000".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        names.push(created.name);
    }
    Ok(Server {
        client,
        names,
        db: PgPool::connect(&database_url).await?,
    })
}

/// One round of `calls` GetCustomer calls by `concurrency` callers sharing
/// one HTTP/2 connection: calls per second and every latency.
async fn round(
    server: &Server,
    calls: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = server.client.clone();
        let names = server.names.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in (worker..calls).step_by(concurrency) {
                let request = pb::GetCustomerRequest {
                    name: names[n % names.len()].clone(),
                    ..Default::default()
                };
                let t = Instant::now();
                client.get_customer(request).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, Status>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((calls as f64 / started.elapsed().as_secs_f64(), latencies))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::var("BENCH_DATABASE_URL").map_err(|_| {
        anyhow::anyhow!(
            "set BENCH_DATABASE_URL, e.g. BENCH_DATABASE_URL=$(scripts/postgres.sh bench)"
        )
    })?;
    let calls = knob("BENCH_CALLS", 20_000);
    let concurrency = knob("BENCH_CONCURRENCY", 32);
    let rounds = knob("BENCH_ROUNDS", 3);
    let customers = knob("BENCH_CUSTOMERS", 100);

    let off = start(&base, false, customers).await?;
    let on = start(&base, true, customers).await?;
    // Warm both (connections, plans) before measuring.
    round(&off, 1000, concurrency).await?;
    round(&on, 1000, concurrency).await?;

    let mut figures = [(0.0, Vec::new()), (0.0, Vec::new())];
    for r in 0..rounds {
        for (i, server) in [&off, &on].into_iter().enumerate() {
            let (rate, latencies) = round(server, calls, concurrency).await?;
            println!(
                "round {}: auditing {}: {rate:.0} GetCustomer/s",
                r + 1,
                if i == 0 { "off" } else { "on " }
            );
            figures[i].0 += rate / rounds as f64;
            figures[i].1.extend(latencies);
        }
    }
    // The writer catches up after the load: how far behind was it?
    let expected = (calls * rounds + 1000 + customers) as i64;
    let waited = Instant::now();
    let mut written = 0;
    while waited.elapsed() < Duration::from_secs(60) {
        written = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM access_events")
            .fetch_one(&on.db)
            .await?;
        if written >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lag = waited.elapsed().as_secs_f64();

    for (label, (rate, latencies)) in ["off", "on"].iter().zip(figures.iter_mut()) {
        latencies.sort();
        println!(
            "auditing {label:>3}: {rate:.0} GetCustomer/s (p50 {:.2} ms, p99 {:.2} ms), {calls} calls x {rounds} rounds, {concurrency} concurrent",
            percentile(latencies, 0.50),
            percentile(latencies, 0.99)
        );
    }
    let ratio = figures[1].0 / figures[0].0;
    println!(
        "throughput with auditing / without: {ratio:.3}; {written} of {expected} events written, the last {lag:.2} s after the load ended"
    );
    println!(
        "reproduce: BENCH_DATABASE_URL=$(scripts/postgres.sh bench) BENCH_CALLS={calls} BENCH_CONCURRENCY={concurrency} BENCH_ROUNDS={rounds} cargo bench --bench audit"
    );
    println!("RESULT get_customer_per_sec_audit_off={:.0}", figures[0].0);
    println!("RESULT get_customer_per_sec_audit_on={:.0}", figures[1].0);
    println!("RESULT ratio={ratio:.3}");
    Ok(())
}
