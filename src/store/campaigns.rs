//! Campaigns, their activities and contacts: the target segment and the
//! results as set-based SQL, with the caller's branch reach in every WHERE.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use tracing::Instrument;

use super::{append_outbox, statement};
use crate::{
    domain::{
        campaign::{Activity, Campaign, CampaignState, Counts, ResponseOutcome, Target},
        customer::Tier,
        filter::ListOrder,
        interaction::{Channel, Money},
    },
    error::{Error, ErrorReason},
};

#[derive(FromRow)]
struct CampaignRow {
    id: String,
    display_name: String,
    objective: String,
    products: Vec<String>,
    budget_currency: String,
    budget_units: i64,
    budget_nanos: i32,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    target_branch: String,
    target_tiers: Vec<String>,
    min_recency_score: i16,
    min_frequency_score: i16,
    min_monetary_score: i16,
    target_tags: Vec<String>,
    control_group_percent: i16,
    conversion_window_days: i32,
    seed: i64,
    state: String,
    created_by: String,
    execute_time: Option<DateTime<Utc>>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

#[derive(FromRow)]
struct ActivityRow {
    title: String,
    channel: String,
    cost_units: i64,
    cost_nanos: i32,
    schedule_time: DateTime<Utc>,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(anyhow::anyhow!("stored campaign holds an unknown {what}"))
}

impl CampaignRow {
    fn into_campaign(self, activities: Vec<ActivityRow>) -> Result<Campaign, Error> {
        let currency = self.budget_currency.clone();
        let activities = activities
            .into_iter()
            .map(|a| {
                Ok(Activity {
                    title: a.title,
                    channel: Channel::parse(&a.channel).ok_or_else(|| corrupt("channel"))?,
                    cost: Money {
                        currency_code: currency.clone(),
                        units: a.cost_units,
                        nanos: a.cost_nanos,
                    },
                    schedule_time: a.schedule_time,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Campaign {
            id: self.id,
            display_name: self.display_name,
            objective: self.objective,
            products: self.products,
            budget: Money {
                currency_code: self.budget_currency,
                units: self.budget_units,
                nanos: self.budget_nanos,
            },
            start_time: self.start_time,
            end_time: self.end_time,
            target: Target {
                branch: self.target_branch,
                tiers: self
                    .target_tiers
                    .iter()
                    .map(|t| Tier::parse(t).ok_or_else(|| corrupt("tier")))
                    .collect::<Result<_, _>>()?,
                min_recency: self.min_recency_score,
                min_frequency: self.min_frequency_score,
                min_monetary: self.min_monetary_score,
                tags: self.target_tags,
            },
            control_percent: self.control_group_percent,
            window_days: self.conversion_window_days,
            seed: self.seed,
            state: CampaignState::parse(&self.state).ok_or_else(|| corrupt("state"))?,
            activities,
            created_by: self.created_by,
            execute_time: self.execute_time,
            create_time: self.create_time,
            update_time: self.update_time,
        })
    }
}

/// The columns a campaign is read with.
pub const CAMPAIGN_COLUMNS: &str =
    "id, display_name, objective, products, budget_currency, budget_units,
    budget_nanos, start_time, end_time, target_branch, target_tiers, min_recency_score,
    min_frequency_score, min_monetary_score, target_tags, control_group_percent,
    conversion_window_days, seed, state, created_by, execute_time, create_time, update_time";

async fn activities(conn: &mut PgConnection, id: &str) -> Result<Vec<ActivityRow>, Error> {
    Ok(sqlx::query_as(
        "SELECT title, channel, cost_units, cost_nanos, schedule_time
         FROM campaign_activities WHERE campaign_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(conn)
    .instrument(statement("SELECT", "campaign_activities"))
    .await?)
}

/// Stores a new campaign; ALREADY_EXISTS when its id is taken.
pub async fn insert(conn: &mut PgConnection, c: &Campaign) -> Result<Campaign, Error> {
    let tiers: Vec<&str> = c.target.tiers.iter().map(|t| t.as_str()).collect();
    let row: Option<CampaignRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO campaigns (id, display_name, objective, products, budget_currency,
            budget_units, budget_nanos, start_time, end_time, target_branch, target_tiers,
            min_recency_score, min_frequency_score, min_monetary_score, target_tags,
            control_group_percent, conversion_window_days, seed, state, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, 'PLANNED', $19)
         ON CONFLICT (id) DO NOTHING
         RETURNING {CAMPAIGN_COLUMNS}"
    )))
    .bind(&c.id)
    .bind(&c.display_name)
    .bind(&c.objective)
    .bind(&c.products)
    .bind(&c.budget.currency_code)
    .bind(c.budget.units)
    .bind(c.budget.nanos)
    .bind(c.start_time)
    .bind(c.end_time)
    .bind(&c.target.branch)
    .bind(&tiers)
    .bind(c.target.min_recency)
    .bind(c.target.min_frequency)
    .bind(c.target.min_monetary)
    .bind(&c.target.tags)
    .bind(c.control_percent)
    .bind(c.window_days)
    .bind(c.seed)
    .bind(&c.created_by)
    .fetch_optional(&mut *conn)
    .instrument(statement("INSERT", "campaigns"))
    .await?;
    let Some(row) = row else {
        return Err(Error::AlreadyExists {
            resource: c.name(),
            reason: ErrorReason::CampaignAlreadyExists,
            existing: Some(c.name()),
        });
    };
    append_outbox(
        conn,
        "campaign",
        &c.name(),
        "campaign.created",
        serde_json::json!({ "name": c.name(), "branch": c.target.branch }),
    )
    .await?;
    row.into_campaign(Vec::new())
}

/// Which campaigns a caller reaches: `reach` None is every campaign; a
/// branch reaches that branch's campaigns, and bank-wide ones too when
/// `bank_wide` (reads; results are then cut to the branch's customers).
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    pub branch: Option<&'a str>,
    pub bank_wide: bool,
}

/// A campaign in reach, locked for update when `lock`.
pub async fn get(
    conn: &mut PgConnection,
    id: &str,
    reach: Reach<'_>,
    lock: bool,
) -> Result<Option<Campaign>, Error> {
    let row: Option<CampaignRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns
         WHERE id = $1
           AND ($2::text IS NULL OR target_branch = $2 OR ($3 AND target_branch = ''))
         {}",
        if lock { "FOR UPDATE" } else { "" }
    )))
    .bind(id)
    .bind(reach.branch)
    .bind(reach.bank_wide)
    .fetch_optional(&mut *conn)
    .instrument(statement("SELECT", "campaigns"))
    .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let activities = activities(conn, &row.id).await?;
            row.into_campaign(activities).map(Some)
        }
    }
}

