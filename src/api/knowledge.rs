//! `KnowledgeService`: tacit and explicit knowledge, its carriers, the four
//! SECI conversions with lineage, sharing, verification, search, the flow
//! matrix and the live stream of newly visible items.

use std::{collections::BTreeMap, pin::Pin};

use chrono::{Duration, Utc};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{
    Streams,
    customer::parse_name,
    draining_status, from_timestamp, idempotency_key,
    page_token::{PageTokens, page_size},
    parse_resume_token, principal, respond, resume_token, timestamp,
};
use crate::{
    domain::{
        customer::{ConsentPurpose, CustomerId, bounded_text, org_code, tag},
        filter::{Op, parse_terms, set_once, unsupported},
        interaction::parse_child_name,
        knowledge::{
            self as rules, Carrier, CarrierType, Change, Conversion, ItemContent, KnowledgeAccess,
            KnowledgeItem, KnowledgeKind, Nature, NewItem, Sensitivity, Share, VerificationState,
            Visibility,
        },
        principal::{Principal, Role},
        search,
    },
    error::{Error, ErrorReason, Violations},
    pb::v1::{self as pb, knowledge_service_server::KnowledgeService},
    store::{
        Db, customers,
        feed::ChangeFeed,
        interactions,
        knowledge::{self as store, ConversionRecord, ItemQuery, KnowledgeEvent},
    },
};

pub struct KnowledgeApi {
    db: Db,
    page_tokens: PageTokens,
    feed: ChangeFeed,
    streams: Streams,
}

impl KnowledgeApi {
    pub fn new(db: Db, page_tokens: PageTokens, feed: ChangeFeed, streams: Streams) -> Self {
        KnowledgeApi {
            db,
            page_tokens,
            feed,
            streams,
        }
    }
}

// Conversions between proto and domain.

macro_rules! enum_map {
    ($to:ident, $from:ident, $domain:ty, $proto:ty, { $($d:ident <=> $p:ident),+ $(,)? }) => {
        fn $to(value: $domain) -> $proto {
            match value { $(<$domain>::$d => <$proto>::$p),+ }
        }
        // Not every enum is read from requests (some are output only).
        #[allow(dead_code)]
        fn $from(value: i32) -> Option<$domain> {
            match <$proto>::try_from(value).ok()? {
                $(<$proto>::$p => Some(<$domain>::$d),)+
                _ => None,
            }
        }
    };
}

enum_map!(nature_to, nature_from, Nature, pb::knowledge_item::Nature, {
    Tacit <=> Tacit, Explicit <=> Explicit
});
enum_map!(kind_to, kind_from, KnowledgeKind, pb::knowledge_item::Kind, {
    Preference <=> Preference, Need <=> Need, Risk <=> Risk, Relationship <=> Relationship,
    ProductFit <=> ProductFit, ServiceExperience <=> ServiceExperience,
    ComplaintInsight <=> ComplaintInsight, Playbook <=> Playbook, Other <=> Other
});
enum_map!(visibility_to, visibility_from, Visibility, pb::knowledge_item::Visibility, {
    Private <=> Private, Team <=> Team, Branch <=> Branch, Bank <=> Bank
});
enum_map!(sensitivity_to, sensitivity_from, Sensitivity, pb::knowledge_item::Sensitivity, {
    Internal <=> Internal, Confidential <=> Confidential, Restricted <=> Restricted
});
enum_map!(carrier_to, carrier_from, CarrierType, pb::carrier::Type, {
    Customer <=> Customer, Employee <=> Employee, Team <=> Team, Branch <=> Branch, Bank <=> Bank
});
enum_map!(conversion_to, conversion_from, Conversion, pb::derivation::Conversion, {
    Socialization <=> Socialization, Externalization <=> Externalization,
    Combination <=> Combination, Internalization <=> Internalization
});
enum_map!(state_to, state_from, VerificationState, pb::verification::State, {
    Unverified <=> Unverified, Verified <=> Verified, Stale <=> Stale
});
enum_map!(change_to, change_from, Change, pb::watch_knowledge_response::Change, {
    Created <=> Created, Shared <=> Shared, Verified <=> Verified
});

fn carrier_pb(carrier: &Carrier) -> pb::Carrier {
    pb::Carrier {
        r#type: carrier_to(carrier.kind) as i32,
        id: carrier.id.clone(),
    }
}

fn share_pb(share: &Share) -> pb::KnowledgeShare {
    pb::KnowledgeShare {
        item: share.item.clone(),
        from_carrier: Some(carrier_pb(&share.from)),
        to_carrier: Some(carrier_pb(&share.to)),
        grant: share.grant,
        visibility: share.visibility.map(visibility_to).unwrap_or_default() as i32,
        purpose: share.purpose.clone(),
        expire_time: share.expire_time.map(timestamp),
        shared_by: share.shared_by.clone(),
        create_time: Some(timestamp(share.create_time)),
    }
}

pub(crate) fn item_pb(item: &KnowledgeItem) -> pb::KnowledgeItem {
    let i = &item.item;
    let c = &i.content;
    let now = Utc::now();
    pb::KnowledgeItem {
        name: item.name(),
        title: c.title.clone(),
        body: c.body.clone(),
        nature: nature_to(i.nature) as i32,
        kind: kind_to(c.kind) as i32,
        subjects: c
            .subjects
            .iter()
            .map(|s| format!("customers/{s}"))
            .collect(),
        carrier: Some(carrier_pb(&i.carrier)),
        author: i.author.clone(),
        visibility: visibility_to(c.visibility) as i32,
        sensitivity: sensitivity_to(c.sensitivity) as i32,
        tags: c.tags.clone(),
        sources: c.sources.clone(),
        derived_from: item
            .derived_from
            .iter()
            .map(|d| pb::Derivation {
                item: d.item.clone(),
                conversion: conversion_to(d.conversion) as i32,
            })
            .collect(),
        verification: Some(pb::Verification {
            state: state_to(item.verification.as_of(now)) as i32,
            verifier: item.verification.verifier.clone(),
            verify_time: item.verification.verify_time.map(timestamp),
            next_review_time: item.verification.next_review_time.map(timestamp),
        }),
        grants: item.grants.iter().map(share_pb).collect(),
        etag: crate::domain::customer::etag(item.version),
        create_time: Some(timestamp(item.create_time)),
        update_time: Some(timestamp(item.update_time)),
    }
}

/// The content fields an update mask may name.
const CONTENT_FIELDS: &[&str] = &[
    "title",
    "body",
    "kind",
    "subjects",
    "visibility",
    "sensitivity",
    "tags",
];
/// Fields fixed at creation or kept by the service.
const FIXED_FIELDS: &[&str] = &[
    "name",
    "nature",
    "carrier",
    "author",
    "sources",
    "derived_from",
    "verification",
    "grants",
    "etag",
    "create_time",
    "update_time",
];

