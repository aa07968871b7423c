//! The bulk path of ImportInteractions: each chunk is sent with binary
//! `COPY` into a temporary staging table, then merged into `interactions`
//! (with its outbox rows) by one set-based statement. Rows keep every rule
//! of the single append (`interactions::append`): `external_ref` dedupe on
//! (customer, source system, reference), conflicts told from re-sends by the
//! content fingerprint, the commit-order (txid, seq) stamp the watch feed
//! reads (column defaults), one NOTIFY per chunk, and the service requests
//! SERVICE_REQUEST rows open.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tracing::Instrument;

use super::{
    interactions::{insert_error, notify_feed},
    statement,
};
use crate::{
    domain::{
        customer::CustomerId,
        interaction::{ComplaintCategory, NewInteraction, Sentiment, interaction_name},
    },
    error::Error,
};

/// The staging table: one per session, emptied at every commit. Creating it
/// when it exists only raises a notice, kept out of the logs by the
/// transaction-local `client_min_messages`.
const STAGING: &str = "SET LOCAL client_min_messages = warning;
    CREATE TEMP TABLE IF NOT EXISTS import_staging (
        n                  int4 NOT NULL,
        customer_id        text COLLATE \"C\" NOT NULL,
        id                 text COLLATE \"C\" NOT NULL,
        channel            text NOT NULL,
        kind               text NOT NULL,
        occur_time         timestamptz NOT NULL,
        employee           text NOT NULL,
        team               text NOT NULL,
        branch             text NOT NULL,
        summary            text NOT NULL,
        notes              text NOT NULL,
        products           text[] NOT NULL,
        currency           text,
        units              int8,
        nanos              int4,
        campaign           text NOT NULL,
        outcome            text NOT NULL,
        sentiment          text,
        satisfaction       int2,
        nps                int2,
        source_system      text NOT NULL,
        external_ref       text NOT NULL,
        complaint_state    text,
        complaint_severity text,
        complaint_due_time timestamptz,
        fingerprint        bytea NOT NULL,
        complaint_category text,
        complaint_product  text NOT NULL,
        complaint_assignee text NOT NULL
    ) ON COMMIT DELETE ROWS";

/// The columns COPY fills, in the order `encode_row` writes them.
const COPY: &str = "COPY import_staging (n, customer_id, id, channel, kind, occur_time, employee,
    team, branch, summary, notes, products, currency, units, nanos, campaign, outcome, sentiment,
    satisfaction, nps, source_system, external_ref, complaint_state, complaint_severity,
    complaint_due_time, fingerprint, complaint_category, complaint_product, complaint_assignee)
    FROM STDIN (FORMAT binary)";

/// Columns per staged row.
const COLUMNS: i16 = 29;

/// How one row of a chunk ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    /// Stored now.
    New,
    /// Its (source system, external ref) was stored with the same content.
    Duplicate,
    /// Its (source system, external ref) is stored with other content: the
    /// name of the stored interaction.
    Conflict(String),
}

