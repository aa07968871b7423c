//! Service requests: opening them with their interactions, their state
//! changes with the history, the list, and the service KPIs
//! (GetServiceMetrics) over requests, complaints, ratings and follow-ups.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use tracing::Instrument;

use super::{append_outbox, statement};
use crate::{
    domain::{
        customer::CustomerId,
        filter::ListOrder,
        interaction::NewInteraction,
        service::{Priority, ServiceRequest, ServiceRequestState, StateChange},
    },
    error::Error,
};

/// Opens the service requests of SERVICE_REQUEST interactions just written
/// (customers locked): RECEIVED, due by the key-customer SLA when the
/// customer is VIP or MAJOR now, else by the standard one; each with its
/// receipt as the first history entry.
pub async fn open(
    conn: &mut PgConnection,
    rows: &[(&CustomerId, &NewInteraction)],
) -> Result<(), Error> {
    let intakes: Vec<_> = rows
        .iter()
        .filter_map(|(c, n)| n.service_request.as_ref().map(|s| (*c, *n, s)))
        .collect();
    if intakes.is_empty() {
        return Ok(());
    }
    macro_rules! column {
        ($f:expr) => {
            intakes.iter().map($f).collect::<Vec<_>>()
        };
    }
    let secs = |d: chrono::Duration| d.num_seconds() as f64;
    sqlx::query(
        "WITH input AS (
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                                 $5::timestamptz[], $6::float8[], $7::float8[], $8::float8[],
                                 $9::float8[], $10::text[])
                AS t(customer_id, id, priority, assignee, receive_time, std_response,
                     std_resolution, key_response, key_resolution, actor)
         ), opened AS (
            INSERT INTO service_requests (customer_id, interaction_id, state, priority,
                key_customer, assignee, receive_time, response_due_time, resolution_due_time)
            SELECT t.customer_id, t.id, 'RECEIVED', t.priority,
                   COALESCE(c.tier IN ('VIP', 'MAJOR'), false), t.assignee, t.receive_time,
                   t.receive_time + make_interval(secs => CASE WHEN c.tier IN ('VIP', 'MAJOR')
                       THEN t.key_response ELSE t.std_response END),
                   t.receive_time + make_interval(secs => CASE WHEN c.tier IN ('VIP', 'MAJOR')
                       THEN t.key_resolution ELSE t.std_resolution END)
            FROM input t JOIN customers c ON c.id = t.customer_id
            RETURNING customer_id, interaction_id
         )
         INSERT INTO service_request_events (customer_id, interaction_id, from_state, to_state,
                                             actor, change_time)
         SELECT o.customer_id, o.interaction_id, NULL, 'RECEIVED', t.actor, t.receive_time
         FROM opened o JOIN input t ON t.customer_id = o.customer_id AND t.id = o.interaction_id",
    )
    .bind(column!(|(c, _, _)| c.as_str()))
    .bind(column!(|(_, n, _)| n.id.as_str()))
    .bind(column!(|(_, _, s)| s.priority.as_str()))
    .bind(column!(|(_, _, s)| s.assignee.as_str()))
    .bind(column!(|(_, n, _)| n.occur_time))
    .bind(column!(|(_, _, s)| secs(s.standard.response)))
    .bind(column!(|(_, _, s)| secs(s.standard.resolution)))
    .bind(column!(|(_, _, s)| secs(s.key.response)))
    .bind(column!(|(_, _, s)| secs(s.key.resolution)))
    .bind(column!(|(_, n, _)| if n.recorded_by.employee.is_empty() {
        n.source_system.as_str()
    } else {
        n.recorded_by.employee.as_str()
    }))
    .execute(conn)
    .instrument(statement("INSERT", "service_requests"))
    .await?;
    Ok(())
}

