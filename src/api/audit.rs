//! `AuditService`: reading the access audit and verifying its hash chain,
//! for compliance and admin callers (DESIGN §3).

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::{
    page_token::{PageTokens, page_size},
    principal, respond, timestamp,
};
use crate::{
    domain::{
        audit::{AccessEventFilter, Action, GENESIS, Link, Pseudonyms, check_link, hex},
        principal::Principal,
    },
    error::{Error, ErrorReason},
    pb::v1::{self as pb, audit_service_server::AuditService},
    store::{Db, audit::StoredEvent},
};

/// Events read per query while verifying.
const VERIFY_CHUNK: i64 = 1000;

pub struct AuditApi {
    db: Db,
    page_tokens: PageTokens,
    /// `None` when auditing is off and no key is configured: events can
    /// still be listed and verified, not found by customer.
    pseudonyms: Option<Pseudonyms>,
}

impl AuditApi {
    pub fn new(db: Db, page_tokens: PageTokens, pseudonyms: Option<Pseudonyms>) -> Self {
        AuditApi {
            db,
            page_tokens,
            pseudonyms,
        }
    }
}

fn auditor(caller: &Principal) -> Result<(), Error> {
    if caller.reads_audit() {
        Ok(())
    } else {
        Err(Error::denied(
            "read the access audit (compliance and admin only)",
        ))
    }
}

fn event_to_proto(stored: &StoredEvent) -> pb::AccessEvent {
    let e = &stored.event;
    #[allow(deprecated)]
    pb::AccessEvent {
        sequence: e.sequence,
        principal: e.principal.clone(),
        roles: e.roles.clone(),
        method: e.method.clone(),
        action: match e.action {
            Action::Read => pb::access_event::Action::Read,
            Action::Write => pb::access_event::Action::Write,
        } as i32,
        customers: Vec::new(),
        purpose: e.purpose.clone(),
        trace_id: e.trace_id.clone(),
        event_time: Some(timestamp(e.event_time())),
        hash: hex(&stored.hash),
        outcome: e.outcome.clone(),
        calling_system: e.calling_system.clone(),
        on_behalf_of: e.on_behalf_of.clone(),
        customer_pseudonyms: e.customers.clone(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    #[tracing::instrument(skip_all, name = "ListAccessEvents")]
    async fn list_access_events(
        &self,
        request: Request<pb::ListAccessEventsRequest>,
    ) -> Result<Response<pb::ListAccessEventsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            auditor(&caller)?;
            let req = request.get_ref();
            let limit = page_size(req.page_size)?;
            let filter =
                AccessEventFilter::parse(&req.filter).map_err(|e| Error::invalid("filter", e))?;
            let customer_pseudonyms: Vec<String> = match (&self.pseudonyms, &filter.customers) {
                (_, ids) if ids.is_empty() => Vec::new(),
                (Some(p), ids) => ids.iter().map(|id| p.of(id)).collect(),
                (None, _) => {
                    return Err(Error::FailedPrecondition {
                        reason: ErrorReason::NoPseudonymKey,
                        message: "events cannot be found by customer: no audit.pseudonym_key \
                                  is configured"
                            .into(),
                    });
                }
            };
            let context = format!("ListAccessEvents|{}|{}", caller.subject, req.filter);
            let before = match self.page_tokens.decode(&req.page_token, &context)? {
                None => None,
                Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this query")
                })?),
            };
            let mut page = self
                .db
                .list_access_events(&filter, &customer_pseudonyms, before, limit + 1)
                .await?;
            let next_page_token = self
                .page_tokens
                .next_page(&mut page, limit, &context, |last| {
                    last.event.sequence.to_string()
                });
            Ok(pb::ListAccessEventsResponse {
                access_events: page.iter().map(event_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "VerifyAuditChain")]
    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            auditor(&caller)?;
            let req = request.get_ref();
            if req.start_sequence < 0 {
                return Err(Error::invalid("start_sequence", "must not be negative"));
            }
            if req.end_sequence < 0 {
                return Err(Error::invalid("end_sequence", "must not be negative"));
            }
            if req.end_sequence != 0 && req.end_sequence < req.start_sequence {
                return Err(Error::invalid(
                    "end_sequence",
                    "must not be below start_sequence",
                ));
            }
            // Events appended while this runs are not part of the check.
            let head = self.db.access_event_head().await?;
            let through = if req.end_sequence == 0 {
                head
            } else {
                req.end_sequence.min(head)
            };
            let start = req.start_sequence.max(1);
            let mut previous = GENESIS;
            let mut anchor_missing = false;
            if start > 1 {
                match self.db.access_event_hash(start - 1).await? {
                    Some(hash) => previous = hash.try_into().unwrap_or(GENESIS),
                    None => anchor_missing = true,
                }
            }
            let mut expected = start;
            let mut checked = 0i64;
            let mut head_hash = String::new();
            let mut broken = None;
            let mut after = start - 1;
            'chunks: while after < through {
                let chunk = self
                    .db
                    .access_event_range(after, through, VERIFY_CHUNK)
                    .await?;
                let Some(last) = chunk.last() else { break };
                after = last.event.sequence;
                for stored in chunk {
                    checked += 1;
                    let link = if anchor_missing {
                        // The event before the range is gone: what follows
                        // cannot be linked to anything.
                        Link::Gap
                    } else {
                        check_link(&stored.event, &stored.hash, expected, &previous)
                    };
                    if link != Link::Intact {
                        broken = Some(stored);
                        break 'chunks;
                    }
                    previous = stored.hash.as_slice().try_into().unwrap_or(GENESIS);
                    head_hash = hex(&stored.hash);
                    expected += 1;
                }
            }
            Ok(pb::VerifyAuditChainResponse {
                ok: broken.is_none(),
                events_checked: checked,
                first_broken_event: broken.as_ref().map(event_to_proto),
                head_hash,
                verify_time: Some(timestamp(Utc::now())),
            })
        })
        .await
    }
}
