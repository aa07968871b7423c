//! The `access_events` table: appending chained batches (the background
//! writer), listing them, and reading the chain back for verification.

use chrono::{DateTime, Utc};
use sqlx::{Row, postgres::PgRow};
use tracing::Instrument;

use super::{Db, statement};
use crate::{
    domain::audit::{AccessEvent, AccessEventFilter, Action, GENESIS},
    error::Error,
};

/// The transaction-level advisory lock that serializes appends across every
/// process writing to this database ("ckaudit1" as an integer).
const CHAIN_LOCK: i64 = 0x636b_6175_6469_7431;

macro_rules! columns {
    () => {
        "sequence, event_time, principal, roles, calling_system, on_behalf_of, \
         method, action, outcome, customers, purpose, trace_id, hash"
    };
}
const COLUMNS: &str = columns!();

/// ListAccessEvents: the events matching the filter ($1-$10), newest first,
/// before the sequence $11.
pub const LIST_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM access_events
     WHERE ($1::text IS NULL OR principal = $1)
       AND ($2::text IS NULL OR method = $2)
       AND ($3::text IS NULL OR action = $3)
       AND ($4::text IS NULL OR outcome = $4)
       AND ($5::text IS NULL OR calling_system = $5)
       AND customers @> $6::text[]
       AND ($7::text IS NULL OR purpose = $7)
       AND ($8::text IS NULL OR trace_id = $8)
       AND ($9::timestamptz IS NULL OR event_time >= $9)
       AND ($10::timestamptz IS NULL OR event_time < $10)
       AND ($11::bigint IS NULL OR sequence < $11)
     ORDER BY sequence DESC
     LIMIT $12"
);

/// The parameters of `LIST_SQL`: `customer_pseudonyms` are the pseudonyms
/// of the filter's customers.
pub fn list_args(
    filter: &AccessEventFilter,
    customer_pseudonyms: &[String],
    before_sequence: Option<i64>,
    limit: i64,
) -> super::Args {
    let time = |us: Option<i64>| us.and_then(DateTime::<Utc>::from_timestamp_micros);
    args!(
        &filter.principal,
        &filter.method,
        filter.action.map(Action::as_str),
        &filter.outcome,
        &filter.calling_system,
        customer_pseudonyms,
        &filter.purpose,
        &filter.trace_id,
        time(filter.from_us),
        time(filter.before_us),
        before_sequence,
        limit,
    )
}

/// An event as stored, with the hash it was stored with.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: AccessEvent,
    pub hash: Vec<u8>,
}

fn stored(row: &PgRow) -> Result<StoredEvent, sqlx::Error> {
    let action: String = row.try_get("action")?;
    let event_time: DateTime<Utc> = row.try_get("event_time")?;
    Ok(StoredEvent {
        event: AccessEvent {
            sequence: row.try_get("sequence")?,
            event_time_us: event_time.timestamp_micros(),
            principal: row.try_get("principal")?,
            roles: row.try_get("roles")?,
            calling_system: row.try_get("calling_system")?,
            on_behalf_of: row.try_get("on_behalf_of")?,
            method: row.try_get("method")?,
            // The CHECK constraint admits only these two.
            action: Action::parse(&action).unwrap_or(Action::Write),
            outcome: row.try_get("outcome")?,
            customers: row.try_get("customers")?,
            purpose: row.try_get("purpose")?,
            trace_id: row.try_get("trace_id")?,
        },
        hash: row.try_get("hash")?,
    })
}