macro_rules! request_columns {
    () => {
        "s.customer_id, s.interaction_id, s.state, s.priority, s.key_customer, s.assignee,
         i.channel, s.receive_time, s.response_due_time, s.resolution_due_time,
         s.first_response_time, s.resolve_time, s.satisfaction_check_time, s.cancel_time,
         s.satisfaction, s.need, s.solution, s.resolution, s.feedback, s.cancel_reason,
         s.version, s.create_time, s.update_time"
    };
}

macro_rules! select_request {
    () => {
        concat!(
            "SELECT ",
            request_columns!(),
            // The channel of the request's interaction, probed per row: a
            // plain join to the year-partitioned interactions cannot prove
            // the match unique (the partitions' keys include occur_time),
            // so the planner guesses a handful of rows in all and sorts the
            // whole list instead of reading one page in index order.
            " FROM service_requests s
              CROSS JOIN LATERAL (
                  SELECT i.channel FROM interactions i
                   WHERE i.customer_id = s.customer_id AND i.id = s.interaction_id
                   LIMIT 1) i
              JOIN customers c ON c.id = s.customer_id "
        )
    };
}

#[derive(FromRow)]
struct RequestRow {
    customer_id: String,
    interaction_id: String,
    state: String,
    priority: String,
    key_customer: bool,
    assignee: String,
    channel: String,
    receive_time: DateTime<Utc>,
    response_due_time: DateTime<Utc>,
    resolution_due_time: DateTime<Utc>,
    first_response_time: Option<DateTime<Utc>>,
    resolve_time: Option<DateTime<Utc>>,
    satisfaction_check_time: Option<DateTime<Utc>>,
    cancel_time: Option<DateTime<Utc>>,
    satisfaction: Option<i16>,
    need: String,
    solution: String,
    resolution: String,
    feedback: String,
    cancel_reason: String,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!("stored {what} {value:?} is not valid"))
}

fn state(value: &str) -> Result<ServiceRequestState, Error> {
    ServiceRequestState::parse(value).ok_or_else(|| corrupt("service request state", value))
}

impl TryFrom<RequestRow> for ServiceRequest {
    type Error = Error;

    fn try_from(row: RequestRow) -> Result<Self, Error> {
        Ok(ServiceRequest {
            customer: CustomerId::parse(&row.customer_id)
                .map_err(|_| corrupt("customer id", &row.customer_id))?,
            id: row.interaction_id,
            state: state(&row.state)?,
            priority: Priority::parse(&row.priority)
                .ok_or_else(|| corrupt("priority", &row.priority))?,
            key_customer: row.key_customer,
            assignee: row.assignee,
            channel: row.channel,
            receive_time: row.receive_time,
            response_due_time: row.response_due_time,
            resolution_due_time: row.resolution_due_time,
            first_response_time: row.first_response_time,
            resolve_time: row.resolve_time,
            satisfaction_check_time: row.satisfaction_check_time,
            cancel_time: row.cancel_time,
            satisfaction: row.satisfaction,
            need: row.need,
            solution: row.solution,
            resolution: row.resolution,
            feedback: row.feedback,
            cancel_reason: row.cancel_reason,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
            history: Vec::new(),
        })
    }
}

#[derive(FromRow)]
struct EventRow {
    customer_id: String,
    interaction_id: String,
    from_state: Option<String>,
    to_state: String,
    actor: String,
    change_time: DateTime<Utc>,
}

