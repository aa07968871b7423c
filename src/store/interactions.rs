//! The append path and the timeline: interactions, the complaints on them,
//! follow-up tasks, and the commit-ordered feed behind WatchInteractions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, types::Json};

use tracing::Instrument;

use super::{Db, append_outbox, statement};
use crate::{
    domain::{
        customer::CustomerId,
        filter::ListOrder,
        interaction::{
            Channel, Complaint, ComplaintCategory, ComplaintState, FollowUpState, Interaction,
            Kind, Money, NewInteraction, RecordedBy, Recurrence, Sentiment, Severity, Voiding,
            interaction_name,
        },
    },
    error::{Error, ErrorReason},
};

/// The channel NOTIFY wakes the feed on; the payload is empty because the
/// feed reads the rows themselves in commit order.
pub const FEED_CHANNEL: &str = "ck_interactions";

macro_rules! interaction_columns {
    () => {
        "i.customer_id, i.id, i.channel, i.kind, i.occur_time, i.recorded_by_employee,
         i.recorded_by_team, i.recorded_by_branch, i.summary, i.notes, i.products,
         i.amount_currency, i.amount_units, i.amount_nanos, i.campaign, i.outcome, i.sentiment,
         i.satisfaction, i.nps, i.source_system, i.external_ref, i.complaint_state,
         i.complaint_severity, i.complaint_due_time, i.complaint_resolution,
         i.complaint_resolve_time, i.complaint_close_time, i.complaint_category,
         i.complaint_product, i.complaint_root_cause, i.complaint_assignee,
         i.complaint_reopen_count, i.complaint_reopen_reason, i.version, i.create_time,
         i.update_time, i.void_time, i.void_reason, i.voided_by, i.superseded_by, i.corrects"
    };
}

macro_rules! select_interaction {
    () => {
        concat!(
            "SELECT ",
            interaction_columns!(),
            " FROM interactions i JOIN customers c ON c.id = i.customer_id "
        )
    };
}

#[derive(FromRow)]
struct InteractionRow {
    customer_id: String,
    id: String,
    channel: String,
    kind: String,
    occur_time: DateTime<Utc>,
    recorded_by_employee: String,
    recorded_by_team: String,
    recorded_by_branch: String,
    summary: String,
    notes: String,
    products: Vec<String>,
    amount_currency: Option<String>,
    amount_units: Option<i64>,
    amount_nanos: Option<i32>,
    campaign: String,
    outcome: String,
    sentiment: Option<String>,
    satisfaction: Option<i16>,
    nps: Option<i16>,
    source_system: String,
    external_ref: String,
    complaint_state: Option<String>,
    complaint_severity: Option<String>,
    complaint_due_time: Option<DateTime<Utc>>,
    complaint_resolution: String,
    complaint_resolve_time: Option<DateTime<Utc>>,
    complaint_close_time: Option<DateTime<Utc>>,
    complaint_category: Option<String>,
    complaint_product: String,
    complaint_root_cause: String,
    complaint_assignee: String,
    complaint_reopen_count: i32,
    complaint_reopen_reason: String,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    void_time: Option<DateTime<Utc>>,
    void_reason: String,
    voided_by: String,
    superseded_by: String,
    corrects: String,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!(
        "stored interaction {what} {value:?} is not valid"
    ))
}

fn parse<T>(what: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, Error> {
    parse(value).ok_or_else(|| corrupt(what, value))
}

impl TryFrom<InteractionRow> for Interaction {
    type Error = Error;

    fn try_from(row: InteractionRow) -> Result<Self, Error> {
        let complaint = match (
            row.complaint_state,
            row.complaint_severity,
            row.complaint_due_time,
        ) {
            (Some(state), Some(severity), Some(due_time)) => Some(Complaint {
                state: parse("complaint state", &state, ComplaintState::parse)?,
                severity: parse("complaint severity", &severity, Severity::parse)?,
                due_time,
                resolution: row.complaint_resolution,
                resolve_time: row.complaint_resolve_time,
                close_time: row.complaint_close_time,
                category: row
                    .complaint_category
                    .map(|c| parse("complaint category", &c, ComplaintCategory::parse))
                    .transpose()?,
                product: row.complaint_product,
                root_cause: row.complaint_root_cause,
                assignee: row.complaint_assignee,
                reopen_count: row.complaint_reopen_count,
                reopen_reason: row.complaint_reopen_reason,
            }),
            _ => None,
        };
        let amount = match (row.amount_currency, row.amount_units, row.amount_nanos) {
            (Some(currency_code), Some(units), Some(nanos)) => Some(Money {
                currency_code,
                units,
                nanos,
            }),
            _ => None,
        };
        Ok(Interaction {
            customer: CustomerId::parse(&row.customer_id)
                .map_err(|_| corrupt("customer id", &row.customer_id))?,
            fields: NewInteraction {
                id: row.id,
                channel: parse("channel", &row.channel, Channel::parse)?,
                kind: parse("kind", &row.kind, Kind::parse)?,
                occur_time: row.occur_time,
                recorded_by: RecordedBy {
                    employee: row.recorded_by_employee,
                    team: row.recorded_by_team,
                    branch: row.recorded_by_branch,
                },
                summary: row.summary,
                notes: row.notes,
                products: row.products,
                amount,
                campaign: row.campaign,
                outcome: row.outcome,
                sentiment: row
                    .sentiment
                    .map(|s| parse("sentiment", &s, Sentiment::parse))
                    .transpose()?,
                satisfaction: row.satisfaction,
                nps: row.nps,
                source_system: row.source_system,
                external_ref: row.external_ref,
                complaint,
                service_request: None,
                occur_time_stated: true,
            },
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
            void: row.void_time.map(|time| Voiding {
                time,
                reason: row.void_reason,
                by: row.voided_by,
                superseded_by: row.superseded_by,
            }),
            corrects: row.corrects,
        })
    }
}

/// What happened to each row of an append.
#[derive(Debug)]
pub enum Appended {
    /// Written now.
    New(Box<Interaction>),
    /// Its (source system, external ref) was already stored: the stored row.
    Duplicate(Box<Interaction>),
    /// A duplicate that was not read back (bulk import counts only).
    Skipped,
    /// Its (source system, external ref) is stored with different content:
    /// the name of the stored interaction.
    Conflict(String),
}

/// The customers of `ids` that exist, are not erased and are in `scope`,
/// share-locked so an erasure cannot slip in before the append commits.
pub async fn lock_customers(
    conn: &mut PgConnection,
    ids: &[&str],
    scope: Option<&str>,
) -> Result<Vec<String>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM customers
         WHERE id = ANY($1) AND delete_time IS NULL AND ($2::text IS NULL OR home_branch = $2)
         ORDER BY id FOR SHARE",
    )
    .bind(ids)
    .bind(scope)
    .fetch_all(conn)
    .instrument(statement("SELECT", "customers"))
    .await?)
}

