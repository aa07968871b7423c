//! Value segmentation, set-based: one pass over the interactions computes
//! every customer's RFM values, scores, pyramid tier, churn signals and
//! relationship type as of a date, and stores them per `as_of`.
//!
//! The rules (docs/insights.md explains them):
//! - Window: transactions with `window_start <= occur_time < as_of`.
//! - R, F, M: the last transaction's time, their count, and the sum of their
//!   amounts in the reporting currency (other currencies at the configured
//!   rates; without a rate an amount counts for F only).
//! - Scores 1–5 among the customers with a transaction in the window:
//!   `1 + 5 × (rank − 1) / n`, rank ascending with ties sharing the lowest
//!   rank, so equal values get equal scores.
//! - Tiers by value rank (M desc, then the later last transaction, more
//!   transactions, customer id): the first ⌊N × vip_share⌋ of all N customers
//!   are VIP, the next ⌊N × major_share⌋ MAJOR, the next ⌊N × ordinary_share⌋
//!   ORDINARY, the rest SMALL; no transaction in the window is SMALL.
//! - Customers who withdrew ANALYTICS consent are left out.
//! - Churn signals and the relationship type: `SIGNALS` and `RELATIONSHIP`
//!   below, with the thresholds and weights of `Rules` bound as $9.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use tracing::Instrument;

use super::statement;
use crate::{
    domain::{
        customer::Tier,
        insight::{Answers, ProductFit, RelationshipType, Rules, SegmentFacts, SignalCode},
    },
    error::Error,
};

/// A stored segmentation run.
#[derive(Debug, Clone, FromRow)]
pub struct Run {
    pub as_of: DateTime<Utc>,
    pub window_months: i32,
    pub window_start: DateTime<Utc>,
    pub reporting_currency: String,
    pub vip_share: f64,
    pub major_share: f64,
    pub ordinary_share: f64,
    pub model: sqlx::types::Json<Rules>,
    pub customer_count: i64,
    pub tier_changed_count: i64,
    pub compute_time: DateTime<Utc>,
}

/// How a run is asked for.
pub struct RunSpec<'a> {
    pub as_of: DateTime<Utc>,
    pub window_months: u32,
    pub window_start: DateTime<Utc>,
    pub model: &'a crate::domain::insight::SegmentModel,
}

const SELECT_RUN: &str = "SELECT as_of, window_months, window_start, reporting_currency,
        vip_share::float8 AS vip_share, major_share::float8 AS major_share,
        ordinary_share::float8 AS ordinary_share, model, customer_count, tier_changed_count,
        compute_time
   FROM segment_runs";

