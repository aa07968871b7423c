//! The `customers` aggregate: profile, external ids, consents and links.
//! Every read carries the caller's branch scope in its WHERE clause.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::{FromRow, PgConnection, types::Json};
use tracing::Instrument;

use super::{Db, append_outbox, statement};
use crate::{
    domain::{
        customer::{
            Consent, ConsentChange, ConsentEvent, ConsentPurpose, Customer, CustomerId,
            CustomerKind, CustomerLink, ExternalId, Pii, Profile, Relationship, Rfm, Tier,
        },
        filter::{CustomerFilter, ListOrder},
        principal::BranchScope,
        search,
    },
    error::{Error, ErrorReason},
};

/// Everything a read returns about one customer, related rows included: the
/// external ids, consents and links are the JSON documents the triggers of
/// migration 20261207060000 keep on the customer row.
macro_rules! select_customer {
    () => {
        "SELECT c.id, c.display_name, c.kind, c.home_branch, c.relationship_manager,
                c.national_id, c.phone, c.email, c.birth_date, c.address, c.tags, c.preferences,
                c.tier, c.recency_score, c.frequency_score, c.monetary_score, c.version,
                c.create_time, c.update_time, c.delete_time, c.merged_into,
                c.external_ids_doc AS external_ids, c.consents_doc AS consents,
                c.links_doc AS links
         FROM customers c "
    };
}

#[derive(Deserialize)]
struct ExternalIdJson {
    system: String,
    value: String,
}

#[derive(Deserialize)]
struct ConsentJson {
    purpose: String,
    granted: bool,
    update_time: DateTime<Utc>,
}

#[derive(Deserialize)]
struct LinkJson {
    customer: String,
    relationship: String,
    inverse: bool,
    create_time: DateTime<Utc>,
}

#[derive(FromRow)]
struct CustomerRow {
    id: String,
    display_name: String,
    kind: String,
    home_branch: String,
    relationship_manager: String,
    national_id: String,
    phone: String,
    email: String,
    birth_date: Option<NaiveDate>,
    address: String,
    tags: Vec<String>,
    preferences: Json<BTreeMap<String, String>>,
    tier: Option<String>,
    recency_score: Option<i16>,
    frequency_score: Option<i16>,
    monetary_score: Option<i16>,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    delete_time: Option<DateTime<Utc>>,
    merged_into: Option<String>,
    external_ids: Json<Vec<ExternalIdJson>>,
    consents: Json<Vec<ConsentJson>>,
    links: Json<Vec<LinkJson>>,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!("stored {what} {value:?} is not valid"))
}

impl TryFrom<CustomerRow> for Customer {
    type Error = Error;

