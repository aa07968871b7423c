//! `InteractionService`: the append path (single, batch, bulk import), the
//! timeline, complaints, follow-ups and the live feed.

use std::{pin::Pin, sync::Arc};

use tokio::time::Instant;

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::{
    Streams,
    customer::{lock_reachable_customer, parse_name, resolve},
    draining_status, from_timestamp, idempotency_key,
    page_token::{PageTokens, page_size},
    parse_resume_token, principal, respond, resume_token, timestamp,
};
use crate::{
    domain::{
        customer::{CustomerId, org_code},
        filter::{Op, Term, parse_terms, set_once, unsupported},
        interaction::{
            self as rules, Channel, Complaint, ComplaintSla, ComplaintState, FollowUpState,
            Interaction, Kind, Money, NewInteraction, RecordedBy, Sentiment, Severity,
            SourceSystems, staff_source,
        },
        principal::{BranchScope, Principal, Role},
        systems::{acting_for, check_acting_for},
    },
    error::{Error, ErrorReason, Violations},
    metrics::Metrics,
    pb::v1::{self as pb, interaction_service_server::InteractionService},
    store::{
        Db,
        customers::{self, Lock},
        feed::{ChangeFeed, FEED_PAGE},
        interactions::{
            self as store, Appended, ComplaintQuery, DueCursor, FeedCursor, FeedItem, FollowUp,
            FollowUpQuery, TimelineQuery,
        },
    },
};

mod follow_ups;

pub struct InteractionApi {
    db: Db,
    page_tokens: PageTokens,
    sla: ComplaintSla,
    sources: SourceSystems,
    import_batch_size: usize,
    feed: ChangeFeed,
    streams: Streams,
    metrics: Metrics,
}

/// What InteractionApi is built from.
pub struct InteractionApiParts {
    pub db: Db,
    pub page_tokens: PageTokens,
    pub sla: ComplaintSla,
    pub sources: SourceSystems,
    pub import_batch_size: usize,
    pub feed: ChangeFeed,
    pub streams: Streams,
    pub metrics: Metrics,
}

impl InteractionApi {
    pub fn new(parts: InteractionApiParts) -> Self {
        let InteractionApiParts {
            db,
            page_tokens,
            sla,
            sources,
            import_batch_size,
            feed,
            streams,
            metrics,
        } = parts;
        InteractionApi {
            db,
            page_tokens,
            sla,
            sources,
            import_batch_size,
            feed,
            streams,
            metrics,
        }
    }
}

/// Most rows one ImportInteractions message may carry.
const MAX_IMPORT_ROWS_PER_MESSAGE: usize = 5000;
/// Rejections reported back by an import.
const MAX_REPORTED_REJECTIONS: usize = 100;

// Conversions.

fn channel_from(value: i32) -> Option<Channel> {
    use pb::interaction::Channel as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Branch => Channel::Branch,
        P::Phone => Channel::Phone,
        P::MobileApp => Channel::MobileApp,
        P::OnlineBanking => Channel::OnlineBanking,
        P::Email => Channel::Email,
        P::SocialMedia => Channel::SocialMedia,
        P::Chat => Channel::Chat,
        P::Atm => Channel::Atm,
        P::FieldVisit => Channel::FieldVisit,
    })
}

fn channel_to(channel: Channel) -> pb::interaction::Channel {
    use pb::interaction::Channel as P;
    match channel {
        Channel::Branch => P::Branch,
        Channel::Phone => P::Phone,
        Channel::MobileApp => P::MobileApp,
        Channel::OnlineBanking => P::OnlineBanking,
        Channel::Email => P::Email,
        Channel::SocialMedia => P::SocialMedia,
        Channel::Chat => P::Chat,
        Channel::Atm => P::Atm,
        Channel::FieldVisit => P::FieldVisit,
    }
}

fn kind_from(value: i32) -> Option<Kind> {
    use pb::interaction::Kind as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Inquiry => Kind::Inquiry,
        P::Transaction => Kind::Transaction,
        P::Complaint => Kind::Complaint,
        P::ServiceRequest => Kind::ServiceRequest,
        P::Promotion => Kind::Promotion,
        P::FollowUp => Kind::FollowUp,
        P::Survey => Kind::Survey,
    })
}

fn kind_to(kind: Kind) -> pb::interaction::Kind {
    use pb::interaction::Kind as P;
    match kind {
        Kind::Inquiry => P::Inquiry,
        Kind::Transaction => P::Transaction,
        Kind::Complaint => P::Complaint,
        Kind::ServiceRequest => P::ServiceRequest,
        Kind::Promotion => P::Promotion,
        Kind::FollowUp => P::FollowUp,
        Kind::Survey => P::Survey,
    }
}

fn sentiment_from(value: i32) -> Result<Option<Sentiment>, ()> {
    use pb::interaction::Sentiment as P;
    Ok(match P::try_from(value).map_err(|_| ())? {
        P::Unspecified => None,
        P::Positive => Some(Sentiment::Positive),
        P::Neutral => Some(Sentiment::Neutral),
        P::Negative => Some(Sentiment::Negative),
    })
}

fn severity_from(value: i32) -> Result<Option<Severity>, ()> {
    use pb::complaint::Severity as P;
    Ok(match P::try_from(value).map_err(|_| ())? {
        P::Unspecified => None,
        P::Low => Some(Severity::Low),
        P::Medium => Some(Severity::Medium),
        P::High => Some(Severity::High),
        P::Critical => Some(Severity::Critical),
    })
}

fn complaint_state_from(value: i32) -> Option<ComplaintState> {
    use pb::complaint::State as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Open => ComplaintState::Open,
        P::InProgress => ComplaintState::InProgress,
        P::Resolved => ComplaintState::Resolved,
        P::Closed => ComplaintState::Closed,
    })
}

fn complaint_to(complaint: &Complaint, now: DateTime<Utc>) -> pb::Complaint {
    use pb::complaint::{Severity as S, State as P};
    pb::Complaint {
        state: match complaint.state {
            ComplaintState::Open => P::Open,
            ComplaintState::InProgress => P::InProgress,
            ComplaintState::Resolved => P::Resolved,
            ComplaintState::Closed => P::Closed,
        } as i32,
        severity: match complaint.severity {
            Severity::Low => S::Low,
            Severity::Medium => S::Medium,
            Severity::High => S::High,
            Severity::Critical => S::Critical,
        } as i32,
        due_time: Some(timestamp(complaint.due_time)),
        resolution: complaint.resolution.clone(),
        resolve_time: complaint.resolve_time.map(timestamp),
        close_time: complaint.close_time.map(timestamp),
        overdue: complaint.is_overdue(now),
    }
}