/// Fills in the history of each request, in one statement.
async fn with_history(
    conn: &mut PgConnection,
    mut requests: Vec<ServiceRequest>,
) -> Result<Vec<ServiceRequest>, Error> {
    if requests.is_empty() {
        return Ok(requests);
    }
    let customers: Vec<&str> = requests.iter().map(|r| r.customer.as_str()).collect();
    let ids: Vec<&str> = requests.iter().map(|r| r.id.as_str()).collect();
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT e.customer_id, e.interaction_id, e.from_state, e.to_state, e.actor,
                e.change_time
         FROM service_request_events e
         JOIN UNNEST($1::text[], $2::text[]) AS t(customer_id, id)
           ON t.customer_id = e.customer_id AND t.id = e.interaction_id
         ORDER BY e.seq",
    )
    .bind(&customers)
    .bind(&ids)
    .fetch_all(conn)
    .instrument(statement("SELECT", "service_request_events"))
    .await?;
    for event in events {
        let change = StateChange {
            from: event.from_state.as_deref().map(state).transpose()?,
            to: state(&event.to_state)?,
            actor: event.actor,
            time: event.change_time,
        };
        if let Some(r) = requests
            .iter_mut()
            .find(|r| r.customer.as_str() == event.customer_id && r.id == event.interaction_id)
        {
            r.history.push(change);
        }
    }
    Ok(requests)
}

/// One service request with its history; `for_update` locks it for a
/// state change. The customer's reach is checked by the caller.
pub async fn get(
    conn: &mut PgConnection,
    customer: &CustomerId,
    id: &str,
    for_update: bool,
) -> Result<Option<ServiceRequest>, Error> {
    let sql = if for_update {
        concat!(
            select_request!(),
            "WHERE s.customer_id = $1 AND s.interaction_id = $2 FOR UPDATE OF s"
        )
    } else {
        concat!(
            select_request!(),
            "WHERE s.customer_id = $1 AND s.interaction_id = $2"
        )
    };
    let row: Option<RequestRow> = sqlx::query_as(sql)
        .bind(customer.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .instrument(statement("SELECT", "service_requests"))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(with_history(conn, vec![ServiceRequest::try_from(row)?])
        .await?
        .pop())
}

/// Writes a request's new state and fields, appends the change to its
/// history (who, when) and to the outbox, marks its interaction UPDATED for
/// the feed, and returns it as stored.
pub async fn change(
    conn: &mut PgConnection,
    request: &ServiceRequest,
    from: ServiceRequestState,
    event_type: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<ServiceRequest, Error> {
    sqlx::query(
        "UPDATE service_requests SET state = $3, assignee = $4, first_response_time = $5,
                resolve_time = $6, satisfaction_check_time = $7, cancel_time = $8,
                satisfaction = $9, need = $10, solution = $11, resolution = $12,
                feedback = $13, cancel_reason = $14, version = version + 1, update_time = now()
         WHERE customer_id = $1 AND interaction_id = $2",
    )
    .bind(request.customer.as_str())
    .bind(&request.id)
    .bind(request.state.as_str())
    .bind(&request.assignee)
    .bind(request.first_response_time)
    .bind(request.resolve_time)
    .bind(request.satisfaction_check_time)
    .bind(request.cancel_time)
    .bind(request.satisfaction)
    .bind(&request.need)
    .bind(&request.solution)
    .bind(&request.resolution)
    .bind(&request.feedback)
    .bind(&request.cancel_reason)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "service_requests"))
    .await?;
    sqlx::query(
        "INSERT INTO service_request_events (customer_id, interaction_id, from_state, to_state,
                                             actor, change_time)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(request.customer.as_str())
    .bind(&request.id)
    .bind(from.as_str())
    .bind(request.state.as_str())
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "service_request_events"))
    .await?;
    // The interaction that opened it changed with it: watchers get UPDATED.
    super::interactions::touch(conn, &request.customer, &request.id).await?;
    append_outbox(
        conn,
        "service_request",
        &request.name(),
        event_type,
        serde_json::json!({
            "state": request.state.as_str(),
            "from_state": from.as_str(),
            "by": actor,
        }),
    )
    .await?;
    get(conn, &request.customer, &request.id, false)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a service request vanished")))
}

