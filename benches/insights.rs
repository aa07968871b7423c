//! What InsightService costs at bank scale, against the Postgres cluster at
//! BENCH_DATABASE_URL (a base URL ending in `/`), in a fresh database:
//!
//! 1. RecomputeSegments (the `recompute-segments` job's code path) over
//!    BENCH_CUSTOMERS customers (100000) in 50 branches and
//!    BENCH_INTERACTIONS interactions (2000000) over two years: 85%
//!    transactions with amounts and products, the rest inquiries, surveys
//!    with CSAT/NPS, complaints and service requests. The data is written
//!    with set-based SQL (the bench measures the segmentation, not a load).
//! 2. GetCustomer360 through the real server over gRPC for two customers of
//!    the same branch, one with a 1× history (BENCH_HISTORY, 200
//!    interactions) and one with 10×, alternating calls so drift hits both
//!    alike; p50/p99 of each and the 10×/1× ratio.
//!
//!   BENCH_DATABASE_URL=$(scripts/postgres.sh bench) cargo bench --bench insights
//!
//! Prints `RESULT key=value` lines. Figures are only comparable within one run.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use customer_knowledge::{
    api::insight::recompute_now,
    config::Settings,
    pb::v1::{self as pb, insight_service_client::InsightServiceClient},
    startup::Application,
    store::Db,
};
use sqlx::{Connection, PgConnection, PgPool};
use tonic::{Request, Status, service::Interceptor, transport::Channel};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone)]
struct RelationshipManager;

impl Interceptor for RelationshipManager {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let m = request.metadata_mut();
        m.insert("x-employee-id", "E1001".parse().unwrap());
        m.insert("x-branch", "B01".parse().unwrap());
        m.insert("x-roles", "relationship_manager".parse().unwrap());
        Ok(request)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The synthetic bank, written set-based. Customer `c{n}` is in branch
/// `B{n % 50}`; interactions spread over two years before now.
async fn load(pool: &PgPool, customers: usize, interactions: usize) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customers (id, display_name, kind, home_branch, relationship_manager, phone)
         SELECT 'c' || g, 'Customer ' || g, 'INDIVIDUAL', 'B' || lpad((g % 50)::text, 2, '0'),
                'E' || (g % 500), '+86 138 0000 ' || lpad((g % 10000)::text, 4, '0')
           FROM generate_series(0, $1 - 1) g",
    )
    .bind(customers as i64)
    .execute(pool)
    .await?;
    // 70% spread evenly over every customer (a multiplicative hash), 30%
    // skewed onto the quadratic residues, so some histories are long.
    sqlx::query(
        "INSERT INTO interactions (customer_id, id, channel, kind, occur_time, summary, products,
                                   amount_currency, amount_units, amount_nanos, satisfaction, nps,
                                   complaint_state, complaint_severity, complaint_due_time)
         SELECT 'c' || (CASE WHEN g % 10 < 7 THEN (g * 2654435761) % $2 ELSE (g * g) % $2 END),
                'i' || g,
                (ARRAY['BRANCH','PHONE','MOBILE_APP','ONLINE_BANKING','ATM'])[1 + g % 5],
                k.kind,
                now() - (g % 730) * interval '1 day' - (g % 86400) * interval '1 second',
                'synthetic',
                CASE WHEN k.kind = 'TRANSACTION'
                     THEN ARRAY['P' || (g % 20)] ELSE '{}' END,
                CASE WHEN k.kind = 'TRANSACTION' THEN 'CNY' END,
                CASE WHEN k.kind = 'TRANSACTION' THEN 10 + (g * 7919) % 50000 END,
                CASE WHEN k.kind = 'TRANSACTION' THEN 0 END,
                CASE WHEN k.kind = 'SURVEY' THEN 1 + g % 5 END,
                CASE WHEN k.kind = 'SURVEY' THEN g % 11 END,
                CASE WHEN k.kind = 'COMPLAINT' THEN (ARRAY['OPEN','RESOLVED','CLOSED'])[1 + g % 3] END,
                CASE WHEN k.kind = 'COMPLAINT' THEN 'MEDIUM' END,
                CASE WHEN k.kind = 'COMPLAINT' THEN now() + interval '3 days' END
           FROM generate_series(1, $1) g
          CROSS JOIN LATERAL (SELECT CASE WHEN g % 100 < 85 THEN 'TRANSACTION'
                                          WHEN g % 100 < 90 THEN 'INQUIRY'
                                          WHEN g % 100 < 95 THEN 'SURVEY'
                                          WHEN g % 100 < 97 THEN 'COMPLAINT'
                                          ELSE 'SERVICE_REQUEST' END AS kind) k",
    )
    .bind(interactions as i64)
    .bind(customers as i64)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// A B01 customer with exactly `n` interactions (transactions and surveys)