/// Of `wanted` (customer id, the caller's branch scope) pairs, the indexes
/// of those whose customer exists, is not erased and is in that pair's
/// scope, share-locked like `lock_customers`: one statement for the calls
/// of a group commit, each checked in its own caller's scope.
pub async fn lock_customers_each(
    conn: &mut PgConnection,
    wanted: &[(&str, Option<&str>)],
) -> Result<Vec<usize>, Error> {
    let ids: Vec<&str> = wanted.iter().map(|(id, _)| *id).collect();
    let scopes: Vec<Option<&str>> = wanted.iter().map(|(_, scope)| *scope).collect();
    let found: Vec<i64> = sqlx::query_scalar(
        "SELECT t.n FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS t(id, scope, n)
         JOIN customers c ON c.id = t.id
         WHERE c.delete_time IS NULL AND (t.scope IS NULL OR c.home_branch = t.scope)
         ORDER BY c.id FOR SHARE OF c",
    )
    .bind(&ids)
    .bind(&scopes)
    .fetch_all(conn)
    .instrument(statement("SELECT", "customers"))
    .await?;
    Ok(found.into_iter().map(|n| n as usize - 1).collect())
}

/// How many of the interactions (customer id, interaction id) exist for
/// customers that are not erased and are in `scope`.
pub async fn count_reachable(
    conn: &mut PgConnection,
    pairs: &[(String, String)],
    scope: Option<&str>,
) -> Result<i64, Error> {
    let customers: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
    let ids: Vec<&str> = pairs.iter().map(|(_, i)| i.as_str()).collect();
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM interactions i JOIN customers c ON c.id = i.customer_id
         JOIN UNNEST($1::text[], $2::text[]) AS t(customer_id, id)
           ON t.customer_id = i.customer_id AND t.id = i.id
         WHERE c.delete_time IS NULL AND ($3::text IS NULL OR c.home_branch = $3)",
    )
    .bind(&customers)
    .bind(&ids)
    .bind(scope)
    .fetch_one(conn)
    .instrument(statement("SELECT", "interactions"))
    .await?)
}

/// Appends interactions in one statement (UNNEST), with an outbox row each,
/// skipping rows whose (customer, source system, external ref) exists. The
/// customers must have been locked with `lock_customers`. With
/// `read_duplicates`, a duplicate returns the stored row.
pub async fn append(
    conn: &mut PgConnection,
    rows: &[(CustomerId, NewInteraction)],
    read_duplicates: bool,
) -> Result<Vec<Appended>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    macro_rules! column {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let inserted: Vec<InteractionRow> = sqlx::query_as(concat!(
        "WITH input AS (
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                                 $11::jsonb[], $12::text[], $13::int8[], $14::int4[], $15::text[],
                                 $16::text[], $17::text[], $18::int2[], $19::int2[], $20::text[],
                                 $21::text[], $22::text[], $23::text[], $24::timestamptz[],
                                 $25::bytea[], $26::text[], $27::text[], $28::text[])
                AS t(customer_id, id, channel, kind, occur_time, employee, team, branch, summary,
                     notes, products, currency, units, nanos, campaign, outcome, sentiment,
                     satisfaction, nps, source_system, external_ref, complaint_state,
                     complaint_severity, complaint_due_time, fingerprint, complaint_category,
                     complaint_product, complaint_assignee)
         ), k AS (
            -- The keys first (interactions is partitioned by occur_time, so
            -- its own unique indexes cannot hold these): a taken id fails,
            -- a taken external ref skips the row.
            INSERT INTO interaction_keys (customer_id, id, source_system, external_ref)
            SELECT customer_id, id, source_system, external_ref FROM input
            ON CONFLICT (customer_id, source_system, external_ref) WHERE external_ref <> ''
            DO NOTHING
            RETURNING customer_id, id
         ), i AS (
            INSERT INTO interactions AS i (customer_id, id, channel, kind, occur_time,
                recorded_by_employee, recorded_by_team, recorded_by_branch, summary, notes,
                products, amount_currency, amount_units, amount_nanos, campaign, outcome,
                sentiment, satisfaction, nps, source_system, external_ref, complaint_state,
                complaint_severity, complaint_due_time, fingerprint, complaint_category,
                complaint_product, complaint_assignee)
            SELECT customer_id, id, channel, kind, occur_time, employee, team, branch, summary,
                   notes, ARRAY(SELECT jsonb_array_elements_text(products)), currency, units,
                   nanos, campaign, outcome, sentiment, satisfaction, nps, source_system,
                   external_ref, complaint_state, complaint_severity, complaint_due_time,
                   fingerprint, complaint_category, complaint_product, complaint_assignee
            FROM input JOIN k USING (customer_id, id)
            RETURNING *
         ), outboxed AS (
            INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
            SELECT 'interaction', 'customers/' || customer_id || '/interactions/' || id,
                   'interaction.logged',
                   jsonb_build_object('customer', 'customers/' || customer_id,
                                      'channel', channel, 'kind', kind)
            FROM i
         )
         SELECT ",
        interaction_columns!(),
        " FROM i"
    ))
    .bind(column!(|(c, _)| c.as_str()))
    .bind(column!(|(_, n)| n.id.as_str()))
    .bind(column!(|(_, n)| n.channel.as_str()))
    .bind(column!(|(_, n)| n.kind.as_str()))
    .bind(column!(|(_, n)| n.occur_time))
    .bind(column!(|(_, n)| n.recorded_by.employee.as_str()))
    .bind(column!(|(_, n)| n.recorded_by.team.as_str()))
    .bind(column!(|(_, n)| n.recorded_by.branch.as_str()))
    .bind(column!(|(_, n)| n.summary.as_str()))
    .bind(column!(|(_, n)| n.notes.as_str()))
    .bind(column!(|(_, n)| Json(&n.products)))
    .bind(column!(|(_, n)| n
        .amount
        .as_ref()
        .map(|m| m.currency_code.as_str())))
    .bind(column!(|(_, n)| n.amount.as_ref().map(|m| m.units)))
    .bind(column!(|(_, n)| n.amount.as_ref().map(|m| m.nanos)))
    .bind(column!(|(_, n)| n.campaign.as_str()))
    .bind(column!(|(_, n)| n.outcome.as_str()))
    .bind(column!(|(_, n)| n.sentiment.map(Sentiment::as_str)))
    .bind(column!(|(_, n)| n.satisfaction))
    .bind(column!(|(_, n)| n.nps))
    .bind(column!(|(_, n)| n.source_system.as_str()))
    .bind(column!(|(_, n)| n.external_ref.as_str()))
    .bind(column!(|(_, n)| n
        .complaint
        .as_ref()
        .map(|c| c.state.as_str())))
    .bind(column!(|(_, n)| n
        .complaint
        .as_ref()
        .map(|c| c.severity.as_str())))
    .bind(column!(|(_, n)| n.complaint.as_ref().map(|c| c.due_time)))
    .bind(column!(|(_, n)| n.fingerprint()))
    .bind(column!(|(_, n)| n
        .complaint
        .as_ref()
        .and_then(|c| c.category.map(ComplaintCategory::as_str))))
    .bind(column!(|(_, n)| n
        .complaint
        .as_ref()
        .map(|c| c.product.as_str())
        .unwrap_or_default()))
    .bind(column!(|(_, n)| n
        .complaint
        .as_ref()
        .map(|c| c.assignee.as_str())
        .unwrap_or_default()))
    .fetch_all(&mut *conn)
    .instrument(statement("INSERT", "interactions"))
    .await
    .map_err(insert_error)?;
    if !inserted.is_empty() {
        notify_feed(conn).await?;
    }

    let mut fresh: HashMap<(String, String), Interaction> = HashMap::new();
    for row in inserted {
        let interaction = Interaction::try_from(row)?;
        fresh.insert(
            (
                interaction.customer.as_str().to_string(),
                interaction.fields.id.clone(),
            ),
            interaction,
        );
    }
    // SERVICE_REQUEST interactions written now open their service requests
    // in the same transaction.
    let opened: Vec<(&CustomerId, &NewInteraction)> = rows
        .iter()
        .filter(|(c, n)| {
            n.service_request.is_some()
                && fresh.contains_key(&(c.as_str().to_string(), n.id.clone()))
        })
        .map(|(c, n)| (c, n))
        .collect();
    super::service_requests::open(conn, &opened).await?;
    // Rows not written now collided with a stored (source system, external
    // ref): the same content is a re-send, other content a conflict.
    let collided: Vec<&(CustomerId, NewInteraction)> = rows
        .iter()
        .filter(|(c, n)| !fresh.contains_key(&(c.as_str().to_string(), n.id.clone())))
        .collect();
    let mut stored: HashMap<(String, String, String), StoredRef> = HashMap::new();
    if !collided.is_empty() {
        let found: Vec<StoredRef> = sqlx::query_as(
            "SELECT i.customer_id, i.source_system, i.external_ref, i.id, i.fingerprint
             FROM interactions i
             JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS t(customer_id, source_system, external_ref)
               ON t.customer_id = i.customer_id AND t.source_system = i.source_system
              AND t.external_ref = i.external_ref
             WHERE i.external_ref <> ''",
        )
        .bind(collided.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>())
        .bind(collided.iter().map(|(_, n)| n.source_system.as_str()).collect::<Vec<_>>())
        .bind(collided.iter().map(|(_, n)| n.external_ref.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "interactions"))
        .await?;
        for row in found {
            let key = (
                row.customer_id.clone(),
                row.source_system.clone(),
                row.external_ref.clone(),
            );
            stored.insert(key, row);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (customer, new) in rows {
        if let Some(interaction) = fresh.remove(&(customer.as_str().to_string(), new.id.clone())) {
            out.push(Appended::New(Box::new(interaction)));
            continue;
        }
        let key = (
            customer.as_str().to_string(),
            new.source_system.clone(),
            new.external_ref.clone(),
        );
        let Some(StoredRef {
            id, fingerprint, ..
        }) = stored.get(&key)
        else {
            return Err(Error::Internal(anyhow::anyhow!(
                "an interaction was neither written nor found under its external ref"
            )));
        };
        if fingerprint
            .as_ref()
            .is_some_and(|f| *f != new.fingerprint())
        {
            out.push(Appended::Conflict(interaction_name(customer, id)));
        } else if read_duplicates {
            let interaction = get(conn, customer, id, false).await?.ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("a duplicate vanished while read back"))
            })?;
            out.push(Appended::Duplicate(Box::new(interaction)));
        } else {
            out.push(Appended::Skipped);
        }
    }
    Ok(out)
}