#[derive(Debug, Default, Clone)]
pub struct ServiceRequestQuery {
    pub customer: Option<CustomerId>,
    pub home_branch: Option<String>,
    pub state: Option<ServiceRequestState>,
    pub priority: Option<Priority>,
    pub assignee: Option<String>,
    pub overdue: Option<bool>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Resolution due order (the default) or by (update_time, customer, id).
    pub order: ListOrder,
    /// Resume strictly after this (time, customer, id) in the order.
    pub after: Option<super::interactions::DueCursor>,
}

/// The service-requests SQL up to the order, shared with the EXPLAIN check
/// in the tests: the caller's `scope` ($1) as the natural order has always
/// had it.
macro_rules! requests_filtered {
    () => {
        concat!(
            select_request!(),
            "WHERE c.delete_time IS NULL
               AND ($1::text IS NULL OR c.home_branch = $1)
               AND ($2::text IS NULL OR s.customer_id = $2)
               AND ($3::text IS NULL OR c.home_branch = $3)
               AND ($4::text IS NULL OR s.state = $4)
               AND ($5::text IS NULL OR s.priority = $5)
               AND ($6::text IS NULL OR s.assignee = $6)
               AND ($7::bool IS NULL OR
                    (s.state IN ('RECEIVED', 'CONFIRMED', 'SOLUTION_PROPOSED', 'IN_PROGRESS')
                     AND (s.resolution_due_time < now()
                          OR (s.first_response_time IS NULL
                              AND s.response_due_time < now())))
                    = $7)
               AND ($12::timestamptz IS NULL OR s.update_time >= $12)
               AND ($13::timestamptz IS NULL OR s.update_time < $13) "
        )
    };
}

/// Service requests, earliest resolution due first.
pub const REQUESTS_SQL: &str = concat!(
    requests_filtered!(),
    "AND ($8::timestamptz IS NULL
          OR (s.resolution_due_time, s.customer_id, s.interaction_id) > ($8, $9, $10))
     ORDER BY s.resolution_due_time, s.customer_id, s.interaction_id
     LIMIT $11"
);

/// Service requests least recently changed first (ListServiceRequests with
/// order_by "update_time"), on the index `service_requests_by_update_time`.
pub const REQUEST_CHANGES_SQL: &str = concat!(
    requests_filtered!(),
    "AND ($8::timestamptz IS NULL
          OR (s.update_time, s.customer_id, s.interaction_id) > ($8, $9, $10))
     ORDER BY s.update_time, s.customer_id, s.interaction_id
     LIMIT $11"
);

/// The statement of `query`'s order.
pub fn list_sql(query: &ServiceRequestQuery) -> &'static str {
    match query.order {
        ListOrder::Natural => REQUESTS_SQL,
        ListOrder::UpdateTime => REQUEST_CHANGES_SQL,
    }
}

/// The parameters of `REQUESTS_SQL` and `REQUEST_CHANGES_SQL`.
pub fn list_args(scope: Option<&str>, query: &ServiceRequestQuery, limit: i64) -> super::Args {
    let (after_time, after_customer, after_id) =
        super::interactions::due_cursor_params(&query.after);
    args!(
        scope,
        query.customer.as_ref().map(CustomerId::as_str),
        query.home_branch.as_deref(),
        query.state.map(ServiceRequestState::as_str),
        query.priority.map(Priority::as_str),
        query.assignee.as_deref(),
        query.overdue,
        after_time,
        after_customer,
        after_id,
        limit,
        query.updated_from,
        query.updated_before,
    )
}