/// over the last two years.
async fn history(pool: &PgPool, id: &str, n: usize) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customers (id, display_name, kind, home_branch, relationship_manager)
         VALUES ($1, 'History ' || $1, 'INDIVIDUAL', 'B01', 'E1001')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO interactions (customer_id, id, channel, kind, occur_time, summary, products,
                                   amount_currency, amount_units, amount_nanos, satisfaction, nps)
         SELECT $1, $1 || '-' || g, 'MOBILE_APP',
                CASE WHEN g % 10 = 0 THEN 'SURVEY' ELSE 'TRANSACTION' END,
                now() - (g * 730.0 / $2) * interval '1 day', 'history',
                ARRAY['P' || (g % 20)], 'CNY', 100 + g % 900, 0,
                CASE WHEN g % 10 = 0 THEN 1 + g % 5 END, CASE WHEN g % 10 = 0 THEN g % 11 END
           FROM generate_series(1, $2) g",
    )
    .bind(id)
    .bind(n as i32)
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::var("BENCH_DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("set BENCH_DATABASE_URL=$(scripts/postgres.sh bench)"))?;
    let customers = knob("BENCH_CUSTOMERS", 100_000);
    let interactions = knob("BENCH_INTERACTIONS", 2_000_000);
    let history_len = knob("BENCH_HISTORY", 200);
    let calls = knob("BENCH_CALLS", 500);

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
        ("CK__LOG__LEVEL", "warn"),
        (
            "CK__AUDIT__PSEUDONYM_KEY",
            "bench-pseudonym-key-of-at-least-32-bytes",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::load_from(None, &env)?;
    let insights = settings.insights.clone();
    let app = Application::build(settings.clone()).await?;
    let addr = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let pool = PgPool::connect(&database_url).await?;

    let started = Instant::now();
    load(&pool, customers, interactions).await?;
    history(&pool, "h1", history_len).await?;
    history(&pool, "h10", history_len * 10).await?;
    println!(
        "loaded {customers} customers, {interactions} interactions (+{} of history) in {:.1} s",
        history_len * 11,
        started.elapsed().as_secs_f64()
    );

    let db = Db::connect_lazy(&settings.database)?;
    let started = Instant::now();
    let (_, scored, _) = recompute_now(&db, &insights, None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let recompute = started.elapsed().as_secs_f64();
    println!("RecomputeSegments: {scored} customers scored in {recompute:.1} s");
    println!("RESULT recompute_seconds={recompute:.2}");

    let channel = Channel::from_shared(addr)?.connect().await?;
    let mut client = InsightServiceClient::with_interceptor(channel, RelationshipManager);
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..(calls * 2 + 40) {
        let which = i % 2;
        let name = if which == 0 {
            "customers/h1"
        } else {
            "customers/h10"
        };
        let t = Instant::now();
        client
            .get_customer360(pb::GetCustomer360Request { name: name.into() })
            .await?;
        if i >= 40 {
            lat[which].push(t.elapsed());
        }
    }
    for l in &mut lat {
        l.sort();
    }
    let (p50_1, p99_1) = (percentile(&lat[0], 0.5), percentile(&lat[0], 0.99));
    let (p50_10, p99_10) = (percentile(&lat[1], 0.5), percentile(&lat[1], 0.99));
    println!(
        "GetCustomer360, {calls} calls each, alternating: 1× history ({history_len}) p50 {p50_1:.2} ms p99 {p99_1:.2} ms; 10× ({}) p50 {p50_10:.2} ms p99 {p99_10:.2} ms; p99 10×/1× = {:.2}",
        history_len * 10,
        p99_10 / p99_1
    );
    println!("RESULT c360_p50_1x_ms={p50_1:.2}");
    println!("RESULT c360_p99_1x_ms={p99_1:.2}");
    println!("RESULT c360_p50_10x_ms={p50_10:.2}");
    println!("RESULT c360_p99_10x_ms={p99_10:.2}");
    println!(
        "reproduce: BENCH_DATABASE_URL=$(scripts/postgres.sh bench) cargo bench --bench insights ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    drop(pool);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db_name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}