/// The per-customer facts of a run, in one statement over the interactions.
/// $1 as_of, $2 window_start, $3 reporting currency, $4/$5 fx currencies and
/// rates, $6–$8 tier shares, $9 the rules (jsonb).
const COMPUTE: &str = r#"
WITH fx (currency, rate) AS (
    SELECT * FROM unnest($4::text[], $5::float8[])
), rules AS (
    SELECT ($9->>'horizon_days')::int * interval '1 day' AS period,
           ($9->>'inactivity_factor')::float8 AS inactivity_factor,
           ($9->>'inactivity_min_days')::float8 AS inactivity_min_days,
           ($9->>'declining_ratio')::float8 AS declining_ratio,
           ($9->>'low_csat')::float8 AS low_csat,
           ($9->>'low_nps')::float8 AS low_nps,
           ($9->>'relational_min_tenure_days')::int * interval '1 day' AS min_tenure,
           ($9->>'relational_min_products')::int AS min_products,
           ($9->>'relational_min_contact_months')::int AS min_contact_months
), activity AS (
    SELECT i.customer_id,
           count(*) FILTER (WHERE tx) AS lifetime_transactions,
           min(i.occur_time) FILTER (WHERE tx) AS first_ever_transaction,
           max(i.occur_time) FILTER (WHERE tx) AS last_ever_transaction,
           count(*) FILTER (WHERE tx AND in_window) AS transaction_count,
           max(i.occur_time) FILTER (WHERE tx AND in_window) AS last_transaction,
           COALESCE(sum((i.amount_units::numeric + COALESCE(i.amount_nanos, 0)::numeric / 1000000000)
                        * CASE WHEN i.amount_currency = $3 THEN 1 ELSE fx.rate::numeric END)
                    FILTER (WHERE tx AND in_window), 0) AS monetary,
           count(*) FILTER (WHERE tx AND i.occur_time >= $1 - r.period) AS recent_count,
           count(*) FILTER (WHERE tx AND i.occur_time >= $1 - 2 * r.period
                                     AND i.occur_time < $1 - r.period) AS previous_count,
           count(*) FILTER (WHERE i.complaint_state IN ('OPEN', 'IN_PROGRESS')) AS open_complaints,
           count(*) FILTER (WHERE i.kind = 'COMPLAINT'
                                  AND i.occur_time >= $1 - 2 * r.period) AS recent_complaints,
           COALESCE(sum(i.satisfaction) FILTER (WHERE recent), 0) AS csat_sum,
           count(i.satisfaction) FILTER (WHERE recent) AS csat_count,
           count(*) FILTER (WHERE recent AND i.nps >= 9) AS promoters,
           count(*) FILTER (WHERE recent AND i.nps <= 6) AS detractors,
           count(i.nps) FILTER (WHERE recent) AS nps_count
      FROM interactions i
      CROSS JOIN rules r
      LEFT JOIN fx ON fx.currency = i.amount_currency
      CROSS JOIN LATERAL (SELECT i.kind = 'TRANSACTION' AS tx,
                                 i.occur_time >= $2 AS in_window,
                                 i.occur_time >= $1 - r.period AS recent) f
     WHERE i.occur_time < $1 AND i.void_time IS NULL
     GROUP BY i.customer_id
), contact AS (
    -- Months of the window with contact besides transactions; distinct
    -- pairs first, so the pass above stays a plain hash aggregate.
    SELECT m.customer_id, count(*)::int AS contact_months
      FROM (SELECT DISTINCT i.customer_id, date_trunc('month', i.occur_time, 'UTC')
              FROM interactions i
             WHERE i.kind <> 'TRANSACTION' AND i.occur_time >= $2 AND i.occur_time < $1
               AND i.void_time IS NULL) m
     GROUP BY m.customer_id
), held AS (
    SELECT h.customer_id, count(*)::int AS product_count,
           array_agg(h.product ORDER BY h.product) AS products
      FROM (SELECT DISTINCT i.customer_id, p AS product
              FROM interactions i, unnest(i.products) p
             WHERE i.kind = 'TRANSACTION' AND i.occur_time >= $2 AND i.occur_time < $1
               AND i.void_time IS NULL) h
     GROUP BY h.customer_id
), base AS (
    SELECT c.id,
           COALESCE(a.lifetime_transactions, 0) AS lifetime_transactions,
           a.first_ever_transaction, a.last_ever_transaction,
           COALESCE(a.transaction_count, 0) AS transaction_count,
           a.last_transaction,
           COALESCE(a.monetary, 0) AS monetary,
           COALESCE(a.recent_count, 0) AS recent_count,
           COALESCE(a.previous_count, 0) AS previous_count,
           COALESCE(ct.contact_months, 0) AS contact_months,
           COALESCE(a.open_complaints, 0) AS open_complaints,
           COALESCE(a.recent_complaints, 0) AS recent_complaints,
           COALESCE(a.csat_sum, 0) AS csat_sum, COALESCE(a.csat_count, 0) AS csat_count,
           COALESCE(a.promoters, 0) AS promoters, COALESCE(a.detractors, 0) AS detractors,
           COALESCE(a.nps_count, 0) AS nps_count,
           COALESCE(h.product_count, 0) AS product_count, h.products,
           (SELECT count(*) FROM customer_consents w
             WHERE w.customer_id = c.id AND NOT w.granted) AS withdrawn_consents,
           EXISTS (SELECT 1 FROM customer_links l
                    WHERE l.customer_id = c.id OR l.linked_customer_id = c.id) AS linked
      FROM customers c
      LEFT JOIN activity a ON a.customer_id = c.id
      LEFT JOIN held h ON h.customer_id = c.id
      LEFT JOIN contact ct ON ct.customer_id = c.id
     WHERE c.delete_time IS NULL
       AND (c.create_time < $1 OR a.lifetime_transactions > 0)
       AND NOT EXISTS (SELECT 1 FROM customer_consents x
                        WHERE x.customer_id = c.id AND x.purpose = 'ANALYTICS' AND NOT x.granted)
), ranked AS (
    SELECT b.*,
           count(*) OVER () AS n,
           count(*) FILTER (WHERE b.transaction_count > 0) OVER () AS n_tx,
           rank() OVER (PARTITION BY b.transaction_count > 0 ORDER BY b.last_transaction) AS r_rank,
           rank() OVER (PARTITION BY b.transaction_count > 0 ORDER BY b.transaction_count) AS f_rank,
           rank() OVER (PARTITION BY b.transaction_count > 0 ORDER BY b.monetary) AS m_rank,
           row_number() OVER (ORDER BY b.transaction_count > 0 DESC, b.monetary DESC,
                                       b.last_transaction DESC NULLS LAST,
                                       b.transaction_count DESC, b.id) AS value_rank
      FROM base b
), signals AS (
    SELECT k.*,
           ARRAY(SELECT s.code FROM (VALUES
               (1, 'long_inactivity', CASE WHEN k.lifetime_transactions >= 2 THEN
                   extract(epoch FROM $1 - k.last_ever_transaction) / 86400
                       > greatest(r.inactivity_factor * extract(epoch FROM k.last_ever_transaction
                                  - k.first_ever_transaction) / 86400 / (k.lifetime_transactions - 1),
                                  r.inactivity_min_days) ELSE false END),
               (2, 'declining_frequency', k.previous_count >= 2
                   AND k.recent_count < r.declining_ratio * k.previous_count),
               (3, 'unresolved_complaint', k.open_complaints >= 1),
               (4, 'repeated_complaints', k.recent_complaints >= 2),
               (5, 'low_satisfaction',
                   k.csat_sum::float8 / NULLIF(k.csat_count, 0) < r.low_csat),
               (6, 'low_nps',
                   100.0 * (k.promoters - k.detractors) / NULLIF(k.nps_count, 0) < r.low_nps),
               (7, 'withdrawn_consent', k.withdrawn_consents >= 1)
           ) AS s (n, code, found)
            WHERE s.found IS TRUE
            ORDER BY ($9->>('weight_' || s.code))::float8 DESC, s.n) AS churn_signals,
           CASE WHEN k.linked THEN 'PARTNER'
                WHEN k.lifetime_transactions = 0 THEN NULL
                WHEN k.lifetime_transactions = 1 THEN 'ONE_TIME'
                WHEN $1 - k.first_ever_transaction >= r.min_tenure
                     AND k.product_count >= r.min_products
                     AND k.contact_months >= r.min_contact_months THEN 'RELATIONAL'
                ELSE 'TRANSACTIONAL' END AS relationship
      FROM ranked k CROSS JOIN rules r
)
"#;