/// Service requests of customers in the caller's `scope` (None: every
/// branch), in the query's order, filtered in SQL.
pub async fn list(
    conn: &mut PgConnection,
    scope: Option<&str>,
    query: &ServiceRequestQuery,
    limit: i64,
) -> Result<Vec<ServiceRequest>, Error> {
    let rows: Vec<RequestRow> =
        sqlx::query_as_with(list_sql(query), list_args(scope, query, limit)?)
            .fetch_all(&mut *conn)
            .instrument(statement("SELECT", "service_requests"))
            .await?;
    let requests = rows
        .into_iter()
        .map(ServiceRequest::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    with_history(conn, requests).await
}

/// Erasure of a customer's free text on service requests.
pub async fn erase_text(conn: &mut PgConnection, customer: &CustomerId) -> Result<(), Error> {
    sqlx::query(
        "UPDATE service_requests SET need = '', solution = '', resolution = '', feedback = '',
                cancel_reason = '', version = version + 1, update_time = now()
         WHERE customer_id = $1",
    )
    .bind(customer.as_str())
    .execute(conn)
    .instrument(statement("UPDATE", "service_requests"))
    .await?;
    Ok(())
}

/// Whose service GetServiceMetrics reports on, within the caller's reach.
#[derive(Debug, Clone, Default)]
pub struct MetricsSubject {
    /// The caller's branch when bound to one (None: every branch).
    pub reach: Option<String>,
    /// Customers of this home branch.
    pub branch: Option<String>,
    /// Interactions recorded by this team, and what they opened.
    pub team: Option<String>,
    /// This employee: interactions recorded, requests, complaints and
    /// follow-ups assigned.
    pub employee: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// CSAT and NPS answers of one channel (None: the total).
#[derive(Debug, FromRow)]
pub struct RatingRow {
    pub channel: Option<String>,
    pub total: bool,
    pub csat_count: i64,
    pub csat_sum: i64,
    pub nps_count: i64,
    pub promoters: i64,
    pub passives: i64,
    pub detractors: i64,
}

/// Service requests or complaints of one channel (None: the total).
#[derive(Debug, FromRow)]
pub struct ResolutionRow {
    pub channel: Option<String>,
    pub total: bool,
    pub received: i64,
    pub cancelled: i64,
    pub resolved: i64,
    pub responded: i64,
    pub responded_within_sla: i64,
    pub median_response_seconds: Option<f64>,
    pub p90_response_seconds: Option<f64>,
    pub resolved_within_sla: i64,
    pub median_resolution_seconds: Option<f64>,
    pub p90_resolution_seconds: Option<f64>,
    pub response_overdue: i64,
    pub resolution_overdue: i64,
}

/// Follow-ups of one channel (None: without a channel, or the total).
#[derive(Debug, FromRow)]
pub struct FollowUpRow {
    pub channel: Option<String>,
    pub total: bool,
    pub due: i64,
    pub completed: i64,
    pub cancelled: i64,
    pub overdue: i64,
}

/// The four sets of rows behind GetServiceMetrics.
#[derive(Debug)]
pub struct MetricsRows {
    pub ratings: Vec<RatingRow>,
    pub requests: Vec<ResolutionRow>,
    pub complaints: Vec<ResolutionRow>,
    pub follow_ups: Vec<FollowUpRow>,
}

/// The subject's predicate on the customer `c` and the interaction `i`
/// (binds $1–$4), shared by the four statements. $5 and $6 are the period.
macro_rules! subject {
    () => {
        "($1::text IS NULL OR c.home_branch = $1)
               AND ($2::text IS NULL OR c.home_branch = $2)
               AND ($3::text IS NULL OR i.recorded_by_team = $3)"
    };
}

/// The aggregates of service requests and complaints over a `received`
/// relation with channel, receive, first response, resolve and due times and
/// the closed/cancelled flags, per channel and in total.
macro_rules! resolution_figures {
    () => {
        "
    SELECT channel, grouping(channel) = 1 AS total,
           count(*) AS received,
           count(*) FILTER (WHERE cancelled) AS cancelled,
           count(*) FILTER (WHERE resolved) AS resolved,
           count(first_response_time) AS responded,
           count(*) FILTER (WHERE first_response_time <= response_due_time)
               AS responded_within_sla,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds)
               AS median_response_seconds,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY response_seconds)
               AS p90_response_seconds,
           count(*) FILTER (WHERE resolved AND resolve_time <= resolution_due_time)
               AS resolved_within_sla,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_seconds)
               FILTER (WHERE resolved) AS median_resolution_seconds,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_seconds)
               FILTER (WHERE resolved) AS p90_resolution_seconds,
           count(*) FILTER (WHERE open AND first_response_time IS NULL
                            AND response_due_time < now()) AS response_overdue,
           count(*) FILTER (WHERE open AND resolution_due_time < now()) AS resolution_overdue
    FROM received
    GROUP BY GROUPING SETS ((channel), ())"
    };
}

