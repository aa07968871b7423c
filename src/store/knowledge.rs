//! Knowledge items, their lineage, shares, internalizations and change log.
//! Every read binds the caller's `KnowledgeAccess` as $1–$6 of the
//! `visible!()` predicate, so an item the caller may not see never leaves SQL.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{FromRow, PgConnection};
use tracing::Instrument;

use super::{Db, append_outbox, append_outbox_each, statement};
use crate::{
    domain::{
        filter::ListOrder,
        knowledge::{
            Carrier, CarrierType, Change, Conversion, Derivation, ItemContent, KnowledgeAccess,
            KnowledgeItem, KnowledgeKind, Nature, NewItem, Retraction, Sensitivity, Share,
            Verification, VerificationState, Visibility,
        },
        search,
    },
    error::{Error, ErrorReason},
};

/// NOTIFY channel that wakes WatchKnowledge streams.
pub const KNOWLEDGE_CHANNEL: &str = "ck_knowledge";

/// DESIGN §3 as SQL over `k` (knowledge_items), with the access bound as
/// $1 all, $2 bank_only, $3 subject_branch, $4 subject, $5 team, $6 branch:
/// whom the item admits, retracted or not. A grant is live until it lapses
/// or is revoked. Reads use `visible!()`; only lineage and the watch stream's
/// RETRACTED changes look past a retraction.
macro_rules! admitted {
    () => {
        "($1::bool OR (
            ($3::text IS NULL OR NOT EXISTS (
                SELECT 1 FROM customers sc WHERE sc.id = ANY (k.subjects) AND sc.home_branch <> $3))
            AND (k.visibility = 'BANK' OR (NOT $2::bool AND (
                   (k.visibility = 'PRIVATE' AND k.author = $4)
                OR (k.visibility = 'TEAM' AND $5 <> '' AND k.scope_team = $5)
                OR (k.visibility = 'BRANCH' AND $6 <> '' AND k.scope_branch = $6)
                OR EXISTS (
                    SELECT 1 FROM knowledge_shares g
                    WHERE g.item_id = k.id AND g.is_grant
                      AND g.revoke_time IS NULL
                      AND (g.expire_time IS NULL OR g.expire_time > now())
                      AND ((g.to_carrier_type = 'TEAM' AND $5 <> '' AND g.to_carrier_id = $5)
                        OR (g.to_carrier_type = 'BRANCH' AND $6 <> '' AND g.to_carrier_id = $6))))))))"
    };
}

/// `admitted!()` for a live (not retracted) item: every read.
macro_rules! visible {
    () => {
        concat!("(k.retract_time IS NULL AND ", admitted!(), ")")
    };
}

macro_rules! select_item {
    () => {
        "SELECT k.id, k.title, k.body, k.nature, k.kind, k.subjects, k.carrier_type, k.carrier_id,
                k.author, k.scope_team, k.scope_branch, k.visibility, k.sensitivity, k.tags,
                k.sources, k.verification_state, k.verifier, k.verify_time, k.next_review_time,
                k.version, k.create_time, k.update_time, k.retract_time, k.retract_reason,
                k.retracted_by,
                COALESCE((SELECT jsonb_agg(jsonb_build_object('item', e.source_item,
                                                              'conversion', e.conversion)
                                           ORDER BY e.create_time, e.source_item)
                          FROM knowledge_edges e WHERE e.target_item = k.id), '[]') AS derived_from,
                COALESCE((SELECT jsonb_agg(jsonb_build_object(
                              'from_type', s.from_carrier_type, 'from_id', s.from_carrier_id,
                              'to_type', s.to_carrier_type, 'to_id', s.to_carrier_id,
                              'grant', s.is_grant, 'visibility', s.visibility,
                              'purpose', s.purpose, 'expire_time', s.expire_time,
                              'shared_by', s.shared_by, 'create_time', s.create_time)
                                           ORDER BY s.id)
                          FROM knowledge_shares s WHERE s.item_id = k.id AND s.is_grant
                            AND s.revoke_time IS NULL
                            AND (s.expire_time IS NULL OR s.expire_time > now())), '[]') AS grants
         FROM knowledge_items k "
    };
}

#[derive(Deserialize)]
struct DerivationJson {
    item: String,
    conversion: String,
}

#[derive(Deserialize)]
struct ShareJson {
    from_type: String,
    from_id: String,
    to_type: String,
    to_id: String,
    grant: bool,
    visibility: Option<String>,
    purpose: String,
    expire_time: Option<DateTime<Utc>>,
    shared_by: String,
    create_time: DateTime<Utc>,
    #[serde(default)]
    revoke_time: Option<DateTime<Utc>>,
    #[serde(default)]
    revoked_by: String,
}

#[derive(FromRow)]
struct ItemRow {
    id: String,
    title: String,
    body: String,
    nature: String,
    kind: String,
    subjects: Vec<String>,
    carrier_type: String,
    carrier_id: String,
    author: String,
    scope_team: String,
    scope_branch: String,
    visibility: String,
    sensitivity: String,
    tags: Vec<String>,
    sources: Vec<String>,
    verification_state: String,
    verifier: String,
    verify_time: Option<DateTime<Utc>>,
    next_review_time: Option<DateTime<Utc>>,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    retract_time: Option<DateTime<Utc>>,
    retract_reason: String,
    retracted_by: String,
    derived_from: sqlx::types::Json<Vec<DerivationJson>>,
    grants: sqlx::types::Json<Vec<ShareJson>>,
}

fn parse<T>(what: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, Error> {
    parse(value).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "stored knowledge {what} {value:?} is not valid"
        ))
    })
}

fn share_from(id: &str, s: ShareJson) -> Result<Share, Error> {
    Ok(Share {
        item: crate::domain::knowledge::item_name(id),
        from: Carrier {
            kind: parse("carrier", &s.from_type, CarrierType::parse)?,
            id: s.from_id,
        },
        to: Carrier {
            kind: parse("carrier", &s.to_type, CarrierType::parse)?,
            id: s.to_id,
        },
        grant: s.grant,
        visibility: s
            .visibility
            .map(|v| parse("visibility", &v, Visibility::parse))
            .transpose()?,
        purpose: s.purpose,
        expire_time: s.expire_time,
        shared_by: s.shared_by,
        create_time: s.create_time,
        revoked: s.revoke_time.map(|t| (t, s.revoked_by)),
    })
}

impl TryFrom<ItemRow> for KnowledgeItem {
    type Error = Error;

