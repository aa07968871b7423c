//! Service requests: the explicit state methods of their life cycle, Get and
//! the list.

use super::*;
use crate::{
    domain::service::{MAX_CANCEL_REASON, MAX_FEEDBACK, MAX_NEED, MAX_SOLUTION, StateChange},
    store::service_requests::{self as requests, ServiceRequestQuery},
};

/// The explicit state methods of a service request (AIP-136).
type Transition = lifecycle::Transition<ServiceRequestState>;

const fn step(
    method: &'static str,
    from: &'static [ServiceRequestState],
    event_type: &'static str,
) -> Transition {
    Transition {
        method,
        from,
        event_type,
        reason: ErrorReason::ServiceRequestState,
        noun: "service request",
    }
}

use ServiceRequestState as S;
const CONFIRM: Transition = step(
    "ConfirmServiceRequest",
    &[S::Received],
    "service_request.confirmed",
);
const PROPOSE: Transition = step(
    "ProposeServiceRequestSolution",
    &[S::Confirmed],
    "service_request.solution_proposed",
);
const START: Transition = step(
    "StartServiceRequest",
    &[S::SolutionProposed],
    "service_request.started",
);
const RESOLVE: Transition = step(
    "ResolveServiceRequest",
    &[S::InProgress],
    "service_request.resolved",
);
const CHECK: Transition = step(
    "CheckServiceRequestSatisfaction",
    &[S::Resolved],
    "service_request.satisfaction_checked",
);
const CANCEL: Transition = step(
    "CancelServiceRequest",
    ServiceRequestState::OPEN,
    "service_request.cancelled",
);

/// The service request a state method names, with the etag the caller last
/// saw.
struct RequestTarget {
    customer: CustomerId,
    id: String,
    name: String,
    etag: String,
}

impl RequestTarget {
    fn read(name: &str, etag: &str, violations: &mut Violations) -> Option<RequestTarget> {
        let (customer, id) = rules::parse_child_name(name, "serviceRequests")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok()?;
        Some(RequestTarget {
            customer,
            id,
            name: name.to_string(),
            etag: etag.to_string(),
        })
    }
}

/// A service request by name as it is now, of a customer the caller may
/// still reach in `scope`: what an idempotent replay returns.
async fn current_request(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: &BranchScope,
) -> Result<ServiceRequest, Error> {
    let (customer, id) = rules::parse_child_name(name, "serviceRequests")
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
    readable_customer(tx, &customer, scope).await?;
    requests::get(tx, &customer, &id, false)
        .await?
        .ok_or_else(|| Error::not_found(name.to_string()))
}

impl InteractionApi {
    /// Runs a state method on a service request of a customer the caller
    /// may write: locks it, checks the etag and that its state is one the
    /// method takes, applies `change` (given the time), and records the
    /// change with who made it and when, in one transaction, idempotent on
    /// the request's key.
    async fn step_request(
        &self,
        caller: &Principal,
        key: Option<&IdempotencyKey>,
        target: &RequestTarget,
        transition: Transition,
        change: impl FnOnce(&mut ServiceRequest, DateTime<Utc>),
    ) -> Result<pb::ServiceRequest, Error> {
        let scope = caller.customer_write_scope()?;
        self.db
            .write(
                key,
                |r: &pb::ServiceRequest| vec![r.name.clone()],
                async |tx, names| {
                    Ok(request_to(
                        &current_request(tx, &names[0], &scope).await?,
                        Utc::now(),
                    ))
                },
                async |tx| {
                    lock_reachable_customer(tx, &target.customer, &scope).await?;
                    let mut request = requests::get(tx, &target.customer, &target.id, true)
                        .await?
                        .ok_or_else(|| Error::not_found(target.name.clone()))?;
                    if !target.etag.is_empty() && target.etag != request.etag() {
                        return Err(Error::EtagMismatch {
                            resource: target.name.clone(),
                        });
                    }
                    let from = request.state;
                    transition.admit(&target.name, from)?;
                    let now = Utc::now();
                    change(&mut request, now);
                    let stored = requests::change(
                        tx,
                        &request,
                        from,
                        transition.event_type,
                        &caller.subject,
                        now,
                    )
                    .await?;
                    Ok(request_to(&stored, now))
                },
            )
            .await
    }
}