pub(crate) fn interaction_to(interaction: &Interaction) -> pb::Interaction {
    let f = &interaction.fields;
    pb::Interaction {
        name: interaction.name(),
        channel: channel_to(f.channel) as i32,
        kind: kind_to(f.kind) as i32,
        occur_time: Some(timestamp(f.occur_time)),
        recorded_by: Some(pb::RecordedBy {
            employee: f.recorded_by.employee.clone(),
            team: f.recorded_by.team.clone(),
            branch: f.recorded_by.branch.clone(),
        }),
        summary: f.summary.clone(),
        notes: f.notes.clone(),
        products: f.products.clone(),
        amount: f.amount.as_ref().map(|m| pb::Money {
            currency_code: m.currency_code.clone(),
            units: m.units,
            nanos: m.nanos,
        }),
        campaign: f.campaign.clone(),
        outcome: f.outcome.clone(),
        sentiment: match f.sentiment {
            None => pb::interaction::Sentiment::Unspecified,
            Some(Sentiment::Positive) => pb::interaction::Sentiment::Positive,
            Some(Sentiment::Neutral) => pb::interaction::Sentiment::Neutral,
            Some(Sentiment::Negative) => pb::interaction::Sentiment::Negative,
        } as i32,
        satisfaction: f.satisfaction.map(i32::from),
        nps: f.nps.map(i32::from),
        external_ref: f.external_ref.clone(),
        source_system: f.source_system.clone(),
        complaint: f.complaint.as_ref().map(|c| complaint_to(c, Utc::now())),
        etag: interaction.etag(),
        create_time: Some(timestamp(interaction.create_time)),
        update_time: Some(timestamp(interaction.update_time)),
    }
}

pub(crate) fn follow_up_to(task: &FollowUp) -> pb::FollowUp {
    pb::FollowUp {
        name: format!("customers/{}/followUps/{}", task.customer.as_str(), task.id),
        assignee: task.assignee.clone(),
        branch: task.branch.clone(),
        due_time: Some(timestamp(task.due_time)),
        state: match task.state {
            FollowUpState::Scheduled => pb::follow_up::State::Scheduled,
            FollowUpState::Completed => pb::follow_up::State::Completed,
            FollowUpState::Cancelled => pb::follow_up::State::Cancelled,
        } as i32,
        purpose: task.purpose.clone(),
        channel: task.channel.map(channel_to).unwrap_or_default() as i32,
        source_interaction: task.source_interaction.clone(),
        completion_interaction: task.completion_interaction.clone(),
        complete_time: task.complete_time.map(timestamp),
        created_by: task.created_by.clone(),
        overdue: task.state == FollowUpState::Scheduled && task.due_time < Utc::now(),
        etag: crate::domain::customer::etag(task.version),
        create_time: Some(timestamp(task.create_time)),
        update_time: Some(timestamp(task.update_time)),
        cancel_reason: task.cancel_reason.clone(),
        cancel_time: task.cancel_time.map(timestamp),
    }
}

/// Reads and validates an interaction to log, collecting violations under
/// `prefix` (e.g. `interaction` or `requests[3].interaction`).
/// `recorded_by` comes from the caller for employees; a service may state it.
fn read_interaction(
    input: &pb::Interaction,
    id: Option<&str>,
    caller: &Principal,
    sla: &ComplaintSla,
    sources: &SourceSystems,
    prefix: &str,
    violations: &mut Violations,
) -> NewInteraction {
    // Destructured so that a new proto field cannot be forgotten here.
    let pb::Interaction {
        name: _,
        channel,
        kind,
        occur_time,
        recorded_by,
        summary,
        notes,
        products,
        amount,
        campaign,
        outcome,
        sentiment,
        satisfaction,
        nps,
        external_ref,
        source_system,
        complaint,
        etag: _,
        create_time: _,
        update_time: _,
    } = input;
    let mut bad = |field: &str, why: String| violations.add(format!("{prefix}.{field}"), why);
    let now = Utc::now();
    let channel = channel_from(*channel).unwrap_or_else(|| {
        bad("channel", "is required: BRANCH, PHONE, MOBILE_APP, ONLINE_BANKING, EMAIL, SOCIAL_MEDIA, CHAT, ATM or FIELD_VISIT".into());
        Channel::Branch
    });
    let kind = kind_from(*kind).unwrap_or_else(|| {
        bad("kind", "is required: INQUIRY, TRANSACTION, COMPLAINT, SERVICE_REQUEST, PROMOTION, FOLLOW_UP or SURVEY".into());
        Kind::Inquiry
    });
    let occur_time = match occur_time {
        None => now,
        Some(ts) => match from_timestamp(ts) {
            Some(t) if t > now + rules::MAX_FUTURE_SKEW => {
                bad(
                    "occur_time",
                    "must not be more than 5 minutes in the future".into(),
                );
                now
            }
            Some(t) if t.timestamp() < -2_208_988_800 => {
                bad("occur_time", "must not be before 1900".into());
                now
            }
            Some(t) => t,
            None => {
                bad("occur_time", "is not a valid timestamp".into());
                now
            }
        },
    };
    let mut text = |field: &str, value: &str, max: usize| {
        rules::text(value, max).unwrap_or_else(|why| {
            bad(field, why);
            String::new()
        })
    };
    let summary = text("summary", summary, rules::MAX_SUMMARY);
    let notes = text("notes", notes, rules::MAX_NOTES);
    let campaign = text("campaign", campaign, rules::MAX_CAMPAIGN);
    let outcome = text("outcome", outcome, rules::MAX_OUTCOME);
    let mut bad = |field: &str, why: String| violations.add(format!("{prefix}.{field}"), why);
    if products.len() > rules::MAX_PRODUCTS {
        bad(
            "products",
            format!("must hold at most {}", rules::MAX_PRODUCTS),
        );
    }
    let products = products
        .iter()
        .take(rules::MAX_PRODUCTS)
        .enumerate()
        .filter_map(|(i, p)| {
            rules::product(p)
                .map_err(|why| bad(&format!("products[{i}]"), why))
                .ok()
        })
        .collect();
    let amount = amount.as_ref().and_then(|m| {
        Money::new(&m.currency_code, m.units, m.nanos)
            .map_err(|(part, why)| bad(&format!("amount.{part}"), why))
            .ok()
    });
    let sentiment = sentiment_from(*sentiment).unwrap_or_else(|_| {
        bad("sentiment", "must be POSITIVE, NEUTRAL or NEGATIVE".into());
        None
    });
    let satisfaction = satisfaction.and_then(|s| {
        if (1..=5).contains(&s) {
            Some(s as i16)
        } else {
            bad("satisfaction", "must be a CSAT score from 1 to 5".into());
            None
        }
    });
    let nps = nps.and_then(|n| {
        if (0..=10).contains(&n) {
            Some(n as i16)
        } else {
            bad("nps", "must be an NPS answer from 0 to 10".into());
            None
        }
    });
    let external_ref = rules::external_ref(external_ref).unwrap_or_else(|why| {
        bad("external_ref", why);
        String::new()
    });
    let source_system = if !caller.has(Role::Service) {
        if !source_system.is_empty() && *source_system != staff_source(&caller.subject) {
            bad(
                "source_system",
                "is for calling systems; staff entries are recorded under the employee's own source (leave it empty)".into(),
            );
        }
        staff_source(&caller.subject)
    } else if source_system.is_empty() {
        caller.subject.clone()
    } else {
        match org_code(source_system, true) {
            Ok(source) if sources.owns(&caller.subject, &source) => source,
            Ok(source) => {
                bad(
                    "source_system",
                    format!(
                        "{source} is another system's: a system writes only under its own name and its configured aliases"
                    ),
                );
                String::new()
            }
            Err(why) => {
                bad("source_system", why);
                String::new()
            }
        }
    };
    let recorded_by = if caller.has(Role::Service) {
        let stated = recorded_by.clone().unwrap_or_default();
        let mut code = |field: &str, value: &str| {
            org_code(value, false).unwrap_or_else(|why| {
                bad(&format!("recorded_by.{field}"), why);
                String::new()
            })
        };
        RecordedBy {
            employee: code("employee", &stated.employee),
            team: code("team", &stated.team),
            branch: code("branch", &stated.branch),
        }
    } else {
        RecordedBy {
            employee: caller.subject.clone(),
            team: caller.team.clone().unwrap_or_default(),
            branch: caller.branch.clone().unwrap_or_default(),
        }
    };
    let severity = complaint
        .as_ref()
        .map(|c| {
            severity_from(c.severity).unwrap_or_else(|_| {
                bad(
                    "complaint.severity",
                    "must be LOW, MEDIUM, HIGH or CRITICAL".into(),
                );
                None
            })
        })
        .unwrap_or_default();
    let complaint = (kind == Kind::Complaint).then(|| {
        let severity = severity.unwrap_or(Severity::Medium);
        Complaint {
            state: ComplaintState::Open,
            severity,
            due_time: sla.due(severity, occur_time),
            resolution: String::new(),
            resolve_time: None,
            close_time: None,
        }
    });
    let id = match id {
        None | Some("") => uuid::Uuid::now_v7().to_string(),
        Some(id) => CustomerId::parse(id)
            .map(|id| id.as_str().to_string())
            .unwrap_or_else(|why| {
                violations.add(
                    prefix.replace("interaction", "interaction_id"),
                    why.replace("must", "an interaction id must"),
                );
                String::new()
            }),
    };
    NewInteraction {
        id,
        channel,
        kind,
        occur_time_stated: input.occur_time.is_some(),
        occur_time,
        recorded_by,
        summary,
        notes,
        products,
        amount,
        campaign,
        outcome,
        sentiment,
        satisfaction,
        nps,
        source_system,
        external_ref,
        complaint,
    }
}