/// Computes and stores the run `spec.as_of`, replacing one stored for the
/// same `as_of`; mirrors it onto `customers` when it is the latest run.
/// Returns (customers scored, customers whose tier changed since the run
/// before).
pub async fn recompute(conn: &mut PgConnection, spec: &RunSpec<'_>) -> Result<(i64, i64), Error> {
    let model = spec.model;
    let (currencies, rates): (Vec<String>, Vec<f64>) =
        model.fx_rates.iter().map(|(c, r)| (c.clone(), *r)).unzip();
    let rules = serde_json::to_value(&model.rules)
        .map_err(|e| Error::Internal(anyhow::anyhow!("rules: {e}")))?;
    // One segmentation at a time (a retried job, a CronJob and a call may
    // meet): the later waits and then replaces, never collides.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ck_segments'))")
        .execute(&mut *conn)
        .instrument(statement("SELECT", "segment_runs"))
        .await?;
    // Its aggregates and ranks group millions of rows: memory for them, in
    // this transaction only, rather than sorts spilled to disk.
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM segment_runs WHERE as_of = $1")
        .bind(spec.as_of)
        .execute(&mut *conn)
        .instrument(statement("DELETE", "segment_runs"))
        .await?;
    sqlx::query(
        "INSERT INTO segment_runs (as_of, window_months, window_start, reporting_currency,
                                   vip_share, major_share, ordinary_share, model,
                                   customer_count, tier_changed_count)
         VALUES ($1, $2, $3, $4, $5::float8::numeric, $6::float8::numeric,
                 $7::float8::numeric, $8, 0, 0)",
    )
    .bind(spec.as_of)
    .bind(spec.window_months as i32)
    .bind(spec.window_start)
    .bind(&model.reporting_currency)
    .bind(model.shares.vip)
    .bind(model.shares.major)
    .bind(model.shares.ordinary)
    .bind(&rules)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "segment_runs"))
    .await?;
    let insert = format!(
        "{COMPUTE}, inserted AS (
        INSERT INTO customer_products (as_of, customer_id, products)
        SELECT $1, s.id, s.products FROM signals s WHERE s.products IS NOT NULL
        RETURNING 1
        )
        INSERT INTO customer_segments (
            as_of, customer_id, last_transaction, transaction_count, monetary,
            lifetime_transactions, first_ever_transaction, last_ever_transaction, product_count,
            contact_months, linked, relationship, recency_score, frequency_score, monetary_score,
            tier, value_rank, recent_count, previous_count, open_complaints, recent_complaints,
            csat_sum, csat_count, promoters, detractors, nps_count, withdrawn_consents,
            churn_score, churn_signals)
        SELECT $1, s.id, s.last_transaction, s.transaction_count, s.monetary,
               s.lifetime_transactions, s.first_ever_transaction, s.last_ever_transaction,
               s.product_count, s.contact_months, s.linked, s.relationship,
               CASE WHEN s.transaction_count > 0 THEN 1 + 5 * (s.r_rank - 1) / s.n_tx END,
               CASE WHEN s.transaction_count > 0 THEN 1 + 5 * (s.f_rank - 1) / s.n_tx END,
               CASE WHEN s.transaction_count > 0 THEN 1 + 5 * (s.m_rank - 1) / s.n_tx END,
               CASE WHEN s.transaction_count = 0 THEN 'SMALL'
                    WHEN s.value_rank <= t.vip THEN 'VIP'
                    WHEN s.value_rank <= t.vip + t.major THEN 'MAJOR'
                    WHEN s.value_rank <= t.vip + t.major + t.ordinary THEN 'ORDINARY'
                    ELSE 'SMALL' END,
               s.value_rank, s.recent_count, s.previous_count, s.open_complaints,
               s.recent_complaints, s.csat_sum, s.csat_count, s.promoters, s.detractors,
               s.nps_count, s.withdrawn_consents,
               least(100.0, COALESCE((SELECT sum(($9->>('weight_' || c))::float8)
                                      FROM unnest(s.churn_signals) c), 0)),
               s.churn_signals
          FROM signals s
         CROSS JOIN LATERAL (SELECT floor(s.n * $6::float8::numeric) AS vip,
                                    floor(s.n * $7::float8::numeric) AS major,
                                    floor(s.n * $8::float8::numeric) AS ordinary) t"
    );
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .bind(spec.as_of)
        .bind(spec.window_start)
        .bind(&model.reporting_currency)
        .bind(&currencies)
        .bind(&rates)
        .bind(model.shares.vip)
        .bind(model.shares.major)
        .bind(model.shares.ordinary)
        .bind(&rules)
        .execute(&mut *conn)
        .instrument(statement("INSERT", "customer_segments"))
        .await?;
    // What each peer group (tier and RFM cell) holds, against the bank.
    sqlx::query(
        "WITH held AS (
             SELECT s.tier, s.frequency_score, s.monetary_score, p.product, s.customer_id
               FROM customer_segments s
               JOIN customer_products cp ON cp.as_of = s.as_of AND cp.customer_id = s.customer_id
              CROSS JOIN unnest(cp.products) p (product)
              WHERE s.as_of = $1 AND s.frequency_score IS NOT NULL
         ), groups AS (
             SELECT tier, frequency_score, monetary_score, count(*) AS group_size
               FROM customer_segments WHERE as_of = $1 AND frequency_score IS NOT NULL
              GROUP BY 1, 2, 3
         ), bank AS (
             SELECT product, count(*) AS bank_holders FROM held GROUP BY product
         )
         INSERT INTO segment_products (as_of, tier, frequency_score, monetary_score, product,
                                       holders, group_size, bank_holders, bank_size)
         SELECT $1, h.tier, h.frequency_score, h.monetary_score, h.product, count(*),
                g.group_size, b.bank_holders,
                (SELECT count(*) FROM customer_segments WHERE as_of = $1
                    AND frequency_score IS NOT NULL)
           FROM held h
           JOIN groups g USING (tier, frequency_score, monetary_score)
           JOIN bank b USING (product)
          GROUP BY h.tier, h.frequency_score, h.monetary_score, h.product, g.group_size,
                   b.bank_holders",
    )
    .bind(spec.as_of)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "segment_products"))
    .await?;
    let (count, changed): (i64, i64) = sqlx::query_as(
        "UPDATE segment_runs r SET
             customer_count = (SELECT count(*) FROM customer_segments WHERE as_of = $1),
             tier_changed_count = (
                 SELECT count(*) FROM customer_segments s
                   JOIN customer_segments p ON p.customer_id = s.customer_id
                  WHERE s.as_of = $1
                    AND p.as_of = (SELECT max(as_of) FROM segment_runs WHERE as_of < $1)
                    AND p.tier <> s.tier)
          WHERE r.as_of = $1
         RETURNING customer_count, tier_changed_count",
    )
    .bind(spec.as_of)
    .fetch_one(&mut *conn)
    .instrument(statement("UPDATE", "segment_runs"))
    .await?;
    // The latest run is what customers show as tier and RFM. Neither is part
    // of the profile, so the version (etag) and update_time stay.
    sqlx::query(
        "UPDATE customers c SET tier = s.tier, recency_score = s.recency_score,
                frequency_score = s.frequency_score, monetary_score = s.monetary_score
           FROM customers c2
           LEFT JOIN customer_segments s ON s.as_of = $1 AND s.customer_id = c2.id
          WHERE c.id = c2.id AND c.delete_time IS NULL
            AND $1 >= (SELECT max(as_of) FROM segment_runs)
            AND (c.tier IS DISTINCT FROM s.tier
                 OR c.recency_score IS DISTINCT FROM s.recency_score
                 OR c.frequency_score IS DISTINCT FROM s.frequency_score
                 OR c.monetary_score IS DISTINCT FROM s.monetary_score)",
    )
    .bind(spec.as_of)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "customers"))
    .await?;
    Ok((count, changed))
}