/// An interaction found under an (source system, external ref) a write
/// collided with.
#[derive(FromRow)]
struct StoredRef {
    customer_id: String,
    source_system: String,
    external_ref: String,
    id: String,
    fingerprint: Option<Vec<u8>>,
}

/// One interaction of a reachable, not erased customer.
pub async fn get(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    for_update: bool,
) -> Result<Option<Interaction>, Error> {
    let sql = if for_update {
        concat!(
            select_interaction!(),
            "WHERE i.customer_id = $1 AND i.id = $2 FOR UPDATE OF i"
        )
    } else {
        concat!(
            select_interaction!(),
            "WHERE i.customer_id = $1 AND i.id = $2"
        )
    };
    sqlx::query_as::<_, InteractionRow>(sql)
        .bind(customer.as_str())
        .bind(id)
        .fetch_optional(conn)
        .instrument(statement("SELECT", "interactions"))
        .await?
        .map(Interaction::try_from)
        .transpose()
}

/// A page of a customer's timeline, newest first.
#[derive(Debug, Default, Clone)]
pub struct TimelineQuery {
    pub channel: Option<Channel>,
    pub kind: Option<Kind>,
    pub occur_from: Option<DateTime<Utc>>,
    pub occur_before: Option<DateTime<Utc>>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// The order: the timeline (newest first) or by (update_time, id).
    pub order: ListOrder,
    /// Resume strictly after this (occur_time, id) in timeline order, or
    /// (update_time, id) in update_time order.
    pub after: Option<(DateTime<Utc>, String)>,
}

/// The timeline SQL, shared with the EXPLAIN check in the tests.
macro_rules! timeline_filtered {
    () => {
        concat!(
            select_interaction!(),
            "WHERE i.customer_id = $1
               AND i.void_time IS NULL
               AND ($2::text IS NULL OR i.channel = $2)
               AND ($3::text IS NULL OR i.kind = $3)
               AND ($4::timestamptz IS NULL OR i.occur_time >= $4)
               AND ($5::timestamptz IS NULL OR i.occur_time < $5)
               AND ($9::timestamptz IS NULL OR i.update_time >= $9)
               AND ($10::timestamptz IS NULL OR i.update_time < $10) "
        )
    };
}

pub const TIMELINE_SQL: &str = concat!(
    timeline_filtered!(),
    "AND (i.occur_time, i.id) < ($6, $7)
     ORDER BY i.occur_time DESC, i.id DESC
     LIMIT $8"
);

/// A customer's interactions least recently changed first (ListInteractions
/// with order_by "update_time"), on the index `interactions_by_update_time`.
pub const CHANGES_SQL: &str = concat!(
    timeline_filtered!(),
    "AND ($6::timestamptz IS NULL OR (i.update_time, i.id) > ($6, $7))
     ORDER BY i.update_time, i.id
     LIMIT $8"
);

/// ListInteractions' statement for the query's order and its parameters:
/// what `timeline` runs and tests/api/plans.rs explains.
pub fn timeline_statement(
    customer: &CustomerId,
    query: &TimelineQuery,
    limit: i64,
) -> (&'static str, super::Args) {
    let (sql, after_time, after_id) = match (query.order, &query.after) {
        (ListOrder::UpdateTime, after) => (
            CHANGES_SQL,
            after.as_ref().map(|a| a.0),
            after.as_ref().map(|a| a.1.as_str()).unwrap_or_default(),
        ),
        (ListOrder::Natural, Some((time, id))) => (TIMELINE_SQL, Some(*time), id.as_str()),
        // The first page starts after "infinity", so one statement (and one
        // index range scan) serves every page.
        (ListOrder::Natural, None) => (TIMELINE_SQL, Some(DateTime::<Utc>::MAX_UTC), "\u{10FFFF}"),
    };
    let args = args!(
        customer.as_str(),
        query.channel.map(Channel::as_str),
        query.kind.map(Kind::as_str),
        query.occur_from,
        query.occur_before,
        after_time,
        after_id,
        limit,
        query.updated_from,
        query.updated_before,
    );
    (sql, args)
}

