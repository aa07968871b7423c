//! Postgres: the pool, migrations, transactions with idempotency, and one
//! repository module per aggregate.

pub mod audit;
pub mod customers;
pub mod feed;
pub mod idempotency;
pub mod interactions;
pub mod knowledge;

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use secrecy::ExposeSecret;
use sqlx::{
    PgPool, Postgres, Transaction,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tracing::Instrument;

use crate::config::DatabaseSettings;

/// The span of one statement, after OpenTelemetry's database conventions:
/// the operation and the table only, never SQL text or bound values (they
/// may be PII). Every query of a repository runs inside one:
/// `.fetch_one(conn).instrument(statement("SELECT", "customers"))`.
pub(crate) fn statement(operation: &'static str, table: &'static str) -> tracing::Span {
    tracing::info_span!(
        "db.statement",
        otel.name = %format!("{operation} {table}"),
        otel.kind = "client",
        db.system = "postgresql",
        db.operation = operation,
        db.sql.table = table,
    )
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The handle every repository works through. Connections are taken with
/// `acquire` or `begin`, which count the callers waiting for one (sqlx does
/// not), for the `ck_db_pool_waiters` gauge.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    waiting: Arc<AtomicI64>,
    /// How long an idempotency key answers retries (`api.idempotency_retention_secs`).
    idempotency_retention: Duration,
}

/// Counts one waiting caller for as long as it lives, also when the wait is
/// cancelled.
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn start(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Db {
    /// Builds the pool without connecting, so the service can start (and
    /// report NOT_SERVING) while Postgres is still unreachable.
    pub fn connect_lazy(settings: &DatabaseSettings) -> anyhow::Result<Db> {
        let url = settings
            .url
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("database.url is not set"))?;
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map_err(|e| anyhow::anyhow!("database.url (DATABASE_URL) cannot be parsed: {e}"))?
            .application_name("customer-knowledge")
            // Every statement is bounded even when the caller set no deadline.
            .options([(
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .connect_lazy_with(options);
        Ok(Db {
            pool,
            waiting: Arc::default(),
            idempotency_retention: Duration::from_secs(24 * 3600),
        })
    }

    /// Sets how long idempotency keys answer retries before they expire.
    pub fn with_idempotency_retention(mut self, retention: Duration) -> Db {
        self.idempotency_retention = retention;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pooled connection, counting the wait.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, crate::error::Error> {
        let _waiting = Waiting::start(&self.waiting);
        Ok(self.pool.acquire().await?)
    }

    /// A transaction on a pooled connection, counting the wait.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, crate::error::Error> {
        let _waiting = Waiting::start(&self.waiting);
        Ok(self.pool.begin().await?)
    }

    /// Callers waiting for a connection now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// True when Postgres answers a trivial query. Not traced: the health
    /// monitor runs it every few seconds outside any call.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .is_ok()
    }
}

/// Appends a change to the outbox in the caller's transaction. Payloads carry
/// ids and field names only, never PII.
pub async fn append_outbox(
    conn: &mut sqlx::PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> Result<(), crate::error::Error> {
    sqlx::query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(event_type)
    .bind(sqlx::types::Json(payload))
    .execute(conn)
    .instrument(statement("INSERT", "outbox"))
    .await?;
    Ok(())
}