/// Reads the content fields in `fields`, collecting violations under
/// `prefix`; fields not listed keep defaults and are not looked at.
fn read_content(
    input: &pb::KnowledgeItem,
    fields: &[&str],
    prefix: &str,
    violations: &mut Violations,
) -> ItemContent {
    let mut content = ItemContent {
        title: String::new(),
        body: String::new(),
        kind: KnowledgeKind::Other,
        subjects: Vec::new(),
        visibility: Visibility::Private,
        sensitivity: Sensitivity::Internal,
        tags: Vec::new(),
        sources: Vec::new(),
    };
    let mut bad = |field: &str, why: String| violations.add(format!("{prefix}.{field}"), why);
    for field in fields {
        match *field {
            "title" => match bounded_text(input.title.trim(), rules::MAX_TITLE) {
                Ok(t) if !t.is_empty() => content.title = t,
                Ok(_) => bad("title", "is required".into()),
                Err(why) => bad("title", why),
            },
            "body" => match bounded_text(&input.body, rules::MAX_BODY) {
                Ok(b) => content.body = b,
                Err(why) => bad("body", why),
            },
            "kind" => match kind_from(input.kind) {
                Some(k) => content.kind = k,
                None => bad(
                    "kind",
                    "is required: PREFERENCE, NEED, RISK, RELATIONSHIP, PRODUCT_FIT, SERVICE_EXPERIENCE, COMPLAINT_INSIGHT, PLAYBOOK or OTHER".into(),
                ),
            },
            "subjects" => {
                if input.subjects.len() > rules::MAX_SUBJECTS {
                    bad("subjects", format!("must hold at most {}", rules::MAX_SUBJECTS));
                }
                for (i, subject) in input.subjects.iter().take(rules::MAX_SUBJECTS).enumerate() {
                    match CustomerId::from_name(subject) {
                        Ok(id) if !content.subjects.contains(&id.as_str().to_string()) => {
                            content.subjects.push(id.as_str().to_string())
                        }
                        Ok(_) => {}
                        Err(why) => bad(&format!("subjects[{i}]"), why),
                    }
                }
            }
            "visibility" => match input.visibility {
                0 => content.visibility = Visibility::Private,
                v => match visibility_from(v) {
                    Some(v) => content.visibility = v,
                    None => bad("visibility", "must be PRIVATE, TEAM, BRANCH or BANK".into()),
                },
            },
            "sensitivity" => match input.sensitivity {
                0 => content.sensitivity = Sensitivity::Internal,
                v => match sensitivity_from(v) {
                    Some(s) => content.sensitivity = s,
                    None => bad("sensitivity", "must be INTERNAL, CONFIDENTIAL or RESTRICTED".into()),
                },
            },
            "tags" => {
                if input.tags.len() > crate::domain::customer::MAX_TAGS {
                    bad("tags", "must hold at most 50".into());
                }
                // Past the limit the list is refused anyway; reading only
                // that many keeps the duplicate check cheap.
                let limit = crate::domain::customer::MAX_TAGS;
                for (i, t) in input.tags.iter().take(limit).enumerate() {
                    match tag(t) {
                        Ok(t) if !content.tags.contains(&t) => content.tags.push(t),
                        Ok(_) => {}
                        Err(why) => bad(&format!("tags[{i}]"), why),
                    }
                }
            }
            _ => {}
        }
    }
    if content.sensitivity == Sensitivity::Restricted && content.visibility == Visibility::Bank {
        bad(
            "visibility",
            "a RESTRICTED item cannot be visible to the whole bank".into(),
        );
    }
    content
}

/// Interaction names among `sources` (`customers/{c}/interactions/{i}`).
fn read_interaction_sources(
    names: &[String],
    field: &str,
    violations: &mut Violations,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if names.len() > rules::MAX_INTERACTION_SOURCES {
        violations.add(
            field,
            format!("must name at most {}", rules::MAX_INTERACTION_SOURCES),
        );
        return out;
    }
    for (i, name) in names.iter().enumerate() {
        match parse_child_name(name, "interactions") {
            Ok((customer, id)) => out.push((customer.as_str().to_string(), id)),
            Err(why) => violations.add(format!("{field}[{i}]"), why),
        }
    }
    out
}

/// The carrier of a new item (DESIGN §1): a tacit item is always carried by
/// an employee (its author unless stated); an explicit one by an employee,
/// team, branch or the bank.
fn read_carrier(
    input: Option<&pb::Carrier>,
    nature: Nature,
    caller: &Principal,
    violations: &mut Violations,
) -> Carrier {
    let stated = input.and_then(|c| carrier_from(c.r#type));
    if let Some(c) = input
        && c.r#type != 0
        && stated.is_none()
    {
        violations.add(
            "knowledge_item.carrier.type",
            "is not a carrier type: EMPLOYEE, TEAM, BRANCH, BANK or CUSTOMER",
        );
    }
    let id = input.map(|c| c.id.clone()).unwrap_or_default();
    let kind = match (nature, stated) {
        (_, None) => CarrierType::Employee,
        (Nature::Tacit, Some(CarrierType::Employee)) => CarrierType::Employee,
        (Nature::Tacit, Some(_)) => {
            violations.add(
                "knowledge_item.carrier.type",
                "a TACIT item is carried by an EMPLOYEE",
            );
            CarrierType::Employee
        }
        (Nature::Explicit, Some(CarrierType::Customer)) => {
            violations.add(
                "knowledge_item.carrier.type",
                "an EXPLICIT item is carried by an EMPLOYEE, TEAM, BRANCH or the BANK",
            );
            CarrierType::Employee
        }
        (Nature::Explicit, Some(kind)) => kind,
    };
    let default_id = match kind {
        CarrierType::Employee => caller.subject.clone(),
        CarrierType::Team => caller.team.clone().unwrap_or_default(),
        CarrierType::Branch => caller.branch.clone().unwrap_or_default(),
        CarrierType::Bank | CarrierType::Customer => String::new(),
    };
    let id = if id.is_empty() || kind == CarrierType::Bank {
        default_id
    } else {
        org_code(&id, true).unwrap_or_else(|why| {
            violations.add("knowledge_item.carrier.id", why);
            String::new()
        })
    };
    if id.is_empty() && kind != CarrierType::Bank {
        violations.add(
            "knowledge_item.carrier.id",
            "is required (the caller has no team or branch claim to default to)",
        );
    }
    Carrier { kind, id }
}

/// The team and branch TEAM and BRANCH visibility refer to.
fn scope_of(carrier: &Carrier, caller: &Principal) -> (String, String) {
    let team = match carrier.kind {
        CarrierType::Team => carrier.id.clone(),
        _ => caller.team.clone().unwrap_or_default(),
    };
    let branch = match carrier.kind {
        CarrierType::Branch => carrier.id.clone(),
        _ => caller.branch.clone().unwrap_or_default(),
    };
    (team, branch)
}

fn new_id(requested: &str, violations: &mut Violations) -> String {
    if requested.is_empty() {
        return uuid::Uuid::now_v7().to_string();
    }
    CustomerId::parse(requested)
        .map(|id| id.as_str().to_string())
        .unwrap_or_else(|why| {
            violations.add("knowledge_item_id", why);
            String::new()
        })
}

fn parse_item(field: &str, name: &str) -> Result<String, Error> {
    rules::parse_item_name(name).map_err(|e| Error::invalid(field, e))
}

/// The item, or AIP-211: a caller who does not see everything gets
/// PERMISSION_DENIED whether or not it exists.
fn found(
    item: Option<KnowledgeItem>,
    access: &KnowledgeAccess,
    id: &str,
) -> Result<KnowledgeItem, Error> {
    item.ok_or_else(|| {
        if access.all {
            Error::not_found(rules::item_name(id))
        } else {
            Error::denied(format!("see {}", rules::item_name(id)))
        }
    })
}

fn writer(caller: &Principal) -> Result<KnowledgeAccess, Error> {
    if !KnowledgeAccess::may_write(caller) {
        return Err(Error::denied("change customer knowledge"));
    }
    KnowledgeAccess::of(caller)
}

/// A conversion performed by `caller`, credited to their branch and team.
fn converted<'a>(
    caller: &'a Principal,
    conversion: Conversion,
    sources: &'a [String],
    target: &'a str,
    from: CarrierType,
    to: CarrierType,
) -> ConversionRecord<'a> {
    ConversionRecord {
        conversion,
        sources,
        target,
        from,
        to,
        actor: &caller.subject,
        actor_branch: caller.branch.as_deref().unwrap_or_default(),
        actor_team: caller.team.as_deref().unwrap_or_default(),
    }
}

/// The one visibility rule, applied on every path that sets or widens who
/// sees an item (create, the four conversions, update, share): the item is
/// carried by and scoped to the caller's own team or branch (admins excepted);
/// a RESTRICTED item never reaches the whole bank; the whole bank only with
/// every subject customer's KNOWLEDGE_SHARING consent, read in the writing
/// transaction so a withdrawal takes effect at once.
async fn check_visibility(
    tx: &mut sqlx::PgConnection,
    caller: &Principal,
    item: &NewItem,
) -> Result<(), Error> {
    if !caller.has(Role::Admin) {
        let own = |claim: &Option<String>, id: &str| claim.as_deref() == Some(id);
        let foreign_carrier = match item.carrier.kind {
            CarrierType::Team => !own(&caller.team, &item.carrier.id),
            CarrierType::Branch => !own(&caller.branch, &item.carrier.id),
            _ => false,
        };
        let foreign_scope = match item.content.visibility {
            Visibility::Team => !own(&caller.team, &item.scope_team),
            Visibility::Branch => !own(&caller.branch, &item.scope_branch),
            _ => false,
        };
        if foreign_carrier || foreign_scope {
            return Err(Error::denied(
                "place knowledge with a team or branch other than its own",
            ));
        }
    }
    if item.content.visibility == Visibility::Bank {
        if item.content.sensitivity == Sensitivity::Restricted {
            return Err(Error::FailedPrecondition {
                reason: ErrorReason::Restricted,
                message: "a RESTRICTED item cannot be visible to the whole bank".into(),
            });
        }
        require_sharing_consent(tx, &item.content.subjects).await?;
    }
    Ok(())
}

