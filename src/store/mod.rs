//! Postgres: the pool, migrations, transactions with idempotency, and one
//! repository module per aggregate.

/// The bind parameters of a statement in order ($1, $2, ...), built in one
/// place for the statement and for its EXPLAIN check in tests/api/plans.rs:
/// Err only when a value cannot be encoded.
macro_rules! args {
    ($($value:expr),* $(,)?) => {{
        let mut args = sqlx::postgres::PgArguments::default();
        let mut added: Result<(), sqlx::error::BoxDynError> = Ok(());
        $(
            if added.is_ok() {
                added = sqlx::Arguments::add(&mut args, $value);
            }
        )*
        added.map(|()| args).map_err(sqlx::Error::Encode)
    }};
}

/// The bind parameters of one statement (see `args!`).
pub type Args = Result<sqlx::postgres::PgArguments, sqlx::Error>;

pub mod audit;
pub mod campaigns;
pub mod customers;
pub mod feed;
pub mod idempotency;
pub mod import;
pub mod interactions;
pub mod knowledge;
pub mod operations;
pub mod replica;
pub mod segments;
pub mod service_requests;

use std::{
    ops::{Deref, DerefMut},
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use secrecy::ExposeSecret;
use sqlx::{
    AssertSqlSafe, Connection as _, PgConnection, PgPool, Postgres, Transaction,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::{config::DatabaseSettings, error::Error};

tokio::task_local! {
    /// The instant the current call must be answered by (the caller's
    /// `grpc-timeout`, bounded by the server's own limit), set by the RPC
    /// layer around each call.
    static DEADLINE: Instant;
}

/// Runs `call` with `deadline` as its deadline: connections taken inside it
/// wait for the pool no longer than that, and their statements are cut by
/// Postgres (`statement_timeout`) when it passes, so no statement outlives
/// its caller.
/// It also gives the call a slot for its caller's identity, which
/// read-your-writes keys on (`replica::identify_caller`).
pub async fn with_deadline<F: Future>(deadline: Option<Instant>, call: F) -> F::Output {
    match deadline {
        Some(deadline) => replica::with_caller_slot(DEADLINE.scope(deadline, call)).await,
        None => replica::with_caller_slot(call).await,
    }
}

/// The current call's deadline, or None outside a call (or without one):
/// for work handed to another task, which does not inherit it.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// What is left of the current call's time, or None outside a call.
fn remaining() -> Result<Option<Duration>, Error> {
    match DEADLINE.try_with(|d| d.checked_duration_since(Instant::now())) {
        Err(_) => Ok(None),
        Ok(Some(left)) if !left.is_zero() => Ok(Some(left)),
        Ok(_) => Err(Error::DeadlineExceeded),
    }
}

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

/// Begins a transaction on a connection of `pool` (with `statement` for
/// BEGIN, if given) on a task of its own. sqlx's begin is not safe to drop:
/// dropped after its BEGIN was sent (a call cut by its deadline, or
/// cancelled by its caller), it gives the connection back to the pool inside
/// a transaction nobody will end, and the next BEGIN on that connection
/// fails. The task finishes the begin even when its caller is gone; a
/// transaction nobody waits for any more is then dropped there, which rolls
/// it back before the connection is used again.
async fn begin_on(
    pool: &PgPool,
    statement: Option<String>,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = pool.clone();
    let begun = tokio::spawn(async move {
        match statement {
            None => pool.begin().await,
            Some(statement) => pool.begin_with(AssertSqlSafe(statement)).await,
        }
    });
    match begun.await {
        Ok(begun) => begun,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task.
        Err(_) => Err(sqlx::Error::PoolClosed),
    }
}

/// A pool wait that ran out while the pool had every connection it may open
/// and none idle is the service's saturation (`Error::Busy`), not the
/// database's absence; any other error converts as usual.
fn pool_wait_error(pool: &PgPool, err: sqlx::Error) -> Error {
    let saturated = pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections();
    match err {
        sqlx::Error::PoolTimedOut if saturated => Error::Busy,
        err => err.into(),
    }
}

/// How long a pooled connection may sit idle before it is pinged on its
/// way out of the pool.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The handle every repository works through. Connections are taken with
/// `acquire` or `begin`, which count the callers waiting for one (sqlx does
/// not), for the `ck_db_pool_waiters` gauge, and bound the call's statements
/// by its deadline.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    waiting: Arc<AtomicI64>,
    /// The session's `statement_timeout`: a call with more time left than
    /// this needs no `SET LOCAL` of its own.
    statement_timeout: Duration,
    /// How long an idempotency key answers retries (`api.idempotency_retention_secs`).
    idempotency_retention: Duration,
    /// The hot standby for stale-tolerant reads (`database.read_url`), if any.
    standby: Option<Arc<replica::Standby>>,
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
            // sqlx pings every connection before handing it out: a round
            // trip per call. Only a connection that sat idle is pinged; one
            // used within the last second is assumed alive, and if Postgres
            // dropped it since, the call fails UNAVAILABLE (retryable) and
            // the connection is discarded.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < IDLE_BEFORE_PING {
                        return Ok(true);
                    }
                    conn.ping().await.map(|()| true)
                })
            })
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .connect_lazy_with(options);
        Ok(Db {
            pool,
            waiting: Arc::default(),
            statement_timeout: Duration::from_millis(settings.statement_timeout_ms),
            idempotency_retention: Duration::from_secs(24 * 3600),
            standby: None,
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

    /// A pooled connection, counting the wait. Inside a call with less time
    /// left than the session's statement timeout, it is a transaction whose
    /// statements stop at the call's deadline (rolled back when dropped).
    pub async fn acquire(&self) -> Result<Conn, Error> {
        self.connection_from(&self.pool).await
    }

    /// `acquire` on `pool` (the primary's or the standby's).
    async fn connection_from(&self, pool: &PgPool) -> Result<Conn, Error> {
        match self.call_budget()? {
            None => {
                let _waiting = Waiting::start(&self.waiting);
                Ok(Conn::Pooled(
                    pool.acquire().await.map_err(|e| pool_wait_error(pool, e))?,
                ))
            }
            Some(left) => Ok(Conn::Bounded(self.begin_bounded(pool, left).await?)),
        }
    }

    /// A transaction on a pooled connection, counting the wait; its
    /// statements stop at the call's deadline.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, Error> {
        match self.call_budget()? {
            None => {
                let _waiting = Waiting::start(&self.waiting);
                Ok(begin_on(&self.pool, None)
                    .await
                    .map_err(|e| pool_wait_error(&self.pool, e))?)
            }
            Some(left) => self.begin_bounded(&self.pool, left).await,
        }
    }

    /// The time left of the current call when it is shorter than the
    /// session's statement timeout; DEADLINE_EXCEEDED when none is left.
    fn call_budget(&self) -> Result<Option<Duration>, Error> {
        Ok(remaining()?.filter(|left| *left < self.statement_timeout))
    }

    /// BEGIN and `SET LOCAL statement_timeout` in one round trip, waiting
    /// for a connection no longer than `left`.
    async fn begin_bounded(
        &self,
        pool: &PgPool,
        left: Duration,
    ) -> Result<Transaction<'static, Postgres>, Error> {
        let _waiting = Waiting::start(&self.waiting);
        // Whole milliseconds, at least one (0 would mean no limit).
        let millis = left.as_millis().clamp(1, u128::from(u32::MAX));
        let begin = begin_on(
            pool,
            Some(format!("BEGIN; SET LOCAL statement_timeout = {millis}")),
        );
        match tokio::time::timeout(left, begin).await {
            Ok(tx) => Ok(tx.map_err(|e| pool_wait_error(pool, e))?),
            Err(_) => Err(Error::DeadlineExceeded),
        }
    }

    /// Callers waiting for a connection now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        self.ensure_partitions().await?;
        Ok(())
    }

    /// Creates the current and next months' partitions of every
    /// time-partitioned table (migration 20261207030000) that do not exist
    /// yet. Appends never depend on it (a DEFAULT partition takes any row no
    /// monthly one does); it keeps them out of the DEFAULT partition. Not
    /// traced: it runs at startup and in the background.
    pub async fn ensure_partitions(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT ck_ensure_partitions(now())")
            .execute(&self.pool)
            .await?;
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

/// Lets the statements of the caller's transaction run up to `limit`, or to
/// the call's deadline when that comes first: for work known to outlast the
/// session's statement timeout (a segmentation of every customer).
pub async fn allow_statement_time(conn: &mut PgConnection, limit: Duration) -> Result<(), Error> {
    let budget = remaining()?.map_or(limit, |left| left.min(limit));
    let millis = budget.as_millis().clamp(1, u128::from(u32::MAX));
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {millis}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// A connection from `Db::acquire`: pooled as is, or (inside a call with
/// little time left) a transaction bounded by the call's deadline.
pub enum Conn {
    Pooled(PoolConnection<Postgres>),
    Bounded(Transaction<'static, Postgres>),
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Bounded(t) => t,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Bounded(t) => t,
        }
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
    append_outbox_each(conn, aggregate_type, &[aggregate_id], event_type, payload).await
}

/// The same change of many aggregates (items narrowed by one consent
/// withdrawal) in one INSERT, in the order given, not one statement each.
pub async fn append_outbox_each(
    conn: &mut sqlx::PgConnection,
    aggregate_type: &str,
    aggregate_ids: &[&str],
    event_type: &str,
    payload: serde_json::Value,
) -> Result<(), crate::error::Error> {
    if aggregate_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
         SELECT $1::text, id, $3::text, $4::jsonb FROM unnest($2::text[]) WITH ORDINALITY AS t(id, n) ORDER BY n",
    )
    .bind(aggregate_type)
    .bind(aggregate_ids)
    .bind(event_type)
    .bind(sqlx::types::Json(payload))
    .execute(conn)
    .instrument(statement("INSERT", "outbox"))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A begin dropped while its BEGIN runs in Postgres must not leave its
    /// connection inside a transaction for the next caller.
    #[tokio::test]
    async fn a_begin_dropped_midway_leaves_no_transaction_behind() {
        let url = std::env::var("CK_TEST_DATABASE_URL")
            .expect("CK_TEST_DATABASE_URL (scripts/test.sh sets it)");
        // One connection, so the next begin gets the same one.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let watcher = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let marker = format!("begin-dropped-{}", uuid::Uuid::now_v7());
        let slow = format!("BEGIN; SELECT pg_sleep(0.5), '{marker}'");
        let pending = tokio::spawn({
            let pool = pool.clone();
            async move { begin_on(&pool, Some(slow)).await.map(drop) }
        });
        // Dropped once Postgres runs its BEGIN, not before.
        let mut running = false;
        for _ in 0..3000 {
            running = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                 WHERE state = 'active' AND query LIKE '%' || $1 || '%'
                                   AND pid <> pg_backend_pid())",
            )
            .bind(&marker)
            .fetch_one(&watcher)
            .await
            .unwrap();
            if running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(running, "the slow BEGIN never ran");
        pending.abort();
        let _ = pending.await;
        let dropped: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&watcher)
            .await
            .unwrap();

        // A transaction begun now started now: not the dropped one, which
        // Postgres would otherwise still hold open on this connection.
        let mut tx = begin_on(&pool, None).await.unwrap();
        let started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert!(
            started >= dropped,
            "the connection came back inside the dropped transaction (begun {started}, dropped {dropped})"
        );
        tx.rollback().await.unwrap();
    }
}