/// What ListCampaigns asks for besides the caller's reach.
#[derive(Debug, Clone, Default)]
pub struct CampaignQuery {
    /// Only this target branch.
    pub branch: Option<String>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Newest created first (the default) or by (update_time, id).
    pub order: ListOrder,
    /// Resume strictly after this (time, id) in the order.
    pub after: Option<(DateTime<Utc>, String)>,
}

/// The campaigns SQL up to the order, shared with the EXPLAIN check in the
/// tests: the caller's reach ($1, $2) as the natural order has always had it.
macro_rules! campaigns_filtered {
    () => {
        "FROM campaigns
         WHERE ($1::text IS NULL OR target_branch = $1 OR ($2 AND target_branch = ''))
           AND ($3::text IS NULL OR target_branch = $3)
           AND ($7::timestamptz IS NULL OR update_time >= $7)
           AND ($8::timestamptz IS NULL OR update_time < $8) "
    };
}

/// Campaigns newest first (without the column list).
pub const CAMPAIGNS_SQL: &str = concat!(
    campaigns_filtered!(),
    "AND ($4::timestamptz IS NULL OR (create_time, id) < ($4, $5))
     ORDER BY create_time DESC, id DESC
     LIMIT $6"
);

/// Campaigns least recently changed first (ListCampaigns with order_by
/// "update_time"), on the index `campaigns_by_update_time`.
pub const CAMPAIGN_CHANGES_SQL: &str = concat!(
    campaigns_filtered!(),
    "AND ($4::timestamptz IS NULL OR (update_time, id) > ($4, $5))
     ORDER BY update_time, id
     LIMIT $6"
);