/// Every subject customer has consented to KNOWLEDGE_SHARING beyond the
/// home branch (DESIGN §4).
async fn require_sharing_consent(
    tx: &mut sqlx::PgConnection,
    subjects: &[String],
) -> Result<(), Error> {
    if subjects.is_empty() {
        return Ok(());
    }
    let consented =
        customers::count_consented(tx, subjects, ConsentPurpose::KnowledgeSharing).await?;
    if consented != subjects.len() as i64 {
        return Err(Error::FailedPrecondition {
            reason: ErrorReason::ConsentRequired,
            message:
                "a subject customer has not consented to KNOWLEDGE_SHARING beyond the home branch"
                    .into(),
        });
    }
    Ok(())
}

fn wrong_nature(item: &KnowledgeItem, wanted: Nature, operation: &str) -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::WrongNature,
        message: format!(
            "{} is {} knowledge; {operation} takes {} items",
            item.name(),
            item.item.nature.as_str(),
            wanted.as_str()
        ),
    }
}

impl KnowledgeApi {
    /// Checks the caller may read every subject customer and every source
    /// interaction, inside the writing transaction.
    async fn check_references(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Principal,
        content: &ItemContent,
        interaction_sources: &[(String, String)],
    ) -> Result<(), Error> {
        let scope = caller.customer_read_scope()?;
        let subjects: Vec<&str> = content.subjects.iter().map(String::as_str).collect();
        let reachable = interactions::lock_customers(tx, &subjects, scope.branch()).await?;
        if reachable.len() != subjects.len() {
            return Err(Error::denied(
                "write knowledge about customers it cannot read (or that do not exist)",
            ));
        }
        if !interaction_sources.is_empty()
            && interactions::count_reachable(tx, interaction_sources, scope.branch()).await?
                != interaction_sources.len() as i64
        {
            return Err(Error::denied(
                "cite interactions it cannot read (or that do not exist)",
            ));
        }
        Ok(())
    }

    /// Inserts an item the caller writes from scratch (create, externalize,
    /// combine) after the checks every such item passes: the caller reads
    /// its subjects and cited interactions, and the visibility rule holds.
    async fn insert_new(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Principal,
        access: &KnowledgeAccess,
        item: &NewItem,
        interaction_sources: &[(String, String)],
    ) -> Result<KnowledgeItem, Error> {
        self.check_references(tx, caller, &item.content, interaction_sources)
            .await?;
        check_visibility(tx, caller, item).await?;
        store::insert(tx, item, access).await
    }

    /// Loads source items the caller sees, in request order.
    async fn load_sources(
        &self,
        tx: &mut sqlx::PgConnection,
        access: &KnowledgeAccess,
        ids: &[String],
    ) -> Result<Vec<KnowledgeItem>, Error> {
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let item = store::get(tx, id, access, false).await?;
            items.push(found(item, access, id)?);
        }
        Ok(items)
    }
}

/// Items by name as the caller may see them now: what an idempotent replay
/// returns, after the same visibility check as any read.
async fn current_items(
    tx: &mut sqlx::PgConnection,
    names: &[String],
    access: &KnowledgeAccess,
) -> Result<Vec<KnowledgeItem>, Error> {
    let mut items = Vec::with_capacity(names.len());
    for name in names {
        let id = rules::parse_item_name(name)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
        items.push(found(
            store::get(tx, &id, access, false).await?,
            access,
            &id,
        )?);
    }
    Ok(items)
}

/// What an idempotency key keeps of an item response: its name only.
fn item_names(item: &pb::KnowledgeItem) -> Vec<String> {
    vec![item.name.clone()]
}

fn union_subjects(items: &[KnowledgeItem], extra: &[(String, String)]) -> Vec<String> {
    let mut subjects: Vec<String> = items
        .iter()
        .flat_map(|i| i.item.content.subjects.iter().cloned())
        .chain(extra.iter().map(|(c, _)| c.clone()))
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

fn item_filter(filter: &str) -> Result<ItemQuery, String> {
    let mut query = ItemQuery::default();
    for term in parse_terms(filter)? {
        let value = term.value.clone();
        let field = term.field.as_str();
        match (field, term.op) {
            ("subjects", Op::Has) => {
                let id = CustomerId::from_name(&value).map_err(|e| format!("subjects: {e}"))?;
                set_once(&mut query.subject, &term, id.as_str().to_string())?
            }
            ("kind", Op::Eq) => {
                let kind = KnowledgeKind::parse(&value)
                    .ok_or_else(|| format!("kind {value} is not a knowledge kind"))?;
                set_once(&mut query.kind, &term, kind)?
            }
            ("nature", Op::Eq) => {
                let nature = Nature::parse(&value)
                    .ok_or_else(|| format!("nature must be TACIT or EXPLICIT, not {value}"))?;
                set_once(&mut query.nature, &term, nature)?
            }
            ("carrier.type", Op::Eq) => {
                let kind = CarrierType::parse(&value)
                    .ok_or_else(|| format!("carrier.type {value} is not a carrier"))?;
                set_once(&mut query.carrier_type, &term, kind)?
            }
            ("carrier.id", Op::Eq) => set_once(&mut query.carrier_id, &term, value)?,
            ("author", Op::Eq) => set_once(&mut query.author, &term, value)?,
            ("visibility", Op::Eq) => {
                let v = Visibility::parse(&value)
                    .ok_or_else(|| format!("visibility {value} is not a visibility"))?;
                set_once(&mut query.visibility, &term, v)?
            }
            ("verification.state", Op::Eq) => {
                let state = VerificationState::parse(&value).ok_or_else(|| {
                    format!("verification.state must be UNVERIFIED, VERIFIED or STALE, not {value}")
                })?;
                set_once(&mut query.verification, &term, state)?
            }
            ("tags", Op::Has) => query.tags.push(value),
            ("subjects" | "tags", _) => return Err(unsupported(&term, "':'")),
            (
                "kind" | "nature" | "carrier.type" | "carrier.id" | "author" | "visibility"
                | "verification.state",
                _,
            ) => {
                return Err(unsupported(&term, "'='"));
            }
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on subjects, kind, nature, carrier.type, carrier.id, author, visibility, verification.state or tags"
                ));
            }
        }
    }
    Ok(query)
}