/// GetServiceMetrics' ratings (interactions rated in the period, service requests by their satisfaction check).
pub const METRICS_RATINGS_SQL: &str = concat!(
    "WITH rated AS (
            SELECT i.channel, i.satisfaction::int AS csat, i.nps::int AS nps
            FROM interactions i JOIN customers c ON c.id = i.customer_id
            WHERE ",
    subject!(),
    " AND ($4::text IS NULL OR i.recorded_by_employee = $4)
              AND i.occur_time >= $5 AND i.occur_time < $6
              AND (i.satisfaction IS NOT NULL OR i.nps IS NOT NULL)
            UNION ALL
            SELECT i.channel, s.satisfaction::int, NULL
            FROM service_requests s
            JOIN interactions i ON i.customer_id = s.customer_id AND i.id = s.interaction_id
            JOIN customers c ON c.id = s.customer_id
            WHERE ",
    subject!(),
    " AND ($4::text IS NULL OR s.assignee = $4)
              AND s.satisfaction_check_time >= $5 AND s.satisfaction_check_time < $6
              AND s.satisfaction IS NOT NULL
         )
         SELECT channel, grouping(channel) = 1 AS total,
                count(csat) AS csat_count, COALESCE(sum(csat), 0)::int8 AS csat_sum,
                count(nps) AS nps_count,
                count(*) FILTER (WHERE nps >= 9) AS promoters,
                count(*) FILTER (WHERE nps BETWEEN 7 AND 8) AS passives,
                count(*) FILTER (WHERE nps <= 6) AS detractors
         FROM rated
         GROUP BY GROUPING SETS ((channel), ())"
);

/// GetServiceMetrics' service requests received in the period.
pub const METRICS_REQUESTS_SQL: &str = concat!(
    "WITH received AS (
            SELECT i.channel, s.first_response_time, s.response_due_time, s.resolve_time,
                   s.resolution_due_time,
                   s.state = 'CANCELLED' AS cancelled,
                   s.state IN ('RESOLVED', 'SATISFACTION_CHECKED')
                       AND s.resolve_time IS NOT NULL AS resolved,
                   s.state IN ('RECEIVED', 'CONFIRMED', 'SOLUTION_PROPOSED', 'IN_PROGRESS')
                       AS open,
                   extract(epoch FROM s.first_response_time - s.receive_time)::float8
                       AS response_seconds,
                   extract(epoch FROM s.resolve_time - s.receive_time)::float8
                       AS resolution_seconds
            FROM service_requests s
            JOIN interactions i ON i.customer_id = s.customer_id AND i.id = s.interaction_id
            JOIN customers c ON c.id = s.customer_id
            WHERE ",
    subject!(),
    " AND ($4::text IS NULL OR s.assignee = $4)
              AND s.receive_time >= $5 AND s.receive_time < $6
         )",
    resolution_figures!(),
    ""
);