/// A page of a customer's timeline on the caller's connection (the access
/// check before it used the same one: one pool wait per call).
pub async fn timeline(
    conn: &mut PgConnection,
    customer: &CustomerId,
    query: &TimelineQuery,
    limit: i64,
) -> Result<Vec<Interaction>, Error> {
    let (sql, args) = timeline_statement(customer, query, limit);
    sqlx::query_as_with::<_, InteractionRow, _>(sql, args?)
        .fetch_all(conn)
        .instrument(statement("SELECT", "interactions"))
        .await?
        .into_iter()
        .map(Interaction::try_from)
        .collect()
}

/// The complaints SQL up to the order, shared with the EXPLAIN check in the
/// tests: the caller's `scope` ($1) as the natural order has always had it.
/// The state test is one or the other, never both: Postgres multiplies the
/// selectivities of `complaint_state IS NOT NULL` and `complaint_state =
/// 'OPEN'` as if independent, expects a handful of rows, and sorts them all
/// instead of reading a page from an index.
macro_rules! complaints_filtered {
    () => {
        concat!(
            select_interaction!(),
            "WHERE CASE WHEN $4::text IS NULL THEN i.complaint_state IS NOT NULL
                        ELSE i.complaint_state = $4 END
               AND c.delete_time IS NULL AND i.void_time IS NULL
               AND ($1::text IS NULL OR c.home_branch = $1)
               AND ($2::text IS NULL OR i.customer_id = $2)
               AND ($3::text IS NULL OR c.home_branch = $3)
               AND ($5::text IS NULL OR i.complaint_severity = $5)
               AND ($6::bool IS NULL OR (i.complaint_state IN ('OPEN', 'IN_PROGRESS')
                                         AND i.complaint_due_time < now()) = $6)
               AND ($11::timestamptz IS NULL OR i.update_time >= $11)
               AND ($12::timestamptz IS NULL OR i.update_time < $12) "
        )
    };
}

/// Complaints in due-time order.
pub const COMPLAINTS_SQL: &str = concat!(
    complaints_filtered!(),
    "AND ($7::timestamptz IS NULL
          OR (i.complaint_due_time, i.customer_id, i.id) > ($7, $8, $9))
     ORDER BY i.complaint_due_time, i.customer_id, i.id
     LIMIT $10"
);

/// Complaints least recently changed first (ListComplaints with order_by
/// "update_time"), on the index `complaints_by_update_time`.
pub const COMPLAINT_CHANGES_SQL: &str = concat!(
    complaints_filtered!(),
    "AND ($7::timestamptz IS NULL OR (i.update_time, i.customer_id, i.id) > ($7, $8, $9))
     ORDER BY i.update_time, i.customer_id, i.id
     LIMIT $10"
);

/// The statement of `query`'s order.
pub fn complaints_sql(query: &ComplaintQuery) -> &'static str {
    match query.order {
        ListOrder::Natural => COMPLAINTS_SQL,
        ListOrder::UpdateTime => COMPLAINT_CHANGES_SQL,
    }
}

/// The parameters of `COMPLAINTS_SQL` and `COMPLAINT_CHANGES_SQL`.
pub fn complaints_args(scope: Option<&str>, query: &ComplaintQuery, limit: i64) -> super::Args {
    let (after_due, after_customer, after_id) = due_cursor_params(&query.after);
    args!(
        scope,
        query.customer.as_ref().map(CustomerId::as_str),
        query.home_branch.as_deref(),
        query.state.map(ComplaintState::as_str),
        query.severity.map(Severity::as_str),
        query.overdue,
        after_due,
        after_customer,
        after_id,
        limit,
        query.updated_from,
        query.updated_before,
    )
}

/// Complaints in the caller's `scope`, in the query's order.
pub async fn list_complaints(
    conn: &mut PgConnection,
    scope: Option<&str>,
    query: &ComplaintQuery,
    limit: i64,
) -> Result<Vec<Interaction>, Error> {
    sqlx::query_as_with::<_, InteractionRow, _>(
        complaints_sql(query),
        complaints_args(scope, query, limit)?,
    )
    .fetch_all(conn)
    .instrument(statement("SELECT", "interactions"))
    .await?
    .into_iter()
    .map(Interaction::try_from)
    .collect()
}

#[derive(Debug, Default, Clone)]
pub struct ComplaintQuery {
    pub customer: Option<CustomerId>,
    pub home_branch: Option<String>,
    pub state: Option<ComplaintState>,
    pub severity: Option<Severity>,
    pub overdue: Option<bool>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Due-time order (the default) or by (update_time, customer, id).
    pub order: ListOrder,
    /// Resume strictly after this (time, customer, id), the time being the
    /// one the order sorts by.
    pub after: Option<DueCursor>,
}

/// Where a list of rows of every customer (complaints, follow-ups, service
/// requests) resumes: strictly after this (time, customer id, id), the time
/// being the due time or, in update_time order, the update time.
pub type DueCursor = (DateTime<Utc>, String, String);

/// The cursor's parts as nullable SQL parameters.
pub(super) fn due_cursor_params(
    after: &Option<DueCursor>,
) -> (Option<DateTime<Utc>>, Option<&str>, Option<&str>) {
    match after {
        Some((due, customer, id)) => (Some(*due), Some(customer.as_str()), Some(id.as_str())),
        None => (None, None, None),
    }
}

/// The SET items that give a changed row this transaction's feed position,
/// so watchers get it once more as `$change` (see `FeedItem::change`).
macro_rules! restamp {
    ($change:literal) => {
        concat!(
            "last_change = '",
            $change,
            "', txid = pg_current_xact_id()::text::bigint, seq = DEFAULT"
        )
    };
}

/// What a complaint change is recorded as in the outbox: the event type
/// (`complaint.updated`, `complaint.resolved`, ...), the state it left and
/// who made it (the outbox row's `create_time` says when).
pub struct ComplaintEvent<'a> {
    pub event_type: &'static str,
    pub from: ComplaintState,
    pub by: &'a str,
}

/// Writes a complaint's new state of an interaction locked by `get(.., true)`.
pub async fn update_complaint(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    complaint: &Complaint,
    event: ComplaintEvent<'_>,
) -> Result<Interaction, Error> {
    let row: InteractionRow = sqlx::query_as(concat!(
        "WITH i AS (
            UPDATE interactions SET complaint_state = $3, complaint_due_time = $4,
                   complaint_resolution = $5, complaint_resolve_time = $6,
                   complaint_close_time = $7, complaint_category = $8, complaint_product = $9,
                   complaint_root_cause = $10, complaint_assignee = $11,
                   complaint_reopen_count = $12, complaint_reopen_reason = $13,
                   version = version + 1, update_time = now(), ",
        restamp!("UPDATED"),
        "
            WHERE customer_id = $1 AND id = $2
            RETURNING *)
         SELECT ",
        interaction_columns!(),
        " FROM i"
    ))
    .bind(customer.as_str())
    .bind(id)
    .bind(complaint.state.as_str())
    .bind(complaint.due_time)
    .bind(&complaint.resolution)
    .bind(complaint.resolve_time)
    .bind(complaint.close_time)
    .bind(complaint.category.map(ComplaintCategory::as_str))
    .bind(&complaint.product)
    .bind(&complaint.root_cause)
    .bind(&complaint.assignee)
    .bind(complaint.reopen_count)
    .bind(&complaint.reopen_reason)
    .fetch_one(&mut *conn)
    .instrument(statement("UPDATE", "interactions"))
    .await?;
    let interaction = Interaction::try_from(row)?;
    // Codes and ids only: resolution, root cause and reason are free text
    // and stay out of the outbox.
    append_outbox(
        conn,
        "interaction",
        &interaction.name(),
        event.event_type,
        serde_json::json!({
            "state": complaint.state.as_str(),
            "from_state": event.from.as_str(),
            "by": event.by,
            "reopen_count": complaint.reopen_count,
        }),
    )
    .await?;
    notify_feed(conn).await?;
    Ok(interaction)
}