    fn try_from(row: CustomerRow) -> Result<Self, Error> {
        let kind = CustomerKind::parse(&row.kind).ok_or_else(|| corrupt("kind", &row.kind))?;
        let tier = match row.tier.as_deref() {
            None => None,
            Some(t) => Some(Tier::parse(t).ok_or_else(|| corrupt("tier", t))?),
        };
        let rfm = match (row.recency_score, row.frequency_score, row.monetary_score) {
            (Some(recency), Some(frequency), Some(monetary)) => Some(Rfm {
                recency,
                frequency,
                monetary,
            }),
            _ => None,
        };
        let consents = row
            .consents
            .0
            .into_iter()
            .map(|c| {
                Ok(Consent {
                    purpose: ConsentPurpose::parse(&c.purpose)
                        .ok_or_else(|| corrupt("consent purpose", &c.purpose))?,
                    granted: c.granted,
                    update_time: c.update_time,
                })
            })
            .collect::<Result<_, Error>>()?;
        let links = row
            .links
            .0
            .into_iter()
            .map(|l| {
                Ok(CustomerLink {
                    customer: CustomerId::parse(&l.customer)
                        .map_err(|_| corrupt("linked customer", &l.customer))?,
                    relationship: Relationship::parse(&l.relationship)
                        .ok_or_else(|| corrupt("relationship", &l.relationship))?,
                    inverse: l.inverse,
                    create_time: l.create_time,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Customer {
            id: CustomerId::parse(&row.id).map_err(|_| corrupt("customer id", &row.id))?,
            profile: Profile {
                display_name: row.display_name,
                kind,
                external_ids: row
                    .external_ids
                    .0
                    .into_iter()
                    .map(|e| ExternalId {
                        system: e.system,
                        value: e.value,
                    })
                    .collect(),
                home_branch: row.home_branch,
                relationship_manager: row.relationship_manager,
                pii: Pii {
                    national_id: row.national_id,
                    phone: row.phone,
                    email: row.email,
                    birth_date: row.birth_date,
                    address: row.address,
                },
                tags: row.tags,
                preferences: row.preferences.0,
            },
            consents,
            tier,
            rfm,
            links,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// What a read by id finds within the caller's scope.
#[derive(Debug)]
pub enum Found {
    Customer(Box<Customer>),
    /// Erased: a tombstone in the caller's scope.
    Erased,
    /// Merged into the survivor named (MergeCustomers): a tombstone in the
    /// caller's scope whose name stands for the survivor.
    Merged(CustomerId),
    /// No such customer, or not in the caller's scope: the two are not told
    /// apart, so existence does not leak.
    Nothing,
}

fn found(row: Option<CustomerRow>) -> Result<Found, Error> {
    match row {
        None => Ok(Found::Nothing),
        Some(CustomerRow {
            merged_into: Some(survivor),
            ..
        }) => Ok(Found::Merged(CustomerId::parse(&survivor).map_err(
            |_| Error::Internal(anyhow::anyhow!("stored survivor id is not valid")),
        )?)),
        Some(row) if row.delete_time.is_some() => Ok(Found::Erased),
        Some(row) => Ok(Found::Customer(Box::new(row.try_into()?))),
    }
}

/// The constraint a unique violation tripped, if that is what `err` is.
fn unique_violation(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            db.constraint().map(str::to_string)
        }
        _ => None,
    }
}

fn map_unique(err: sqlx::Error, id: &CustomerId) -> Error {
    match unique_violation(&err).as_deref() {
        Some("customers_pkey") => Error::AlreadyExists {
            resource: id.name(),
            reason: ErrorReason::CustomerAlreadyExists,
            existing: Some(id.name()),
        },
        Some("customer_external_ids_pkey") => Error::AlreadyExists {
            resource: "an external id of this customer".into(),
            reason: ErrorReason::ExternalIdAlreadyExists,
            existing: None,
        },
        Some("customer_links_pkey") => Error::AlreadyExists {
            resource: "this link".into(),
            reason: ErrorReason::LinkAlreadyExists,
            existing: None,
        },
        _ => err.into(),
    }
}

/// How `get` locks the customer row until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// A plain read.
    None,
    /// Writes that hang off the customer (interactions, follow-ups,
    /// complaints): an erasure, which updates the row, waits for them, and
    /// they see it when it committed first.
    Share,
    /// Writes to the customer itself.
    Update,
}

/// A customer by id ($1) in the caller's branch ($2, or any when NULL): one
/// row of `customers` and nothing else (what `get` runs without a lock, and
/// tests/api/plans.rs explains).
pub const GET_SQL: &str = concat!(
    select_customer!(),
    "WHERE c.id = $1 AND ($2::text IS NULL OR c.home_branch = $2)"
);

/// The parameters of `GET_SQL` and of `get`'s locking reads.
pub fn get_args(id: &CustomerId, scope: Option<&str>) -> super::Args {
    args!(id.as_str(), scope)
}

pub async fn get(
    conn: &mut PgConnection,
    id: &CustomerId,
    scope: Option<&str>,
    lock: Lock,
) -> Result<Found, Error> {
    let sql = match lock {
        Lock::None => GET_SQL,
        Lock::Share => concat!(
            select_customer!(),
            "WHERE c.id = $1 AND ($2::text IS NULL OR c.home_branch = $2) FOR SHARE OF c"
        ),
        Lock::Update => concat!(
            select_customer!(),
            "WHERE c.id = $1 AND ($2::text IS NULL OR c.home_branch = $2) FOR UPDATE OF c"
        ),
    };
    let row = sqlx::query_as_with::<_, CustomerRow, _>(sql, get_args(id, scope)?)
        .fetch_optional(conn)
        .instrument(statement("SELECT", "customers"))
        .await?;
    found(row)
}

// ListCustomers: one statement per order, so each keeps a plan on its own
// index; both share the filters ($1-$6, $8-$10), bound in `list_customers`
// (and by the plan checks in tests/api/plans.rs).
macro_rules! list_filtered {
    () => {
        concat!(
            select_customer!(),
            "WHERE c.delete_time IS NULL
               AND ($1::text IS NULL OR c.home_branch = $1)
               AND ($2::text IS NULL OR c.home_branch = $2)
               AND ($3::text IS NULL OR c.relationship_manager = $3)
               AND ($4::text IS NULL OR c.kind = $4)
               AND ($5::text IS NULL OR c.tier = $5)
               AND c.tags @> $6::text[]
               AND ($9::timestamptz IS NULL OR c.update_time >= $9)
               AND ($10::timestamptz IS NULL OR c.update_time < $10) "
        )
    };
}
/// ListCustomers in id order.
pub const LIST_BY_ID_SQL: &str = concat!(
    list_filtered!(),
    "AND ($7::text IS NULL OR c.id > $7)
     ORDER BY c.id
     LIMIT $8"
);
/// ListCustomers in (update_time, id) order; $11, the update_time of the
/// cursor, is bound only here.
pub const LIST_BY_UPDATE_TIME_SQL: &str = concat!(
    list_filtered!(),
    "AND ($7::text IS NULL OR (c.update_time, c.id) > ($11, $7))
     ORDER BY c.update_time, c.id
     LIMIT $8"
);
/// ListCustomers' statement for `order` and its parameters: what
/// `list_customers` runs and tests/api/plans.rs explains.
pub fn list_statement(
    scope: Option<&str>,
    filter: &CustomerFilter,
    order: ListOrder,
    after: Option<(Option<DateTime<Utc>>, &str)>,
    limit: i64,
) -> (&'static str, super::Args) {
    let common = args!(
        scope,
        filter.home_branch.as_deref(),
        filter.relationship_manager.as_deref(),
        filter.kind.map(CustomerKind::as_str),
        filter.tier.map(Tier::as_str),
        &filter.tags,
        after.map(|a| a.1),
        limit,
        filter.updated_from,
        filter.updated_before,
    );
    match order {
        ListOrder::Natural => (LIST_BY_ID_SQL, common),
        ListOrder::UpdateTime => (
            LIST_BY_UPDATE_TIME_SQL,
            common.and_then(|mut args| {
                sqlx::Arguments::add(&mut args, after.and_then(|a| a.0))
                    .map_err(sqlx::Error::Encode)?;
                Ok(args)
            }),
        ),
    }
}

impl Db {
    pub async fn get_customer(&self, id: &CustomerId, scope: Option<&str>) -> Result<Found, Error> {
        let mut conn = self.acquire().await?;
        get(&mut conn, id, scope, Lock::None).await
    }

    pub async fn lookup_customer(
        &self,
        system: &str,
        value: &str,
        scope: Option<&str>,
    ) -> Result<Found, Error> {
        let row = sqlx::query_as::<_, CustomerRow>(concat!(
            select_customer!(),
            "JOIN customer_external_ids x ON x.customer_id = c.id
             WHERE x.system = $1 AND x.value = $2 AND ($3::text IS NULL OR c.home_branch = $3)"
        ))
        .bind(system)
        .bind(value)
        .bind(scope)
        .fetch_optional(&mut *self.acquire().await?)
        .instrument(statement("SELECT", "customers"))
        .await?;
        found(row)
    }

    /// One page in id order, after the id `after`.
    pub async fn list_customers(
        &self,
        scope: Option<&str>,
        filter: &CustomerFilter,
        order: ListOrder,
        after: Option<(Option<DateTime<Utc>>, &str)>,
        limit: i64,
    ) -> Result<Vec<Customer>, Error> {
        let (sql, args) = list_statement(scope, filter, order, after, limit);
        let rows = sqlx::query_as_with::<_, CustomerRow, _>(sql, args?)
            .fetch_all(&mut *self.acquire_read().await?)
            .instrument(statement("SELECT", "customers"))
            .await?;
        rows.into_iter().map(Customer::try_from).collect()
    }

    /// Customers matching `tsquery` (from `search::tsquery`), best first: an
    /// exact name match, then by rank with name hits weighted above id hits.
    pub async fn search_customers(
        &self,
        scope: Option<&str>,
        tsquery: &str,
        query: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Customer>, Error> {
        let rows = sqlx::query_as::<_, CustomerRow>(concat!(
            select_customer!(),
            "WHERE c.delete_time IS NULL
               AND ($1::text IS NULL OR c.home_branch = $1)
               AND c.search_document @@ $2::tsquery
             ORDER BY lower(c.display_name) = lower($3) DESC,
                      ts_rank(c.search_document, $2::tsquery, 1) DESC,
                      c.id
             OFFSET $4 LIMIT $5"
        ))
        .bind(scope)
        .bind(tsquery)
        .bind(query.trim())
        .bind(offset)
        .bind(limit)
        .fetch_all(&mut *self.acquire_read().await?)
        .instrument(statement("SELECT", "customers"))
        .await?;
        rows.into_iter().map(Customer::try_from).collect()
    }
}

fn search_document(profile: &Profile) -> String {
    search::document(
        &profile.display_name,
        profile.external_ids.iter().map(|e| e.value.as_str()),
    )
}

async fn replace_external_ids(
    conn: &mut PgConnection,
    id: &CustomerId,
    external_ids: &[ExternalId],
) -> Result<(), Error> {
    sqlx::query("DELETE FROM customer_external_ids WHERE customer_id = $1")
        .bind(id.as_str())
        .execute(&mut *conn)
        .instrument(statement("DELETE", "customer_external_ids"))
        .await?;
    let systems: Vec<&str> = external_ids.iter().map(|e| e.system.as_str()).collect();
    let values: Vec<&str> = external_ids.iter().map(|e| e.value.as_str()).collect();
    sqlx::query(
        "INSERT INTO customer_external_ids (system, value, customer_id)
         SELECT s, v, $3 FROM UNNEST($1::text[], $2::text[]) AS t(s, v)",
    )
    .bind(&systems)
    .bind(&values)
    .bind(id.as_str())
    .execute(&mut *conn)
    .instrument(statement("INSERT", "customer_external_ids"))
    .await
    .map_err(|e| map_unique(e, id))?;
    Ok(())
}

/// Reads a customer back inside the writing transaction.
async fn reread(conn: &mut PgConnection, id: &CustomerId) -> Result<Customer, Error> {
    match get(conn, id, None, Lock::None).await? {
        Found::Customer(c) => Ok(*c),
        _ => Err(Error::Internal(anyhow::anyhow!(
            "customer vanished inside its own transaction"
        ))),
    }
}

/// Inserts a new customer. A collision with a customer outside the caller's
/// `scope` (its id or one of its external ids) is PERMISSION_DENIED, not
/// ALREADY_EXISTS, so a create cannot probe another branch (AIP-211).
pub async fn insert(
    conn: &mut PgConnection,
    id: &CustomerId,
    profile: &Profile,
    scope: &BranchScope,
) -> Result<Customer, Error> {
    if let BranchScope::Branch(branch) = scope {
        let systems: Vec<&str> = profile
            .external_ids
            .iter()
            .map(|x| x.system.as_str())
            .collect();
        let values: Vec<&str> = profile
            .external_ids
            .iter()
            .map(|x| x.value.as_str())
            .collect();
        let foreign: bool = sqlx::query_scalar(
            "SELECT EXISTS (
                SELECT 1 FROM customers c WHERE c.id = $1 AND c.home_branch <> $4
                UNION ALL
                SELECT 1 FROM customer_external_ids x JOIN customers c ON c.id = x.customer_id
                 JOIN UNNEST($2::text[], $3::text[]) AS t(system, value)
                   ON t.system = x.system AND t.value = x.value
                 WHERE c.home_branch <> $4)",
        )
        .bind(id.as_str())
        .bind(&systems)
        .bind(&values)
        .bind(branch)
        .fetch_one(&mut *conn)
        .instrument(statement("SELECT", "customers"))
        .await?;
        if foreign {
            return Err(Error::denied(
                "create this customer (its id or an external id belongs to a customer it cannot reach)",
            ));
        }
    }
    sqlx::query(
        "INSERT INTO customers (id, display_name, kind, home_branch, relationship_manager,
                                national_id, phone, email, birth_date, address, tags, preferences,
                                search_document)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::tsvector)",
    )
    .bind(id.as_str())
    .bind(&profile.display_name)
    .bind(profile.kind.as_str())
    .bind(&profile.home_branch)
    .bind(&profile.relationship_manager)
    .bind(&profile.pii.national_id)
    .bind(&profile.pii.phone)
    .bind(&profile.pii.email)
    .bind(profile.pii.birth_date)
    .bind(&profile.pii.address)
    .bind(&profile.tags)
    .bind(Json(&profile.preferences))
    .bind(search_document(profile))
    .execute(&mut *conn)
    .instrument(statement("INSERT", "customers"))
    .await
    .map_err(|e| map_unique(e, id))?;
    replace_external_ids(conn, id, &profile.external_ids).await?;
    append_outbox(
        conn,
        "customer",
        id.as_str(),
        "customer.created",
        serde_json::json!({ "name": id.name() }),
    )
    .await?;
    reread(conn, id).await
}

/// Marks as changed what a branch-wide list (ListFollowUps, ListComplaints,
/// ListServiceRequests) shows of a customer that moved to another branch:
/// for the branch it joined these rows are new, so a reader following
/// `update_time` there must meet them after the move. Only the change time
/// moves; the rows are as they were (version and etag unchanged).
async fn stamp_for_another_branch(conn: &mut PgConnection, id: &CustomerId) -> Result<(), Error> {
    sqlx::query(
        "WITH follow_ups AS (
             UPDATE follow_ups SET update_time = now() WHERE customer_id = $1
         ), service_requests AS (
             UPDATE service_requests SET update_time = now() WHERE customer_id = $1
         )
         UPDATE interactions SET update_time = now()
          WHERE customer_id = $1 AND complaint_state IS NOT NULL",
    )
    .bind(id.as_str())
    .execute(conn)
    .instrument(statement("UPDATE", "interactions"))
    .await?;
    Ok(())
}

/// Writes a changed profile of a customer locked by `get(.., for_update)`.
pub async fn update_profile(
    conn: &mut PgConnection,
    id: &CustomerId,
    profile: &Profile,
    changed_fields: &[&str],
    external_ids_changed: bool,
) -> Result<Customer, Error> {
    let moved: bool = sqlx::query_scalar(
        "UPDATE customers c SET display_name = $2, kind = $3, home_branch = $4,
                relationship_manager = $5, national_id = $6, phone = $7, email = $8,
                birth_date = $9, address = $10, tags = $11, preferences = $12,
                search_document = $13::tsvector, version = version + 1, update_time = now()
           FROM (SELECT home_branch FROM customers WHERE id = $1) before
         WHERE c.id = $1
         RETURNING before.home_branch <> $4",
    )
    .bind(id.as_str())
    .bind(&profile.display_name)
    .bind(profile.kind.as_str())
    .bind(&profile.home_branch)
    .bind(&profile.relationship_manager)
    .bind(&profile.pii.national_id)
    .bind(&profile.pii.phone)
    .bind(&profile.pii.email)
    .bind(profile.pii.birth_date)
    .bind(&profile.pii.address)
    .bind(&profile.tags)
    .bind(Json(&profile.preferences))
    .bind(search_document(profile))
    .fetch_one(&mut *conn)
    .instrument(statement("UPDATE", "customers"))
    .await?;
    if moved {
        stamp_for_another_branch(conn, id).await?;
    }
    if external_ids_changed {
        replace_external_ids(conn, id, &profile.external_ids).await?;
    }
    // The aliases of merged duplicates are reached where the survivor is.
    sqlx::query(
        "UPDATE customers SET home_branch = $2 WHERE merged_into = $1 AND home_branch <> $2",
    )
    .bind(id.as_str())
    .bind(&profile.home_branch)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "customers"))
    .await?;
    append_outbox(
        conn,
        "customer",
        id.as_str(),
        "customer.updated",
        serde_json::json!({ "name": id.name(), "fields": changed_fields }),
    )
    .await?;
    reread(conn, id).await
}