/// The run at `as_of`, or the latest when None.
pub async fn run(
    conn: &mut PgConnection,
    as_of: Option<DateTime<Utc>>,
) -> Result<Option<Run>, Error> {
    let query = match as_of {
        Some(_) => format!("{SELECT_RUN} WHERE as_of = $1"),
        None => format!("{SELECT_RUN} WHERE $1::timestamptz IS NULL ORDER BY as_of DESC LIMIT 1"),
    };
    Ok(sqlx::query_as::<_, Run>(sqlx::AssertSqlSafe(query))
        .bind(as_of)
        .fetch_optional(conn)
        .instrument(statement("SELECT", "segment_runs"))
        .await?)
}

/// The run just before `as_of`.
pub async fn previous_run(
    conn: &mut PgConnection,
    as_of: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Error> {
    Ok(
        sqlx::query_scalar("SELECT max(as_of) FROM segment_runs WHERE as_of < $1")
            .bind(as_of)
            .fetch_one(conn)
            .instrument(statement("SELECT", "segment_runs"))
            .await?,
    )
}

/// Which customers a report covers: the caller's reach and the filters
/// asked for, as bound SQL parameters.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The caller's branch, when the caller is bound to one.
    pub reach: Option<String>,
    pub branch: Option<String>,
    pub relationship_manager: Option<String>,
}