/// Imports one chunk in the caller's transaction. The customers must have
/// been share-locked with `interactions::lock_customers` (and the rows of
/// customers out of reach left out). Returns each row's outcome, in order.
pub async fn import(
    conn: &mut PgConnection,
    rows: &[(&CustomerId, &NewInteraction)],
) -> Result<Vec<Imported>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::raw_sql(STAGING)
        .execute(&mut *conn)
        .instrument(statement("CREATE", "import_staging"))
        .await?;
    let mut data = Vec::with_capacity(rows.len() * 256);
    data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    data.extend_from_slice(&0i32.to_be_bytes()); // flags
    data.extend_from_slice(&0i32.to_be_bytes()); // header extension
    for (n, (customer, new)) in rows.iter().enumerate() {
        encode_row(&mut data, n, customer, new)?;
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    let mut copy = conn
        .copy_in_raw(COPY)
        .instrument(statement("COPY", "import_staging"))
        .await?;
    copy.send(data).await?;
    copy.finish()
        .instrument(statement("COPY", "import_staging"))
        .await?;

    let inserted: Vec<String> = sqlx::query_scalar(
        "WITH k AS (
            -- The keys first, in file order (the first of two rows with one
            -- external ref wins): a taken id fails, a taken ref skips.
            INSERT INTO interaction_keys (customer_id, id, source_system, external_ref)
            SELECT customer_id, id, source_system, external_ref FROM import_staging ORDER BY n
            ON CONFLICT (customer_id, source_system, external_ref) WHERE external_ref <> ''
            DO NOTHING
            RETURNING customer_id, id
         ), i AS (
            INSERT INTO interactions (customer_id, id, channel, kind, occur_time,
                recorded_by_employee, recorded_by_team, recorded_by_branch, summary, notes,
                products, amount_currency, amount_units, amount_nanos, campaign, outcome,
                sentiment, satisfaction, nps, source_system, external_ref, complaint_state,
                complaint_severity, complaint_due_time, fingerprint, complaint_category,
                complaint_product, complaint_assignee)
            SELECT customer_id, id, channel, kind, occur_time, employee, team, branch, summary,
                   notes, products, currency, units, nanos, campaign, outcome, sentiment,
                   satisfaction, nps, source_system, external_ref, complaint_state,
                   complaint_severity, complaint_due_time, fingerprint, complaint_category,
                   complaint_product, complaint_assignee
            FROM import_staging JOIN k USING (customer_id, id) ORDER BY n
            RETURNING customer_id, id, channel, kind
         ), outboxed AS (
            INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
            SELECT 'interaction', 'customers/' || customer_id || '/interactions/' || id,
                   'interaction.logged',
                   jsonb_build_object('customer', 'customers/' || customer_id,
                                      'channel', channel, 'kind', kind)
            FROM i
         )
         SELECT id FROM i",
    )
    .fetch_all(&mut *conn)
    .instrument(statement("INSERT", "interactions"))
    .await
    .map_err(insert_error)?;
    if !inserted.is_empty() {
        notify_feed(conn).await?;
    }
    // Ids are drawn by the service for every imported row, so a row whose
    // id was not inserted collided with a stored external ref.
    let inserted: HashSet<String> = inserted.into_iter().collect();
    let opened: Vec<(&CustomerId, &NewInteraction)> = rows
        .iter()
        .filter(|(_, n)| n.service_request.is_some() && inserted.contains(&n.id))
        .copied()
        .collect();
    super::service_requests::open(conn, &opened).await?;

    // The rows not inserted, against what is stored under their reference
    // now (also rows inserted earlier in this chunk): same content is a
    // re-send, other content a conflict.
    let mut collided: HashMap<i32, (String, bool)> = HashMap::new();
    if inserted.len() < rows.len() {
        let found: Vec<(i32, String, bool)> = sqlx::query_as(
            "SELECT s.n, i.id, i.fingerprint IS NOT NULL AND i.fingerprint <> s.fingerprint
             FROM import_staging s
             JOIN interactions i ON i.customer_id = s.customer_id
              AND i.source_system = s.source_system AND i.external_ref = s.external_ref
             WHERE i.external_ref <> '' AND i.id <> s.id",
        )
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "interactions"))
        .await?;
        collided = found
            .into_iter()
            .map(|(n, id, conflict)| (n, (id, conflict)))
            .collect();
    }
    let mut out = Vec::with_capacity(rows.len());
    for (n, (customer, new)) in rows.iter().enumerate() {
        if inserted.contains(&new.id) {
            out.push(Imported::New);
            continue;
        }
        match i32::try_from(n).ok().and_then(|n| collided.remove(&n)) {
            Some((id, true)) => out.push(Imported::Conflict(interaction_name(customer, &id))),
            Some((_, false)) => out.push(Imported::Duplicate),
            None => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "an imported interaction was neither written nor found under its external ref"
                )));
            }
        }
    }
    Ok(out)
}

/// Microseconds between the Unix epoch and Postgres's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn field(data: &mut Vec<u8>, value: &[u8]) -> Result<(), Error> {
    let len = i32::try_from(value.len())
        .map_err(|_| Error::Internal(anyhow::anyhow!("an imported field is too long")))?;
    data.extend_from_slice(&len.to_be_bytes());
    data.extend_from_slice(value);
    Ok(())
}