/// Erasure (DESIGN §4): PII, free text, ids, consents and links go; a
/// tombstone with the id and home branch stays so later reads say NOT_FOUND.
pub async fn erase(conn: &mut PgConnection, id: &CustomerId) -> Result<(), Error> {
    for (operation, table, sql) in [
        (
            "DELETE",
            "customer_external_ids",
            "DELETE FROM customer_external_ids WHERE customer_id = $1",
        ),
        (
            "DELETE",
            "customer_consents",
            "DELETE FROM customer_consents WHERE customer_id = $1",
        ),
        (
            "DELETE",
            "consent_events",
            "DELETE FROM consent_events WHERE customer_id = $1",
        ),
        (
            "DELETE",
            "customer_links",
            "DELETE FROM customer_links WHERE customer_id = $1 OR linked_customer_id = $1",
        ),
        (
            "UPDATE",
            "customers",
            "UPDATE customers SET display_name = '', relationship_manager = '', national_id = '',
                phone = '', email = '', birth_date = NULL, address = '', tags = '{}',
                preferences = '{}', tier = NULL, recency_score = NULL, frequency_score = NULL,
                monetary_score = NULL, search_document = ''::tsvector, version = version + 1,
                update_time = now(), delete_time = now()
         WHERE id = $1",
        ),
    ] {
        sqlx::query(sql)
            .bind(id.as_str())
            .execute(&mut *conn)
            .instrument(statement(operation, table))
            .await?;
    }
    super::interactions::erase_text(conn, id).await?;
    super::service_requests::erase_text(conn, id).await?;
    super::knowledge::erase_subject(conn, id.as_str()).await?;
    append_outbox(
        conn,
        "customer",
        id.as_str(),
        "customer.erased",
        serde_json::json!({ "name": id.name() }),
    )
    .await
}