/// Tags the resume tokens of the knowledge stream.
const STREAM: &str = "k1";

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchKnowledgeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl KnowledgeService for KnowledgeApi {
    #[tracing::instrument(skip_all, name = "CreateKnowledgeItem")]
    async fn create_knowledge_item(
        &self,
        request: Request<pb::CreateKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let input = req.knowledge_item.clone().unwrap_or_default();
            if req.knowledge_item.is_none() {
                violations.add("knowledge_item", "is required");
            }
            let content_fields: Vec<&str> = CONTENT_FIELDS.to_vec();
            let mut content =
                read_content(&input, &content_fields, "knowledge_item", &mut violations);
            let nature = nature_from(input.nature).unwrap_or_else(|| {
                violations.add("knowledge_item.nature", "is required: TACIT or EXPLICIT");
                Nature::Explicit
            });
            let sources =
                read_interaction_sources(&input.sources, "knowledge_item.sources", &mut violations);
            content.sources = input.sources.clone();
            let carrier = read_carrier(input.carrier.as_ref(), nature, &caller, &mut violations);
            let id = new_id(&req.knowledge_item_id, &mut violations);
            let key = idempotency_key(
                &caller,
                "CreateKnowledgeItem",
                &req.request_id,
                &pb::CreateKnowledgeItemRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            violations.into_result(())?;
            let (scope_team, scope_branch) = scope_of(&carrier, &caller);
            let item = NewItem {
                id,
                content,
                nature,
                carrier,
                author: caller.subject.clone(),
                scope_team,
                scope_branch,
            };
            self.db
                .write(
                    key.as_ref(),
                    item_names,
                    async |tx, names| {
                        Ok(item_pb(
                            &current_items(tx, &names, &access).await?.remove(0),
                        ))
                    },
                    async |tx| {
                        let created = self
                            .insert_new(tx, &caller, &access, &item, &sources)
                            .await?;
                        Ok(item_pb(&created))
                    },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeItem")]
    async fn get_knowledge_item(
        &self,
        request: Request<pb::GetKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let access = KnowledgeAccess::of(&caller)?;
            let id = parse_item("name", &request.get_ref().name)?;
            let item = self.db.get_knowledge_item(&id, &access).await?;
            Ok(item_pb(&found(item, &access, &id)?))
        })
        .await
        .inspect(|response| crate::audit::note_customers_in(&request, response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "UpdateKnowledgeItem")]
    async fn update_knowledge_item(
        &self,
        request: Request<pb::UpdateKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let input = req
                .knowledge_item
                .clone()
                .ok_or_else(|| Error::invalid("knowledge_item", "is required"))?;
            let id = parse_item("knowledge_item.name", &input.name)?;
            let mut violations = Violations::default();
            let paths = req
                .update_mask
                .as_ref()
                .map(|m| m.paths.clone())
                .unwrap_or_default();
            if paths.is_empty() {
                violations.add("update_mask", "must name the fields to change");
            }
            let mut fields: Vec<&str> = Vec::new();
            for (i, path) in paths.iter().enumerate() {
                // AIP-134: `*` replaces every field an update may change;
                // what the request leaves unset is cleared (or refused when
                // required).
                if path == "*" {
                    fields = CONTENT_FIELDS.to_vec();
                    continue;
                }
                match CONTENT_FIELDS.iter().find(|f| **f == path.as_str()) {
                    Some(f) if !fields.contains(f) => fields.push(f),
                    Some(_) => {}
                    None if FIXED_FIELDS.contains(&path.as_str()) => violations.add(
                        format!("update_mask.paths[{i}]"),
                        format!("{path} cannot be changed by an update"),
                    ),
                    None => violations.add(
                        format!("update_mask.paths[{i}]"),
                        format!("{path} is not a field of KnowledgeItem"),
                    ),
                }
            }
            let values = read_content(&input, &fields, "knowledge_item", &mut violations);
            let key = idempotency_key(
                &caller,
                "UpdateKnowledgeItem",
                &req.request_id,
                &pb::UpdateKnowledgeItemRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            violations.into_result(())?;
            self.db
                .write(
                    key.as_ref(),
                    item_names,
                    async |tx, names| Ok(item_pb(&current_items(tx, &names, &access).await?.remove(0))),
                    async |tx| {
                    let current = found(store::get(tx, &id, &access, true).await?, &access, &id)?;
                    if current.item.author != caller.subject && !caller.has(Role::Admin) {
                        return Err(Error::denied("change an item someone else wrote"));
                    }
                    if !input.etag.is_empty()
                        && input.etag != crate::domain::customer::etag(current.version)
                    {
                        return Err(Error::EtagMismatch {
                            resource: current.name(),
                        });
                    }
                    let mut content = current.item.content.clone();
                    for field in &fields {
                        match *field {
                            "title" => content.title = values.title.clone(),
                            "body" => content.body = values.body.clone(),
                            "kind" => content.kind = values.kind,
                            "subjects" => content.subjects = values.subjects.clone(),
                            "visibility" => content.visibility = values.visibility,
                            "sensitivity" => content.sensitivity = values.sensitivity,
                            "tags" => content.tags = values.tags.clone(),
                            _ => {}
                        }
                    }
                    if content.visibility.is_wider_than(current.item.content.visibility) {
                        return Err(Error::FailedPrecondition {
                            reason: ErrorReason::NotNarrower,
                            message: format!(
                                "an update only narrows visibility: the item is {}; widen it with ShareKnowledgeItem",
                                current.item.content.visibility.as_str()
                            ),
                        });
                    }
                    if fields.contains(&"subjects") {
                        self.check_references(tx, &caller, &content, &[]).await?;
                    }
                    check_visibility(
                        tx,
                        &caller,
                        &NewItem {
                            content: content.clone(),
                            ..current.item.clone()
                        },
                    )
                    .await?;
                    let reset = fields
                        .iter()
                        .any(|f| ["title", "body", "kind", "subjects"].contains(f));
                    let updated = store::update(tx, &id, &content, reset, &fields).await?;
                    Ok(item_pb(&updated))
                },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "ListKnowledgeItems")]
    async fn list_knowledge_items(
        &self,
        request: Request<pb::ListKnowledgeItemsRequest>,
    ) -> Result<Response<pb::ListKnowledgeItemsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let access = KnowledgeAccess::of(&caller)?;
            let req = request.get_ref();
            let limit = page_size(req.page_size)?;
            let query = item_filter(&req.filter).map_err(|e| Error::invalid("filter", e))?;
            let context = format!("ListKnowledgeItems|{}|{}", caller.subject, req.filter);
            let after = self.page_tokens.decode(&req.page_token, &context)?;
            let mut page = self
                .db
                .list_knowledge_items(&access, &query, after.as_deref(), limit + 1)
                .await?;
            let next_page_token = self.page_tokens.next_sized_page(
                &mut page,
                limit,
                &context,
                |i| item_pb(i).encoded_len(),
                |last, _| last.item.id.clone(),
            );
            Ok(pb::ListKnowledgeItemsResponse {
                knowledge_items: page.iter().map(item_pb).collect(),
                next_page_token,
            })
        })
        .await
        .inspect(|response| crate::audit::note_customers_in(&request, response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "SearchKnowledgeItems")]
    async fn search_knowledge_items(
        &self,
        request: Request<pb::SearchKnowledgeItemsRequest>,
    ) -> Result<Response<pb::SearchKnowledgeItemsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let access = KnowledgeAccess::of(&caller)?;
            let req = request.get_ref();
            let limit = page_size(req.page_size)?;
            if req.query.chars().count() > search::MAX_QUERY_CHARS {
                return Err(Error::invalid(
                    "query",
                    format!("must be at most {} characters", search::MAX_QUERY_CHARS),
                ));
            }
            let (latin, cjk) = search::split_query(&req.query);
            if latin.is_empty() && cjk.is_none() {
                return Err(Error::invalid("query", "must contain at least one word"));
            }
            let context = format!("SearchKnowledgeItems|{}|{}", caller.subject, req.query);
            let offset: i64 = match self.page_tokens.decode(&req.page_token, &context)? {
                None => 0,
                Some(cursor) => cursor.parse().map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this search")
                })?,
            };
            let mut page = self
                .db
                .search_knowledge_items(&access, &latin, cjk.as_deref(), offset, limit + 1)
                .await?;
            let next_page_token = self.page_tokens.next_sized_page(
                &mut page,
                limit,
                &context,
                |i| item_pb(i).encoded_len(),
                |_, kept| (offset + kept as i64).to_string(),
            );
            Ok(pb::SearchKnowledgeItemsResponse {
                knowledge_items: page.iter().map(item_pb).collect(),
                next_page_token,
            })
        })
        .await
        .inspect(|response| crate::audit::note_customers_in(&request, response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "ExternalizeKnowledge")]
    async fn externalize_knowledge(
        &self,
        request: Request<pb::ExternalizeKnowledgeRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let (items, interaction_sources) = split_sources(&req.source_items, &mut violations);
            if req.source_items.is_empty() {
                violations.add(
                    "source_items",
                    "must name at least one tacit item or interaction",
                );
            }
            let (mut item, subjects_given) = read_new_item(
                req.knowledge_item.as_ref(),
                &req.knowledge_item_id,
                Nature::Explicit,
                &caller,
                &mut violations,
            );
            let key = idempotency_key(
                &caller,
                "ExternalizeKnowledge",
                &req.request_id,
                &pb::ExternalizeKnowledgeRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            violations.into_result(())?;
            item.content.sources = interaction_sources
                .iter()
                .map(|(c, i)| format!("customers/{c}/interactions/{i}"))
                .collect();
            self.db
                .write(
                    key.as_ref(),
                    item_names,
                    async |tx, names| {
                        Ok(item_pb(
                            &current_items(tx, &names, &access).await?.remove(0),
                        ))
                    },
                    async |tx| {
                        let sources = self.load_sources(tx, &access, &items).await?;
                        if let Some(explicit) =
                            sources.iter().find(|s| s.item.nature != Nature::Tacit)
                        {
                            return Err(wrong_nature(
                                explicit,
                                Nature::Tacit,
                                "ExternalizeKnowledge",
                            ));
                        }
                        if !subjects_given {
                            item.content.subjects = union_subjects(&sources, &interaction_sources);
                        }
                        self.insert_new(tx, &caller, &access, &item, &interaction_sources)
                            .await?;
                        store::record_conversion(
                            tx,
                            &converted(
                                &caller,
                                Conversion::Externalization,
                                &items,
                                &item.id,
                                // Only interactions: the customer carried it.
                                if sources.is_empty() {
                                    CarrierType::Customer
                                } else {
                                    CarrierType::Employee
                                },
                                item.carrier.kind,
                            ),
                        )
                        .await?;
                        Ok(item_pb(&store::reread(tx, &item.id).await?))
                    },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "CombineKnowledge")]
    async fn combine_knowledge(
        &self,
        request: Request<pb::CombineKnowledgeRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let mut items = Vec::new();
            for (i, name) in req.source_items.iter().take(rules::MAX_SOURCES).enumerate() {
                match rules::parse_item_name(name) {
                    Ok(id) if !items.contains(&id) => items.push(id),
                    Ok(_) => violations.add(format!("source_items[{i}]"), "is listed twice"),
                    Err(why) => violations.add(format!("source_items[{i}]"), why),
                }
            }
            if req.source_items.len() < 2 || req.source_items.len() > rules::MAX_SOURCES {
                violations.add(
                    "source_items",
                    format!("must name 2 to {} explicit items", rules::MAX_SOURCES),
                );
            }
            let (mut item, subjects_given) = read_new_item(
                req.knowledge_item.as_ref(),
                &req.knowledge_item_id,
                Nature::Explicit,
                &caller,
                &mut violations,
            );
            let key = idempotency_key(
                &caller,
                "CombineKnowledge",
                &req.request_id,
                &pb::CombineKnowledgeRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            violations.into_result(())?;
            self.db
                .write(
                    key.as_ref(),
                    item_names,
                    async |tx, names| {
                        Ok(item_pb(
                            &current_items(tx, &names, &access).await?.remove(0),
                        ))
                    },
                    async |tx| {
                        let sources = self.load_sources(tx, &access, &items).await?;
                        if let Some(tacit) =
                            sources.iter().find(|s| s.item.nature != Nature::Explicit)
                        {
                            return Err(wrong_nature(tacit, Nature::Explicit, "CombineKnowledge"));
                        }
                        if !subjects_given {
                            item.content.subjects = union_subjects(&sources, &[]);
                        }
                        self.insert_new(tx, &caller, &access, &item, &[]).await?;
                        store::record_conversion(
                            tx,
                            &converted(
                                &caller,
                                Conversion::Combination,
                                &items,
                                &item.id,
                                sources[0].item.carrier.kind,
                                item.carrier.kind,
                            ),
                        )
                        .await?;
                        Ok(item_pb(&store::reread(tx, &item.id).await?))
                    },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "InternalizeKnowledge")]
    async fn internalize_knowledge(
        &self,
        request: Request<pb::InternalizeKnowledgeRequest>,
    ) -> Result<Response<pb::InternalizeKnowledgeResponse>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let id = parse_item("name", &req.name)?;
            let employee = if req.employee.is_empty() {
                caller.subject.clone()
            } else {
                org_code(&req.employee, true).map_err(|e| Error::invalid("employee", e))?
            };
            if employee != caller.subject && !caller.has(Role::Admin) {
                return Err(Error::denied("record what another employee absorbed"));
            }
            let reflection = bounded_text(req.reflection.trim(), rules::MAX_BODY)
                .map_err(|e| Error::invalid("reflection", e))?;
            let key = idempotency_key(
                &caller,
                "InternalizeKnowledge",
                &req.request_id,
                &pb::InternalizeKnowledgeRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            self.db
                .write(
                    key.as_ref(),
                    |r: &pb::InternalizeKnowledgeResponse| {
                        let i = r.internalization.clone().unwrap_or_default();
                        std::iter::once(i.item)
                            .chain(Some(i.tacit_item).filter(|t| !t.is_empty()))
                            .collect()
                    },
                    async |tx, names| {
                        let items = current_items(tx, &names, &access).await?;
                        let tacit = items.get(1).map(|t| t.item.id.clone());
                        let time =
                            store::internalization_time(tx, &id, &employee, tacit.as_deref())
                                .await?;
                        Ok(pb::InternalizeKnowledgeResponse {
                            internalization: Some(pb::Internalization {
                                item: items[0].name(),
                                employee: employee.clone(),
                                tacit_item: tacit.map(|t| rules::item_name(&t)).unwrap_or_default(),
                                create_time: Some(timestamp(time)),
                            }),
                            tacit_item: items.get(1).map(item_pb),
                        })
                    },
                    async |tx| {
                        let source =
                            found(store::get(tx, &id, &access, false).await?, &access, &id)?;
                        if source.item.nature != Nature::Explicit {
                            return Err(wrong_nature(
                                &source,
                                Nature::Explicit,
                                "InternalizeKnowledge",
                            ));
                        }
                        let tacit = if reflection.is_empty() {
                            None
                        } else {
                            let mut title = format!("Absorbed: {}", source.item.content.title);
                            title = title.chars().take(rules::MAX_TITLE).collect();
                            let carrier = Carrier {
                                kind: CarrierType::Employee,
                                id: employee.clone(),
                            };
                            let (scope_team, scope_branch) = scope_of(&carrier, &caller);
                            let item = NewItem {
                                id: uuid::Uuid::now_v7().to_string(),
                                content: ItemContent {
                                    title,
                                    body: reflection.clone(),
                                    kind: source.item.content.kind,
                                    subjects: source.item.content.subjects.clone(),
                                    visibility: Visibility::Private,
                                    sensitivity: source.item.content.sensitivity,
                                    tags: source.item.content.tags.clone(),
                                    sources: Vec::new(),
                                },
                                nature: Nature::Tacit,
                                carrier,
                                author: employee.clone(),
                                scope_team,
                                scope_branch,
                            };
                            store::insert(tx, &item, &access).await?;
                            Some(item.id)
                        };
                        let target = tacit.clone().unwrap_or_else(|| id.clone());
                        store::record_conversion(
                            tx,
                            &converted(
                                &caller,
                                Conversion::Internalization,
                                if tacit.is_some() {
                                    std::slice::from_ref(&id)
                                } else {
                                    &[]
                                },
                                &target,
                                source.item.carrier.kind,
                                CarrierType::Employee,
                            ),
                        )
                        .await?;
                        let time =
                            store::record_internalization(tx, &id, &employee, tacit.as_deref())
                                .await?;
                        let tacit_item = match &tacit {
                            Some(t) => Some(item_pb(&store::reread(tx, t).await?)),
                            None => None,
                        };
                        Ok(pb::InternalizeKnowledgeResponse {
                            internalization: Some(pb::Internalization {
                                item: source.name(),
                                employee: employee.clone(),
                                tacit_item: tacit.map(|t| rules::item_name(&t)).unwrap_or_default(),
                                create_time: Some(timestamp(time)),
                            }),
                            tacit_item,
                        })
                    },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "SocializeKnowledge")]
    async fn socialize_knowledge(
        &self,
        request: Request<pb::SocializeKnowledgeRequest>,
    ) -> Result<Response<pb::SocializeKnowledgeResponse>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let id = parse_item("name", &req.name)?;
            let mut violations = Violations::default();
            if req.recipients.is_empty() || req.recipients.len() > rules::MAX_RECIPIENTS {
                violations.add(
                    "recipients",
                    format!("must name 1 to {} employees", rules::MAX_RECIPIENTS),
                );
            }
            let mut recipients = Vec::new();
            for (i, r) in req
                .recipients
                .iter()
                .take(rules::MAX_RECIPIENTS)
                .enumerate()
            {
                match org_code(r, true) {
                    Ok(r) if r == caller.subject => {
                        violations.add(format!("recipients[{i}]"), "is the mentor")
                    }
                    Ok(r) if !recipients.contains(&r) => recipients.push(r),
                    Ok(_) => {}
                    Err(why) => violations.add(format!("recipients[{i}]"), why),
                }
            }
            let notes = bounded_text(req.session_notes.trim(), rules::MAX_BODY)
                .inspect_err(|e| violations.add("session_notes", e.clone()))
                .unwrap_or_default();
            let key = idempotency_key(
                &caller,
                "SocializeKnowledge",
                &req.request_id,
                &pb::SocializeKnowledgeRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            violations.into_result(())?;
            self.db
                .write(
                    key.as_ref(),
                    |r: &pb::SocializeKnowledgeResponse| {
                        r.knowledge_items.iter().map(|i| i.name.clone()).collect()
                    },
                    async |tx, names| {
                        let items = current_items(tx, &names, &access).await?;
                        Ok(pb::SocializeKnowledgeResponse {
                            knowledge_items: items.iter().map(item_pb).collect(),
                        })
                    },
                    async |tx| {
                        let source =
                            found(store::get(tx, &id, &access, false).await?, &access, &id)?;
                        if source.item.nature != Nature::Tacit {
                            return Err(wrong_nature(&source, Nature::Tacit, "SocializeKnowledge"));
                        }
                        if source.item.carrier.id != caller.subject && !caller.has(Role::Admin) {
                            return Err(Error::denied("share tacit knowledge it does not carry"));
                        }
                        let mut created = Vec::new();
                        for recipient in &recipients {
                            let carrier = Carrier {
                                kind: CarrierType::Employee,
                                id: recipient.clone(),
                            };
                            let item = NewItem {
                                id: uuid::Uuid::now_v7().to_string(),
                                content: ItemContent {
                                    body: if notes.is_empty() {
                                        source.item.content.body.clone()
                                    } else {
                                        notes.clone()
                                    },
                                    visibility: Visibility::Private,
                                    sources: Vec::new(),
                                    ..source.item.content.clone()
                                },
                                nature: Nature::Tacit,
                                carrier,
                                author: recipient.clone(),
                                scope_team: source.item.scope_team.clone(),
                                scope_branch: source.item.scope_branch.clone(),
                            };
                            check_visibility(tx, &caller, &item).await?;
                            store::insert(tx, &item, &access).await?;
                            store::record_conversion(
                                tx,
                                &converted(
                                    &caller,
                                    Conversion::Socialization,
                                    std::slice::from_ref(&id),
                                    &item.id,
                                    CarrierType::Employee,
                                    CarrierType::Employee,
                                ),
                            )
                            .await?;
                            created.push(item_pb(&store::reread(tx, &item.id).await?));
                        }
                        Ok(pb::SocializeKnowledgeResponse {
                            knowledge_items: created,
                        })
                    },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "ShareKnowledgeItem")]
    async fn share_knowledge_item(
        &self,
        request: Request<pb::ShareKnowledgeItemRequest>,
    ) -> Result<Response<pb::ShareKnowledgeItemResponse>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let id = parse_item("name", &req.name)?;
            let mut violations = Violations::default();
            let visibility = match req.visibility {
                0 => None,
                v => visibility_from(v).or_else(|| {
                    violations.add("visibility", "must be TEAM, BRANCH or BANK");
                    None
                }),
            };
            let grantee = req.grantee.as_ref().map(|g| match carrier_from(g.r#type) {
                Some(kind @ (CarrierType::Team | CarrierType::Branch)) => {
                    let id = org_code(&g.id, true).unwrap_or_else(|why| {
                        violations.add("grantee.id", why);
                        String::new()
                    });
                    Carrier { kind, id }
                }
                _ => {
                    violations.add("grantee.type", "must be TEAM or BRANCH");
                    Carrier { kind: CarrierType::Team, id: String::new() }
                }
            });
            if visibility.is_some() == grantee.is_some() {
                violations.add("visibility", "set exactly one of visibility or grantee");
            }
            let purpose = match bounded_text(req.purpose.trim(), 500) {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => {
                    violations.add("purpose", "is required: why the knowledge is shared");
                    String::new()
                }
                Err(why) => {
                    violations.add("purpose", why);
                    String::new()
                }
            };
            let now = Utc::now();
            let expire_time = req.expire_time.as_ref().and_then(|ts| match from_timestamp(ts) {
                Some(t) if t > now && t <= now + Duration::days(rules::MAX_GRANT_DAYS) => Some(t),
                _ => {
                    violations.add(
                        "expire_time",
                        format!("must be a time in the next {} days", rules::MAX_GRANT_DAYS),
                    );
                    None
                }
            });
            if grantee.is_some() && req.expire_time.is_none() {
                violations.add(
                    "expire_time",
                    "is required for a grant: access to a team or branch always ends",
                );
            }
            let key = idempotency_key(
                &caller,
                "ShareKnowledgeItem",
                &req.request_id,
                &pb::ShareKnowledgeItemRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            violations.into_result(())?;
            // The id of the recorded share, for the idempotency key.
            let share_id = std::sync::OnceLock::<i64>::new();
            self.db
                .write(
                    key.as_ref(),
                    |r: &pb::ShareKnowledgeItemResponse| {
                        let item = r.knowledge_item.as_ref().map(|i| i.name.clone()).unwrap_or_default();
                        vec![item, share_id.get().map(|s| s.to_string()).unwrap_or_default()]
                    },
                    async |tx, names| {
                        let item = current_items(tx, &names[..1], &access).await?.remove(0);
                        let share_id = names[1].parse().map_err(|_| {
                            Error::Internal(anyhow::anyhow!("stored share id is not a number"))
                        })?;
                        let share = store::get_share(tx, &item.item.id, share_id).await?;
                        Ok(pb::ShareKnowledgeItemResponse {
                            knowledge_item: Some(item_pb(&item)),
                            share: Some(share_pb(&share)),
                        })
                    },
                    async |tx| {
                    let current = found(store::get(tx, &id, &access, true).await?, &access, &id)?;
                    if current.item.author != caller.subject && !caller.has(Role::Admin) {
                        return Err(Error::denied("share an item someone else wrote"));
                    }
                    if !req.etag.is_empty() && req.etag != crate::domain::customer::etag(current.version) {
                        return Err(Error::EtagMismatch { resource: current.name() });
                    }
                    let content = &current.item.content;
                    let to = match (visibility, &grantee) {
                        (Some(v), _) => {
                            if !v.is_wider_than(content.visibility) {
                                return Err(Error::FailedPrecondition {
                                    reason: ErrorReason::NotWider,
                                    message: format!(
                                        "sharing only widens: the item is already {}; narrow it with UpdateKnowledgeItem",
                                        content.visibility.as_str()
                                    ),
                                });
                            }
                            check_visibility(
                                tx,
                                &caller,
                                &NewItem {
                                    content: ItemContent {
                                        visibility: v,
                                        ..content.clone()
                                    },
                                    ..current.item.clone()
                                },
                            )
                            .await?;
                            Carrier {
                                kind: v.carrier(),
                                id: match v {
                                    Visibility::Team => current.item.scope_team.clone(),
                                    Visibility::Branch => current.item.scope_branch.clone(),
                                    _ => String::new(),
                                },
                            }
                        }
                        (None, Some(g)) => g.clone(),
                        (None, None) => return Err(Error::unreported_missing_part()),
                    };
                    // A grant beyond the home branch needs the subjects'
                    // consent as a bank-wide share does.
                    if to.kind == CarrierType::Branch && to.id != current.item.scope_branch {
                        require_sharing_consent(tx, &content.subjects).await?;
                    }
                    let share = Share {
                        item: current.name(),
                        from: current.item.carrier.clone(),
                        to,
                        grant: grantee.is_some(),
                        visibility,
                        purpose: purpose.clone(),
                        expire_time,
                        shared_by: caller.subject.clone(),
                        create_time: Utc::now(),
                    };
                    let (updated, id) = store::share(
                        tx,
                        &share,
                        &id,
                        caller.branch.as_deref().unwrap_or_default(),
                        caller.team.as_deref().unwrap_or_default(),
                    )
                    .await?;
                    let _ = share_id.set(id);
                    Ok(pb::ShareKnowledgeItemResponse {
                        knowledge_item: Some(item_pb(&updated)),
                        share: Some(share_pb(&share)),
                    })
                },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "VerifyKnowledgeItem")]
    async fn verify_knowledge_item(
        &self,
        request: Request<pb::VerifyKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let access = writer(&caller)?;
            let req = request.into_inner();
            let id = parse_item("name", &req.name)?;
            let interval = req
                .review_interval
                .as_ref()
                .map(|d| {
                    // Checked: a caller may send any i64 of seconds.
                    Duration::try_seconds(d.seconds)
                        .and_then(|s| s.checked_add(&Duration::nanoseconds(i64::from(d.nanos))))
                        .ok_or_else(|| {
                            Error::invalid(
                                "review_interval",
                                "is not a duration the service can hold",
                            )
                        })
                })
                .transpose()?;
            let interval = rules::review_interval(interval)
                .map_err(|e| Error::invalid("review_interval", e))?;
            let key = idempotency_key(
                &caller,
                "VerifyKnowledgeItem",
                &req.request_id,
                &pb::VerifyKnowledgeItemRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            self.db
                .write(
                    key.as_ref(),
                    item_names,
                    async |tx, names| {
                        Ok(item_pb(
                            &current_items(tx, &names, &access).await?.remove(0),
                        ))
                    },
                    async |tx| {
                        let current =
                            found(store::get(tx, &id, &access, true).await?, &access, &id)?;
                        if current.item.author == caller.subject {
                            return Err(Error::denied("verify an item it wrote itself"));
                        }
                        if !req.etag.is_empty()
                            && req.etag != crate::domain::customer::etag(current.version)
                        {
                            return Err(Error::EtagMismatch {
                                resource: current.name(),
                            });
                        }
                        let verified =
                            store::verify(tx, &id, &caller.subject, Utc::now() + interval).await?;
                        Ok(item_pb(&verified))
                    },
                )
                .await
        })
        .await
        .inspect(|response| audit.customers_in(response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeLineage")]
    async fn get_knowledge_lineage(
        &self,
        request: Request<pb::GetKnowledgeLineageRequest>,
    ) -> Result<Response<pb::KnowledgeLineage>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let access = KnowledgeAccess::of(&caller)?;
            let req = request.get_ref();
            let id = parse_item("name", &req.name)?;
            let depth = match req.depth {
                0 => 3,
                d if (1..=rules::MAX_LINEAGE_DEPTH).contains(&d) => d,
                _ => {
                    return Err(Error::invalid(
                        "depth",
                        format!("must be between 1 and {}", rules::MAX_LINEAGE_DEPTH),
                    ));
                }
            };
            let root = self.db.get_knowledge_item(&id, &access).await?;
            found(root, &access, &id)?;
            let mut rows = self.db.knowledge_lineage(&id, depth).await?;
            let truncated = rows.nodes.len() > 1000;
            rows.nodes.truncate(1000);
            let ids: Vec<&str> = rows.nodes.iter().map(|(n, _)| n.as_str()).collect();
            let visible: BTreeMap<String, KnowledgeItem> = self
                .db
                .visible_knowledge_items(&access, &ids)
                .await?
                .into_iter()
                .map(|i| (i.item.id.clone(), i))
                .collect();
            let kept: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
            let seen: Vec<&str> = visible.keys().map(String::as_str).collect();
            let internalizations = self.db.internalizations_of(&seen).await?;
            Ok(pb::KnowledgeLineage {
                root: rules::item_name(&id),
                nodes: rows
                    .nodes
                    .iter()
                    .map(|(node, depth)| pb::knowledge_lineage::Node {
                        name: rules::item_name(node),
                        redacted: !visible.contains_key(node),
                        item: visible.get(node).map(item_pb),
                        depth: *depth,
                    })
                    .collect(),
                edges: rows
                    .edges
                    .iter()
                    .filter(|(s, t, _, _)| kept.contains(s.as_str()) && kept.contains(t.as_str()))
                    .map(|(s, t, c, time)| pb::knowledge_lineage::Edge {
                        source: rules::item_name(s),
                        target: rules::item_name(t),
                        conversion: conversion_to(*c) as i32,
                        create_time: Some(timestamp(*time)),
                    })
                    .collect(),
                internalizations: internalizations
                    .iter()
                    .map(|(item, employee, tacit, time)| pb::Internalization {
                        item: rules::item_name(item),
                        employee: employee.clone(),
                        tacit_item: if tacit.is_empty() {
                            String::new()
                        } else {
                            rules::item_name(tacit)
                        },
                        create_time: Some(timestamp(*time)),
                    })
                    .collect(),
                shares: visible
                    .values()
                    .flat_map(|i| i.grants.iter().map(share_pb))
                    .collect(),
                truncated,
            })
        })
        .await
        .inspect(|response| crate::audit::note_customers_in(&request, response.get_ref()))
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeFlow")]
    async fn get_knowledge_flow(
        &self,
        request: Request<pb::GetKnowledgeFlowRequest>,
    ) -> Result<Response<pb::KnowledgeFlow>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let access = KnowledgeAccess::of(&caller)?;
            let req = request.get_ref();
            let branch = (!req.branch.is_empty())
                .then(|| org_code(&req.branch, true).map_err(|e| Error::invalid("branch", e)))
                .transpose()?;
            let team = (!req.team.is_empty())
                .then(|| org_code(&req.team, true).map_err(|e| Error::invalid("team", e)))
                .transpose()?;
            // Branch staff report on their own branch or team only.
            if access.subject_branch.is_some() {
                let own_branch = branch.as_deref().is_none_or(|b| b == access.branch);
                let own_team = team.as_deref().is_none_or(|t| t == access.team);
                if branch.is_none() && team.is_none() || !own_branch || !own_team {
                    return Err(Error::denied(
                        "report on knowledge flows beyond its own branch or team",
                    ));
                }
            }
            let end = match &req.end_time {
                Some(ts) => from_timestamp(ts)
                    .ok_or_else(|| Error::invalid("end_time", "is not a valid timestamp"))?,
                None => Utc::now(),
            };
            let start = match &req.start_time {
                Some(ts) => from_timestamp(ts)
                    .ok_or_else(|| Error::invalid("start_time", "is not a valid timestamp"))?,
                None => end - Duration::days(30),
            };
            if start >= end {
                return Err(Error::invalid("start_time", "must be before end_time"));
            }
            let rows = self
                .db
                .knowledge_flow(&access, branch.as_deref(), team.as_deref(), start, end)
                .await?;
            let conversion_count: i64 = rows.conversions.iter().map(|r| r.3).sum();
            let share_count: i64 = rows.shares.iter().map(|r| r.2).sum();
            let fraction = |n: i64, total: i64| {
                if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                }
            };
            let mut transitions: BTreeMap<(CarrierType, CarrierType), i64> = BTreeMap::new();
            for (_, from, to, n) in &rows.conversions {
                *transitions.entry((*from, *to)).or_default() += n;
            }
            Ok(pb::KnowledgeFlow {
                branch: branch.unwrap_or_default(),
                team: team.unwrap_or_default(),
                start_time: Some(timestamp(start)),
                end_time: Some(timestamp(end)),
                cells: rows
                    .conversions
                    .iter()
                    .map(|(c, from, to, n)| pb::knowledge_flow::Cell {
                        conversion: conversion_to(*c) as i32,
                        from_carrier: carrier_to(*from) as i32,
                        to_carrier: carrier_to(*to) as i32,
                        count: *n,
                        fraction: fraction(*n, conversion_count),
                    })
                    .collect(),
                conversion_totals: Conversion::ALL
                    .iter()
                    .map(|c| {
                        let n = rows
                            .conversions
                            .iter()
                            .filter(|r| r.0 == *c)
                            .map(|r| r.3)
                            .sum();
                        pb::knowledge_flow::ConversionTotal {
                            conversion: conversion_to(*c) as i32,
                            count: n,
                            fraction: fraction(n, conversion_count),
                        }
                    })
                    .collect(),
                transition_totals: transitions
                    .iter()
                    .map(|((from, to), n)| pb::knowledge_flow::TransitionTotal {
                        from_carrier: carrier_to(*from) as i32,
                        to_carrier: carrier_to(*to) as i32,
                        count: *n,
                        fraction: fraction(*n, conversion_count),
                    })
                    .collect(),
                shares: rows
                    .shares
                    .iter()
                    .map(|(from, to, n)| pb::knowledge_flow::ShareTotal {
                        from_carrier: carrier_to(*from) as i32,
                        to_carrier: carrier_to(*to) as i32,
                        count: *n,
                        fraction: fraction(*n, share_count),
                    })
                    .collect(),
                conversion_count,
                share_count,
            })
        })
        .await
    }

    type WatchKnowledgeStream = WatchStream;

    #[tracing::instrument(skip_all, name = "WatchKnowledge")]
    async fn watch_knowledge(
        &self,
        request: Request<pb::WatchKnowledgeRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let subscription = async {
            crate::audit::note_customers_in(&request, request.get_ref());
            let caller = principal(&request)?;
            let access = KnowledgeAccess::of(&caller)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            if req.subjects.len() > rules::MAX_WATCH_SUBJECTS {
                return Err(Error::invalid(
                    "subjects",
                    format!("must name at most {}", rules::MAX_WATCH_SUBJECTS),
                ));
            }
            let mut subjects = Vec::new();
            for (i, name) in req.subjects.iter().enumerate() {
                let id = parse_name(&format!("subjects[{i}]"), name)?;
                let found = self.db.get_customer(&id, scope.branch()).await?;
                super::customer::resolve(found, &scope, &id)?;
                subjects.push(id.as_str().to_string());
            }
            let wakeups = self.feed.knowledge_wakeups();
            let start = if req.resume_token.is_empty() {
                self.db.feed_start().await?
            } else {
                parse_resume_token(STREAM, &req.resume_token)?
            };
            Ok::<_, Error>((access, subjects, wakeups, start))
        };
        let (access, subjects, wakeups, start) = subscription.await.map_err(Status::from)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(deliver(
            self.db.clone(),
            access,
            subjects,
            start,
            wakeups,
            tx,
            self.streams.clone(),
        ));
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as WatchStream
        ))
    }
}