/// The parts every state method reads first: the caller (who must be able
/// to write customers), the target and the idempotency key.
macro_rules! state_method {
    ($api:ident, $request:ident, |$req:ident, $violations:ident| $read:block,
     $transition:expr, $change:expr) => {
        respond(async {
            crate::audit::note_customer(&$request, &$request.get_ref().name);
            let caller = principal(&$request)?;
            caller.customer_write_scope()?;
            let $req = $request.into_inner();
            let mut $violations = Violations::default();
            let target = RequestTarget::read(&$req.name, &$req.etag, &mut $violations);
            let read = $read;
            let key = request_key(&caller, &$req)?;
            let target = $violations.into_value(target)?;
            let change = ($change)(read, &caller);
            $api.step_request(&caller, key.as_ref(), &target, $transition, change)
                .await
        })
        .await
    };
}

pub(super) async fn confirm(
    api: &InteractionApi,
    request: Request<pb::ConfirmServiceRequestRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    state_method!(
        api,
        request,
        |req, violations| {
            let need = required_text(&req.need, MAX_NEED, "need", &mut violations);
            let assignee = org_code(&req.assignee, false)
                .inspect_err(|e| violations.add("assignee", e.clone()))
                .unwrap_or_default();
            (need, assignee)
        },
        CONFIRM,
        |(need, assignee): (String, String), caller: &Principal| {
            let subject = caller.subject.clone();
            move |r: &mut ServiceRequest, now: DateTime<Utc>| {
                r.state = S::Confirmed;
                r.need = need;
                r.first_response_time = Some(now);
                if !assignee.is_empty() {
                    r.assignee = assignee;
                } else if r.assignee.is_empty() {
                    r.assignee = subject;
                }
            }
        }
    )
}

pub(super) async fn propose(
    api: &InteractionApi,
    request: Request<pb::ProposeServiceRequestSolutionRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    state_method!(
        api,
        request,
        |req, violations| {
            required_text(&req.solution, MAX_SOLUTION, "solution", &mut violations)
        },
        PROPOSE,
        |solution: String, _: &Principal| move |r: &mut ServiceRequest, _: DateTime<Utc>| {
            r.state = S::SolutionProposed;
            r.solution = solution;
        }
    )
}

pub(super) async fn start(
    api: &InteractionApi,
    request: Request<pb::StartServiceRequestRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    state_method!(
        api,
        request,
        |req, violations| {},
        START,
        |(), _: &Principal| |r: &mut ServiceRequest, _: DateTime<Utc>| r.state = S::InProgress
    )
}

pub(super) async fn resolve(
    api: &InteractionApi,
    request: Request<pb::ResolveServiceRequestRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    state_method!(
        api,
        request,
        |req, violations| {
            required_text(
                &req.resolution,
                rules::MAX_RESOLUTION,
                "resolution",
                &mut violations,
            )
        },
        RESOLVE,
        |resolution: String, _: &Principal| move |r: &mut ServiceRequest, now: DateTime<Utc>| {
            r.state = S::Resolved;
            r.resolution = resolution;
            r.resolve_time = Some(now);
        }
    )
}