    fn try_from(row: ItemRow) -> Result<Self, Error> {
        let grants = row
            .grants
            .0
            .into_iter()
            .map(|s| share_from(&row.id, s))
            .collect::<Result<_, _>>()?;
        Ok(KnowledgeItem {
            item: NewItem {
                id: row.id,
                content: ItemContent {
                    title: row.title,
                    body: row.body,
                    kind: parse("kind", &row.kind, KnowledgeKind::parse)?,
                    subjects: row.subjects,
                    visibility: parse("visibility", &row.visibility, Visibility::parse)?,
                    sensitivity: parse("sensitivity", &row.sensitivity, Sensitivity::parse)?,
                    tags: row.tags,
                    sources: row.sources,
                },
                nature: parse("nature", &row.nature, Nature::parse)?,
                carrier: Carrier {
                    kind: parse("carrier", &row.carrier_type, CarrierType::parse)?,
                    id: row.carrier_id,
                },
                author: row.author,
                scope_team: row.scope_team,
                scope_branch: row.scope_branch,
            },
            derived_from: row
                .derived_from
                .0
                .into_iter()
                .map(|d| {
                    Ok(Derivation {
                        item: crate::domain::knowledge::item_name(&d.item),
                        conversion: parse("conversion", &d.conversion, Conversion::parse)?,
                    })
                })
                .collect::<Result<_, Error>>()?,
            verification: Verification {
                state: parse(
                    "verification state",
                    &row.verification_state,
                    VerificationState::parse,
                )?,
                verifier: row.verifier,
                verify_time: row.verify_time,
                next_review_time: row.next_review_time,
            },
            grants,
            retraction: row.retract_time.map(|time| Retraction {
                time,
                reason: row.retract_reason,
                by: row.retracted_by,
            }),
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// Binds a `KnowledgeAccess` as $1–$6.
macro_rules! bind_access {
    ($query:expr, $access:expr) => {{
        let access: &KnowledgeAccess = $access;
        $query
            .bind(access.all)
            .bind(access.bank_only)
            .bind(access.subject_branch.as_deref())
            .bind(access.subject.as_str())
            .bind(access.team.as_str())
            .bind(access.branch.as_str())
    }};
}

/// Statement parameters: the caller's access ($1-$6, as `bind_access!`
/// binds them) followed by the values given.
macro_rules! access_args {
    ($access:expr $(, $value:expr)* $(,)?) => {{
        let access: &KnowledgeAccess = $access;
        args!(
            access.all,
            access.bank_only,
            access.subject_branch.as_deref(),
            access.subject.as_str(),
            access.team.as_str(),
            access.branch.as_str(),
            $($value,)*
        )
    }};
}

/// Access that sees everything: for reads inside the service's own writes.
pub fn unrestricted() -> KnowledgeAccess {
    KnowledgeAccess {
        all: true,
        bank_only: false,
        subject_branch: None,
        subject: String::new(),
        team: String::new(),
        branch: String::new(),
    }
}

fn search_document_parts(content: &ItemContent) -> (String, String, String, String) {
    let cjk = [
        search::cjk_document(&content.title, 'A'),
        search::cjk_document(&content.body, 'B'),
    ]
    .into_iter()
    .filter(|d| !d.is_empty())
    .collect::<Vec<_>>()
    .join(" ");
    (
        content.title.clone(),
        content.body.clone(),
        content.tags.join(" "),
        cjk,
    )
}

/// The SQL expression of the search document from $a title, $b body, $c tags,
/// $d CJK lexemes.
macro_rules! search_document {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            "setweight(to_tsvector('english', ",
            $a,
            "), 'A') || setweight(to_tsvector('english', ",
            $b,
            "), 'B') || setweight(to_tsvector('simple', ",
            $c,
            "), 'C') || ",
            $d,
            "::tsvector"
        )
    };
}

/// A visible item, or None (missing or not visible: not told apart).
pub async fn get(
    conn: &mut PgConnection,
    id: &str,
    access: &KnowledgeAccess,
    for_update: bool,
) -> Result<Option<KnowledgeItem>, Error> {
    let sql = if for_update {
        concat!(
            select_item!(),
            "WHERE k.id = $7 AND ",
            visible!(),
            " FOR UPDATE OF k"
        )
    } else {
        concat!(select_item!(), "WHERE k.id = $7 AND ", visible!())
    };
    bind_access!(sqlx::query_as::<_, ItemRow>(sql), access)
        .bind(id)
        .fetch_optional(conn)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?
        .map(KnowledgeItem::try_from)
        .transpose()
}

/// An item the caller is admitted to, retracted or not: the lineage root and
/// what a retraction's retry re-reads.
pub async fn get_admitted(
    conn: &mut PgConnection,
    id: &str,
    access: &KnowledgeAccess,
) -> Result<Option<KnowledgeItem>, Error> {
    bind_access!(
        sqlx::query_as::<_, ItemRow>(concat!(select_item!(), "WHERE k.id = $7 AND ", admitted!())),
        access
    )
    .bind(id)
    .fetch_optional(conn)
    .instrument(statement("SELECT", "knowledge_items"))
    .await?
    .map(KnowledgeItem::try_from)
    .transpose()
}

/// Retracts a live item (locked by the caller): kept, hidden from reads,
/// and a RETRACTED change for its watchers.
pub async fn retract(
    conn: &mut PgConnection,
    id: &str,
    reason: &str,
    by: &str,
) -> Result<KnowledgeItem, Error> {
    sqlx::query(
        "UPDATE knowledge_items SET retract_time = now(), retract_reason = $2, retracted_by = $3,
                version = version + 1, update_time = now()
         WHERE id = $1 AND retract_time IS NULL",
    )
    .bind(id)
    .bind(reason)
    .bind(by)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    record_event(conn, id, Change::Retracted).await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(id),
        "knowledge_item.retracted",
        serde_json::json!({ "retracted_by": by }),
    )
    .await?;
    get_admitted(conn, id, &unrestricted())
        .await?
        .ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "knowledge item vanished in its transaction"
            ))
        })
}