/// One page of campaigns in reach, in the query's order.
pub async fn list(
    conn: &mut PgConnection,
    reach: Reach<'_>,
    query: &CampaignQuery,
    limit: i64,
) -> Result<Vec<Campaign>, Error> {
    let (after_time, after_id) = match &query.after {
        Some((t, id)) => (Some(*t), Some(id.as_str())),
        None => (None, None),
    };
    let rest = match query.order {
        ListOrder::Natural => CAMPAIGNS_SQL,
        ListOrder::UpdateTime => CAMPAIGN_CHANGES_SQL,
    };
    let rows: Vec<CampaignRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CAMPAIGN_COLUMNS} {rest}"
    )))
    .bind(reach.branch)
    .bind(reach.bank_wide)
    .bind(query.branch.as_deref())
    .bind(after_time)
    .bind(after_id)
    .bind(limit)
    .bind(query.updated_from)
    .bind(query.updated_before)
    .fetch_all(&mut *conn)
    .instrument(statement("SELECT", "campaigns"))
    .await?;
    // The page's activities in one statement, not one per campaign.
    #[derive(FromRow)]
    struct PageActivity {
        campaign_id: String,
        #[sqlx(flatten)]
        activity: ActivityRow,
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut by_campaign: std::collections::HashMap<String, Vec<ActivityRow>> =
        std::collections::HashMap::new();
    let found: Vec<PageActivity> = sqlx::query_as(
        "SELECT campaign_id, title, channel, cost_units, cost_nanos, schedule_time
         FROM campaign_activities WHERE campaign_id = ANY($1) ORDER BY campaign_id, position",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .instrument(statement("SELECT", "campaign_activities"))
    .await?;
    for a in found {
        by_campaign
            .entry(a.campaign_id)
            .or_default()
            .push(a.activity);
    }
    rows.into_iter()
        .map(|row| {
            let activities = by_campaign.remove(&row.id).unwrap_or_default();
            row.into_campaign(activities)
        })
        .collect()
}

/// Appends an activity to a campaign locked by `get`; returns the
/// campaign's new update time.
pub async fn add_activity(
    conn: &mut PgConnection,
    campaign: &Campaign,
    activity: &Activity,
) -> Result<DateTime<Utc>, Error> {
    sqlx::query(
        "INSERT INTO campaign_activities
            (campaign_id, position, title, channel, cost_units, cost_nanos, schedule_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&campaign.id)
    .bind(i32::try_from(campaign.activities.len()).unwrap_or(i32::MAX))
    .bind(&activity.title)
    .bind(activity.channel.as_str())
    .bind(activity.cost.units)
    .bind(activity.cost.nanos)
    .bind(activity.schedule_time)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "campaign_activities"))
    .await?;
    let update_time = sqlx::query_scalar(
        "UPDATE campaigns SET update_time = now() WHERE id = $1 RETURNING update_time",
    )
    .bind(&campaign.id)
    .fetch_one(&mut *conn)
    .instrument(statement("UPDATE", "campaigns"))
    .await?;
    append_outbox(
        conn,
        "campaign",
        &campaign.name(),
        "campaign.activity_added",
        serde_json::json!({ "name": campaign.name(), "channel": activity.channel.as_str() }),
    )
    .await?;
    Ok(update_time)
}

/// One consenting customer of a campaign's target.
#[derive(Debug, Clone, FromRow)]
pub struct TargetCustomer {
    pub id: String,
    pub tier: Option<String>,
    pub home_branch: String,
}