/// Appends `events` to the chain in one transaction: under the advisory
/// lock, reads the head, numbers and hashes the events after it, and inserts
/// them in one statement. Sets each event's `sequence`. Untraced: it runs
/// in the background, outside any call.
pub async fn append(db: &Db, events: &mut [AccessEvent]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *tx)
        .await?;
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT sequence, hash FROM access_events ORDER BY sequence DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let (mut sequence, mut previous) = match head {
        Some((sequence, hash)) => (
            sequence,
            <[u8; 32]>::try_from(hash.as_slice()).unwrap_or(GENESIS),
        ),
        None => (0, GENESIS),
    };
    let mut hashes = Vec::with_capacity(events.len());
    for event in events.iter_mut() {
        sequence += 1;
        event.sequence = sequence;
        previous = event.chain_hash(&previous);
        hashes.push(previous);
    }
    // One statement text whatever the batch size (arrays, not a VALUES
    // list per row), so Postgres plans it once per connection; the array
    // columns travel as JSON arrays because UNNEST would flatten them.
    macro_rules! column {
        ($f:expr) => {
            events.iter().map($f).collect::<Vec<_>>()
        };
    }
    sqlx::query(
        "INSERT INTO access_events (sequence, event_time, principal, roles, calling_system,
                                    on_behalf_of, method, action, outcome, customers, purpose,
                                    trace_id, hash)
         SELECT sequence, event_time, principal,
                ARRAY(SELECT jsonb_array_elements_text(roles)), calling_system, on_behalf_of,
                method, action, outcome, ARRAY(SELECT jsonb_array_elements_text(customers)),
                purpose, trace_id, hash
         FROM UNNEST($1::int8[], $2::timestamptz[], $3::text[], $4::jsonb[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[],
                     $12::text[], $13::bytea[])
           AS t(sequence, event_time, principal, roles, calling_system, on_behalf_of, method,
                action, outcome, customers, purpose, trace_id, hash)",
    )
    .bind(column!(|e| e.sequence))
    .bind(column!(|e| e.event_time()))
    .bind(column!(|e| e.principal.as_str()))
    .bind(column!(|e| sqlx::types::Json(&e.roles)))
    .bind(column!(|e| e.calling_system.as_str()))
    .bind(column!(|e| e.on_behalf_of.as_str()))
    .bind(column!(|e| e.method.as_str()))
    .bind(column!(|e| e.action.as_str()))
    .bind(column!(|e| e.outcome.as_str()))
    .bind(column!(|e| sqlx::types::Json(&e.customers)))
    .bind(column!(|e| e.purpose.as_str()))
    .bind(column!(|e| e.trace_id.as_str()))
    .bind(hashes.iter().map(|h| h.as_slice()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

impl Db {
    /// A page of events matching `filter`, newest first, after the cursor
    /// `before_sequence`. `customer_pseudonyms` are the pseudonyms of the
    /// filter's customers: every one must be on the event.
    pub async fn list_access_events(
        &self,
        filter: &AccessEventFilter,
        customer_pseudonyms: &[String],
        before_sequence: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, Error> {
        let args = list_args(filter, customer_pseudonyms, before_sequence, limit)?;
        let mut conn = self.acquire().await?;
        let rows = sqlx::query_with(LIST_SQL, args)
            .fetch_all(&mut *conn)
            .instrument(statement("SELECT", "access_events"))
            .await?;
        Ok(rows.iter().map(stored).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` events with `after < sequence <= through`, in chain
    /// order.
    pub async fn access_event_range(
        &self,
        after: i64,
        through: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM access_events
             WHERE sequence > $1 AND sequence <= $2
             ORDER BY sequence
             LIMIT $3"
        );
        let mut conn = self.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(through)
            .bind(limit)
            .fetch_all(&mut *conn)
            .instrument(statement("SELECT", "access_events"))
            .await?;
        Ok(rows.iter().map(stored).collect::<Result<_, _>>()?)
    }

    /// The stored hash of one event, if it exists.
    pub async fn access_event_hash(&self, sequence: i64) -> Result<Option<Vec<u8>>, Error> {
        let mut conn = self.acquire().await?;
        Ok(
            sqlx::query_scalar("SELECT hash FROM access_events WHERE sequence = $1")
                .bind(sequence)
                .fetch_optional(&mut *conn)
                .instrument(statement("SELECT", "access_events"))
                .await?,
        )
    }

    /// The newest event's sequence, 0 when there is none.
    pub async fn access_event_head(&self) -> Result<i64, Error> {
        let mut conn = self.acquire().await?;
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(sequence), 0) FROM access_events")
                .fetch_one(&mut *conn)
                .instrument(statement("SELECT", "access_events"))
                .await?,
        )
    }
}