/// The customers in `scope`, over `customers c` with $2–$4.
const IN_SCOPE: &str = "c.delete_time IS NULL
    AND ($2::text IS NULL OR c.home_branch = $2)
    AND ($3::text IS NULL OR c.home_branch = $3)
    AND ($4::text IS NULL OR c.relationship_manager = $4)";

/// Counts and value per tier of a run within `scope`: (tier, customers,
/// value, lowest value, highest value); tier None for the customers in scope
/// the run did not score (new since, or without ANALYTICS consent).
pub fn tier_totals_sql() -> String {
    format!(
        "SELECT s.tier, count(*), COALESCE(sum(s.monetary), 0)::float8,
                COALESCE(min(s.monetary), 0)::float8, COALESCE(max(s.monetary), 0)::float8
           FROM customers c
           LEFT JOIN customer_segments s ON s.as_of = $1 AND s.customer_id = c.id
          WHERE {IN_SCOPE}
          GROUP BY s.tier"
    )
}

/// Counts and value per RFM cell: (r, f, m, customers, value).
pub fn rfm_cells_sql() -> String {
    format!(
        "SELECT s.recency_score, s.frequency_score, s.monetary_score, count(*),
                sum(s.monetary)::float8
           FROM customer_segments s JOIN customers c ON c.id = s.customer_id
          WHERE s.as_of = $1 AND s.recency_score IS NOT NULL AND {IN_SCOPE}
          GROUP BY 1, 2, 3
          ORDER BY 1 DESC, 2 DESC, 3 DESC"
    )
}

/// Customers per relationship type: (type or None, customers).
pub fn relationship_totals_sql() -> String {
    format!(
        "SELECT s.relationship, count(*)
           FROM customer_segments s JOIN customers c ON c.id = s.customer_id
          WHERE s.as_of = $1 AND {IN_SCOPE}
          GROUP BY 1 ORDER BY 2 DESC, 1"
    )
}

/// Tier moves from the run `previous` ($5) to `as_of`: (from or None for
/// customers new since, to, customers), largest first.
pub fn migrations_sql() -> String {
    format!(
        "SELECT p.tier, s.tier, count(*)
           FROM customer_segments s
           JOIN customers c ON c.id = s.customer_id
           LEFT JOIN customer_segments p ON p.as_of = $5 AND p.customer_id = s.customer_id
          WHERE s.as_of = $1 AND {IN_SCOPE}
          GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
    )
}