/// The error for a customer a write could not reach: told apart precisely
/// only on this error path, on the write's own connection (a second one,
/// taken while the transaction holds the first, could wait on a drained pool
/// forever).
async fn unreachable_customer(
    conn: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Error {
    match customers::get(conn, id, scope.branch(), Lock::None).await {
        Ok(found) => match resolve(found, scope, id) {
            Err(e) => e,
            Ok(_) => Error::Internal(anyhow::anyhow!("customer became reachable mid-call")),
        },
        Err(e) => e,
    }
}

/// A reachable customer for reads, or the error to return.
/// An interaction as the caller may see it: a system acting for the end
/// customer gets no internal notes, outcome, campaign, sentiment (a risk
/// signal) or staff identities.
pub(crate) fn for_caller(interaction: pb::Interaction, caller: &Principal) -> pb::Interaction {
    if acting_for(caller).is_none() {
        return interaction;
    }
    // Entries staff made by hand are filed under `staff:<employee>`: an
    // employee id the end customer's channel must not see.
    let source_system = if interaction.source_system.starts_with("staff:") {
        String::new()
    } else {
        interaction.source_system.clone()
    };
    let external_ref = if source_system.is_empty() {
        String::new()
    } else {
        interaction.external_ref.clone()
    };
    pb::Interaction {
        notes: String::new(),
        outcome: String::new(),
        campaign: String::new(),
        sentiment: 0,
        recorded_by: None,
        source_system,
        external_ref,
        ..interaction
    }
}

/// A write under an external reference that holds another interaction.
fn external_ref_conflict(existing: String) -> Error {
    Error::AlreadyExists {
        resource: "an interaction with this external_ref and other content".into(),
        reason: ErrorReason::ExternalRefConflict,
        existing: Some(existing),
    }
}

/// Interactions by name as they are now, each of a customer the caller may
/// still reach in `scope`: what an idempotent replay returns.
async fn current_interactions(
    tx: &mut sqlx::PgConnection,
    names: &[String],
    scope: &BranchScope,
) -> Result<Vec<Interaction>, Error> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let (customer, id) = rules::parse_child_name(name, "interactions")
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
        let found = customers::get(tx, &customer, scope.branch(), Lock::None).await?;
        resolve(found, scope, &customer)?;
        let interaction = store::get(tx, &customer, &id, false)
            .await?
            .ok_or_else(|| Error::not_found(name.clone()))?;
        out.push(interaction);
    }
    Ok(out)
}

/// A follow-up by name as it is now, of a customer the caller may still reach.
async fn current_follow_up(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: &BranchScope,
) -> Result<FollowUp, Error> {
    let (customer, id) = rules::parse_child_name(name, "followUps")
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
    let found = customers::get(tx, &customer, scope.branch(), Lock::None).await?;
    resolve(found, scope, &customer)?;
    store::get_follow_up(tx, &customer, &id, false)
        .await?
        .ok_or_else(|| Error::not_found(name.to_string()))
}

async fn readable_customer(
    conn: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Result<(), Error> {
    let found = customers::get(conn, id, scope.branch(), Lock::None).await?;
    resolve(found, scope, id).map(|_| ())
}

/// `customers/-` (every reachable customer) or one customer.
fn parse_parent(parent: &str) -> Result<Option<CustomerId>, Error> {
    if parent == "customers/-" {
        Ok(None)
    } else {
        parse_name("parent", parent).map(Some)
    }
}

fn parse_time(term: &Term) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(&term.value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{} needs an RFC 3339 time such as \"2026-01-31T00:00:00Z\"",
                term.field
            )
        })
}

/// `>`/`>=` set the lower bound, `<`/`<=` the upper (exclusive) one; Postgres
/// keeps microseconds, so the strict/inclusive difference is one of them.
fn time_range(
    term: &Term,
    from: &mut Option<DateTime<Utc>>,
    before: &mut Option<DateTime<Utc>>,
) -> Result<(), String> {
    let time = parse_time(term)?;
    let micro = Duration::microseconds(1);
    match term.op {
        Op::Ge => set_once(from, term, time),
        Op::Gt => set_once(from, term, time + micro),
        Op::Lt => set_once(before, term, time),
        Op::Le => set_once(before, term, time + micro),
        _ => Err(unsupported(term, "<, <=, > or >=")),
    }
}

fn parse_bool(term: &Term) -> Result<bool, String> {
    match (term.op, term.value.as_str()) {
        (Op::Eq, "true") => Ok(true),
        (Op::Eq, "false") => Ok(false),
        _ => Err(format!("{} takes = true or = false", term.field)),
    }
}

fn timeline_filter(filter: &str) -> Result<TimelineQuery, String> {
    let mut query = TimelineQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("channel", Op::Eq) => {
                let channel = Channel::parse(&term.value)
                    .ok_or_else(|| format!("channel {} is not a channel", term.value))?;
                set_once(&mut query.channel, &term, channel)?
            }
            ("kind", Op::Eq) => {
                let kind = Kind::parse(&term.value)
                    .ok_or_else(|| format!("kind {} is not an interaction kind", term.value))?;
                set_once(&mut query.kind, &term, kind)?
            }
            ("occur_time", _) => time_range(&term, &mut query.occur_from, &mut query.occur_before)?,
            ("channel" | "kind", _) => return Err(unsupported(&term, "'='")),
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on channel, kind or occur_time"
                ));
            }
        }
    }
    Ok(query)
}