/// Customers the target matches (not erased, in `reach`); `$8` is whether
/// only those with MARKETING consent granted count.
const TARGET_WHERE: &str = "FROM customers c
    WHERE c.delete_time IS NULL
      AND ($1::text IS NULL OR c.home_branch = $1)
      AND ($2 = '' OR c.home_branch = $2)
      AND (cardinality($3::text[]) = 0 OR c.tier = ANY($3))
      AND ($4 = 0 OR c.recency_score >= $4)
      AND ($5 = 0 OR c.frequency_score >= $5)
      AND ($6 = 0 OR c.monetary_score >= $6)
      AND c.tags @> $7::text[]
      AND (NOT $8 OR EXISTS (SELECT 1 FROM customer_consents m
                             WHERE m.customer_id = c.id AND m.purpose = 'MARKETING'
                               AND m.granted))";

/// What the target matches: (customers, of them with MARKETING consent).
pub async fn count_target(
    conn: &mut PgConnection,
    target: &Target,
    reach: Option<&str>,
) -> Result<(i64, i64), Error> {
    let tiers: Vec<&str> = target.tiers.iter().map(|t| t.as_str()).collect();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), count(*) FILTER (WHERE EXISTS (
                SELECT 1 FROM customer_consents m
                WHERE m.customer_id = c.id AND m.purpose = 'MARKETING' AND m.granted))
         {TARGET_WHERE}"
    )))
    .bind(reach)
    .bind(&target.branch)
    .bind(&tiers)
    .bind(target.min_recency)
    .bind(target.min_frequency)
    .bind(target.min_monetary)
    .bind(&target.tags)
    .bind(false)
    .fetch_one(conn)
    .instrument(statement("SELECT", "customers"))
    .await?)
}

/// The target's customers with MARKETING consent, share-locked so that an
/// erasure or a move cannot slip in before the contacts commit.
pub async fn consenting_target(
    conn: &mut PgConnection,
    target: &Target,
    reach: Option<&str>,
) -> Result<Vec<TargetCustomer>, Error> {
    let tiers: Vec<&str> = target.tiers.iter().map(|t| t.as_str()).collect();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.tier, c.home_branch {TARGET_WHERE} ORDER BY c.id FOR SHARE OF c"
    )))
    .bind(reach)
    .bind(&target.branch)
    .bind(&tiers)
    .bind(target.min_recency)
    .bind(target.min_frequency)
    .bind(target.min_monetary)
    .bind(&target.tags)
    .bind(true)
    .fetch_all(conn)
    .instrument(statement("SELECT", "customers"))
    .await?)
}

/// Records the drawn contacts (interaction None: the control group) and
/// moves the campaign to EXECUTING.
pub async fn record_execution(
    conn: &mut PgConnection,
    campaign: &Campaign,
    contact_time: DateTime<Utc>,
    (target, without_consent): (i64, i64),
    rows: &[(&TargetCustomer, Option<&str>)],
) -> Result<(), Error> {
    let customers: Vec<&str> = rows.iter().map(|(c, _)| c.id.as_str()).collect();
    let tiers: Vec<Option<&str>> = rows.iter().map(|(c, _)| c.tier.as_deref()).collect();
    let branches: Vec<&str> = rows.iter().map(|(c, _)| c.home_branch.as_str()).collect();
    let interactions: Vec<Option<&str>> = rows.iter().map(|(_, i)| *i).collect();
    sqlx::query(
        "INSERT INTO campaign_contacts
            (campaign_id, customer_id, in_control, tier, branch, contact_time, interaction_id)
         SELECT $1, t.customer_id, t.interaction_id IS NULL, t.tier, t.branch, $2, t.interaction_id
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[])
            AS t(customer_id, tier, branch, interaction_id)",
    )
    .bind(&campaign.id)
    .bind(contact_time)
    .bind(&customers)
    .bind(&tiers)
    .bind(&branches)
    .bind(&interactions)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "campaign_contacts"))
    .await?;
    sqlx::query(
        "UPDATE campaigns SET state = 'EXECUTING', execute_time = $2, target_count = $3,
                without_consent_count = $4, update_time = now()
         WHERE id = $1",
    )
    .bind(&campaign.id)
    .bind(contact_time)
    .bind(target)
    .bind(without_consent)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "campaigns"))
    .await?;
    append_outbox(
        conn,
        "campaign",
        &campaign.name(),
        "campaign.executed",
        serde_json::json!({ "name": campaign.name(), "contacts": rows.len() }),
    )
    .await
}