/// The parameters of the summary's statements: the run, the scope and, for
/// [`migrations_sql`], the previous run.
pub fn summary_args(
    as_of: DateTime<Utc>,
    scope: &Scope,
    previous: Option<DateTime<Utc>>,
) -> super::Args {
    let (reach, branch, rm) = (
        scope.reach.as_deref(),
        scope.branch.as_deref(),
        scope.relationship_manager.as_deref(),
    );
    match previous {
        None => args!(as_of, reach, branch, rm),
        Some(previous) => args!(as_of, reach, branch, rm, previous),
    }
}

async fn summary_part<T>(
    conn: &mut PgConnection,
    sql: String,
    args: super::Args,
) -> Result<Vec<T>, Error>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    Ok(sqlx::query_as_with(sqlx::AssertSqlSafe(sql), args?)
        .fetch_all(conn)
        .instrument(statement("SELECT", "customer_segments"))
        .await?)
}

pub async fn tier_totals(
    conn: &mut PgConnection,
    as_of: DateTime<Utc>,
    scope: &Scope,
) -> Result<Vec<(Option<String>, i64, f64, f64, f64)>, Error> {
    summary_part(conn, tier_totals_sql(), summary_args(as_of, scope, None)).await
}

pub async fn rfm_cells(
    conn: &mut PgConnection,
    as_of: DateTime<Utc>,
    scope: &Scope,
) -> Result<Vec<(i16, i16, i16, i64, f64)>, Error> {
    summary_part(conn, rfm_cells_sql(), summary_args(as_of, scope, None)).await
}

pub async fn relationship_totals(
    conn: &mut PgConnection,
    as_of: DateTime<Utc>,
    scope: &Scope,
) -> Result<Vec<(Option<String>, i64)>, Error> {
    summary_part(
        conn,
        relationship_totals_sql(),
        summary_args(as_of, scope, None),
    )
    .await
}

pub async fn migrations(
    conn: &mut PgConnection,
    as_of: DateTime<Utc>,
    previous: DateTime<Utc>,
    scope: &Scope,
) -> Result<Vec<(Option<String>, String, i64)>, Error> {
    summary_part(
        conn,
        migrations_sql(),
        summary_args(as_of, scope, Some(previous)),
    )
    .await
}

#[derive(FromRow)]
struct FactsRow {
    as_of: DateTime<Utc>,
    compute_time: DateTime<Utc>,
    window_months: i32,
    reporting_currency: String,
    model: sqlx::types::Json<Rules>,
    last_transaction: Option<DateTime<Utc>>,
    transaction_count: i64,
    monetary: f64,
    recency_score: Option<i16>,
    frequency_score: Option<i16>,
    monetary_score: Option<i16>,
    tier: String,
    value_rank: i64,
    lifetime_transactions: i64,
    first_ever_transaction: Option<DateTime<Utc>>,
    last_ever_transaction: Option<DateTime<Utc>>,
    product_count: i32,
    contact_months: i32,
    linked: bool,
    relationship: Option<String>,
    recent_count: i64,
    previous_count: i64,
    open_complaints: i64,
    recent_complaints: i64,
    csat_sum: i64,
    csat_count: i64,
    promoters: i64,
    detractors: i64,
    nps_count: i64,
    withdrawn_consents: i64,
    churn_score: f64,
    churn_signals: Vec<String>,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!(
        "stored segment {what} {value:?} is not valid"
    ))
}

impl TryFrom<FactsRow> for SegmentFacts {
    type Error = Error;