/// Takes an interaction locked by `get(.., true)` out of the record: voided,
/// or superseded by the correction `superseded_by` (an id of the same
/// customer) when that is not empty. The row stays with who, when and why,
/// is re-stamped with this transaction's feed position so watchers see it
/// once more (VOIDED or SUPERSEDED), and an outbox event records the change.
pub async fn void(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    reason: &str,
    by: &str,
    superseded_by: &str,
) -> Result<Interaction, Error> {
    let change = if superseded_by.is_empty() {
        "VOIDED"
    } else {
        "SUPERSEDED"
    };
    let row: Option<InteractionRow> = sqlx::query_as(concat!(
        "WITH i AS (
            UPDATE interactions SET void_time = now(), void_reason = $3, voided_by = $4,
                   superseded_by = $5, last_change = $6, version = version + 1,
                   update_time = now(), txid = pg_current_xact_id()::text::bigint,
                   seq = DEFAULT
            WHERE customer_id = $1 AND id = $2 AND void_time IS NULL
            RETURNING *)
         SELECT ",
        interaction_columns!(),
        " FROM i"
    ))
    .bind(customer.as_str())
    .bind(id)
    .bind(reason)
    .bind(by)
    .bind(superseded_by)
    .bind(change)
    .fetch_optional(&mut *conn)
    .instrument(statement("UPDATE", "interactions"))
    .await?;
    let Some(row) = row else {
        return Err(Error::Internal(anyhow::anyhow!(
            "a locked current interaction was not voided"
        )));
    };
    let interaction = Interaction::try_from(row)?;
    // Ids and codes only: the reason is free text and stays out.
    let correction = if superseded_by.is_empty() {
        String::new()
    } else {
        interaction_name(customer, superseded_by)
    };
    append_outbox(
        conn,
        "interaction",
        &interaction.name(),
        if superseded_by.is_empty() {
            "interaction.voided"
        } else {
            "interaction.superseded"
        },
        serde_json::json!({
            "customer": customer.name(),
            "by": by,
            "superseded_by": correction,
        }),
    )
    .await?;
    notify_feed(conn).await?;
    Ok(interaction)
}

/// Marks a just appended correction with the id of what it corrects.
pub async fn mark_correction(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    corrects: &str,
) -> Result<Interaction, Error> {
    sqlx::query("UPDATE interactions SET corrects = $3 WHERE customer_id = $1 AND id = $2")
        .bind(customer.as_str())
        .bind(id)
        .bind(corrects)
        .execute(&mut *conn)
        .instrument(statement("UPDATE", "interactions"))
        .await?;
    get(conn, customer, id, false)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a correction vanished mid-write")))
}

/// Marks an interaction whose service request changed as UPDATED: a new
/// version and update time, and its feed position, so caches and watchers
/// holding it learn of the change.
pub async fn touch(conn: &mut PgConnection, customer: &CustomerId, id: &str) -> Result<(), Error> {
    sqlx::query(concat!(
        "UPDATE interactions SET version = version + 1, update_time = now(), ",
        restamp!("UPDATED"),
        " WHERE customer_id = $1 AND id = $2"
    ))
    .bind(customer.as_str())
    .bind(id)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "interactions"))
    .await?;
    notify_feed(conn).await
}

/// Wakes the interaction feed once the transaction commits.
pub async fn notify_feed(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(FEED_CHANNEL)
        .execute(conn)
        .instrument(statement("NOTIFY", "interactions"))
        .await?;
    Ok(())
}

/// The figures of one group of GetComplaintSummary.
#[derive(Debug, FromRow)]
pub struct ComplaintFiguresRow {
    /// `total`, `category`, `product` or `branch`.
    pub dimension: String,
    /// The category, product code or branch id; empty for the total and for
    /// complaints logged without a category or product.
    pub key: String,
    pub received: i64,
    pub resolved: i64,
    pub open: i64,
    pub overdue: i64,
    pub reopened: i64,
    pub median_resolution_seconds: Option<f64>,
}

/// GetComplaintSummary's statement: complaints received in [$3, $4) of the
/// customers of branch $1 (the caller's reach) and $2, grouped (what
/// `complaint_summary` runs and tests/api/plans.rs explains).
pub const COMPLAINT_SUMMARY_SQL: &str = "WITH received AS (
        SELECT COALESCE(i.complaint_category, '') AS category,
               i.complaint_product AS product,
               c.home_branch AS branch,
               i.complaint_state IN ('RESOLVED', 'CLOSED')
                   AND i.complaint_resolve_time IS NOT NULL AS resolved,
               i.complaint_state IN ('OPEN', 'IN_PROGRESS') AS open,
               i.complaint_state IN ('OPEN', 'IN_PROGRESS')
                   AND i.complaint_due_time < now() AS overdue,
               i.complaint_reopen_count > 0 AS reopened,
               extract(epoch FROM i.complaint_resolve_time - i.occur_time)::float8
                   AS resolution_seconds
        FROM interactions i JOIN customers c ON c.id = i.customer_id
        WHERE i.complaint_state IS NOT NULL AND i.void_time IS NULL
          AND i.occur_time >= $3 AND i.occur_time < $4
          AND ($1::text IS NULL OR c.home_branch = $1)
          AND ($2::text IS NULL OR c.home_branch = $2)
     )
     SELECT CASE WHEN GROUPING(category) = 0 THEN 'category'
                 WHEN GROUPING(product) = 0 THEN 'product'
                 WHEN GROUPING(branch) = 0 THEN 'branch'
                 ELSE 'total' END AS dimension,
            CASE WHEN GROUPING(category) = 0 THEN category
                 WHEN GROUPING(product) = 0 THEN product
                 WHEN GROUPING(branch) = 0 THEN branch
                 ELSE '' END AS key,
            count(*) AS received,
            count(*) FILTER (WHERE resolved) AS resolved,
            count(*) FILTER (WHERE open) AS open,
            count(*) FILTER (WHERE overdue) AS overdue,
            count(*) FILTER (WHERE reopened) AS reopened,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_seconds)
                FILTER (WHERE resolved) AS median_resolution_seconds
     FROM received
     GROUP BY GROUPING SETS ((category), (product), (branch), ())";