fn complaint_filter(filter: &str) -> Result<ComplaintQuery, String> {
    let mut query = ComplaintQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("home_branch", Op::Eq) => set_once(&mut query.home_branch, &term, term.value.clone())?,
            ("state", Op::Eq) => {
                let state = ComplaintState::parse(&term.value)
                    .ok_or_else(|| format!("state {} is not a complaint state", term.value))?;
                set_once(&mut query.state, &term, state)?
            }
            ("severity", Op::Eq) => {
                let severity = Severity::parse(&term.value)
                    .ok_or_else(|| format!("severity {} is not a severity", term.value))?;
                set_once(&mut query.severity, &term, severity)?
            }
            ("overdue", _) => set_once(&mut query.overdue, &term, parse_bool(&term)?)?,
            ("home_branch" | "state" | "severity", _) => return Err(unsupported(&term, "'='")),
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on home_branch, state, severity or overdue"
                ));
            }
        }
    }
    Ok(query)
}

fn follow_up_filter(filter: &str) -> Result<FollowUpQuery, String> {
    let mut query = FollowUpQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("assignee", Op::Eq) => set_once(&mut query.assignee, &term, term.value.clone())?,
            ("branch", Op::Eq) => set_once(&mut query.branch, &term, term.value.clone())?,
            ("state", Op::Eq) => {
                let state = FollowUpState::parse(&term.value)
                    .ok_or_else(|| format!("state {} is not SCHEDULED or COMPLETED", term.value))?;
                set_once(&mut query.state, &term, state)?
            }
            ("overdue", _) => set_once(&mut query.overdue, &term, parse_bool(&term)?)?,
            ("due_time", _) => time_range(&term, &mut query.due_from, &mut query.due_before)?,
            ("assignee" | "branch" | "state", _) => return Err(unsupported(&term, "'='")),
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on assignee, branch, state, overdue or due_time"
                ));
            }
        }
    }
    Ok(query)
}

/// Cursor text of keyset tokens: fields joined by a separator ids never hold.
fn join_cursor(parts: &[&str]) -> String {
    parts.join("|")
}

fn split_cursor<const N: usize>(cursor: &str) -> Result<[String; N], Error> {
    let invalid = || Error::invalid("page_token", "is not a page token of this list");
    let parts: Vec<String> = cursor.split('|').map(String::from).collect();
    parts.try_into().map_err(|_| invalid())
}

/// The page-token text of a due-time cursor, and back.
fn due_cursor_text(due: DateTime<Utc>, customer: &CustomerId, id: &str) -> String {
    join_cursor(&[&due.timestamp_micros().to_string(), customer.as_str(), id])
}

fn parse_due_cursor(text: &str) -> Result<DueCursor, Error> {
    let [micros, customer, id] = split_cursor::<3>(text)?;
    Ok((time_from_micros(&micros)?, customer, id))
}

fn time_from_micros(text: &str) -> Result<DateTime<Utc>, Error> {
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| Error::invalid("page_token", "is not a page token of this list"))
}

/// Tags the resume tokens of the interaction stream.
const STREAM: &str = "v1";

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchInteractionsResponse, Status>> + Send>>;

/// How an import stream that went silent ends: its completed batches stay
/// committed, and re-sending the stream adds no row twice.
fn idle_stream(idle: std::time::Duration) -> Status {
    super::status::layer_status(
        tonic::Code::DeadlineExceeded,
        crate::error::ErrorReason::StreamIdle,
        &format!(
            "no message for {} s (api.stream_idle_timeout_secs); the batches completed so far are committed",
            idle.as_secs()
        ),
        None,
    )
}

impl InteractionApi {
    /// Appends interactions for customers the caller may write, in one
    /// transaction; a customer out of reach fails the whole call.
    async fn append_all(
        &self,
        conn: &mut sqlx::PgConnection,
        scope: &BranchScope,
        rows: &[(CustomerId, NewInteraction)],
    ) -> Result<Vec<Interaction>, Error> {
        let mut ids: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let reachable = store::lock_customers(conn, &ids, scope.branch()).await?;
        if let Some(missing) = ids.iter().find(|id| !reachable.iter().any(|r| r == *id)) {
            let id = CustomerId::parse(missing).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            return Err(unreachable_customer(conn, &id, scope).await);
        }
        self.metrics.observe_append_batch(rows.len());
        store::append(conn, rows, true)
            .await?
            .into_iter()
            .map(|appended| match appended {
                Appended::New(i) | Appended::Duplicate(i) => Ok(*i),
                Appended::Conflict(existing) => Err(external_ref_conflict(existing)),
                Appended::Skipped => {
                    Err(Error::Internal(anyhow::anyhow!("duplicate not read back")))
                }
            })
            .collect()
    }