/// The target item ids of `source_items`: knowledge items and interactions.
fn split_sources(
    names: &[String],
    violations: &mut Violations,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut items = Vec::new();
    let mut interactions = Vec::new();
    if names.len() > rules::MAX_SOURCES {
        violations.add(
            "source_items",
            format!("must name at most {}", rules::MAX_SOURCES),
        );
    }
    for (i, name) in names.iter().take(rules::MAX_SOURCES).enumerate() {
        if name.starts_with("knowledgeItems/") {
            match rules::parse_item_name(name) {
                Ok(id) if !items.contains(&id) => items.push(id),
                Ok(_) => {}
                Err(why) => violations.add(format!("source_items[{i}]"), why),
            }
        } else {
            match parse_child_name(name, "interactions") {
                Ok((c, id)) => interactions.push((c.as_str().to_string(), id)),
                Err(_) => violations.add(
                    format!("source_items[{i}]"),
                    "must be knowledgeItems/{item} or customers/{customer}/interactions/{interaction}",
                ),
            }
        }
    }
    (items, interactions)
}

/// The new item of a conversion: content from the request, nature fixed by
/// the conversion. Returns whether subjects were given (else they are the
/// sources' subjects).
fn read_new_item(
    input: Option<&pb::KnowledgeItem>,
    requested_id: &str,
    nature: Nature,
    caller: &Principal,
    violations: &mut Violations,
) -> (NewItem, bool) {
    let default = pb::KnowledgeItem::default();
    let input = input.unwrap_or_else(|| {
        violations.add("knowledge_item", "is required");
        &default
    });
    if input.nature != 0 && nature_from(input.nature) != Some(nature) {
        violations.add(
            "knowledge_item.nature",
            format!("this conversion creates {} knowledge", nature.as_str()),
        );
    }
    let content = read_content(input, CONTENT_FIELDS, "knowledge_item", violations);
    let carrier = read_carrier(input.carrier.as_ref(), nature, caller, violations);
    let (scope_team, scope_branch) = scope_of(&carrier, caller);
    (
        NewItem {
            id: new_id(requested_id, violations),
            content,
            nature,
            carrier,
            author: caller.subject.clone(),
            scope_team,
            scope_branch,
        },
        !input.subjects.is_empty(),
    )
}