/// The parameters of `COMPLAINT_SUMMARY_SQL`.
pub fn complaint_summary_args(
    reach: Option<&str>,
    branch: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> super::Args {
    args!(reach, branch, start, end)
}

/// GetComplaintSummary in one statement: the complaints received in
/// [`start`, `end`) of the customers of the caller's `reach` (None: every
/// branch) and of the requested `branch`, grouped by category, product,
/// branch and in total at once (GROUPING SETS). Erased customers count:
/// their complaints keep their codes for aggregates.
pub async fn complaint_summary(
    conn: &mut PgConnection,
    reach: Option<&str>,
    branch: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ComplaintFiguresRow>, Error> {
    let args = complaint_summary_args(reach, branch, start, end)?;
    Ok(
        sqlx::query_as_with::<_, ComplaintFiguresRow, _>(COMPLAINT_SUMMARY_SQL, args)
            .fetch_all(conn)
            .instrument(statement("SELECT", "interactions"))
            .await?,
    )
}

/// Erasure of a customer's free text on interactions and follow-ups; counts
/// and codes stay for aggregates. Each interaction is streamed once more, as
/// ERASED, so watchers drop it.
pub async fn erase_text(conn: &mut PgConnection, customer: &CustomerId) -> Result<(), Error> {
    sqlx::query(concat!(
        "UPDATE interactions SET summary = '', notes = '', outcome = '',
                    complaint_resolution = '', complaint_root_cause = '',
                    complaint_reopen_reason = '', void_reason = '', fingerprint = NULL,
                    version = version + 1, update_time = now(), ",
        restamp!("ERASED"),
        " WHERE customer_id = $1"
    ))
    .bind(customer.as_str())
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "interactions"))
    .await?;
    sqlx::query(
        "UPDATE follow_ups SET purpose = '', cancel_reason = '', version = version + 1,
                update_time = now()
         WHERE customer_id = $1",
    )
    .bind(customer.as_str())
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "follow_ups"))
    .await?;
    notify_feed(conn).await
}

// Follow-ups.

/// A follow-up (回访) task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub customer: CustomerId,
    pub id: String,
    pub assignee: String,
    pub branch: String,
    pub due_time: DateTime<Utc>,
    pub state: FollowUpState,
    pub purpose: String,
    pub channel: Option<Channel>,
    pub source_interaction: String,
    pub completion_interaction: String,
    pub complete_time: Option<DateTime<Utc>>,
    pub cancel_reason: String,
    pub cancel_time: Option<DateTime<Utc>>,
    pub created_by: String,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub recurrence: Recurrence,
}

#[derive(FromRow)]
struct FollowUpRow {
    customer_id: String,
    id: String,
    assignee: String,
    branch: String,
    due_time: DateTime<Utc>,
    state: String,
    purpose: String,
    channel: Option<String>,
    source_interaction: String,
    completion_interaction: String,
    complete_time: Option<DateTime<Utc>>,
    cancel_reason: String,
    cancel_time: Option<DateTime<Utc>>,
    created_by: String,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    recurrence_days: i32,
    recurrence_months: i32,
}

impl TryFrom<FollowUpRow> for FollowUp {
    type Error = Error;

    fn try_from(row: FollowUpRow) -> Result<Self, Error> {
        Ok(FollowUp {
            customer: CustomerId::parse(&row.customer_id)
                .map_err(|_| corrupt("follow-up customer", &row.customer_id))?,
            id: row.id,
            assignee: row.assignee,
            branch: row.branch,
            due_time: row.due_time,
            state: parse("follow-up state", &row.state, FollowUpState::parse)?,
            purpose: row.purpose,
            channel: row
                .channel
                .map(|c| parse("follow-up channel", &c, Channel::parse))
                .transpose()?,
            source_interaction: row.source_interaction,
            completion_interaction: row.completion_interaction,
            complete_time: row.complete_time,
            cancel_reason: row.cancel_reason,
            cancel_time: row.cancel_time,
            created_by: row.created_by,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
            recurrence: Recurrence {
                days: u32::try_from(row.recurrence_days)
                    .map_err(|_| corrupt("recurrence", &row.recurrence_days.to_string()))?,
                months: u32::try_from(row.recurrence_months)
                    .map_err(|_| corrupt("recurrence", &row.recurrence_months.to_string()))?,
            },
        })
    }
}

macro_rules! select_follow_up {
    () => {
        "SELECT f.customer_id, f.id, f.assignee, f.branch, f.due_time, f.state, f.purpose,
                f.channel, f.source_interaction, f.completion_interaction, f.complete_time,
                f.cancel_reason, f.cancel_time, f.created_by, f.version, f.create_time,
                f.update_time, f.recurrence_days, f.recurrence_months
         FROM follow_ups f JOIN customers c ON c.id = f.customer_id "
    };
}

pub async fn insert_follow_up(conn: &mut PgConnection, task: &FollowUp) -> Result<FollowUp, Error> {
    let row: FollowUpRow = sqlx::query_as(
        "INSERT INTO follow_ups AS f (customer_id, id, assignee, branch, due_time, state, purpose,
                                      channel, source_interaction, created_by,
                                      recurrence_days, recurrence_months)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING *",
    )
    .bind(task.customer.as_str())
    .bind(&task.id)
    .bind(&task.assignee)
    .bind(&task.branch)
    .bind(task.due_time)
    .bind(task.state.as_str())
    .bind(&task.purpose)
    .bind(task.channel.map(Channel::as_str))
    .bind(&task.source_interaction)
    .bind(&task.created_by)
    .bind(task.recurrence.days as i32)
    .bind(task.recurrence.months as i32)
    .fetch_one(&mut *conn)
    .instrument(statement("INSERT", "follow_ups"))
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.constraint() == Some("follow_ups_pkey") => {
            Error::AlreadyExists {
                resource: "a follow-up with this follow_up_id".into(),
                reason: ErrorReason::FollowUpAlreadyExists,
                existing: None,
            }
        }
        _ => e.into(),
    })?;
    let task = FollowUp::try_from(row)?;
    append_outbox(
        conn,
        "follow_up",
        &format!("customers/{}/followUps/{}", task.customer.as_str(), task.id),
        "follow_up.scheduled",
        serde_json::json!({ "assignee": task.assignee, "branch": task.branch }),
    )
    .await?;
    Ok(task)
}

/// One follow-up; `for_update` locks it until the transaction ends.
pub async fn get_follow_up(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    for_update: bool,
) -> Result<Option<FollowUp>, Error> {
    let sql = if for_update {
        concat!(
            select_follow_up!(),
            "WHERE f.customer_id = $1 AND f.id = $2 FOR UPDATE OF f"
        )
    } else {
        concat!(
            select_follow_up!(),
            "WHERE f.customer_id = $1 AND f.id = $2"
        )
    };
    sqlx::query_as::<_, FollowUpRow>(sql)
        .bind(customer.as_str())
        .bind(id)
        .fetch_optional(conn)
        .instrument(statement("SELECT", "follow_ups"))
        .await?
        .map(FollowUp::try_from)
        .transpose()
}

/// What ReassignFollowUp or CancelFollowUp does to a locked, SCHEDULED task.
pub enum FollowUpChange<'a> {
    Reassign {
        assignee: &'a str,
        branch: &'a str,
        due_time: DateTime<Utc>,
    },
    Cancel {
        reason: &'a str,
    },
}

