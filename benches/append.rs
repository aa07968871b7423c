//! Throughput of the append path through the real server: concurrent
//! LogInteraction calls and one ImportInteractions stream, against the
//! Postgres cluster at BENCH_DATABASE_URL (a base URL ending in `/`).
//! scripts/bench.sh runs it beside pgbench and psql \copy on the same table.
//!
//!   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/ cargo bench --bench append
//!
//! Knobs: BENCH_LOG_CALLS (20000), BENCH_CONCURRENCY (32), BENCH_IMPORT_ROWS
//! (200000), BENCH_CUSTOMERS (100). It prints `RESULT key=value` lines.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use customer_knowledge::{
    config::Settings,
    pb::v1::{
        self as pb, customer_service_client::CustomerServiceClient,
        import_interactions_request::Row, interaction::Channel, interaction::Kind,
        interaction_service_client::InteractionServiceClient,
    },
    startup::Application,
};
use sqlx::{Connection, PgConnection};
use tonic::{Request, Status, service::Interceptor, transport::Channel as GrpcChannel};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Calls as core banking (a `service` caller) in trusted-headers mode.
#[derive(Clone)]
struct CoreBanking;

impl Interceptor for CoreBanking {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let m = request.metadata_mut();
        m.insert("x-employee-id", "core-banking".parse().unwrap());
        m.insert("x-roles", "service".parse().unwrap());
        Ok(request)
    }
}

fn transaction(n: usize, prefix: &str) -> pb::Interaction {
    pb::Interaction {
        channel: Channel::OnlineBanking as i32,
        kind: Kind::Transaction as i32,
        summary: "Card payment".into(),
        amount: Some(pb::Money {
            currency_code: "CNY".into(),
            units: (n % 10_000) as i64,
            nanos: 0,
        }),
        products: vec!["DEBIT-CARD".into()],
        // Stored under the caller's own source system (core-banking); a
        // system may write only under its own name and configured aliases.
        external_ref: format!("{prefix}-{n:09}"),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::var("BENCH_DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("set BENCH_DATABASE_URL (scripts/bench.sh does)"))?;
    let calls = knob("BENCH_LOG_CALLS", 20_000);
    let concurrency = knob("BENCH_CONCURRENCY", 32);
    let import_rows = knob("BENCH_IMPORT_ROWS", 200_000);
    let customer_count = knob("BENCH_CUSTOMERS", 100);

    let db_name = format!("ck_bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&format!("{base}postgres")).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin)
        .await?;
    let database_url = format!("{base}{db_name}");
    let env: HashMap<String, String> = [
        ("DATABASE_URL", database_url.as_str()),
        ("CK__SERVER__GRPC_ADDR", "127.0.0.1:0"),
        ("CK__AUTH__MODE", "trusted_headers"),
        // A calling system without configured methods may call nothing.
        ("CK__AUTH__SYSTEMS__CORE-BANKING__METHODS", "*"),
        ("CK__DATABASE__MAX_CONNECTIONS", "40"),
        ("CK__LOG__LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let app = Application::build(Settings::load_from(None, &env)?).await?;
    let addr = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let channel = GrpcChannel::from_shared(addr)?.connect().await?;

    let mut customers = CustomerServiceClient::with_interceptor(channel.clone(), CoreBanking);
    let mut names = Vec::with_capacity(customer_count);
    for i in 0..customer_count {
        let created = customers
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: format!("Bench customer {i}"),
                    kind: pb::customer::Kind::Individual as i32,
                    home_branch: "B01".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        names.push(created.name);
    }

    // LogInteraction: `concurrency` callers sharing one HTTP/2 connection,
    // as behind a mesh sidecar; no request_id, so each call is one append.
    let client = InteractionServiceClient::with_interceptor(channel.clone(), CoreBanking);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = client.clone();
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in (worker..calls).step_by(concurrency) {
                let request = pb::LogInteractionRequest {
                    parent: names[n % names.len()].clone(),
                    interaction: Some(transaction(n, "LOG")),
                    ..Default::default()
                };
                let t = Instant::now();
                client.log_interaction(request).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, Status>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let log_secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let log_rate = calls as f64 / log_secs;
    println!(
        "LogInteraction: {calls} calls, {concurrency} concurrent, {log_secs:.2} s: {log_rate:.0} interactions/s (p50 {:.2} ms, p99 {:.2} ms)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );

    // ImportInteractions: one stream of 5,000-row messages.
    let rows: Vec<Row> = (0..import_rows)
        .map(|n| Row {
            parent: names[n % names.len()].clone(),
            interaction: Some(transaction(n, "IMP")),
        })
        .collect();
    let messages: Vec<pb::ImportInteractionsRequest> = rows
        .chunks(5000)
        .map(|chunk| pb::ImportInteractionsRequest {
            rows: chunk.to_vec(),
            ..Default::default()
        })
        .collect();
    let mut importer = client.clone();
    let started = Instant::now();
    let response = importer
        .import_interactions(futures::stream::iter(messages))
        .await?
        .into_inner();
    let import_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        response.accepted_count as usize == import_rows,
        "import accepted {} of {import_rows}",
        response.accepted_count
    );
    let import_rate = import_rows as f64 / import_secs;
    println!(
        "ImportInteractions: {import_rows} rows in one stream, {import_secs:.2} s: {import_rate:.0} rows/s"
    );
    println!("RESULT database={db_name}");
    println!("RESULT log_interactions_per_sec={log_rate:.0}");
    println!("RESULT import_rows_per_sec={import_rate:.0}");
    println!("RESULT customers={customer_count}");
    Ok(())
}