/// GetServiceMetrics' complaints received in the period.
pub const METRICS_COMPLAINTS_SQL: &str = concat!(
    "WITH received AS (
            SELECT i.channel, NULL::timestamptz AS first_response_time,
                   NULL::timestamptz AS response_due_time,
                   i.complaint_resolve_time AS resolve_time,
                   i.complaint_due_time AS resolution_due_time,
                   false AS cancelled,
                   i.complaint_state IN ('RESOLVED', 'CLOSED')
                       AND i.complaint_resolve_time IS NOT NULL AS resolved,
                   i.complaint_state IN ('OPEN', 'IN_PROGRESS') AS open,
                   NULL::float8 AS response_seconds,
                   extract(epoch FROM i.complaint_resolve_time - i.occur_time)::float8
                       AS resolution_seconds
            FROM interactions i JOIN customers c ON c.id = i.customer_id
            WHERE i.complaint_state IS NOT NULL AND ",
    subject!(),
    "
              AND ($4::text IS NULL OR i.complaint_assignee = $4)
              AND i.occur_time >= $5 AND i.occur_time < $6
         )",
    resolution_figures!(),
    ""
);

/// GetServiceMetrics' follow-ups due in the period. A follow-up's team is
/// that of the interaction that prompted it (of the same customer); LEFT
/// JOIN so follow-ups without one still count for a branch or an employee.
pub const METRICS_FOLLOW_UPS_SQL: &str = "SELECT f.channel, grouping(f.channel) = 1 AS total,
                count(*) AS due,
                count(*) FILTER (WHERE f.state = 'COMPLETED') AS completed,
                count(*) FILTER (WHERE f.state = 'CANCELLED') AS cancelled,
                count(*) FILTER (WHERE f.state = 'SCHEDULED' AND f.due_time < now()) AS overdue
         FROM follow_ups f
         JOIN customers c ON c.id = f.customer_id
         LEFT JOIN interactions i
           ON i.customer_id = f.customer_id AND i.id = split_part(f.source_interaction, '/', 4)
         WHERE ($1::text IS NULL OR c.home_branch = $1)
           AND ($2::text IS NULL OR c.home_branch = $2)
           AND ($3::text IS NULL OR i.recorded_by_team = $3)
           AND ($4::text IS NULL OR f.assignee = $4)
           AND f.due_time >= $5 AND f.due_time < $6
         GROUP BY GROUPING SETS ((f.channel), ())";

/// The parameters of the four GetServiceMetrics statements: the subject
/// ($1-$4) and the period ($5, $6).
pub fn metrics_args(s: &MetricsSubject) -> super::Args {
    args!(
        s.reach.as_deref(),
        s.branch.as_deref(),
        s.team.as_deref(),
        s.employee.as_deref(),
        s.start,
        s.end,
    )
}

/// GetServiceMetrics: four set-based statements (ratings, service requests,
/// complaints, follow-ups), each grouped per channel and in total at once.
/// Records are counted in the period by when they happened: ratings by the
/// interaction's time (a service request's satisfaction by its check time),
/// requests and complaints by their receipt, follow-ups by their due time.
/// Erased customers count: aggregates keep their codes.
pub async fn metrics(conn: &mut PgConnection, s: &MetricsSubject) -> Result<MetricsRows, Error> {
    let ratings: Vec<RatingRow> = sqlx::query_as_with(METRICS_RATINGS_SQL, metrics_args(s)?)
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "interactions"))
        .await?;
    let requests: Vec<ResolutionRow> = sqlx::query_as_with(METRICS_REQUESTS_SQL, metrics_args(s)?)
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "service_requests"))
        .await?;
    // Complaints have no first response: those columns stay empty.
    let complaints: Vec<ResolutionRow> =
        sqlx::query_as_with(METRICS_COMPLAINTS_SQL, metrics_args(s)?)
            .fetch_all(&mut *conn)
            .instrument(statement("SELECT", "interactions"))
            .await?;
    let follow_ups: Vec<FollowUpRow> =
        sqlx::query_as_with(METRICS_FOLLOW_UPS_SQL, metrics_args(s)?)
            .fetch_all(&mut *conn)
            .instrument(statement("SELECT", "follow_ups"))
            .await?;
    Ok(MetricsRows {
        ratings,
        requests,
        complaints,
        follow_ups,
    })
}