/// Applies a change to a locked task, with its outbox event (names and
/// codes only: the reason is free text and stays out of the outbox).
pub async fn change_follow_up(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    change: FollowUpChange<'_>,
) -> Result<FollowUp, Error> {
    let (query, event, payload) = match change {
        FollowUpChange::Reassign {
            assignee,
            branch,
            due_time,
        } => (
            sqlx::query_as(
                "UPDATE follow_ups SET assignee = $3, branch = $4, due_time = $5,
                        version = version + 1, update_time = now()
                 WHERE customer_id = $1 AND id = $2
                 RETURNING *",
            )
            .bind(customer.as_str())
            .bind(id)
            .bind(assignee)
            .bind(branch)
            .bind(due_time),
            "follow_up.reassigned",
            serde_json::json!({ "assignee": assignee, "branch": branch }),
        ),
        FollowUpChange::Cancel { reason } => (
            sqlx::query_as(
                "UPDATE follow_ups SET state = 'CANCELLED', cancel_reason = $3,
                        cancel_time = now(), version = version + 1, update_time = now()
                 WHERE customer_id = $1 AND id = $2
                 RETURNING *",
            )
            .bind(customer.as_str())
            .bind(id)
            .bind(reason),
            "follow_up.cancelled",
            serde_json::json!({}),
        ),
    };
    let row: FollowUpRow = query
        .fetch_one(&mut *conn)
        .instrument(statement("UPDATE", "follow_ups"))
        .await?;
    let task = FollowUp::try_from(row)?;
    append_outbox(
        conn,
        "follow_up",
        &format!("customers/{}/followUps/{}", customer.as_str(), id),
        event,
        payload,
    )
    .await?;
    Ok(task)
}

/// Marks a locked task completed by the interaction `completion`.
pub async fn complete_follow_up(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    completion: &str,
) -> Result<FollowUp, Error> {
    let row: FollowUpRow = sqlx::query_as(
        "UPDATE follow_ups AS f SET state = 'COMPLETED', completion_interaction = $3,
                complete_time = now(), version = version + 1, update_time = now()
         WHERE customer_id = $1 AND id = $2
         RETURNING *",
    )
    .bind(customer.as_str())
    .bind(id)
    .bind(completion)
    .fetch_one(&mut *conn)
    .instrument(statement("UPDATE", "follow_ups"))
    .await?;
    let task = FollowUp::try_from(row)?;
    append_outbox(
        conn,
        "follow_up",
        &format!("customers/{}/followUps/{}", customer.as_str(), id),
        "follow_up.completed",
        serde_json::json!({ "interaction": completion }),
    )
    .await?;
    Ok(task)
}

#[derive(Debug, Default, Clone)]
pub struct FollowUpQuery {
    pub customer: Option<CustomerId>,
    pub assignee: Option<String>,
    pub branch: Option<String>,
    pub state: Option<FollowUpState>,
    pub overdue: Option<bool>,
    pub due_from: Option<DateTime<Utc>>,
    pub due_before: Option<DateTime<Utc>>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Due-time order (the default) or by (update_time, customer, id).
    pub order: ListOrder,
    /// Resume strictly after this (time, customer, id) in the order.
    pub after: Option<DueCursor>,
}

/// The follow-ups SQL up to the order, shared with the EXPLAIN check in the
/// tests: the caller's `scope` ($1) as the natural order has always had it.
macro_rules! follow_ups_filtered {
    () => {
        concat!(
            select_follow_up!(),
            "WHERE c.delete_time IS NULL
               AND ($1::text IS NULL OR c.home_branch = $1)
               AND ($2::text IS NULL OR f.customer_id = $2)
               AND ($3::text IS NULL OR f.assignee = $3)
               AND ($4::text IS NULL OR f.branch = $4)
               AND ($5::text IS NULL OR f.state = $5)
               AND ($6::bool IS NULL OR (f.state = 'SCHEDULED' AND f.due_time < now()) = $6)
               -- The same for overdue = true, in a form an index can serve
               -- (follow_ups_by_state up to now): a plan for true keeps only this.
               AND ($6 IS NOT TRUE OR (f.state = 'SCHEDULED' AND f.due_time < now()))
               AND ($7::timestamptz IS NULL OR f.due_time >= $7)
               AND ($8::timestamptz IS NULL OR f.due_time < $8)
               AND ($13::timestamptz IS NULL OR f.update_time >= $13)
               AND ($14::timestamptz IS NULL OR f.update_time < $14) "
        )
    };
}

/// Follow-ups in due-time order.
pub const FOLLOW_UPS_SQL: &str = concat!(
    follow_ups_filtered!(),
    "AND ($9::timestamptz IS NULL
          OR (f.due_time, f.customer_id, f.id) > ($9, $10, $11))
     ORDER BY f.due_time, f.customer_id, f.id
     LIMIT $12"
);

/// Follow-ups least recently changed first (ListFollowUps with order_by
/// "update_time"), on the index `follow_ups_by_update_time`.
pub const FOLLOW_UP_CHANGES_SQL: &str = concat!(
    follow_ups_filtered!(),
    "AND ($9::timestamptz IS NULL OR (f.update_time, f.customer_id, f.id) > ($9, $10, $11))
     ORDER BY f.update_time, f.customer_id, f.id
     LIMIT $12"
);

/// The statement of `query`'s order.
pub fn follow_ups_sql(query: &FollowUpQuery) -> &'static str {
    match query.order {
        ListOrder::Natural => FOLLOW_UPS_SQL,
        ListOrder::UpdateTime => FOLLOW_UP_CHANGES_SQL,
    }
}

/// The parameters of `FOLLOW_UPS_SQL` and `FOLLOW_UP_CHANGES_SQL`.
pub fn follow_ups_args(scope: Option<&str>, query: &FollowUpQuery, limit: i64) -> super::Args {
    let (after_due, after_customer, after_id) = due_cursor_params(&query.after);
    args!(
        scope,
        query.customer.as_ref().map(CustomerId::as_str),
        query.assignee.as_deref(),
        query.branch.as_deref(),
        query.state.map(FollowUpState::as_str),
        query.overdue,
        query.due_from,
        query.due_before,
        after_due,
        after_customer,
        after_id,
        limit,
        query.updated_from,
        query.updated_before,
    )
}

/// Follow-ups in the caller's `scope`, in the query's order.
pub async fn list_follow_ups(
    conn: &mut PgConnection,
    scope: Option<&str>,
    query: &FollowUpQuery,
    limit: i64,
) -> Result<Vec<FollowUp>, Error> {
    sqlx::query_as_with::<_, FollowUpRow, _>(
        follow_ups_sql(query),
        follow_ups_args(scope, query, limit)?,
    )
    .fetch_all(conn)
    .instrument(statement("SELECT", "follow_ups"))
    .await?
    .into_iter()
    .map(FollowUp::try_from)
    .collect()
}

// The feed.

/// The feed's starting point, read on a connection the caller holds.
pub async fn feed_start(conn: &mut PgConnection) -> Result<FeedCursor, Error> {
    let horizon: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(conn)
            .instrument(statement("SELECT", "interactions"))
            .await?;
    Ok((horizon - 1, i64::MAX))
}

/// A position in the commit-ordered feed: (writing transaction id, sequence).
pub type FeedCursor = (i64, i64);