/// Streams what becomes visible to the caller: on every wake-up (and every
/// second, for rows held back behind a running transaction) it reads the
/// changes after its cursor that the caller may see now.
async fn deliver(
    db: Db,
    access: KnowledgeAccess,
    subjects: Vec<String>,
    mut cursor: (i64, i64),
    mut wakeups: watch::Receiver<u64>,
    tx: mpsc::Sender<Result<pb::WatchKnowledgeResponse, Status>>,
    streams: Streams,
) {
    let mut last_sent = tokio::time::Instant::now();
    loop {
        loop {
            let events: Vec<KnowledgeEvent> = match db
                .knowledge_events_after(&access, cursor, &subjects, 500)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            };
            let full = events.len() == 500;
            for event in events {
                cursor = event.cursor;
                let message = pb::WatchKnowledgeResponse {
                    change: change_to(event.change) as i32,
                    knowledge_item: Some(item_pb(&event.item)),
                    change_time: Some(timestamp(event.change_time)),
                    resume_token: resume_token(STREAM, event.cursor),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            if !full {
                break;
            }
        }
        if last_sent.elapsed() >= streams.heartbeat {
            let heartbeat = pb::WatchKnowledgeResponse {
                change: pb::watch_knowledge_response::Change::Heartbeat as i32,
                knowledge_item: None,
                change_time: None,
                resume_token: resume_token(STREAM, cursor),
            };
            if tx.send(Ok(heartbeat)).await.is_err() {
                return;
            }
            last_sent = tokio::time::Instant::now();
        }
        tokio::select! {
            // The feed closes only when the server drains.
            changed = wakeups.changed() => if changed.is_err() {
                let _ = tx.send(Err(draining_status())).await;
                return;
            },
            _ = tokio::time::sleep(std::time::Duration::from_secs(1).min(streams.heartbeat)) => {}
            _ = streams.draining() => {
                let _ = tx.send(Err(draining_status())).await;
                return;
            }
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_filters_parse() {
        let q = item_filter(
            r#"subjects:"customers/c-1" AND nature = TACIT AND carrier.type = EMPLOYEE AND verification.state = STALE AND tags:"wealth""#,
        )
        .unwrap();
        assert_eq!(q.subject.as_deref(), Some("c-1"));
        assert_eq!(q.nature, Some(Nature::Tacit));
        assert_eq!(q.verification, Some(VerificationState::Stale));
        assert!(item_filter("title = \"x\"").is_err());
        assert!(item_filter("nature : TACIT").is_err());
    }

    #[test]
    fn resume_tokens_round_trip() {
        assert_eq!(
            parse_resume_token(STREAM, &resume_token(STREAM, (9, 3))).unwrap(),
            (9, 3)
        );
        assert!(
            parse_resume_token(STREAM, "djE6MToy").is_err(),
            "an interaction token is refused"
        );
    }

    #[test]
    fn change_names_map_both_ways() {
        assert_eq!(
            change_from(change_to(Change::Shared) as i32),
            Some(Change::Shared)
        );
        assert_eq!(
            state_from(state_to(VerificationState::Stale) as i32),
            Some(VerificationState::Stale)
        );
    }
}