pub(super) async fn check_satisfaction(
    api: &InteractionApi,
    request: Request<pb::CheckServiceRequestSatisfactionRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    state_method!(
        api,
        request,
        |req, violations| {
            if !(1..=5).contains(&req.satisfaction) {
                violations.add("satisfaction", "is required: a CSAT from 1 to 5");
            }
            let feedback = rules::text(req.feedback.trim(), MAX_FEEDBACK)
                .inspect_err(|e| violations.add("feedback", e.clone()))
                .unwrap_or_default();
            (req.satisfaction.clamp(1, 5) as i16, feedback)
        },
        CHECK,
        |(satisfaction, feedback): (i16, String), _: &Principal| {
            move |r: &mut ServiceRequest, now: DateTime<Utc>| {
                r.state = S::SatisfactionChecked;
                r.satisfaction = Some(satisfaction);
                r.feedback = feedback;
                r.satisfaction_check_time = Some(now);
            }
        }
    )
}

pub(super) async fn cancel(
    api: &InteractionApi,
    request: Request<pb::CancelServiceRequestRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    state_method!(
        api,
        request,
        |req, violations| {
            required_text(&req.reason, MAX_CANCEL_REASON, "reason", &mut violations)
        },
        CANCEL,
        |reason: String, _: &Principal| move |r: &mut ServiceRequest, now: DateTime<Utc>| {
            r.state = S::Cancelled;
            r.cancel_reason = reason;
            r.cancel_time = Some(now);
        }
    )
}

pub(super) async fn get(
    api: &InteractionApi,
    request: Request<pb::GetServiceRequestRequest>,
) -> Result<Response<pb::ServiceRequest>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let name = &request.get_ref().name;
        let (customer, id) = rules::parse_child_name(name, "serviceRequests")
            .map_err(|e| Error::invalid("name", e))?;
        check_acting_for(&caller, customer.as_str())?;
        let mut conn = api.db.acquire().await?;
        readable_customer(&mut conn, &customer, &scope).await?;
        let found = requests::get(&mut conn, &customer, &id, false)
            .await?
            .ok_or_else(|| Error::not_found(name.clone()))?;
        Ok(request_for(request_to(&found, Utc::now()), &caller))
    })
    .await
}

pub(super) async fn list(
    api: &InteractionApi,
    request: Request<pb::ListServiceRequestsRequest>,
) -> Result<Response<pb::ListServiceRequestsResponse>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().parent);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let customer = parse_parent(&req.parent)?;
        if let Some(customer) = &customer {
            check_acting_for(&caller, customer.as_str())?;
        } else if acting_for(&caller).is_some() {
            return Err(Error::denied(
                "list the service requests of every customer while acting for one",
            ));
        }
        let limit = page_size(req.page_size)?;
        let (mut query, order, after, pages) = worklist(
            &api.page_tokens,
            "ListServiceRequests",
            &caller.subject,
            &req.parent,
            &req.filter,
            &req.order_by,
            &req.page_token,
            request_filter,
        )?;
        query.order = order;
        query.after = after;
        let mut conn = api.db.acquire_read().await?;
        if let Some(customer) = &customer {
            readable_customer(&mut conn, customer, &scope).await?;
        }
        query.customer = customer;
        let mut page = requests::list(&mut conn, scope.branch(), &query, limit + 1).await?;
        drop(conn);
        let now = Utc::now();
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |r| request_to(r, now).encoded_len(),
            |last| {
                due_keys(
                    last.resolution_due_time,
                    last.update_time,
                    &last.customer,
                    &last.id,
                )
            },
        );
        crate::audit::note_customers(&request, page.iter().map(|r| r.customer.as_str()));
        Ok(pb::ListServiceRequestsResponse {
            service_requests: page
                .iter()
                .map(|r| request_for(request_to(r, now), &caller))
                .collect(),
            next_page_token,
        })
    })
    .await
}