/// Ends the live grants of an item to `grantee` now; the share rows stay with
/// their revoke time. None live: FAILED_PRECONDITION (NO_LIVE_GRANT).
pub async fn revoke_grant(
    conn: &mut PgConnection,
    id: &str,
    grantee: &Carrier,
    by: &str,
) -> Result<KnowledgeItem, Error> {
    let revoked: Vec<i64> = sqlx::query_scalar(
        "UPDATE knowledge_shares SET revoke_time = now(), revoked_by = $4
         WHERE item_id = $1 AND is_grant AND to_carrier_type = $2 AND to_carrier_id = $3
           AND revoke_time IS NULL AND (expire_time IS NULL OR expire_time > now())
         RETURNING id",
    )
    .bind(id)
    .bind(grantee.kind.as_str())
    .bind(&grantee.id)
    .bind(by)
    .fetch_all(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_shares"))
    .await?;
    if revoked.is_empty() {
        return Err(Error::FailedPrecondition {
            reason: ErrorReason::NoLiveGrant,
            message: format!(
                "{} has no live grant to {} {}",
                crate::domain::knowledge::item_name(id),
                grantee.kind.as_str(),
                grantee.id
            ),
        });
    }
    sqlx::query(
        "UPDATE knowledge_items SET version = version + 1, update_time = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    record_revocation(conn, id, grantee).await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(id),
        "knowledge_item.grant_revoked",
        serde_json::json!({ "to": grantee.kind.as_str(), "revoked_by": by }),
    )
    .await?;
    reread(conn, id).await
}

/// Inserts a new item. An id that is taken answers ALREADY_EXISTS only to a
/// caller who may see the item there; anyone else is denied, so a create
/// cannot probe for items out of sight (AIP-211).
pub async fn insert(
    conn: &mut PgConnection,
    item: &NewItem,
    access: &KnowledgeAccess,
) -> Result<KnowledgeItem, Error> {
    let (title, body, tags, cjk) = search_document_parts(&item.content);
    let c = &item.content;
    let inserted = sqlx::query(concat!(
        "INSERT INTO knowledge_items (id, title, body, nature, kind, subjects, carrier_type,
             carrier_id, author, scope_team, scope_branch, visibility, sensitivity, tags, sources,
             search_document)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, ",
        search_document!("$16", "$17", "$18", "$19"),
        ") ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&item.id)
    .bind(&c.title)
    .bind(&c.body)
    .bind(item.nature.as_str())
    .bind(c.kind.as_str())
    .bind(&c.subjects)
    .bind(item.carrier.kind.as_str())
    .bind(&item.carrier.id)
    .bind(&item.author)
    .bind(&item.scope_team)
    .bind(&item.scope_branch)
    .bind(c.visibility.as_str())
    .bind(c.sensitivity.as_str())
    .bind(&c.tags)
    .bind(&c.sources)
    .bind(title)
    .bind(body)
    .bind(tags)
    .bind(cjk)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "knowledge_items"))
    .await?;
    if inserted.rows_affected() == 0 {
        let name = crate::domain::knowledge::item_name(&item.id);
        return Err(match get(conn, &item.id, access, false).await? {
            Some(_) => Error::AlreadyExists {
                resource: name.clone(),
                reason: ErrorReason::KnowledgeItemAlreadyExists,
                existing: Some(name),
            },
            None => Error::denied(format!("create {name}")),
        });
    }
    record_event(conn, &item.id, Change::Created).await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(&item.id),
        "knowledge_item.created",
        serde_json::json!({ "nature": item.nature.as_str(), "carrier": item.carrier.kind.as_str() }),
    )
    .await?;
    reread(conn, &item.id).await
}

pub async fn reread(conn: &mut PgConnection, id: &str) -> Result<KnowledgeItem, Error> {
    get(conn, id, &unrestricted(), false).await?.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "knowledge item vanished in its transaction"
        ))
    })
}

/// Writes changed content; a change of what the item says resets its
/// verification.
pub async fn update(
    conn: &mut PgConnection,
    id: &str,
    content: &ItemContent,
    reset_verification: bool,
    changed_fields: &[&str],
) -> Result<KnowledgeItem, Error> {
    let (title, body, tags, cjk) = search_document_parts(content);
    // Before the write: the event keeps who could see the item until now.
    record_events_where(conn, Change::Updated, "id = $1", id).await?;
    sqlx::query(concat!(
        "UPDATE knowledge_items SET title = $2, body = $3, kind = $4, subjects = $5,
                visibility = $6, sensitivity = $7, tags = $8,
                verification_state = CASE WHEN $9 THEN 'UNVERIFIED' ELSE verification_state END,
                verifier = CASE WHEN $9 THEN '' ELSE verifier END,
                verify_time = CASE WHEN $9 THEN NULL ELSE verify_time END,
                next_review_time = CASE WHEN $9 THEN NULL ELSE next_review_time END,
                search_document = ",
        search_document!("$10", "$11", "$12", "$13"),
        ", version = version + 1, update_time = now()
         WHERE id = $1"
    ))
    .bind(id)
    .bind(&content.title)
    .bind(&content.body)
    .bind(content.kind.as_str())
    .bind(&content.subjects)
    .bind(content.visibility.as_str())
    .bind(content.sensitivity.as_str())
    .bind(&content.tags)
    .bind(reset_verification)
    .bind(title)
    .bind(body)
    .bind(tags)
    .bind(cjk)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(id),
        "knowledge_item.updated",
        serde_json::json!({ "fields": changed_fields }),
    )
    .await?;
    reread(conn, id).await
}

/// Records `change` for the live items matching `predicate` (on
/// `knowledge_items`, with `$1` bound to `arg`), keeping their subjects and
/// visibility as they are before the change that follows in the same
/// transaction: a watcher who could see an item until now is told even when
/// the change takes it out of their sight. `predicate` is one of this
/// module's constants, never caller input.
async fn record_events_where(
    conn: &mut PgConnection,
    change: Change,
    predicate: &'static str,
    arg: &str,
) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO knowledge_events (item_id, change, prior_subjects, prior_visibility)
         SELECT id, $2, subjects, visibility FROM knowledge_items
          WHERE retract_time IS NULL AND ({predicate})
          ORDER BY id"
    );
    let recorded = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(arg)
        .bind(change.as_str())
        .execute(&mut *conn)
        .instrument(statement("INSERT", "knowledge_events"))
        .await?
        .rows_affected();
    if recorded > 0 {
        notify_watchers(conn).await?;
    }
    Ok(())
}

pub async fn record_event(conn: &mut PgConnection, id: &str, change: Change) -> Result<(), Error> {
    record_events(conn, &[id], change).await
}

/// The same change of many items (a merge re-subjecting a customer's items
/// to the survivor): one INSERT and one NOTIFY, not two statements an item.
pub async fn record_events(
    conn: &mut PgConnection,
    ids: &[&str],
    change: Change,
) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO knowledge_events (item_id, change)
         SELECT id, $2 FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) ORDER BY n",
    )
    .bind(ids)
    .bind(change.as_str())
    .execute(&mut *conn)
    .instrument(statement("INSERT", "knowledge_events"))
    .await?;
    notify_watchers(conn).await
}

/// Records that `grantee` lost its grant on the item: an UPDATED event that
/// also reaches the watchers who could see the item only through that grant.
async fn record_revocation(
    conn: &mut PgConnection,
    id: &str,
    grantee: &Carrier,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO knowledge_events (item_id, change, revoked_grantee_type, revoked_grantee_id)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(Change::Updated.as_str())
    .bind(grantee.kind.as_str())
    .bind(&grantee.id)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "knowledge_events"))
    .await?;
    notify_watchers(conn).await
}

/// Wakes the knowledge watch streams (delivered at commit).
async fn notify_watchers(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(KNOWLEDGE_CHANNEL)
        .execute(conn)
        .instrument(statement("NOTIFY", "knowledge_events"))
        .await?;
    Ok(())
}

/// One conversion: lineage edges from every source item and a row for the
/// flow matrix, credited to the actor's branch and team.
pub struct ConversionRecord<'a> {
    pub conversion: Conversion,
    pub sources: &'a [String],
    pub target: &'a str,
    pub from: CarrierType,
    pub to: CarrierType,
    pub actor: &'a str,
    pub actor_branch: &'a str,
    pub actor_team: &'a str,
}