fn null(data: &mut Vec<u8>) {
    data.extend_from_slice(&(-1i32).to_be_bytes());
}

fn text(data: &mut Vec<u8>, value: &str) -> Result<(), Error> {
    field(data, value.as_bytes())
}

fn optional_text(data: &mut Vec<u8>, value: Option<&str>) -> Result<(), Error> {
    match value {
        Some(v) => text(data, v),
        None => {
            null(data);
            Ok(())
        }
    }
}

fn time(data: &mut Vec<u8>, value: DateTime<Utc>) -> Result<(), Error> {
    let micros = value
        .timestamp_micros()
        .checked_sub(POSTGRES_EPOCH_MICROS)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("an imported time is out of range")))?;
    field(data, &micros.to_be_bytes())
}

/// A one-dimensional `text[]` in Postgres's binary array format.
fn text_array(data: &mut Vec<u8>, values: &[String]) -> Result<(), Error> {
    const TEXT_OID: i32 = 25;
    let mut array = Vec::with_capacity(20 + values.iter().map(|v| v.len() + 4).sum::<usize>());
    if values.is_empty() {
        array.extend_from_slice(&0i32.to_be_bytes()); // dimensions
        array.extend_from_slice(&0i32.to_be_bytes()); // has nulls
        array.extend_from_slice(&TEXT_OID.to_be_bytes());
    } else {
        let count = i32::try_from(values.len())
            .map_err(|_| Error::Internal(anyhow::anyhow!("too many imported products")))?;
        array.extend_from_slice(&1i32.to_be_bytes());
        array.extend_from_slice(&0i32.to_be_bytes());
        array.extend_from_slice(&TEXT_OID.to_be_bytes());
        array.extend_from_slice(&count.to_be_bytes());
        array.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        for value in values {
            text(&mut array, value)?;
        }
    }
    field(data, &array)
}

/// One staged row, its columns in the order of `COPY`.
fn encode_row(
    data: &mut Vec<u8>,
    n: usize,
    customer: &CustomerId,
    new: &NewInteraction,
) -> Result<(), Error> {
    let n = i32::try_from(n)
        .map_err(|_| Error::Internal(anyhow::anyhow!("an import chunk is too large")))?;
    let complaint = new.complaint.as_ref();
    data.extend_from_slice(&COLUMNS.to_be_bytes());
    field(data, &n.to_be_bytes())?;
    text(data, customer.as_str())?;
    text(data, &new.id)?;
    text(data, new.channel.as_str())?;
    text(data, new.kind.as_str())?;
    time(data, new.occur_time)?;
    text(data, &new.recorded_by.employee)?;
    text(data, &new.recorded_by.team)?;
    text(data, &new.recorded_by.branch)?;
    text(data, &new.summary)?;
    text(data, &new.notes)?;
    text_array(data, &new.products)?;
    match &new.amount {
        Some(m) => {
            text(data, &m.currency_code)?;
            field(data, &m.units.to_be_bytes())?;
            field(data, &m.nanos.to_be_bytes())?;
        }
        None => (0..3).for_each(|_| null(data)),
    }
    text(data, &new.campaign)?;
    text(data, &new.outcome)?;
    optional_text(data, new.sentiment.map(Sentiment::as_str))?;
    match new.satisfaction {
        Some(v) => field(data, &v.to_be_bytes())?,
        None => null(data),
    }
    match new.nps {
        Some(v) => field(data, &v.to_be_bytes())?,
        None => null(data),
    }
    text(data, &new.source_system)?;
    text(data, &new.external_ref)?;
    optional_text(data, complaint.map(|c| c.state.as_str()))?;
    optional_text(data, complaint.map(|c| c.severity.as_str()))?;
    match complaint {
        Some(c) => time(data, c.due_time)?,
        None => null(data),
    }
    field(data, &new.fingerprint())?;
    optional_text(
        data,
        complaint.and_then(|c| c.category.map(ComplaintCategory::as_str)),
    )?;
    text(
        data,
        complaint.map(|c| c.product.as_str()).unwrap_or_default(),
    )?;
    text(
        data,
        complaint.map(|c| c.assignee.as_str()).unwrap_or_default(),
    )?;
    Ok(())
}