/// Records a consent change and sets the current state of its purpose. A
/// KNOWLEDGE_SHARING withdrawal takes effect in the same transaction: items
/// about the customer visible bank-wide fall back to their branch, and grants
/// to other branches end now.
pub async fn set_consent(
    conn: &mut PgConnection,
    id: &CustomerId,
    change: &ConsentChange,
    recorded_by: &str,
) -> Result<Customer, Error> {
    sqlx::query(
        "INSERT INTO customer_consents (customer_id, purpose, granted) VALUES ($1, $2, $3)
         ON CONFLICT (customer_id, purpose)
         DO UPDATE SET granted = EXCLUDED.granted, update_time = now()",
    )
    .bind(id.as_str())
    .bind(change.purpose.as_str())
    .bind(change.granted)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "customer_consents"))
    .await?;
    sqlx::query(
        "INSERT INTO consent_events (customer_id, purpose, granted, channel, evidence_ref,
                                     policy_version, recorded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.as_str())
    .bind(change.purpose.as_str())
    .bind(change.granted)
    .bind(&change.channel)
    .bind(&change.evidence_ref)
    .bind(&change.policy_version)
    .bind(recorded_by)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "consent_events"))
    .await?;
    if change.purpose == ConsentPurpose::KnowledgeSharing && !change.granted {
        super::knowledge::withdraw_sharing(conn, id.as_str()).await?;
    }
    bump_version(conn, id).await?;
    append_outbox(
        conn,
        "customer",
        id.as_str(),
        "customer.consent_changed",
        serde_json::json!({
            "name": id.name(),
            "purpose": change.purpose.as_str(),
            "granted": change.granted,
        }),
    )
    .await?;
    reread(conn, id).await
}