/// The filter of ListServiceRequests.
pub(super) fn request_filter(filter: &str) -> Result<ServiceRequestQuery, String> {
    let mut query = ServiceRequestQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("home_branch", Op::Eq) => set_once(&mut query.home_branch, &term, term.value.clone())?,
            ("assignee", Op::Eq) => set_once(&mut query.assignee, &term, term.value.clone())?,
            ("state", Op::Eq) => {
                let state = ServiceRequestState::parse(&term.value).ok_or_else(|| {
                    format!("state {} is not a service request state", term.value)
                })?;
                set_once(&mut query.state, &term, state)?
            }
            ("priority", Op::Eq) => {
                let priority = Priority::parse(&term.value)
                    .ok_or_else(|| format!("priority {} is not a priority", term.value))?;
                set_once(&mut query.priority, &term, priority)?
            }
            ("overdue", _) => set_once(&mut query.overdue, &term, parse_bool(&term)?)?,
            ("update_time", _) => {
                time_range(&term, &mut query.updated_from, &mut query.updated_before)?
            }
            ("home_branch" | "assignee" | "state" | "priority", _) => {
                return Err(unsupported(&term, "'='"));
            }
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on home_branch, assignee, state, priority, overdue or update_time"
                ));
            }
        }
    }
    Ok(query)
}

/// The priority a request opens with: MEDIUM when unset, None when the
/// value is no priority.
pub(super) fn priority_from(value: i32) -> Option<Priority> {
    use pb::service_request::Priority as P;
    match P::try_from(value).ok()? {
        P::Unspecified => Some(Priority::Medium),
        known => Priority::parse(known.as_str_name()),
    }
}

fn state_to(state: ServiceRequestState) -> i32 {
    pb::service_request::State::from_str_name(state.as_str()).unwrap_or_default() as i32
}

fn change_to(change: &StateChange) -> pb::service_request::StateChange {
    pb::service_request::StateChange {
        from_state: change.from.map(state_to).unwrap_or_default(),
        to_state: state_to(change.to),
        actor: change.actor.clone(),
        change_time: Some(timestamp(change.time)),
    }
}

pub fn request_to(r: &ServiceRequest, now: DateTime<Utc>) -> pb::ServiceRequest {
    let time = |t: Option<DateTime<Utc>>| t.map(timestamp);
    pb::ServiceRequest {
        name: r.name(),
        interaction: rules::interaction_name(&r.customer, &r.id),
        state: state_to(r.state),
        priority: pb::service_request::Priority::from_str_name(r.priority.as_str())
            .unwrap_or_default() as i32,
        key_customer: r.key_customer,
        assignee: r.assignee.clone(),
        channel: Channel::parse(&r.channel)
            .map(channel_to)
            .unwrap_or_default() as i32,
        receive_time: Some(timestamp(r.receive_time)),
        response_due_time: Some(timestamp(r.response_due_time)),
        resolution_due_time: Some(timestamp(r.resolution_due_time)),
        first_response_time: time(r.first_response_time),
        resolve_time: time(r.resolve_time),
        satisfaction_check_time: time(r.satisfaction_check_time),
        cancel_time: time(r.cancel_time),
        need: r.need.clone(),
        solution: r.solution.clone(),
        resolution: r.resolution.clone(),
        satisfaction: r.satisfaction.map(i32::from),
        feedback: r.feedback.clone(),
        cancel_reason: r.cancel_reason.clone(),
        response_overdue: r.response_overdue(now),
        resolution_overdue: r.resolution_overdue(now),
        history: r.history.iter().map(change_to).collect(),
        etag: r.etag(),
        create_time: Some(timestamp(r.create_time)),
        update_time: Some(timestamp(r.update_time)),
    }
}

/// A request as the caller may see it: a system acting for the end
/// customer gets no staff identities (assignee, who made each change).
fn request_for(request: pb::ServiceRequest, caller: &Principal) -> pb::ServiceRequest {
    if acting_for(caller).is_none() {
        return request;
    }
    pb::ServiceRequest {
        assignee: String::new(),
        history: request
            .history
            .into_iter()
            .map(|c| pb::service_request::StateChange {
                actor: String::new(),
                ..c
            })
            .collect(),
        ..request
    }
}