pub async fn record_conversion(
    conn: &mut PgConnection,
    record: &ConversionRecord<'_>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO knowledge_edges (source_item, target_item, conversion)
         SELECT s, $2, $3 FROM UNNEST($1::text[]) AS s",
    )
    .bind(record.sources)
    .bind(record.target)
    .bind(record.conversion.as_str())
    .execute(&mut *conn)
    .instrument(statement("INSERT", "knowledge_edges"))
    .await?;
    sqlx::query(
        "INSERT INTO knowledge_conversions (conversion, target_item, from_carrier_type,
             to_carrier_type, actor, actor_branch, actor_team)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(record.conversion.as_str())
    .bind(record.target)
    .bind(record.from.as_str())
    .bind(record.to.as_str())
    .bind(record.actor)
    .bind(record.actor_branch)
    .bind(record.actor_team)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "knowledge_conversions"))
    .await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(record.target),
        "knowledge.converted",
        serde_json::json!({
            "conversion": record.conversion.as_str(),
            "sources": record.sources.iter().map(|s| crate::domain::knowledge::item_name(s)).collect::<Vec<_>>(),
        }),
    )
    .await
}

pub async fn record_internalization(
    conn: &mut PgConnection,
    item: &str,
    employee: &str,
    tacit_item: Option<&str>,
) -> Result<DateTime<Utc>, Error> {
    let time: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO knowledge_internalizations (item_id, employee, tacit_item)
         VALUES ($1, $2, $3) RETURNING create_time",
    )
    .bind(item)
    .bind(employee)
    .bind(tacit_item)
    .fetch_one(&mut *conn)
    .instrument(statement("INSERT", "knowledge_internalizations"))
    .await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(item),
        "knowledge.internalized",
        serde_json::json!({ "employee": employee }),
    )
    .await?;
    Ok(time)
}

/// Records a share; a widening also sets the item's visibility.
pub async fn share(
    conn: &mut PgConnection,
    share: &Share,
    id: &str,
    actor_branch: &str,
    actor_team: &str,
) -> Result<(KnowledgeItem, i64), Error> {
    let share_id: i64 = sqlx::query_scalar(
        "INSERT INTO knowledge_shares (item_id, from_carrier_type, from_carrier_id,
             to_carrier_type, to_carrier_id, is_grant, visibility, purpose, expire_time,
             shared_by, actor_branch, actor_team)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(id)
    .bind(share.from.kind.as_str())
    .bind(&share.from.id)
    .bind(share.to.kind.as_str())
    .bind(&share.to.id)
    .bind(share.grant)
    .bind(share.visibility.map(Visibility::as_str))
    .bind(&share.purpose)
    .bind(share.expire_time)
    .bind(&share.shared_by)
    .bind(actor_branch)
    .bind(actor_team)
    .fetch_one(&mut *conn)
    .instrument(statement("INSERT", "knowledge_shares"))
    .await?;
    if let Some(visibility) = share.visibility {
        sqlx::query(
            "UPDATE knowledge_items SET visibility = $2, version = version + 1, update_time = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(visibility.as_str())
        .execute(&mut *conn)
        .instrument(statement("UPDATE", "knowledge_items"))
        .await?;
    } else {
        sqlx::query(
            "UPDATE knowledge_items SET version = version + 1, update_time = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *conn)
        .instrument(statement("UPDATE", "knowledge_items"))
        .await?;
    }
    record_event(conn, id, Change::Shared).await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(id),
        "knowledge_item.shared",
        serde_json::json!({
            "from": share.from.kind.as_str(),
            "to": share.to.kind.as_str(),
            "grant": share.grant,
        }),
    )
    .await?;
    Ok((reread(conn, id).await?, share_id))
}

/// One recorded share of an item, by the id `share` returned.
pub async fn get_share(conn: &mut PgConnection, item: &str, share_id: i64) -> Result<Share, Error> {
    let json: sqlx::types::Json<ShareJson> = sqlx::query_scalar(
        "SELECT jsonb_build_object(
                'from_type', s.from_carrier_type, 'from_id', s.from_carrier_id,
                'to_type', s.to_carrier_type, 'to_id', s.to_carrier_id,
                'grant', s.is_grant, 'visibility', s.visibility,
                'purpose', s.purpose, 'expire_time', s.expire_time,
                'shared_by', s.shared_by, 'create_time', s.create_time,
                'revoke_time', s.revoke_time, 'revoked_by', s.revoked_by)
         FROM knowledge_shares s WHERE s.item_id = $1 AND s.id = $2",
    )
    .bind(item)
    .bind(share_id)
    .fetch_one(&mut *conn)
    .instrument(statement("SELECT", "knowledge_shares"))
    .await?;
    share_from(item, json.0)
}

/// When `employee` last recorded absorbing `item` (into `tacit_item`).
pub async fn internalization_time(
    conn: &mut PgConnection,
    item: &str,
    employee: &str,
    tacit_item: Option<&str>,
) -> Result<DateTime<Utc>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT create_time FROM knowledge_internalizations
         WHERE item_id = $1 AND employee = $2 AND tacit_item IS NOT DISTINCT FROM $3
         ORDER BY id DESC LIMIT 1",
    )
    .bind(item)
    .bind(employee)
    .bind(tacit_item)
    .fetch_one(&mut *conn)
    .instrument(statement("SELECT", "knowledge_internalizations"))
    .await?)
}