    /// Writes one batch of an import: rows of customers out of reach are
    /// rejected, duplicates counted. Returns (accepted, duplicates).
    async fn import_batch(
        &self,
        scope: &BranchScope,
        batch: &mut Vec<(i64, CustomerId, NewInteraction)>,
        rejections: &mut Vec<pb::import_interactions_response::Rejection>,
        rejected: &mut i64,
    ) -> Result<(i64, i64), Error> {
        if batch.is_empty() {
            return Ok((0, 0));
        }
        let mut tx = self.db.begin().await?;
        let mut ids: Vec<&str> = batch.iter().map(|(_, c, _)| c.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let reachable = store::lock_customers(&mut tx, &ids, scope.branch()).await?;
        let mut rows = Vec::with_capacity(batch.len());
        let mut indexes = Vec::with_capacity(batch.len());
        for (index, customer, new) in batch.drain(..) {
            if reachable
                .binary_search_by(|r| r.as_str().cmp(customer.as_str()))
                .is_ok()
            {
                rows.push((customer, new));
                indexes.push(index);
            } else {
                *rejected += 1;
                if rejections.len() < MAX_REPORTED_REJECTIONS {
                    rejections.push(pb::import_interactions_response::Rejection {
                        index,
                        field: "parent".into(),
                        reason: "the customer does not exist or is not reachable by the caller"
                            .into(),
                    });
                }
            }
        }
        let appended = store::append(&mut tx, &rows, false).await?;
        tx.commit().await?;
        self.metrics.observe_append_batch(rows.len());
        let (mut accepted, mut duplicates) = (0, 0);
        for (appended, index) in appended.iter().zip(indexes) {
            match appended {
                Appended::New(_) => accepted += 1,
                Appended::Duplicate(_) | Appended::Skipped => duplicates += 1,
                Appended::Conflict(existing) => {
                    *rejected += 1;
                    if rejections.len() < MAX_REPORTED_REJECTIONS {
                        rejections.push(pb::import_interactions_response::Rejection {
                            index,
                            field: "interaction.external_ref".into(),
                            reason: format!(
                                "EXTERNAL_REF_CONFLICT: {existing} is stored under this external_ref with other content"
                            ),
                        });
                    }
                }
            }
        }
        Ok((accepted, duplicates))
    }
}

#[tonic::async_trait]
impl InteractionService for InteractionApi {
    #[tracing::instrument(skip_all, name = "LogInteraction")]
    async fn log_interaction(
        &self,
        request: Request<pb::LogInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().parent);
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let customer = CustomerId::from_name(&req.parent)
                .inspect_err(|e| violations.add("parent", e.clone()))
                .ok();
            let new = match &req.interaction {
                Some(interaction) => read_interaction(
                    interaction,
                    Some(&req.interaction_id),
                    &caller,
                    &self.sla,
                    &self.sources,
                    "interaction",
                    &mut violations,
                ),
                None => {
                    violations.add("interaction", "is required");
                    read_interaction(
                        &Default::default(),
                        None,
                        &caller,
                        &self.sla,
                        &self.sources,
                        "interaction",
                        &mut Violations::default(),
                    )
                }
            };
            let key = idempotency_key(
                &caller,
                "LogInteraction",
                &req.request_id,
                &pb::LogInteractionRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let customer = violations.into_value(customer)?;
            let rows = [(customer, new)];
            self.db
                .write(
                    key.as_ref(),
                    |i: &pb::Interaction| vec![i.name.clone()],
                    async |tx, names| {
                        Ok(interaction_to(
                            &current_interactions(tx, &names, &scope).await?.remove(0),
                        ))
                    },
                    async |tx| {
                        let mut logged = self.append_all(tx, &scope, &rows).await?;
                        Ok(interaction_to(&logged.remove(0)))
                    },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "BatchLogInteractions")]
    async fn batch_log_interactions(
        &self,
        request: Request<pb::BatchLogInteractionsRequest>,
    ) -> Result<Response<pb::BatchLogInteractionsResponse>, Status> {
        respond(async {
            crate::audit::note_customers(
                &request,
                request.get_ref().requests.iter().map(|r| r.parent.as_str()),
            );
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            if req.requests.is_empty() || req.requests.len() > rules::MAX_BATCH {
                return Err(Error::invalid(
                    "requests",
                    format!("must hold 1 to {} interactions", rules::MAX_BATCH),
                ));
            }
            let mut violations = Violations::default();
            let mut rows = Vec::with_capacity(req.requests.len());
            for (i, one) in req.requests.iter().enumerate() {
                let customer = CustomerId::from_name(&one.parent)
                    .inspect_err(|e| violations.add(format!("requests[{i}].parent"), e.clone()))
                    .ok();
                let prefix = format!("requests[{i}].interaction");
                let new = match &one.interaction {
                    Some(interaction) => read_interaction(
                        interaction,
                        Some(&one.interaction_id),
                        &caller,
                        &self.sla,
                        &self.sources,
                        &prefix,
                        &mut violations,
                    ),
                    None => {
                        violations.add(prefix, "is required");
                        continue;
                    }
                };
                if let Some(customer) = customer {
                    rows.push((customer, new));
                }
            }
            let key = idempotency_key(
                &caller,
                "BatchLogInteractions",
                &req.request_id,
                &pb::BatchLogInteractionsRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let rows = violations.into_result(rows)?;
            self.db
                .write(
                    key.as_ref(),
                    |r: &pb::BatchLogInteractionsResponse| {
                        r.interactions.iter().map(|i| i.name.clone()).collect()
                    },
                    async |tx, names| {
                        let current = current_interactions(tx, &names, &scope).await?;
                        Ok(pb::BatchLogInteractionsResponse {
                            interactions: current.iter().map(interaction_to).collect(),
                        })
                    },
                    async |tx| {
                        let logged = self.append_all(tx, &scope, &rows).await?;
                        Ok(pb::BatchLogInteractionsResponse {
                            interactions: logged.iter().map(interaction_to).collect(),
                        })
                    },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ImportInteractions")]
    async fn import_interactions(
        &self,
        request: Request<Streaming<pb::ImportInteractionsRequest>>,
    ) -> Result<Response<pb::ImportInteractionsResponse>, Status> {
        let audit = crate::audit::note(&request);
        let caller = principal(&request).map_err(Status::from)?;
        if !(caller.has(Role::Service) || caller.has(Role::Admin)) {
            return Err(
                Error::denied("import interactions (calling systems and admins only)").into(),
            );
        }
        let scope = caller.customer_write_scope().map_err(Status::from)?;
        let mut stream = request.into_inner();
        let mut batch: Vec<(i64, CustomerId, NewInteraction)> = Vec::new();
        let mut rejections = Vec::new();
        let (mut accepted, mut duplicates, mut rejected) = (0i64, 0i64, 0i64);
        let mut index = 0i64;
        let idle = self.streams.idle_timeout;
        while let Some(message) = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| idle_stream(idle))??
        {
            if message.rows.len() > MAX_IMPORT_ROWS_PER_MESSAGE {
                return Err(Error::invalid(
                    "rows",
                    format!("a message may carry at most {MAX_IMPORT_ROWS_PER_MESSAGE} rows"),
                )
                .into());
            }
            for row in message.rows {
                audit.customer(&row.parent);
                let mut violations = Violations::default();
                let customer = CustomerId::from_name(&row.parent)
                    .inspect_err(|e| violations.add("parent", e.clone()))
                    .ok();
                let new = match &row.interaction {
                    Some(interaction) => read_interaction(
                        interaction,
                        None,
                        &caller,
                        &self.sla,
                        &self.sources,
                        "interaction",
                        &mut violations,
                    ),
                    None => {
                        violations.add("interaction", "is required");
                        NewInteraction::placeholder()
                    }
                };
                if new.external_ref.is_empty() && row.interaction.is_some() {
                    violations.add(
                        "interaction.external_ref",
                        "is required for imports, so a re-sent stream creates no duplicates",
                    );
                }
                match violations.into_result(customer) {
                    Ok(Some(customer)) => batch.push((index, customer, new)),
                    Ok(None) => return Err(Error::unreported_missing_part().into()),
                    Err(Error::InvalidArgument(found)) => {
                        rejected += 1;
                        if rejections.len() < MAX_REPORTED_REJECTIONS {
                            let first = &found[0];
                            rejections.push(pb::import_interactions_response::Rejection {
                                index,
                                field: first.field.clone(),
                                reason: first.description.clone(),
                            });
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                index += 1;
                if batch.len() >= self.import_batch_size {
                    let (a, d) = self
                        .import_batch(&scope, &mut batch, &mut rejections, &mut rejected)
                        .await?;
                    accepted += a;
                    duplicates += d;
                }
            }
        }
        let (a, d) = self
            .import_batch(&scope, &mut batch, &mut rejections, &mut rejected)
            .await?;
        accepted += a;
        duplicates += d;
        tracing::info!(accepted, duplicates, rejected, "import finished");
        Ok(Response::new(pb::ImportInteractionsResponse {
            accepted_count: accepted,
            duplicate_count: duplicates,
            rejected_count: rejected,
            rejections,
        }))
    }

    #[tracing::instrument(skip_all, name = "GetInteraction")]
    async fn get_interaction(
        &self,
        request: Request<pb::GetInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let name = &request.get_ref().name;
            let (customer, id) = rules::parse_child_name(name, "interactions")
                .map_err(|e| Error::invalid("name", e))?;
            check_acting_for(&caller, customer.as_str())?;
            let mut conn = self.db.acquire().await?;
            readable_customer(&mut conn, &customer, &scope).await?;
            match store::get(&mut conn, &customer, &id, false).await? {
                Some(interaction) => Ok(for_caller(interaction_to(&interaction), &caller)),
                None => Err(Error::not_found(name.clone())),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListInteractions")]
    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().parent);
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let customer = parse_name("parent", &req.parent)?;
            let limit = page_size(req.page_size)?;
            let mut query =
                timeline_filter(&req.filter).map_err(|e| Error::invalid("filter", e))?;
            let context = format!(
                "ListInteractions|{}|{}|{}",
                caller.subject, req.parent, req.filter
            );
            if let Some(cursor) = self.page_tokens.decode(&req.page_token, &context)? {
                let [micros, id] = split_cursor::<2>(&cursor)?;
                query.after = Some((time_from_micros(&micros)?, id));
            }
            check_acting_for(&caller, customer.as_str())?;
            let mut conn = self.db.acquire().await?;
            readable_customer(&mut conn, &customer, &scope).await?;
            let mut page = store::timeline(&mut conn, &customer, &query, limit + 1).await?;
            drop(conn);
            let next_page_token = self.page_tokens.next_sized_page(
                &mut page,
                limit,
                &context,
                |i| interaction_to(i).encoded_len(),
                |last, _| {
                    join_cursor(&[
                        &last.fields.occur_time.timestamp_micros().to_string(),
                        &last.fields.id,
                    ])
                },
            );
            Ok(pb::ListInteractionsResponse {
                interactions: page
                    .iter()
                    .map(|i| for_caller(interaction_to(i), &caller))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "UpdateComplaint")]
    async fn update_complaint(
        &self,
        request: Request<pb::UpdateComplaintRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let target = rules::parse_child_name(&req.name, "interactions")
                .inspect_err(|e| violations.add("name", e.clone()))
                .ok();
            let state = match req.state {
                0 => None,
                value => complaint_state_from(value).or_else(|| {
                    violations.add("state", "must be OPEN, IN_PROGRESS, RESOLVED or CLOSED");
                    None
                }),
            };
            let resolution = rules::text(&req.resolution, rules::MAX_RESOLUTION)
                .inspect_err(|e| violations.add("resolution", e.clone()))
                .unwrap_or_default();
            let due_time = req.due_time.as_ref().and_then(|ts| {
                from_timestamp(ts).or_else(|| {
                    violations.add("due_time", "is not a valid timestamp");
                    None
                })
            });
            let key = idempotency_key(
                &caller,
                "UpdateComplaint",
                &req.request_id,
                &pb::UpdateComplaintRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let (customer, id) = violations.into_value(target)?;
            self.db
                .write(
                    key.as_ref(),
                    |i: &pb::Interaction| vec![i.name.clone()],
                    async |tx, names| {
                        Ok(interaction_to(&current_interactions(tx, &names, &scope).await?.remove(0)))
                    },
                    async |tx| {
                    lock_reachable_customer(tx, &customer, &scope).await?;
                    let current = store::get(tx, &customer, &id, true)
                        .await?
                        .ok_or_else(|| Error::not_found(req.name.clone()))?;
                    if !req.etag.is_empty() && req.etag != current.etag() {
                        return Err(Error::EtagMismatch {
                            resource: req.name.clone(),
                        });
                    }
                    let Some(mut complaint) = current.fields.complaint.clone() else {
                        return Err(Error::FailedPrecondition {
                            reason: ErrorReason::NotAComplaint,
                            message: format!("{} is not a complaint", req.name),
                        });
                    };
                    let next = state.unwrap_or(complaint.state);
                    if !complaint.state.may_become(next) {
                        return Err(Error::FailedPrecondition {
                            reason: ErrorReason::IllegalComplaintTransition,
                            message: format!(
                                "a complaint moves OPEN → IN_PROGRESS → RESOLVED → CLOSED one step at a time; {} cannot become {}",
                                complaint.state.as_str(),
                                next.as_str()
                            ),
                        });
                    }
                    if !resolution.is_empty() {
                        complaint.resolution = resolution.clone();
                    }
                    if let Some(due) = due_time {
                        complaint.due_time = due;
                    }
                    if next == ComplaintState::Resolved && complaint.resolution.is_empty() {
                        return Err(Error::invalid(
                            "resolution",
                            "is required to resolve a complaint",
                        ));
                    }
                    let now = Utc::now();
                    if next != complaint.state {
                        match next {
                            ComplaintState::Resolved => complaint.resolve_time = Some(now),
                            ComplaintState::Closed => complaint.close_time = Some(now),
                            _ => {}
                        }
                    }
                    complaint.state = next;
                    let updated = store::update_complaint(tx, &customer, &id, &complaint).await?;
                    Ok(interaction_to(&updated))
                },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListComplaints")]
    async fn list_complaints(
        &self,
        request: Request<pb::ListComplaintsRequest>,
    ) -> Result<Response<pb::ListComplaintsResponse>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().parent);
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let customer = parse_parent(&req.parent)?;
            let limit = page_size(req.page_size)?;
            let mut query =
                complaint_filter(&req.filter).map_err(|e| Error::invalid("filter", e))?;
            let context = format!(
                "ListComplaints|{}|{}|{}",
                caller.subject, req.parent, req.filter
            );
            if let Some(cursor) = self.page_tokens.decode(&req.page_token, &context)? {
                query.after = Some(parse_due_cursor(&cursor)?);
            }
            if let Some(customer) = &customer {
                readable_customer(&mut *self.db.acquire().await?, customer, &scope).await?;
            }
            query.customer = customer;
            let mut page = self
                .db
                .list_complaints(scope.branch(), &query, limit + 1)
                .await?;
            let next_page_token = self.page_tokens.next_sized_page(
                &mut page,
                limit,
                &context,
                |i| interaction_to(i).encoded_len(),
                |last, _| {
                    let due = last
                        .fields
                        .complaint
                        .as_ref()
                        .map(|c| c.due_time)
                        .unwrap_or_default();
                    due_cursor_text(due, &last.customer, &last.fields.id)
                },
            );
            crate::audit::note_customers(&request, page.iter().map(|c| c.customer.as_str()));
            Ok(pb::ListComplaintsResponse {
                interactions: page.iter().map(interaction_to).collect(),
                next_page_token,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ScheduleFollowUp")]
    async fn schedule_follow_up(
        &self,
        request: Request<pb::ScheduleFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().parent);
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let customer = CustomerId::from_name(&req.parent)
                .inspect_err(|e| violations.add("parent", e.clone()))
                .ok();
            let input = req.follow_up.clone().unwrap_or_default();
            if req.follow_up.is_none() {
                violations.add("follow_up", "is required");
            }
            let assignee = org_code(&input.assignee, true)
                .inspect_err(|e| violations.add("follow_up.assignee", e.clone()))
                .unwrap_or_default();
            let branch = org_code(&input.branch, false)
                .inspect_err(|e| violations.add("follow_up.branch", e.clone()))
                .unwrap_or_default();
            let due_time = match input.due_time.as_ref().map(from_timestamp) {
                Some(Some(t)) => t,
                Some(None) => {
                    violations.add("follow_up.due_time", "is not a valid timestamp");
                    Utc::now()
                }
                None => {
                    violations.add("follow_up.due_time", "is required");
                    Utc::now()
                }
            };
            let purpose = rules::text(&input.purpose, rules::MAX_PURPOSE)
                .inspect_err(|e| violations.add("follow_up.purpose", e.clone()))
                .unwrap_or_default();
            let channel = match input.channel {
                0 => None,
                value => channel_from(value).or_else(|| {
                    violations.add("follow_up.channel", "is not a channel");
                    None
                }),
            };
            if !input.source_interaction.is_empty()
                && rules::parse_child_name(&input.source_interaction, "interactions").is_err()
            {
                violations.add(
                    "follow_up.source_interaction",
                    "must be customers/{customer}/interactions/{interaction}",
                );
            }
            let id = if req.follow_up_id.is_empty() {
                uuid::Uuid::now_v7().to_string()
            } else {
                CustomerId::parse(&req.follow_up_id)
                    .map(|id| id.as_str().to_string())
                    .inspect_err(|e| violations.add("follow_up_id", e.clone()))
                    .unwrap_or_default()
            };
            let key = idempotency_key(
                &caller,
                "ScheduleFollowUp",
                &req.request_id,
                &pb::ScheduleFollowUpRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let customer = violations.into_value(customer)?;
            self.db
                .write(
                    key.as_ref(),
                    |f: &pb::FollowUp| vec![f.name.clone()],
                    async |tx, names| {
                        Ok(follow_up_to(
                            &current_follow_up(tx, &names[0], &scope).await?,
                        ))
                    },
                    async |tx| {
                        let owner = lock_reachable_customer(tx, &customer, &scope).await?;
                        let now = Utc::now();
                        let task = FollowUp {
                            customer: customer.clone(),
                            id,
                            assignee,
                            branch: if branch.is_empty() {
                                owner.profile.home_branch.clone()
                            } else {
                                branch
                            },
                            due_time,
                            state: FollowUpState::Scheduled,
                            purpose,
                            channel,
                            source_interaction: input.source_interaction.clone(),
                            completion_interaction: String::new(),
                            complete_time: None,
                            cancel_reason: String::new(),
                            cancel_time: None,
                            created_by: caller.subject.clone(),
                            version: 1,
                            create_time: now,
                            update_time: now,
                        };
                        Ok(follow_up_to(&store::insert_follow_up(tx, &task).await?))
                    },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "CompleteFollowUp")]
    async fn complete_follow_up(
        &self,
        request: Request<pb::CompleteFollowUpRequest>,
    ) -> Result<Response<pb::CompleteFollowUpResponse>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let target = rules::parse_child_name(&req.name, "followUps")
                .inspect_err(|e| violations.add("name", e.clone()))
                .ok();
            let mut input = req.interaction.clone().unwrap_or_default();
            if req.interaction.is_none() {
                violations.add("interaction", "is required");
            }
            match (input.kind, kind_from(input.kind)) {
                (0, _) | (_, Some(Kind::FollowUp)) => {
                    input.kind = pb::interaction::Kind::FollowUp as i32
                }
                _ => violations.add("interaction.kind", "must be FOLLOW_UP or unset"),
            }
            let new = read_interaction(
                &input,
                None,
                &caller,
                &self.sla,
                &self.sources,
                "interaction",
                &mut violations,
            );
            let key = idempotency_key(
                &caller,
                "CompleteFollowUp",
                &req.request_id,
                &pb::CompleteFollowUpRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let (customer, id) = violations.into_value(target)?;
            self.db
                .write(
                    key.as_ref(),
                    |r: &pb::CompleteFollowUpResponse| {
                        let follow_up = r.follow_up.as_ref().map(|f| f.name.clone());
                        let interaction = r.interaction.as_ref().map(|i| i.name.clone());
                        follow_up.into_iter().chain(interaction).collect()
                    },
                    async |tx, names| {
                        let task = current_follow_up(tx, &names[0], &scope).await?;
                        let logged = current_interactions(tx, &names[1..], &scope).await?;
                        Ok(pb::CompleteFollowUpResponse {
                            follow_up: Some(follow_up_to(&task)),
                            interaction: logged.first().map(interaction_to),
                        })
                    },
                    async |tx| {
                        let rows = [(customer.clone(), new)];
                        lock_reachable_customer(tx, &customer, &scope).await?;
                        follow_ups::scheduled_follow_up(tx, &customer, &id, &req.name, &req.etag)
                            .await?;
                        let logged = self.append_all(tx, &scope, &rows).await?.remove(0);
                        let task =
                            store::complete_follow_up(tx, &customer, &id, &logged.name()).await?;
                        Ok(pb::CompleteFollowUpResponse {
                            follow_up: Some(follow_up_to(&task)),
                            interaction: Some(interaction_to(&logged)),
                        })
                    },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListFollowUps")]
    async fn list_follow_ups(
        &self,
        request: Request<pb::ListFollowUpsRequest>,
    ) -> Result<Response<pb::ListFollowUpsResponse>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().parent);
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let customer = parse_parent(&req.parent)?;
            let limit = page_size(req.page_size)?;
            let mut query =
                follow_up_filter(&req.filter).map_err(|e| Error::invalid("filter", e))?;
            let context = format!(
                "ListFollowUps|{}|{}|{}",
                caller.subject, req.parent, req.filter
            );
            if let Some(cursor) = self.page_tokens.decode(&req.page_token, &context)? {
                query.after = Some(parse_due_cursor(&cursor)?);
            }
            if let Some(customer) = &customer {
                readable_customer(&mut *self.db.acquire().await?, customer, &scope).await?;
            }
            query.customer = customer;
            let mut page = self
                .db
                .list_follow_ups(scope.branch(), &query, limit + 1)
                .await?;
            let next_page_token = self
                .page_tokens
                .next_page(&mut page, limit, &context, |last| {
                    due_cursor_text(last.due_time, &last.customer, &last.id)
                });
            crate::audit::note_customers(&request, page.iter().map(|f| f.customer.as_str()));
            Ok(pb::ListFollowUpsResponse {
                follow_ups: page.iter().map(follow_up_to).collect(),
                next_page_token,
            })
        })
        .await
    }

    type WatchInteractionsStream = WatchStream;

    #[tracing::instrument(skip_all, name = "GetFollowUp")]
    async fn get_follow_up(
        &self,
        request: Request<pb::GetFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::get(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ReassignFollowUp")]
    async fn reassign_follow_up(
        &self,
        request: Request<pb::ReassignFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::reassign(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CancelFollowUp")]
    async fn cancel_follow_up(
        &self,
        request: Request<pb::CancelFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::cancel(self, request).await
    }

    #[tracing::instrument(skip_all, name = "WatchInteractions")]
    async fn watch_interactions(
        &self,
        request: Request<pb::WatchInteractionsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let subscription = async {
            crate::audit::note_customer(&request, &request.get_ref().customer);
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let filter = match (req.customer.is_empty(), req.branch.is_empty()) {
                (false, true) => {
                    let customer = parse_name("customer", &req.customer)?;
                    readable_customer(&mut *self.db.acquire().await?, &customer, &scope).await?;
                    WatchFilter::Customer(customer)
                }
                (true, false) => {
                    let branch =
                        org_code(&req.branch, true).map_err(|e| Error::invalid("branch", e))?;
                    if !scope.admits(&branch) {
                        return Err(Error::denied(format!("watch branch {branch}")));
                    }
                    WatchFilter::Branch(branch)
                }
                _ => {
                    return Err(Error::invalid(
                        "customer",
                        "set exactly one of customer or branch",
                    ));
                }
            };
            // Subscribe before reading the start point, so nothing committed
            // in between is lost.
            let live = self.feed.subscribe();
            let start = if req.resume_token.is_empty() {
                self.db.feed_start().await?
            } else {
                parse_resume_token(STREAM, &req.resume_token)?
            };
            Ok((filter, scope, live, start, !req.resume_token.is_empty()))
        };
        let (filter, scope, live, start, catch_up) = subscription.await.map_err(Status::from)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(deliver(
            self.db.clone(),
            Watcher {
                filter,
                scope,
                last: start,
                last_sent: Instant::now(),
            },
            live,
            catch_up,
            tx,
            self.streams.clone(),
        ));
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as WatchStream
        ))
    }
}

impl NewInteraction {
    /// Stands in for a row whose interaction is missing; never written.
    fn placeholder() -> NewInteraction {
        NewInteraction {
            id: String::new(),
            channel: Channel::Branch,
            kind: Kind::Inquiry,
            occur_time: Utc::now(),
            recorded_by: RecordedBy::default(),
            summary: String::new(),
            notes: String::new(),
            products: Vec::new(),
            amount: None,
            campaign: String::new(),
            outcome: String::new(),
            sentiment: None,
            satisfaction: None,
            nps: None,
            source_system: String::new(),
            external_ref: String::new(),
            complaint: None,
            occur_time_stated: false,
        }
    }
}

enum WatchFilter {
    Customer(CustomerId),
    Branch(String),
}

struct Watcher {
    filter: WatchFilter,
    scope: BranchScope,
    last: FeedCursor,
    /// When the stream last carried a message, for heartbeats.
    last_sent: Instant,
}

impl Watcher {
    /// Whether the item belongs to this stream and the caller may read it
    /// now (the customer may have moved branch since the stream began).
    fn wants(&self, item: &FeedItem) -> bool {
        item.cursor > self.last
            && self.scope.admits(&item.home_branch)
            && match &self.filter {
                WatchFilter::Customer(c) => item.interaction.customer == *c,
                WatchFilter::Branch(b) => item.home_branch == *b,
            }
    }

    async fn send(
        &mut self,
        item: &FeedItem,
        tx: &mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    ) -> bool {
        if !self.wants(item) {
            return true;
        }
        self.last = item.cursor;
        self.last_sent = Instant::now();
        tx.send(Ok(pb::WatchInteractionsResponse {
            interaction: Some(interaction_to(&item.interaction)),
            resume_token: resume_token(STREAM, item.cursor),
            heartbeat: false,
        }))
        .await
        .is_ok()
    }

    /// A heartbeat with the current position, when nothing was sent for
    /// `quiet`; false when the client has gone.
    async fn beat(
        &mut self,
        quiet: std::time::Duration,
        tx: &mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    ) -> bool {
        if self.last_sent.elapsed() < quiet {
            return true;
        }
        self.last_sent = Instant::now();
        tx.send(Ok(pb::WatchInteractionsResponse {
            interaction: None,
            resume_token: resume_token(STREAM, self.last),
            heartbeat: true,
        }))
        .await
        .is_ok()
    }

    /// Reads what the stream missed from Postgres, up to the commit horizon.
    async fn catch_up(
        &mut self,
        db: &Db,
        tx: &mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    ) -> Result<bool, Error> {
        loop {
            let (customer, branch) = match &self.filter {
                WatchFilter::Customer(c) => (Some(c), None),
                WatchFilter::Branch(b) => (None, Some(b.as_str())),
            };
            let items = db
                .feed_after(self.last, customer, branch, FEED_PAGE)
                .await?;
            let full = items.len() as i64 == FEED_PAGE;
            for item in &items {
                if !self.send(item, tx).await {
                    return Ok(false);
                }
                self.last = self.last.max(item.cursor);
            }
            if !full {
                return Ok(true);
            }
        }
    }
}

/// Feeds one watcher: first what it missed (when resuming), then the live
/// feed; a watcher that falls behind the in-memory feed catches up from
/// Postgres, so it never misses a row. A quiet stream gets heartbeats. Ends
/// when the client goes away, or with UNAVAILABLE when the server drains.
async fn deliver(
    db: Db,
    mut watcher: Watcher,
    mut live: broadcast::Receiver<Arc<FeedItem>>,
    catch_up: bool,
    tx: mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    streams: Streams,
) {
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + streams.heartbeat,
        streams.heartbeat,
    );
    let fail = |e: Error| Err(Status::from(e));
    if catch_up {
        match watcher.catch_up(&db, &tx).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.send(fail(e)).await;
                return;
            }
        }
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(item) => {
                    if !watcher.send(&item, &tx).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match watcher.catch_up(&db, &tx).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            let _ = tx.send(fail(e)).await;
                            return;
                        }
                    }
                }
                // The feed closes only when the server drains.
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(Err(draining_status())).await;
                    return;
                }
            },
            _ = heartbeat.tick() => {
                if !watcher.beat(streams.heartbeat, &tx).await {
                    return;
                }
            }
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
    fn resume_tokens_round_trip_and_refuse_garbage() {
        assert_eq!(
            parse_resume_token(STREAM, &resume_token(STREAM, (42, 7))).unwrap(),
            (42, 7)
        );
        assert!(parse_resume_token(STREAM, "v1:1:2").is_err());
        assert!(parse_resume_token(STREAM, "").is_err());
    }

    #[test]
    fn timeline_filters_parse_time_ranges() {
        let q = timeline_filter(
            r#"channel = MOBILE_APP AND kind = COMPLAINT AND occur_time >= "2026-01-01T00:00:00Z" AND occur_time < "2026-02-01T00:00:00Z""#,
        )
        .unwrap();
        assert_eq!(q.channel, Some(Channel::MobileApp));
        assert_eq!(q.kind, Some(Kind::Complaint));
        assert!(q.occur_from.is_some() && q.occur_before.is_some());
        assert!(timeline_filter("occur_time = \"2026-01-01T00:00:00Z\"").is_err());
        assert!(timeline_filter("occur_time > yesterday").is_err());
        assert!(timeline_filter("amount > 5").is_err());
        assert!(complaint_filter("overdue = true AND state = OPEN").is_ok());
        assert!(complaint_filter("overdue = maybe").is_err());
        assert!(
            follow_up_filter(r#"assignee = "E1" AND due_time < "2026-01-01T00:00:00Z""#).is_ok()
        );
    }
}