/// What an execution found, for a replayed call: (target, without
/// consent, control, contacted).
pub async fn execution_counts(
    conn: &mut PgConnection,
    id: &str,
) -> Result<(i64, i64, i64, i64), Error> {
    Ok(sqlx::query_as(
        "SELECT coalesce(m.target_count, 0), coalesce(m.without_consent_count, 0),
                count(*) FILTER (WHERE k.in_control), count(*) FILTER (WHERE NOT k.in_control)
         FROM campaigns m LEFT JOIN campaign_contacts k ON k.campaign_id = m.id
         WHERE m.id = $1
         GROUP BY m.target_count, m.without_consent_count",
    )
    .bind(id)
    .fetch_one(conn)
    .instrument(statement("SELECT", "campaign_contacts"))
    .await?)
}

/// One contact of a campaign.
#[derive(Debug, Clone, FromRow)]
pub struct Contact {
    pub customer_id: String,
    pub in_control: bool,
    pub interaction_id: Option<String>,
    pub contact_time: DateTime<Utc>,
    pub response_outcome: Option<String>,
    pub response_time: Option<DateTime<Utc>>,
}

impl Contact {
    pub fn outcome(&self) -> Option<ResponseOutcome> {
        self.response_outcome
            .as_deref()
            .and_then(ResponseOutcome::parse)
    }
}

/// The contact row of a customer in reach (`reach`: the caller's write
/// branch), locked; None when the customer is out of reach or not in the
/// campaign.
pub async fn contact(
    conn: &mut PgConnection,
    campaign: &str,
    customer: &str,
    reach: Option<&str>,
) -> Result<Option<Contact>, Error> {
    Ok(sqlx::query_as(
        "SELECT k.customer_id, k.in_control, k.interaction_id, k.contact_time,
                k.response_outcome, k.response_time
         FROM campaign_contacts k JOIN customers c ON c.id = k.customer_id
         WHERE k.campaign_id = $1 AND k.customer_id = $2 AND c.delete_time IS NULL
           AND ($3::text IS NULL OR c.home_branch = $3)
         FOR UPDATE OF k",
    )
    .bind(campaign)
    .bind(customer)
    .bind(reach)
    .fetch_optional(conn)
    .instrument(statement("SELECT", "campaign_contacts"))
    .await?)
}

/// The campaigns that contacted a customer (control groups left out),
/// newest contact first: (campaign id, contact).
pub async fn contacts_of(
    conn: &mut PgConnection,
    customer: &str,
    limit: i64,
) -> Result<Vec<(String, Contact)>, Error> {
    #[derive(FromRow)]
    struct Row {
        campaign_id: String,
        #[sqlx(flatten)]
        contact: Contact,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT campaign_id, customer_id, in_control, interaction_id, contact_time,
                response_outcome, response_time
         FROM campaign_contacts
         WHERE customer_id = $1 AND NOT in_control
         ORDER BY contact_time DESC, campaign_id DESC
         LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .instrument(statement("SELECT", "campaign_contacts"))
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.campaign_id, r.contact))
        .collect())
}