    fn try_from(r: FactsRow) -> Result<Self, Error> {
        Ok(SegmentFacts {
            as_of: r.as_of,
            compute_time: r.compute_time,
            window_months: r.window_months.max(0) as u32,
            last_transaction: r.last_transaction,
            transaction_count: r.transaction_count,
            monetary: r.monetary,
            scores: match (r.recency_score, r.frequency_score, r.monetary_score) {
                (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                _ => None,
            },
            tier: Tier::parse(&r.tier).ok_or_else(|| corrupt("tier", &r.tier))?,
            value_rank: r.value_rank,
            lifetime_transactions: r.lifetime_transactions,
            first_ever_transaction: r.first_ever_transaction,
            last_ever_transaction: r.last_ever_transaction,
            product_count: r.product_count,
            contact_months: r.contact_months,
            linked: r.linked,
            relationship: r
                .relationship
                .as_deref()
                .map(|t| RelationshipType::parse(t).ok_or_else(|| corrupt("relationship", t)))
                .transpose()?,
            recent_count: r.recent_count,
            previous_count: r.previous_count,
            open_complaints: r.open_complaints,
            recent_complaints: r.recent_complaints,
            answers: Answers {
                csat_sum: r.csat_sum,
                csat_count: r.csat_count,
                promoters: r.promoters,
                passives: r.nps_count - r.promoters - r.detractors,
                detractors: r.detractors,
            },
            withdrawn_consents: r.withdrawn_consents,
            churn_score: r.churn_score,
            churn_signals: r
                .churn_signals
                .iter()
                .map(|c| SignalCode::parse(c).ok_or_else(|| corrupt("signal", c)))
                .collect::<Result<_, _>>()?,
            rules: r.model.0,
            reporting_currency: r.reporting_currency,
        })
    }
}

const SELECT_FACTS: &str = "SELECT s.as_of, r.compute_time, r.window_months, r.reporting_currency,
        r.model, s.last_transaction, s.transaction_count, s.monetary::float8 AS monetary,
        s.recency_score, s.frequency_score, s.monetary_score, s.tier, s.value_rank,
        s.lifetime_transactions, s.first_ever_transaction, s.last_ever_transaction,
        s.product_count, s.contact_months, s.linked, s.relationship, s.recent_count,
        s.previous_count, s.open_complaints, s.recent_complaints, s.csat_sum, s.csat_count,
        s.promoters, s.detractors, s.nps_count, s.withdrawn_consents, s.churn_score,
        s.churn_signals
   FROM customer_segments s JOIN segment_runs r ON r.as_of = s.as_of";

/// A customer's facts from the latest run that scored them.
pub async fn customer_facts(
    conn: &mut PgConnection,
    customer_id: &str,
) -> Result<Option<SegmentFacts>, Error> {
    let sql = format!(
        "{SELECT_FACTS} WHERE s.customer_id = $1
          AND s.as_of = (SELECT max(as_of) FROM segment_runs)"
    );
    sqlx::query_as::<_, FactsRow>(sqlx::AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_optional(conn)
        .instrument(statement("SELECT", "customer_segments"))
        .await?
        .map(SegmentFacts::try_from)
        .transpose()
}

/// Products the customer's peer group holds and the customer did not in the
/// run's window, nor declined since `declined_since`, by lift (then support).
pub async fn product_fits(
    conn: &mut PgConnection,
    customer_id: &str,
    facts: &SegmentFacts,
    declined_since: DateTime<Utc>,
) -> Result<Vec<ProductFit>, Error> {
    let Some((_, frequency, monetary)) = facts.scores else {
        return Ok(Vec::new());
    };
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT sp.product, sp.holders, sp.group_size, sp.bank_holders, sp.bank_size
           FROM segment_products sp
          WHERE sp.as_of = $1 AND sp.tier = $2 AND sp.frequency_score = $3
            AND sp.monetary_score = $4
            AND NOT EXISTS (SELECT 1 FROM customer_products cp
                             WHERE cp.as_of = $1 AND cp.customer_id = $5
                               AND sp.product = ANY (cp.products))
            AND NOT EXISTS (SELECT 1 FROM interactions i
                             WHERE i.customer_id = $5 AND i.occur_time >= $6
                               AND i.void_time IS NULL
                               AND i.campaign LIKE 'nba:%' AND i.outcome = 'DECLINED'
                               AND sp.product = ANY (i.products))
          ORDER BY (sp.holders::float8 / sp.group_size) / (sp.bank_holders::float8 / sp.bank_size)
                   DESC, sp.holders DESC, sp.product
          LIMIT 10",
    )
    .bind(facts.as_of)
    .bind(facts.tier.as_str())
    .bind(frequency)
    .bind(monetary)
    .bind(customer_id)
    .bind(declined_since)
    .fetch_all(conn)
    .instrument(statement("SELECT", "segment_products"))
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(product, holders, group_size, bank_holders, bank_size)| ProductFit {
                product,
                holders,
                group_size,
                bank_holders,
                bank_size,
            },
        )
        .collect())
}

/// One worklist entry: the customer's profile parts and their facts.
#[derive(FromRow)]
pub struct AtRiskRow {
    pub customer_id: String,
    pub display_name: String,
    pub home_branch: String,
    pub relationship_manager: String,
    #[sqlx(flatten)]
    facts: FactsRow,
    pub priority: f64,
}