pub async fn verify(
    conn: &mut PgConnection,
    id: &str,
    verifier: &str,
    next_review_time: DateTime<Utc>,
) -> Result<KnowledgeItem, Error> {
    sqlx::query(
        "UPDATE knowledge_items SET verification_state = 'VERIFIED', verifier = $2,
                verify_time = now(), next_review_time = $3, version = version + 1,
                update_time = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(verifier)
    .bind(next_review_time)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    record_event(conn, id, Change::Verified).await?;
    append_outbox(
        conn,
        "knowledge_item",
        &crate::domain::knowledge::item_name(id),
        "knowledge_item.verified",
        serde_json::json!({ "verifier": verifier }),
    )
    .await?;
    reread(conn, id).await
}

/// A KNOWLEDGE_SHARING withdrawal: items about the customer that the whole
/// bank sees fall back to their branch, and grants of them to other branches
/// end now.
pub async fn withdraw_sharing(conn: &mut PgConnection, customer_id: &str) -> Result<(), Error> {
    // Watchers who saw them bank-wide are told (UPDATED) before they narrow.
    record_events_where(
        conn,
        Change::Updated,
        "subjects @> ARRAY[$1] AND visibility = 'BANK'",
        customer_id,
    )
    .await?;
    let narrowed: Vec<String> = sqlx::query_scalar(
        "UPDATE knowledge_items SET visibility = 'BRANCH', version = version + 1,
                update_time = now()
         WHERE subjects @> ARRAY[$1] AND visibility = 'BANK'
         RETURNING id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    sqlx::query(
        "UPDATE knowledge_shares s SET expire_time = now()
         FROM knowledge_items k
         WHERE s.item_id = k.id AND k.subjects @> ARRAY[$1] AND s.is_grant
           AND s.to_carrier_type = 'BRANCH' AND s.to_carrier_id <> k.scope_branch
           AND (s.expire_time IS NULL OR s.expire_time > now())",
    )
    .bind(customer_id)
    .execute(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_shares"))
    .await?;
    let names: Vec<String> = narrowed
        .iter()
        .map(|id| crate::domain::knowledge::item_name(id))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    append_outbox_each(
        conn,
        "knowledge_item",
        &names,
        "knowledge_item.narrowed",
        serde_json::json!({ "visibility": "BRANCH", "cause": "consent_withdrawn" }),
    )
    .await
}

/// The items an erasure of customer `$1` strips: about them, or citing one
/// of their interactions.
macro_rules! erased_items {
    () => {
        "(subjects @> ARRAY[$1]
          OR EXISTS (SELECT 1 FROM unnest(sources) AS s(name)
                     WHERE starts_with(s.name, 'customers/' || $1 || '/')))"
    };
}
const ERASED_ITEMS: &str = erased_items!();

/// Erasure of a customer: items about them lose their text and the customer
/// leaves their subjects; lineage and counts stay.
pub async fn erase_subject(conn: &mut PgConnection, customer_id: &str) -> Result<(), Error> {
    // Items about the customer, and items citing one of the customer's
    // interactions without naming them as a subject: both may quote them.
    // Their watchers are told (ERASED) with who could see them until now.
    record_events_where(conn, Change::Erased, ERASED_ITEMS, customer_id).await?;
    let erased: Vec<String> = sqlx::query_scalar(concat!(
        "UPDATE knowledge_items SET title = '', body = '', tags = '{}',
                subjects = array_remove(subjects, $1), search_document = ''::tsvector,
                version = version + 1, update_time = now()
         WHERE ",
        erased_items!(),
        " RETURNING id"
    ))
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .instrument(statement("UPDATE", "knowledge_items"))
    .await?;
    // Why an item was shared is free text about it, too.
    sqlx::query("UPDATE knowledge_shares SET purpose = '' WHERE item_id = ANY($1)")
        .bind(&erased)
        .execute(conn)
        .instrument(statement("UPDATE", "knowledge_shares"))
        .await?;
    Ok(())
}

/// The typed form of a ListKnowledgeItems filter.
#[derive(Debug, Default, Clone)]
pub struct ItemQuery {
    pub subject: Option<String>,
    pub kind: Option<KnowledgeKind>,
    pub nature: Option<Nature>,
    pub carrier_type: Option<CarrierType>,
    pub carrier_id: Option<String>,
    pub author: Option<String>,
    pub visibility: Option<Visibility>,
    pub verification: Option<VerificationState>,
    pub tags: Vec<String>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
}

/// Lineage of one item: node ids with their depth (negative: ancestors) and
/// the edges between them.
pub struct LineageRows {
    pub nodes: Vec<(String, i32)>,
    pub edges: Vec<(String, String, Conversion, DateTime<Utc>)>,
}

/// Counts for the flow matrix.
pub struct FlowRows {
    pub conversions: Vec<(Conversion, CarrierType, CarrierType, i64)>,
    pub shares: Vec<(CarrierType, CarrierType, i64)>,
}

/// What GetKnowledgeSharingMetrics reports, as counted in SQL.
#[derive(Debug, Default)]
pub struct SharingRows {
    pub natures: Vec<(String, i64)>,
    pub conversions: Vec<(String, i64)>,
    /// (item id, distinct employees who absorbed it).
    pub playbooks: Vec<(String, i64)>,
    /// (median seconds, items behind it).
    pub to_explicit: (Option<f64>, i64),
    pub to_verification: (Option<f64>, i64),
    /// (explicit, of them VERIFIED now, of them STALE now).
    pub explicit: (i64, i64, i64),
    /// (employee, authored, conversions, verifications, internalizations).
    pub contributions: Vec<(String, i64, i64, i64, i64)>,
}

/// The items a sharing report covers: visible to the caller ($1-$6),
/// created in the period ($7, $8), of the branch ($9) and team ($10) scope.
macro_rules! scoped_items {
    () => {
        concat!(
            "WITH scoped AS (SELECT k.* FROM knowledge_items k WHERE ",
            visible!(),
            " AND k.create_time >= $7 AND k.create_time < $8
              AND ($9::text IS NULL OR k.scope_branch = $9)
              AND ($10::text IS NULL OR k.scope_team = $10)) "
        )
    };
}

/// GetKnowledgeFlow's conversions in the period ($7, $8) credited to a
/// branch ($9) and team ($10), of the items the caller ($1-$6) may see.
pub const FLOW_CONVERSIONS_SQL: &str = concat!(
    "SELECT c.conversion, c.from_carrier_type, c.to_carrier_type, count(*)
         FROM knowledge_conversions c JOIN knowledge_items k ON k.id = c.target_item
         WHERE c.create_time >= $7 AND c.create_time < $8
           AND ($9::text IS NULL OR c.actor_branch = $9)
           AND ($10::text IS NULL OR c.actor_team = $10)
           AND ",
    visible!(),
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
);

/// GetKnowledgeFlow's shares, as `FLOW_CONVERSIONS_SQL` counts conversions.
pub const FLOW_SHARES_SQL: &str = concat!(
    "SELECT s.from_carrier_type, s.to_carrier_type, count(*)
         FROM knowledge_shares s JOIN knowledge_items k ON k.id = s.item_id
         WHERE s.create_time >= $7 AND s.create_time < $8
           AND ($9::text IS NULL OR s.actor_branch = $9)
           AND ($10::text IS NULL OR s.actor_team = $10)
           AND ",
    visible!(),
    " GROUP BY 1, 2 ORDER BY 1, 2"
);

/// GetKnowledgeSharingMetrics' count of the period's items by nature; its
/// other statements read the same `scoped` items (what tests/api/plans.rs
/// explains).
pub const SHARING_NATURES_SQL: &str = concat!(
    scoped_items!(),
    "SELECT nature, count(*) FROM scoped GROUP BY 1 ORDER BY 1"
);

/// The parameters of the knowledge reports (GetKnowledgeSharingMetrics,
/// GetKnowledgeFlow): the caller's access ($1-$6), the period ($7, $8), the
/// branch ($9) and team ($10).
pub fn report_args(
    access: &KnowledgeAccess,
    branch: Option<&str>,
    team: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> super::Args {
    access_args!(access, start, end, branch, team,)
}

/// A change a watcher may be told about.
pub struct KnowledgeEvent {
    pub cursor: (i64, i64),
    pub change: Change,
    pub change_time: DateTime<Utc>,
    pub item: KnowledgeItem,
    /// Whether the caller may see the item as it is now; an UPDATED or
    /// ERASED event goes also to callers who saw it just before.
    pub visible_now: bool,
}

#[derive(FromRow)]
struct EventRow {
    #[sqlx(flatten)]
    item: ItemRow,
    change: String,
    change_time: DateTime<Utc>,
    txid: i64,
    seq: i64,
    visible_now: bool,
}

// ListKnowledgeItems: one statement per order, so each keeps a plan on its
// own index; both share the access ($1-$6) and the filters ($7-$15, $18-$19).
macro_rules! list_filtered {
    () => {
        concat!(
            select_item!(),
            "WHERE ",
            visible!(),
            " AND ($7::text IS NULL OR k.subjects @> ARRAY[$7])
              AND ($8::text IS NULL OR k.kind = $8)
              AND ($9::text IS NULL OR k.nature = $9)
              AND ($10::text IS NULL OR k.carrier_type = $10)
              AND ($11::text IS NULL OR k.carrier_id = $11)
              AND ($12::text IS NULL OR k.author = $12)
              AND ($13::text IS NULL OR k.visibility = $13)
              AND ($14::text IS NULL
                   OR ($14 = 'UNVERIFIED' AND k.verification_state = 'UNVERIFIED')
                   OR ($14 = 'VERIFIED' AND k.verification_state = 'VERIFIED'
                       AND k.next_review_time >= now())
                   OR ($14 = 'STALE' AND k.verification_state = 'VERIFIED'
                       AND k.next_review_time < now()))
              AND k.tags @> $15::text[]
              AND ($18::timestamptz IS NULL OR k.update_time >= $18)
              AND ($19::timestamptz IS NULL OR k.update_time < $19) "
        )
    };
}
/// ListKnowledgeItems in id order.
pub const LIST_BY_ID_SQL: &str = concat!(
    list_filtered!(),
    "AND ($16::text IS NULL OR k.id > $16)
     ORDER BY k.id
     LIMIT $17"
);
/// ListKnowledgeItems in (update_time, id) order; $20, the update_time of
/// the cursor, is bound only here.
pub const LIST_BY_UPDATE_TIME_SQL: &str = concat!(
    list_filtered!(),
    "AND ($16::text IS NULL OR (k.update_time, k.id) > ($20, $16))
     ORDER BY k.update_time, k.id
     LIMIT $17"
);
/// ListKnowledgeItems' statement for `order` and its parameters: what
/// `list_knowledge_items` runs and tests/api/plans.rs explains.
pub fn list_statement(
    access: &KnowledgeAccess,
    query: &ItemQuery,
    order: ListOrder,
    after: Option<(Option<DateTime<Utc>>, &str)>,
    limit: i64,
) -> (&'static str, super::Args) {
    let common = access_args!(
        access,
        query.subject.as_deref(),
        query.kind.map(KnowledgeKind::as_str),
        query.nature.map(Nature::as_str),
        query.carrier_type.map(CarrierType::as_str),
        query.carrier_id.as_deref(),
        query.author.as_deref(),
        query.visibility.map(Visibility::as_str),
        query.verification.map(VerificationState::as_str),
        &query.tags,
        after.map(|a| a.1),
        limit,
        query.updated_from,
        query.updated_before,
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

/// SearchKnowledgeItems: visible items ($1-$6) matching the English words
/// $7 (stemmed) and the CJK tsquery $8, best first, from $9, $10 of them.
pub const SEARCH_SQL: &str = concat!(
    select_item!(),
    ", LATERAL (SELECT CASE WHEN $7 = '' THEN NULL
                                ELSE websearch_to_tsquery('english', $7) END AS en,
                           $8::tsquery AS zh) q
         WHERE ",
    visible!(),
    " AND (q.en IS NULL OR k.search_document @@ q.en)
          AND (q.zh IS NULL OR k.search_document @@ q.zh)
          AND (q.en IS NOT NULL OR q.zh IS NOT NULL)
        ORDER BY ts_rank(k.search_document,
                         COALESCE(q.en, q.zh) && COALESCE(q.zh, q.en)) DESC, k.id
        OFFSET $9 LIMIT $10"
);

/// The parameters of `SEARCH_SQL`.
pub fn search_args(
    access: &KnowledgeAccess,
    latin: &str,
    cjk: Option<&str>,
    offset: i64,
    limit: i64,
) -> super::Args {
    access_args!(access, latin, cjk, offset, limit,)
}

/// WatchKnowledge and its catch-up from a resume token: changes after the
/// cursor ($7, $8) the caller ($1-$6) may see now or could see just before
/// the change, about any of the subjects $9 (empty: any), $10 of them.
pub const EVENTS_SQL: &str = concat!(
    "SELECT k.id, k.title, k.body, k.nature, k.kind, k.subjects, k.carrier_type,
                        k.carrier_id, k.author, k.scope_team, k.scope_branch, k.visibility,
                        k.sensitivity, k.tags, k.sources, k.verification_state, k.verifier,
                        k.verify_time, k.next_review_time, k.version, k.create_time,
                        k.update_time, k.retract_time, k.retract_reason, k.retracted_by,
                        '[]'::jsonb AS derived_from, '[]'::jsonb AS grants,
                        ev.change, ev.create_time AS change_time, ev.txid, ev.seq,
                        v.visible_now
                 FROM knowledge_events ev JOIN knowledge_items k ON k.id = ev.item_id
                 -- The access predicate once per event (OFFSET 0 keeps the
                 -- planner from copying it into the SELECT list and WHERE).
                 CROSS JOIN LATERAL (SELECT ",
    admitted!(),
    " AS visible_now OFFSET 0) v
                 WHERE (ev.txid, ev.seq) > ($7, $8)
                   AND ev.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                   AND (cardinality($9::text[]) = 0 OR k.subjects && $9
                        OR ev.prior_subjects && $9)
                   AND (k.retract_time IS NULL OR ev.change = 'RETRACTED')
                   AND (v.visible_now",
    // Or the caller could see it just before the change: the
    // item with its subjects and visibility then (the inner `k`
    // hides the outer one).
    " OR EXISTS (
                       SELECT 1 FROM (
                           SELECT p.id, p.author, p.scope_team, p.scope_branch,
                                  COALESCE(ev.prior_subjects, p.subjects) AS subjects,
                                  COALESCE(ev.prior_visibility, p.visibility) AS visibility
                             FROM knowledge_items p WHERE p.id = ev.item_id) k
                        WHERE ",
    admitted!(),
    // Or the change revoked the grant through which the caller
    // saw it (the other conditions of a grant as in admitted!()).
    ") OR (ev.revoked_grantee_type IS NOT NULL AND NOT $2::bool
                       AND ($3::text IS NULL OR NOT EXISTS (
                           SELECT 1 FROM customers sc
                            WHERE sc.id = ANY (k.subjects) AND sc.home_branch <> $3))
                       AND ((ev.revoked_grantee_type = 'TEAM' AND $5 <> ''
                             AND ev.revoked_grantee_id = $5)
                         OR (ev.revoked_grantee_type = 'BRANCH' AND $6 <> ''
                             AND ev.revoked_grantee_id = $6))))
                 ORDER BY ev.txid, ev.seq LIMIT $10"
);

/// The parameters of `EVENTS_SQL`.
pub fn events_args(
    access: &KnowledgeAccess,
    cursor: (i64, i64),
    subjects: &[String],
    limit: i64,
) -> super::Args {
    access_args!(access, cursor.0, cursor.1, subjects, limit,)
}

impl Db {
    pub async fn get_knowledge_item(
        &self,
        id: &str,
        access: &KnowledgeAccess,
    ) -> Result<Option<KnowledgeItem>, Error> {
        let mut conn = self.acquire().await?;
        get(&mut conn, id, access, false).await
    }

    pub async fn get_admitted_knowledge_item(
        &self,
        id: &str,
        access: &KnowledgeAccess,
    ) -> Result<Option<KnowledgeItem>, Error> {
        let mut conn = self.acquire().await?;
        get_admitted(&mut conn, id, access).await
    }

    /// Which of `ids` are retracted, whoever may see them: a lineage marks
    /// them even when it redacts them.
    pub async fn retracted_among(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::BTreeSet<String>, Error> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM knowledge_items WHERE id = ANY($1) AND retract_time IS NOT NULL",
        )
        .bind(ids)
        .fetch_all(&mut *self.acquire().await?)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// One page of the visible items matching `query`, in `order`, after
    /// `after`: (update_time, id) in update_time order, (None, id) by id.
    pub async fn list_knowledge_items(
        &self,
        access: &KnowledgeAccess,
        query: &ItemQuery,
        order: ListOrder,
        after: Option<(Option<DateTime<Utc>>, &str)>,
        limit: i64,
    ) -> Result<Vec<KnowledgeItem>, Error> {
        let (sql, args) = list_statement(access, query, order, after, limit);
        sqlx::query_as_with::<_, ItemRow, _>(sql, args?)
            .fetch_all(&mut *self.acquire_read().await?)
            .instrument(statement("SELECT", "knowledge_items"))
            .await?
            .into_iter()
            .map(KnowledgeItem::try_from)
            .collect()
    }

    /// Visible items matching the English words (stemmed) and the CJK
    /// `tsquery`, best first: title hits (weight A) above body hits (B).
    pub async fn search_knowledge_items(
        &self,
        access: &KnowledgeAccess,
        latin: &str,
        cjk: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<KnowledgeItem>, Error> {
        sqlx::query_as_with::<_, ItemRow, _>(
            SEARCH_SQL,
            search_args(access, latin, cjk, offset, limit)?,
        )
        .fetch_all(&mut *self.acquire_read().await?)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?
        .into_iter()
        .map(KnowledgeItem::try_from)
        .collect()
    }

    /// Items within `depth` edges of `root`, both ways. Edges only ever
    /// point from older to newer items, so the walk terminates.
    pub async fn knowledge_lineage(&self, root: &str, depth: i32) -> Result<LineageRows, Error> {
        let nodes: Vec<(String, i32)> = sqlx::query_as(
            "WITH RECURSIVE up(id, depth) AS (
                 SELECT $1::text COLLATE \"C\", 0
                 UNION
                 SELECT e.source_item, up.depth - 1 FROM knowledge_edges e
                 JOIN up ON e.target_item = up.id WHERE up.depth > -$2
             ), down(id, depth) AS (
                 SELECT $1::text COLLATE \"C\", 0
                 UNION
                 SELECT e.target_item, down.depth + 1 FROM knowledge_edges e
                 JOIN down ON e.source_item = down.id WHERE down.depth < $2
             )
             SELECT id, min(depth)::int FROM up GROUP BY id
             UNION ALL
             SELECT id, max(depth)::int FROM down WHERE id <> $1 GROUP BY id
             ORDER BY 2, 1
             LIMIT 1001",
        )
        .bind(root)
        .bind(depth)
        .fetch_all(&mut *self.acquire().await?)
        .instrument(statement("SELECT", "knowledge_edges"))
        .await?;
        let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_str()).collect();
        let edges: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT source_item, target_item, conversion, create_time FROM knowledge_edges
             WHERE source_item = ANY($1) AND target_item = ANY($1)
             ORDER BY create_time, source_item, target_item",
        )
        .bind(&ids)
        .fetch_all(&mut *self.acquire().await?)
        .instrument(statement("SELECT", "knowledge_edges"))
        .await?;
        Ok(LineageRows {
            nodes,
            edges: edges
                .into_iter()
                .map(|(s, t, c, time)| {
                    Ok((s, t, parse("conversion", &c, Conversion::parse)?, time))
                })
                .collect::<Result<_, Error>>()?,
        })
    }

    /// Who absorbed the items `ids` (InternalizeKnowledge), oldest first:
    /// (item, employee, tacit item or "", time).
    pub async fn internalizations_of(
        &self,
        ids: &[&str],
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>, Error> {
        Ok(sqlx::query_as(
            "SELECT item_id, employee, COALESCE(tacit_item, ''), create_time
             FROM knowledge_internalizations WHERE item_id = ANY($1)
             ORDER BY create_time, id LIMIT 1000",
        )
        .bind(ids)
        .fetch_all(&mut *self.acquire().await?)
        .instrument(statement("SELECT", "knowledge_internalizations"))
        .await?)
    }

    /// The items among `ids` the caller is admitted to, retracted ones
    /// included: the nodes of a lineage.
    pub async fn visible_knowledge_items(
        &self,
        access: &KnowledgeAccess,
        ids: &[&str],
    ) -> Result<Vec<KnowledgeItem>, Error> {
        bind_access!(
            sqlx::query_as::<_, ItemRow>(concat!(
                select_item!(),
                "WHERE k.id = ANY($7) AND ",
                admitted!()
            )),
            access
        )
        .bind(ids)
        .fetch_all(&mut *self.acquire().await?)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?
        .into_iter()
        .map(KnowledgeItem::try_from)
        .collect()
    }

    /// Conversions and shares in [start, end) credited to a branch and/or a
    /// team (both None: the whole bank), counted only for items the caller
    /// may see.
    pub async fn knowledge_flow(
        &self,
        access: &KnowledgeAccess,
        branch: Option<&str>,
        team: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<FlowRows, Error> {
        let conversions: Vec<(String, String, String, i64)> = sqlx::query_as_with(
            FLOW_CONVERSIONS_SQL,
            report_args(access, branch, team, start, end)?,
        )
        .fetch_all(&mut *self.acquire_read().await?)
        .instrument(statement("SELECT", "knowledge_conversions"))
        .await?;
        let shares: Vec<(String, String, i64)> = sqlx::query_as_with(
            FLOW_SHARES_SQL,
            report_args(access, branch, team, start, end)?,
        )
        .fetch_all(&mut *self.acquire_read().await?)
        .instrument(statement("SELECT", "knowledge_shares"))
        .await?;
        let carrier = |v: &str| parse("carrier", v, CarrierType::parse);
        Ok(FlowRows {
            conversions: conversions
                .into_iter()
                .map(|(c, f, t, n)| {
                    Ok((
                        parse("conversion", &c, Conversion::parse)?,
                        carrier(&f)?,
                        carrier(&t)?,
                        n,
                    ))
                })
                .collect::<Result<_, Error>>()?,
            shares: shares
                .into_iter()
                .map(|(f, t, n)| Ok((carrier(&f)?, carrier(&t)?, n)))
                .collect::<Result<_, Error>>()?,
        })
    }

    /// The knowledge-sharing figures of the items `access` may see, created
    /// in [start, end) in the branch and team scope given.
    pub async fn knowledge_sharing(
        &self,
        access: &KnowledgeAccess,
        branch: Option<&str>,
        team: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<SharingRows, Error> {
        let mut conn = self.acquire_read().await?;
        macro_rules! report {
            ($sql:expr) => {
                sqlx::query_as_with(
                    concat!(scoped_items!(), $sql),
                    report_args(access, branch, team, start, end)?,
                )
            };
        }
        let natures: Vec<(String, i64)> = sqlx::query_as_with(
            SHARING_NATURES_SQL,
            report_args(access, branch, team, start, end)?,
        )
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?;
        let conversions: Vec<(String, i64)> = report!(
            "SELECT c.conversion, count(*)
             FROM knowledge_conversions c JOIN scoped k ON k.id = c.target_item
             WHERE c.create_time >= $7 AND c.create_time < $8
             GROUP BY 1 ORDER BY 1"
        )
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "knowledge_conversions"))
        .await?;
        let playbooks: Vec<(String, i64)> = report!(
            "SELECT k.id, count(DISTINCT i.employee)
             FROM scoped k LEFT JOIN knowledge_internalizations i
               ON i.item_id = k.id AND i.create_time >= $7 AND i.create_time < $8
             WHERE k.kind = 'PLAYBOOK' AND k.nature = 'EXPLICIT'
             GROUP BY k.id ORDER BY 2 DESC, 1 LIMIT 1000"
        )
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "knowledge_internalizations"))
        .await?;
        // Sources are interaction names, customers/{customer}/interactions/{id}:
        // each is found by the interactions' primary key.
        let to_explicit: (Option<f64>, i64) = report!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), count(*)
             FROM (SELECT extract(epoch FROM k.create_time - min(i.occur_time))::float8 AS seconds
                   FROM scoped k CROSS JOIN LATERAL unnest(k.sources) AS src(name)
                   JOIN interactions i ON i.customer_id = split_part(src.name, '/', 2)
                                      AND i.id = split_part(src.name, '/', 4)
                   WHERE k.nature = 'EXPLICIT'
                   GROUP BY k.id, k.create_time) t"
        )
        .fetch_one(&mut *conn)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?;
        let (median_verification, verified, explicit, verified_now, stale_now): (
            Option<f64>,
            i64,
            i64,
            i64,
            i64,
        ) = report!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (
                        ORDER BY extract(epoch FROM verify_time - create_time)::float8)
                    FILTER (WHERE verify_time IS NOT NULL),
                    count(*) FILTER (WHERE verify_time IS NOT NULL),
                    count(*) FILTER (WHERE nature = 'EXPLICIT'),
                    count(*) FILTER (WHERE nature = 'EXPLICIT' AND verification_state = 'VERIFIED'
                                       AND (next_review_time IS NULL OR next_review_time >= now())),
                    count(*) FILTER (WHERE nature = 'EXPLICIT' AND verification_state = 'VERIFIED'
                                       AND next_review_time < now())
             FROM scoped"
        )
        .fetch_one(&mut *conn)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?;
        let contributions: Vec<(String, i64, i64, i64, i64)> = report!(
            "SELECT who, sum(a)::int8, sum(c)::int8, sum(v)::int8, sum(n)::int8 FROM (
                SELECT author AS who, 1 AS a, 0 AS c, 0 AS v, 0 AS n FROM scoped
                UNION ALL
                SELECT c.actor, 0, 1, 0, 0
                FROM knowledge_conversions c JOIN scoped k ON k.id = c.target_item
                WHERE c.create_time >= $7 AND c.create_time < $8
                UNION ALL
                SELECT verifier, 0, 0, 1, 0 FROM scoped
                WHERE verify_time IS NOT NULL AND verifier <> ''
                UNION ALL
                SELECT i.employee, 0, 0, 0, 1
                FROM knowledge_internalizations i JOIN scoped k ON k.id = i.item_id
                WHERE i.create_time >= $7 AND i.create_time < $8
             ) t GROUP BY who ORDER BY 2 DESC, 1 LIMIT 1000"
        )
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "knowledge_items"))
        .await?;
        Ok(SharingRows {
            natures,
            conversions,
            playbooks,
            to_explicit,
            to_verification: (median_verification, verified),
            explicit: (explicit, verified_now, stale_now),
            contributions,
        })
    }

    /// Changes after `cursor` that the caller may see now or could see just
    /// before the change, about any of `subjects` (customer ids; empty: any;
    /// an erased customer still matches the items it was erased from), in
    /// commit-safe order.
    pub async fn knowledge_events_after(
        &self,
        access: &KnowledgeAccess,
        cursor: (i64, i64),
        subjects: &[String],
        limit: i64,
    ) -> Result<Vec<KnowledgeEvent>, Error> {
        let rows: Vec<EventRow> =
            sqlx::query_as_with(EVENTS_SQL, events_args(access, cursor, subjects, limit)?)
                .fetch_all(&mut *self.acquire().await?)
                .instrument(statement("SELECT", "knowledge_events"))
                .await?;
        rows.into_iter()
            .map(|row| {
                Ok(KnowledgeEvent {
                    cursor: (row.txid, row.seq),
                    change: parse("change", &row.change, Change::parse)?,
                    change_time: row.change_time,
                    item: row.item.try_into()?,
                    visible_now: row.visible_now,
                })
            })
            .collect()
    }
}

/// The visible items about one customer, most useful first: VERIFIED and
/// fresh, then UNVERIFIED, then STALE (verified but past review), each most
/// recently updated first.
pub async fn useful_for_subject(
    conn: &mut PgConnection,
    access: &KnowledgeAccess,
    subject: &str,
    limit: i64,
) -> Result<Vec<KnowledgeItem>, Error> {
    bind_access!(
        sqlx::query_as::<_, ItemRow>(concat!(
            select_item!(),
            "WHERE k.subjects @> ARRAY[$7] AND ",
            visible!(),
            " ORDER BY CASE WHEN k.verification_state = 'VERIFIED'
                              AND (k.next_review_time IS NULL OR k.next_review_time >= now()) THEN 0
                            WHEN k.verification_state = 'UNVERIFIED' THEN 1
                            ELSE 2 END,
                       k.update_time DESC, k.id
              LIMIT $8"
        )),
        access
    )
    .bind(subject)
    .bind(limit)
    .fetch_all(conn)
    .instrument(statement("SELECT", "knowledge_items"))
    .await?
    .into_iter()
    .map(KnowledgeItem::try_from)
    .collect()
}