/// A page of a customer's consent events, newest first, after the keyset
/// position `before` (an event id).
pub async fn consent_events(
    conn: &mut PgConnection,
    id: &CustomerId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ConsentEvent>, Error> {
    let rows: Vec<ConsentEventRow> = sqlx::query_as(
        "SELECT id, purpose, granted, channel, evidence_ref, policy_version, recorded_by,
                create_time
         FROM consent_events
         WHERE customer_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(id.as_str())
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .instrument(statement("SELECT", "consent_events"))
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(ConsentEvent {
                change: ConsentChange {
                    purpose: ConsentPurpose::parse(&row.purpose).ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("stored consent purpose {:?}", row.purpose))
                    })?,
                    granted: row.granted,
                    channel: row.channel,
                    evidence_ref: row.evidence_ref,
                    policy_version: row.policy_version,
                },
                recorded_by: row.recorded_by,
                event_time: row.create_time,
                id: row.id,
            })
        })
        .collect()
}

#[derive(FromRow)]
struct ConsentEventRow {
    id: i64,
    purpose: String,
    granted: bool,
    channel: String,
    evidence_ref: String,
    policy_version: String,
    recorded_by: String,
    create_time: DateTime<Utc>,
}

async fn bump_version(conn: &mut PgConnection, id: &CustomerId) -> Result<(), Error> {
    sqlx::query("UPDATE customers SET version = version + 1, update_time = now() WHERE id = $1")
        .bind(id.as_str())
        .execute(conn)
        .instrument(statement("UPDATE", "customers"))
        .await?;
    Ok(())
}