/// Stores a contact's response.
pub async fn record_response(
    conn: &mut PgConnection,
    campaign: &str,
    customer: &str,
    outcome: ResponseOutcome,
    time: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE campaign_contacts SET response_outcome = $3, response_time = $4
         WHERE campaign_id = $1 AND customer_id = $2",
    )
    .bind(campaign)
    .bind(customer)
    .bind(outcome.as_str())
    .bind(time)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "campaign_contacts"))
    .await?;
    append_outbox(
        conn,
        "campaign",
        &crate::domain::campaign::campaign_name(campaign),
        "campaign.response_recorded",
        serde_json::json!({
            "name": crate::domain::campaign::campaign_name(campaign),
            "customer": format!("customers/{customer}"),
            "outcome": outcome.as_str(),
        }),
    )
    .await
}

/// Which group a row of the results counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    Total,
    /// None: customers without a tier when contacted.
    Tier(Option<String>),
    Branch(String),
}

#[derive(FromRow)]
struct ResultRow {
    by_tier: bool,
    by_branch: bool,
    tier: Option<String>,
    branch: Option<String>,
    contacted: i64,
    responded: i64,
    converted: i64,
    control: i64,
    control_converted: i64,
}

/// The counts of a campaign's contacts whose customer is in `reach` (the
/// caller's read branch), in total, by tier and by branch (both as at
/// contact). A customer converted when they have a TRANSACTION in one of
/// `products` from the contact time to `window_days` days after it
/// (inclusive); control customers are measured from the same time. Reads
/// the campaign's contacts, each one's customer, and one index probe of
/// each one's transactions in the window (plan-checked in tests/api/plans.rs).
pub const RESULTS_SQL: &str = "WITH k AS (
            SELECT k.in_control, k.tier, k.branch, k.response_outcome IS NOT NULL AS responded,
                   EXISTS (
                       SELECT 1 FROM interactions i
                       WHERE i.customer_id = k.customer_id AND i.kind = 'TRANSACTION'
                         AND i.products && $3::text[]
                         AND i.occur_time >= k.contact_time
                         AND i.occur_time <= k.contact_time + make_interval(days => $4)
                   ) AS converted
            FROM campaign_contacts k JOIN customers c ON c.id = k.customer_id
            WHERE k.campaign_id = $1 AND ($2::text IS NULL OR c.home_branch = $2)
         )
         SELECT GROUPING(tier) = 0 AS by_tier, GROUPING(branch) = 0 AS by_branch, tier, branch,
                count(*) FILTER (WHERE NOT in_control) AS contacted,
                count(*) FILTER (WHERE NOT in_control AND responded) AS responded,
                count(*) FILTER (WHERE NOT in_control AND converted) AS converted,
                count(*) FILTER (WHERE in_control) AS control,
                count(*) FILTER (WHERE in_control AND converted) AS control_converted
         FROM k
         GROUP BY GROUPING SETS ((), (tier), (branch))
         ORDER BY by_tier, by_branch, tier NULLS LAST, branch";

/// The parameters of [`RESULTS_SQL`].
pub fn results_args(
    campaign_id: &str,
    reach: Option<&str>,
    products: &[String],
    window_days: i32,
) -> super::Args {
    args!(campaign_id, reach, products, window_days)
}

pub async fn results(
    conn: &mut PgConnection,
    campaign: &Campaign,
    reach: Option<&str>,
) -> Result<Vec<(Group, Counts)>, Error> {
    let rows: Vec<ResultRow> = sqlx::query_as_with(
        RESULTS_SQL,
        results_args(
            &campaign.id,
            reach,
            &campaign.products,
            campaign.window_days,
        )?,
    )
    .fetch_all(conn)
    .instrument(statement("SELECT", "campaign_contacts"))
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let group = match (r.by_tier, r.by_branch) {
            (false, false) => Group::Total,
            (true, _) => Group::Tier(r.tier),
            (false, true) => Group::Branch(r.branch.unwrap_or_default()),
        };
        out.push((
            group,
            Counts {
                contacted: r.contacted,
                responded: r.responded,
                converted: r.converted,
                control: r.control,
                control_converted: r.control_converted,
            },
        ));
    }
    Ok(out)
}