/// The transactions committed when a stream began (its start snapshot). The
/// start cursor lies before the oldest transaction then running, anywhere in
/// the cluster, so a long transaction elsewhere would let a new stream
/// deliver rows committed before it began; a stream skips those with this.
#[derive(Debug, Clone, Default)]
pub struct CommittedBefore {
    xmin: i64,
    xmax: i64,
    running: Vec<i64>,
}

impl CommittedBefore {
    /// Whether `txid` had committed (or ended) when the snapshot was taken.
    pub fn contains(&self, txid: i64) -> bool {
        txid < self.xmin || (txid < self.xmax && !self.running.contains(&txid))
    }
}

/// The start of a new stream: its cursor, and what it must not deliver.
pub async fn stream_start(conn: &mut PgConnection) -> Result<(FeedCursor, CommittedBefore), Error> {
    let (xmin, xmax, running): (i64, i64, Vec<i64>) = sqlx::query_as(
        "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,
                ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) x)
           FROM pg_current_snapshot() s",
    )
    .fetch_one(conn)
    .instrument(statement("SELECT", "interactions"))
    .await?;
    Ok((
        (xmin - 1, i64::MAX),
        CommittedBefore {
            xmin,
            xmax,
            running,
        },
    ))
}

/// An interaction as the feed delivers it, with what delivery filters need.
#[derive(Debug, Clone)]
pub struct FeedItem {
    pub cursor: FeedCursor,
    pub home_branch: String,
    pub interaction: Interaction,
    /// What the row was last streamed for: LOGGED, UPDATED, VOIDED,
    /// SUPERSEDED, MOVED or ERASED.
    pub change: String,
    /// On a MOVED row, its name before the merge.
    pub previous_name: String,
}

#[derive(FromRow)]
struct FeedRow {
    #[sqlx(flatten)]
    interaction: InteractionRow,
    home_branch: String,
    txid: i64,
    seq: i64,
    last_change: String,
    previous_name: String,
}

/// The feed (WatchInteractions, and its catch-up from a resume token):
/// interactions after the cursor ($1, $2) whose transactions are all
/// finished, optionally one customer's ($3) or one branch's ($4).
pub const FEED_SQL: &str = concat!(
    "SELECT ",
    interaction_columns!(),
    ", c.home_branch, i.txid, i.seq, i.last_change, i.previous_name
     FROM interactions i JOIN customers c ON c.id = i.customer_id
     WHERE (i.txid, i.seq) > ($1, $2)
       AND i.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
       AND (c.delete_time IS NULL OR i.last_change = 'ERASED')
       AND ($3::text IS NULL OR i.customer_id = $3)
       AND ($4::text IS NULL OR c.home_branch = $4)
     ORDER BY i.txid, i.seq
     LIMIT $5"
);

/// The parameters of `FEED_SQL`.
pub fn feed_args(
    cursor: FeedCursor,
    customer: Option<&CustomerId>,
    home_branch: Option<&str>,
    limit: i64,
) -> super::Args {
    args!(
        cursor.0,
        cursor.1,
        customer.map(CustomerId::as_str),
        home_branch,
        limit
    )
}

impl Db {
    /// The feed's starting point: everything committed so far lies before it.
    pub async fn feed_start(&self) -> Result<FeedCursor, Error> {
        feed_start(&mut *self.acquire().await?).await
    }

    /// `stream_start` on a pooled connection.
    pub async fn stream_start(&self) -> Result<(FeedCursor, CommittedBefore), Error> {
        stream_start(&mut *self.acquire().await?).await
    }

    /// Interactions after `cursor` whose transactions are all finished, in
    /// (transaction, sequence) order: a row of a transaction still running
    /// is held back, so nothing committed later can sort before what was
    /// delivered. Optionally only one customer's or one branch's.
    pub async fn feed_after(
        &self,
        cursor: FeedCursor,
        customer: Option<&CustomerId>,
        home_branch: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FeedItem>, Error> {
        let rows: Vec<FeedRow> =
            sqlx::query_as_with(FEED_SQL, feed_args(cursor, customer, home_branch, limit)?)
                .fetch_all(&mut *self.acquire().await?)
                .instrument(statement("SELECT", "interactions"))
                .await?;
        rows.into_iter()
            .map(|row| {
                Ok(FeedItem {
                    cursor: (row.txid, row.seq),
                    home_branch: row.home_branch,
                    interaction: row.interaction.try_into()?,
                    change: row.last_change,
                    previous_name: row.previous_name,
                })
            })
            .collect()
    }
}

// What the customer 360 view reads, each bounded and on one connection.

/// The parameters of the 360 view's per-customer lists: the customer and
/// how many.
pub fn customer_360_args(customer: &CustomerId, limit: i64) -> super::Args {
    args!(customer.as_str(), limit)
}

/// GetCustomer360: a customer's ($1) OPEN and IN_PROGRESS complaints,
/// earliest due first.
pub const OPEN_COMPLAINTS_SQL: &str = concat!(
    select_interaction!(),
    "WHERE i.customer_id = $1 AND i.complaint_state IN ('OPEN', 'IN_PROGRESS')
       AND i.void_time IS NULL
     ORDER BY i.complaint_due_time, i.id
     LIMIT $2"
);

/// A customer's OPEN and IN_PROGRESS complaints, earliest due first.
pub async fn open_complaints(
    conn: &mut PgConnection,
    customer: &CustomerId,
    limit: i64,
) -> Result<Vec<Interaction>, Error> {
    sqlx::query_as_with::<_, InteractionRow, _>(
        OPEN_COMPLAINTS_SQL,
        customer_360_args(customer, limit)?,
    )
    .fetch_all(conn)
    .instrument(statement("SELECT", "interactions"))
    .await?
    .into_iter()
    .map(Interaction::try_from)
    .collect()
}

/// GetCustomer360: a customer's ($1) SCHEDULED follow-ups, earliest due
/// first.
pub const SCHEDULED_FOLLOW_UPS_SQL: &str = concat!(
    select_follow_up!(),
    "WHERE f.customer_id = $1 AND f.state = 'SCHEDULED'
     ORDER BY f.due_time, f.id
     LIMIT $2"
);

/// A customer's SCHEDULED follow-ups, earliest due first.
pub async fn scheduled_follow_ups(
    conn: &mut PgConnection,
    customer: &CustomerId,
    limit: i64,
) -> Result<Vec<FollowUp>, Error> {
    sqlx::query_as_with::<_, FollowUpRow, _>(
        SCHEDULED_FOLLOW_UPS_SQL,
        customer_360_args(customer, limit)?,
    )
    .fetch_all(conn)
    .instrument(statement("SELECT", "follow_ups"))
    .await?
    .into_iter()
    .map(FollowUp::try_from)
    .collect()
}

/// An interaction INSERT's error: a taken `interaction_id` (held unique by
/// `interaction_keys`) is the caller's ALREADY_EXISTS, anything else the
/// database's.
pub(super) fn insert_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db)
            if matches!(
                db.constraint(),
                Some("interaction_keys_pkey" | "interactions_pkey")
            ) =>
        {
            Error::AlreadyExists {
                resource: "an interaction with this interaction_id".into(),
                reason: ErrorReason::InteractionAlreadyExists,
                existing: None,
            }
        }
        _ => e.into(),
    }
}