/// Links `linked` to `customer`; both were locked by the caller. Returns the
/// customer as it reads after the link.
pub async fn link(
    conn: &mut PgConnection,
    customer: &CustomerId,
    linked: &CustomerId,
    relationship: Relationship,
) -> Result<Customer, Error> {
    let (first, second) = if relationship.is_symmetric() && linked < customer {
        (linked, customer)
    } else {
        (customer, linked)
    };
    sqlx::query(
        "INSERT INTO customer_links (customer_id, linked_customer_id, relationship)
         VALUES ($1, $2, $3)",
    )
    .bind(first.as_str())
    .bind(second.as_str())
    .bind(relationship.as_str())
    .execute(&mut *conn)
    .instrument(statement("INSERT", "customer_links"))
    .await
    .map_err(|e| map_unique(e, customer))?;
    bump_version(conn, customer).await?;
    bump_version(conn, linked).await?;
    append_outbox(
        conn,
        "customer",
        customer.as_str(),
        "customer.linked",
        serde_json::json!({
            "name": customer.name(),
            "linked_customer": linked.name(),
            "relationship": relationship.as_str(),
        }),
    )
    .await?;
    reread(conn, customer).await
}

/// Removes the link `link` made; both customers were locked by the caller.
/// No such link: FAILED_PRECONDITION (NOT_LINKED).
pub async fn unlink(
    conn: &mut PgConnection,
    customer: &CustomerId,
    linked: &CustomerId,
    relationship: Relationship,
) -> Result<Customer, Error> {
    let (first, second) = if relationship.is_symmetric() && linked < customer {
        (linked, customer)
    } else {
        (customer, linked)
    };
    let removed = sqlx::query(
        "DELETE FROM customer_links
         WHERE customer_id = $1 AND linked_customer_id = $2 AND relationship = $3",
    )
    .bind(first.as_str())
    .bind(second.as_str())
    .bind(relationship.as_str())
    .execute(&mut *conn)
    .instrument(statement("DELETE", "customer_links"))
    .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::FailedPrecondition {
            reason: ErrorReason::NotLinked,
            message: format!(
                "{} is not linked to {} as {}",
                customer.name(),
                linked.name(),
                relationship.as_str()
            ),
        });
    }
    bump_version(conn, customer).await?;
    bump_version(conn, linked).await?;
    append_outbox(
        conn,
        "customer",
        customer.as_str(),
        "customer.unlinked",
        serde_json::json!({
            "name": customer.name(),
            "linked_customer": linked.name(),
            "relationship": relationship.as_str(),
        }),
    )
    .await?;
    reread(conn, customer).await
}

/// How many of `ids` have granted consent for `purpose`.
pub async fn count_consented(
    conn: &mut PgConnection,
    ids: &[String],
    purpose: ConsentPurpose,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM customer_consents
         WHERE customer_id = ANY($1) AND purpose = $2 AND granted",
    )
    .bind(ids)
    .bind(purpose.as_str())
    .fetch_one(conn)
    .instrument(statement("SELECT", "customer_consents"))
    .await?)
}

/// What MergeCustomers moved, for the outbox and the answer's audit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Merged {
    pub interactions: u64,
    pub follow_ups: u64,
    pub knowledge_items: u64,
}