impl AtRiskRow {
    pub fn facts(self) -> Result<(String, String, String, String, f64, SegmentFacts), Error> {
        Ok((
            self.customer_id,
            self.display_name,
            self.home_branch,
            self.relationship_manager,
            self.priority,
            SegmentFacts::try_from(self.facts)?,
        ))
    }
}

/// The worklist of run `as_of` in `scope`: churn score × value, highest
/// first, from after `after` (priority, customer id), customers with a
/// signal only. Parameters: `at_risk_args`.
pub fn at_risk_sql() -> String {
    format!(
        "SELECT c.id AS customer_id, c.display_name, c.home_branch, c.relationship_manager,
                s.churn_score * s.monetary::float8 AS priority,
                {facts}
            AND {IN_SCOPE}
            AND s.churn_score > 0 AND s.churn_score >= $5
            AND ($6::text IS NULL OR s.tier = $6)
            AND ($7::float8 IS NULL
                 OR (s.churn_score * s.monetary::float8, s.customer_id) < ($7, $8::text))
          ORDER BY s.churn_score * s.monetary::float8 DESC, s.customer_id DESC
          LIMIT $9",
        facts = SELECT_FACTS.trim_start_matches("SELECT ").replace(
            "FROM customer_segments s JOIN segment_runs r ON r.as_of = s.as_of",
            "FROM customer_segments s JOIN segment_runs r ON r.as_of = s.as_of
                 JOIN customers c ON c.id = s.customer_id WHERE s.as_of = $1",
        ),
    )
}

/// The parameters of `at_risk_sql` (shared with the plan check).
pub fn at_risk_args(
    as_of: DateTime<Utc>,
    scope: &Scope,
    tier: Option<Tier>,
    min_score: f64,
    after: Option<(f64, String)>,
    limit: i64,
) -> super::Args {
    let (after_priority, after_id) = match after {
        Some((p, id)) => (Some(p), Some(id)),
        None => (None, None),
    };
    args!(
        as_of,
        scope.reach.as_deref(),
        scope.branch.as_deref(),
        scope.relationship_manager.as_deref(),
        min_score,
        tier.map(Tier::as_str),
        after_priority,
        after_id,
        limit
    )
}

/// `at_risk_sql` run with `at_risk_args`: one page of the worklist.
pub async fn at_risk(conn: &mut PgConnection, args: super::Args) -> Result<Vec<AtRiskRow>, Error> {
    let args = args?;
    Ok(
        sqlx::query_as_with(sqlx::AssertSqlSafe(at_risk_sql()), args)
            .fetch_all(conn)
            .instrument(statement("SELECT", "customer_segments"))
            .await?,
    )
}

/// A customer's CSAT and NPS answers in [from, to).
pub async fn answers(
    conn: &mut PgConnection,
    customer_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Answers, Error> {
    let (csat_sum, csat_count, promoters, passives, detractors): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT COALESCE(sum(satisfaction), 0), count(satisfaction),
                    count(*) FILTER (WHERE nps >= 9), count(*) FILTER (WHERE nps IN (7, 8)),
                    count(*) FILTER (WHERE nps <= 6)
               FROM interactions
              WHERE customer_id = $1 AND occur_time >= $2 AND occur_time < $3
                AND (satisfaction IS NOT NULL OR nps IS NOT NULL) AND void_time IS NULL",
        )
        .bind(customer_id)
        .bind(from)
        .bind(to)
        .fetch_one(conn)
        .instrument(statement("SELECT", "interactions"))
        .await?;
    Ok(Answers {
        csat_sum,
        csat_count,
        promoters,
        passives,
        detractors,
    })
}

/// A customer's answers per calendar month (UTC) from `from`, oldest first:
/// (month "YYYY-MM", CSAT sum, CSAT count, NPS sum, NPS count).
pub async fn monthly_answers(
    conn: &mut PgConnection,
    customer_id: &str,
    from: DateTime<Utc>,
) -> Result<Vec<(String, i64, i64, i64, i64)>, Error> {
    Ok(sqlx::query_as(
        "SELECT to_char(date_trunc('month', occur_time, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM'),
                COALESCE(sum(satisfaction), 0), count(satisfaction),
                COALESCE(sum(nps), 0), count(nps)
           FROM interactions
          WHERE customer_id = $1 AND occur_time >= $2
            AND (satisfaction IS NOT NULL OR nps IS NOT NULL) AND void_time IS NULL
          GROUP BY 1 ORDER BY 1",
    )
    .bind(customer_id)
    .bind(from)
    .fetch_all(conn)
    .instrument(statement("SELECT", "interactions"))
    .await?)
}