/// The first row of the duplicate that cannot move under the survivor: an
/// interaction or follow-up id both hold, or an interaction's (source system,
/// external ref) both hold.
async fn merge_conflict(
    conn: &mut PgConnection,
    survivor: &CustomerId,
    duplicate: &CustomerId,
) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar(
        "(SELECT 'customers/' || d.customer_id || '/interactions/' || d.id
            FROM interactions d JOIN interactions s
              ON s.customer_id = $1 AND (s.id = d.id OR (d.external_ref <> ''
                 AND s.source_system = d.source_system AND s.external_ref = d.external_ref))
           WHERE d.customer_id = $2 LIMIT 1)
         UNION ALL
         (SELECT 'customers/' || d.customer_id || '/followUps/' || d.id
            FROM follow_ups d JOIN follow_ups s ON s.customer_id = $1 AND s.id = d.id
           WHERE d.customer_id = $2 LIMIT 1)
         LIMIT 1",
    )
    .bind(survivor.as_str())
    .bind(duplicate.as_str())
    .fetch_optional(conn)
    .instrument(statement("SELECT", "interactions"))
    .await?)
}

/// MergeCustomers in the caller's transaction, both customers locked by
/// `get(.., Lock::Update)`: the duplicate's interactions and follow-ups move
/// under the survivor (interactions re-stamped for the feed as MOVED, with
/// their previous name), its external ids, links, consent history and
/// knowledge subjects follow, and it stays as a tombstone without PII that
/// names the survivor. Returns the survivor as it reads after.
pub async fn merge(
    conn: &mut PgConnection,
    survivor: &CustomerId,
    duplicate: &CustomerId,
    by: &str,
) -> Result<(Customer, Merged), Error> {
    if let Some(resource) = merge_conflict(conn, survivor, duplicate).await? {
        return Err(Error::Blocked {
            reason: ErrorReason::MergeConflict,
            message: format!(
                "{resource} has an id or external_ref that {} also holds; void or correct one first",
                survivor.name()
            ),
            metadata: vec![("resource".into(), resource)],
        });
    }
    let (s, d) = (survivor.as_str(), duplicate.as_str());
    let interactions = sqlx::query(
        "UPDATE interactions
            SET customer_id = $1, previous_name = 'customers/' || $2 || '/interactions/' || id,
                last_change = 'MOVED', version = version + 1, update_time = now(),
                txid = pg_current_xact_id()::text::bigint, seq = DEFAULT
          WHERE customer_id = $2",
    )
    .bind(s)
    .bind(d)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "interactions"))
    .await?
    .rows_affected();
    // Its service requests (and their history) follow the keys by cascade;
    // stamped first, so a list following update_time sees them move.
    sqlx::query(
        "UPDATE service_requests SET version = version + 1, update_time = now()
          WHERE customer_id = $1",
    )
    .bind(d)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "service_requests"))
    .await?;
    sqlx::query("UPDATE interaction_keys SET customer_id = $1 WHERE customer_id = $2")
        .bind(s)
        .bind(d)
        .execute(&mut *conn)
        .instrument(statement("UPDATE", "interaction_keys"))
        .await?;
    let follow_ups = sqlx::query(
        "UPDATE follow_ups
            SET customer_id = $1,
                source_interaction = replace(source_interaction, 'customers/' || $2 || '/',
                                             'customers/' || $1 || '/'),
                completion_interaction = replace(completion_interaction,
                                                 'customers/' || $2 || '/', 'customers/' || $1 || '/'),
                version = version + 1, update_time = now()
          WHERE customer_id = $2",
    )
    .bind(s)
    .bind(d)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "follow_ups"))
    .await?
    .rows_affected();
    // Knowledge about the duplicate is about the survivor: subjects keep
    // their order without a repeat, sources name the moved interactions.
    let resubjected: Vec<String> = sqlx::query_scalar(
        "UPDATE knowledge_items k
            SET subjects = ARRAY(SELECT q.subject FROM (
                                   SELECT CASE WHEN t.u = $2 THEN $1 ELSE t.u END AS subject,
                                          min(t.n) AS n
                                     FROM unnest(k.subjects) WITH ORDINALITY AS t(u, n)
                                    GROUP BY 1) q ORDER BY q.n),
                sources = ARRAY(SELECT replace(x, 'customers/' || $2 || '/', 'customers/' || $1 || '/')
                                  FROM unnest(k.sources) WITH ORDINALITY AS t(x, n) ORDER BY t.n),
                version = version + 1, update_time = now()
          WHERE $2 = ANY (k.subjects)
             OR EXISTS (SELECT 1 FROM unnest(k.sources) x
                         WHERE starts_with(x, 'customers/' || $2 || '/'))
         RETURNING k.id",
    )
    .bind(s)
    .bind(d)
    .fetch_all(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    let knowledge_items = resubjected.len() as u64;
    // Watchers of the survivor learn of what is now about it, as they learn
    // of an item shared to them.
    let ids: Vec<&str> = resubjected.iter().map(String::as_str).collect();
    super::knowledge::record_events(conn, &ids, crate::domain::knowledge::Change::Shared).await?;
    for (operation, table, sql) in [
        (
            "UPDATE",
            "customer_external_ids",
            "UPDATE customer_external_ids SET customer_id = $1 WHERE customer_id = $2",
        ),
        (
            "UPDATE",
            "consent_events",
            "UPDATE consent_events SET customer_id = $1 WHERE customer_id = $2",
        ),
        // For a purpose both decided, the later decision stands: it is the
        // same person's.
        (
            "INSERT",
            "customer_consents",
            "INSERT INTO customer_consents (customer_id, purpose, granted, update_time)
             SELECT $1, purpose, granted, update_time FROM customer_consents
              WHERE customer_id = $2
             ON CONFLICT (customer_id, purpose) DO UPDATE
                SET granted = EXCLUDED.granted, update_time = EXCLUDED.update_time
              WHERE customer_consents.update_time < EXCLUDED.update_time",
        ),
        (
            "DELETE",
            "customer_consents",
            // ($1 is bound for every statement of this loop; Postgres
            // needs each bound parameter used.)
            "DELETE FROM customer_consents WHERE customer_id = $2 AND $1 <> ''",
        ),
        // Links re-pointed at the survivor; a link between the two goes,
        // one the survivor already has is kept once. Symmetric ones are
        // stored with the smaller id first, as LinkCustomers stores them.
        (
            "INSERT",
            "customer_links",
            "WITH moved AS (
                DELETE FROM customer_links
                 WHERE customer_id = $2 OR linked_customer_id = $2
                RETURNING customer_id, linked_customer_id, relationship, create_time
             ), repointed AS (
                SELECT CASE WHEN customer_id = $2 THEN $1 ELSE customer_id END COLLATE \"C\" AS a,
                       CASE WHEN linked_customer_id = $2 THEN $1 ELSE linked_customer_id END
                           COLLATE \"C\" AS b,
                       relationship, create_time
                  FROM moved
             )
             INSERT INTO customer_links (customer_id, linked_customer_id, relationship, create_time)
             SELECT CASE WHEN relationship IN ('HOUSEHOLD', 'SPOUSE') AND b < a THEN b ELSE a END,
                    CASE WHEN relationship IN ('HOUSEHOLD', 'SPOUSE') AND b < a THEN a ELSE b END,
                    relationship, create_time
               FROM repointed WHERE a <> b
             ON CONFLICT DO NOTHING",
        ),
        // Customers merged into the duplicate before now name the survivor:
        // every alias is one step.
        (
            "UPDATE",
            "customers",
            "UPDATE customers SET merged_into = $1 WHERE merged_into = $2",
        ),
    ] {
        sqlx::query(sql)
            .bind(s)
            .bind(d)
            .execute(&mut *conn)
            .instrument(statement(operation, table))
            .await?;
    }
    // Knowledge that the duplicate's consent let out of its branch stays
    // out only with the survivor's consent as it stands now.
    let sharing: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM customer_consents
                         WHERE customer_id = $1 AND purpose = 'KNOWLEDGE_SHARING' AND granted)",
    )
    .bind(s)
    .fetch_one(&mut *conn)
    .instrument(statement("SELECT", "customer_consents"))
    .await?;
    if !sharing {
        super::knowledge::withdraw_sharing(conn, s).await?;
    }
    // The duplicate becomes a tombstone like an erased customer's, with the
    // survivor's name; what it said is the survivor's to hold now. It takes
    // the survivor's home branch: the alias is reached where the survivor
    // is, and tells nobody else where it leads.
    sqlx::query(
        "UPDATE customers SET home_branch = (SELECT home_branch FROM customers WHERE id = $1),
                display_name = '', relationship_manager = '', national_id = '',
                phone = '', email = '', birth_date = NULL, address = '', tags = '{}',
                preferences = '{}', tier = NULL, recency_score = NULL, frequency_score = NULL,
                monetary_score = NULL, search_document = ''::tsvector, version = version + 1,
                update_time = now(), delete_time = now(), merged_into = $1, merged_by = $3
          WHERE id = $2",
    )
    .bind(s)
    .bind(d)
    .bind(by)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "customers"))
    .await?;
    // The survivor's search document now holds the moved external ids.
    let before = reread(conn, survivor).await?;
    sqlx::query(
        "UPDATE customers SET search_document = $2::tsvector, version = version + 1,
                update_time = now()
          WHERE id = $1",
    )
    .bind(s)
    .bind(search_document(&before.profile))
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "customers"))
    .await?;
    if interactions > 0 {
        super::interactions::notify_feed(conn).await?;
    }
    let merged = Merged {
        interactions,
        follow_ups,
        knowledge_items,
    };
    append_outbox(
        conn,
        "customer",
        d,
        "customer.merged",
        serde_json::json!({
            "name": duplicate.name(),
            "survivor": survivor.name(),
            "by": by,
            "interactions": interactions,
            "follow_ups": follow_ups,
            "knowledge_items": knowledge_items,
        }),
    )
    .await?;
    Ok((reread(conn, survivor).await?, merged))
}
