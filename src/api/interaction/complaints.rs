//! Complaints: their life cycle and the complaint list.

use super::*;
use crate::domain::report::{Report, ReportScope, report_name};

pub(super) async fn update_complaint(
    api: &InteractionApi,
    request: Request<pb::UpdateComplaintRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let key = request_key(&caller, &req)?;
        let update = ComplaintUpdate::try_from(&req)?;
        let target = ComplaintTarget {
            customer: update.customer.clone(),
            id: update.id.clone(),
            name: update.name.clone(),
            etag: update.etag.clone(),
        };
        api.write_interaction(key.as_ref(), &scope, async |tx| {
            let (home_branch, complaint) = locked_complaint(tx, &target, &scope).await?;
            let from = complaint.state;
            let complaint = update.apply(complaint, Utc::now())?;
            let event = store::ComplaintEvent {
                event_type: "complaint.updated",
                from,
                by: &caller.subject,
            };
            let updated =
                store::update_complaint(tx, &target.customer, &target.id, &complaint, event)
                    .await?;
            if from != ComplaintState::Resolved && complaint.state == ComplaintState::Resolved {
                api.after_resolution(tx, &caller, &home_branch, &updated)
                    .await?;
            }
            Ok(updated)
        })
        .await
    })
    .await
}

/// The customer's home branch and the complaint of `target`, locked for a
/// change, after the caller's etag (when given) is checked.
async fn locked_complaint(
    tx: &mut sqlx::PgConnection,
    target: &ComplaintTarget,
    scope: &BranchScope,
) -> Result<(String, Complaint), Error> {
    let ComplaintTarget {
        customer,
        id,
        name,
        etag,
    } = target;
    let owner = lock_reachable_customer(tx, customer, scope).await?;
    let current = store::get(tx, customer, id, true)
        .await?
        .ok_or_else(|| Error::not_found(name.clone()))?;
    if !etag.is_empty() && *etag != current.etag() {
        return Err(Error::EtagMismatch {
            resource: name.clone(),
        });
    }
    check_current(&current)?;
    let Some(complaint) = current.fields.complaint else {
        return Err(Error::FailedPrecondition {
            reason: ErrorReason::NotAComplaint,
            message: format!("{name} is not a complaint"),
        });
    };
    Ok((owner.profile.home_branch, complaint))
}

/// The explicit state methods of a complaint (AIP-136).
type Transition = lifecycle::Transition<ComplaintState>;

const RESOLVE: Transition = Transition {
    method: "ResolveComplaint",
    from: &[ComplaintState::Open, ComplaintState::InProgress],
    event_type: "complaint.resolved",
    reason: ErrorReason::ComplaintState,
    noun: "complaint",
};
const CLOSE: Transition = Transition {
    method: "CloseComplaint",
    from: &[ComplaintState::Resolved],
    event_type: "complaint.closed",
    reason: ErrorReason::ComplaintState,
    noun: "complaint",
};
const REOPEN: Transition = Transition {
    method: "ReopenComplaint",
    from: &[ComplaintState::Resolved, ComplaintState::Closed],
    event_type: "complaint.reopened",
    reason: ErrorReason::ComplaintState,
    noun: "complaint",
};

impl InteractionApi {
    /// Runs a state method on a complaint of a customer the caller may
    /// write: locks it, checks the etag and that its state is one the method
    /// takes, applies `change` (given the time), records the change with who
    /// made it, and sets off what a resolution sets off; all in one
    /// transaction, idempotent on the request's key.
    async fn transition(
        &self,
        caller: &Principal,
        key: Option<&IdempotencyKey>,
        target: &ComplaintTarget,
        transition: Transition,
        change: impl FnOnce(&mut Complaint, DateTime<Utc>),
    ) -> Result<pb::Interaction, Error> {
        let scope = caller.customer_write_scope()?;
        self.write_interaction(key, &scope, async |tx| {
            let (home_branch, mut complaint) = locked_complaint(tx, target, &scope).await?;
            let from = complaint.state;
            transition.admit(&target.name, from)?;
            change(&mut complaint, Utc::now());
            let event = store::ComplaintEvent {
                event_type: transition.event_type,
                from,
                by: &caller.subject,
            };
            let updated =
                store::update_complaint(tx, &target.customer, &target.id, &complaint, event)
                    .await?;
            if complaint.state == ComplaintState::Resolved {
                self.after_resolution(tx, caller, &home_branch, &updated)
                    .await?;
            }
            Ok(updated)
        })
        .await
    }

    /// What a resolution sets off, in its transaction: the 回访 follow-up
    /// for the complaint's assignee (or the resolver) after the configured
    /// days, and with a root cause and a configured product team, the
    /// COMPLAINT_INSIGHT knowledge item.
    async fn after_resolution(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Principal,
        home_branch: &str,
        resolved: &Interaction,
    ) -> Result<(), Error> {
        let Some(complaint) = &resolved.fields.complaint else {
            return Ok(());
        };
        let now = Utc::now();
        if self.complaints.follow_up_days > 0 {
            let task = FollowUp {
                customer: resolved.customer.clone(),
                id: uuid::Uuid::now_v7().to_string(),
                assignee: if complaint.assignee.is_empty() {
                    caller.subject.clone()
                } else {
                    complaint.assignee.clone()
                },
                branch: home_branch.to_string(),
                due_time: now + Duration::days(i64::from(self.complaints.follow_up_days)),
                state: FollowUpState::Scheduled,
                purpose: COMPLAINT_FOLLOW_UP_PURPOSE.to_string(),
                channel: None,
                source_interaction: resolved.name(),
                completion_interaction: String::new(),
                complete_time: None,
                cancel_reason: String::new(),
                cancel_time: None,
                // The 回访 of a complaint is a one-off.
                recurrence: Default::default(),
                created_by: caller.subject.clone(),
                version: 1,
                create_time: now,
                update_time: now,
            };
            store::insert_follow_up(tx, &task).await?;
        }
        if let Some(team) = &self.complaints.insight_team
            && !complaint.root_cause.is_empty()
        {
            let item =
                complaint_insight(tx, caller, team, home_branch, resolved, complaint).await?;
            crate::store::knowledge::insert(tx, &item, &crate::store::knowledge::unrestricted())
                .await?;
        }
        Ok(())
    }
}

/// The purpose of the follow-up a resolution schedules.
pub const COMPLAINT_FOLLOW_UP_PURPOSE: &str =
    "回访: ask whether the customer is satisfied with the resolution of the complaint";

/// The COMPLAINT_INSIGHT item of a resolved complaint: EXPLICIT, about the
/// customer, citing the complaint, saying only its category, product and
/// root cause. It is visible to `team`, the product team, when the customer
/// has consented to KNOWLEDGE_SHARING (the rule the knowledge service
/// applies to sharing beyond the branch); without that consent it stays
/// with the customer's home branch (BRANCH visibility).
async fn complaint_insight(
    tx: &mut sqlx::PgConnection,
    caller: &Principal,
    team: &str,
    home_branch: &str,
    resolved: &Interaction,
    complaint: &Complaint,
) -> Result<crate::domain::knowledge::NewItem, Error> {
    use crate::domain::knowledge::{
        Carrier, CarrierType, ItemContent, KnowledgeKind, Nature, NewItem, Sensitivity, Visibility,
    };
    let subjects = vec![resolved.customer.as_str().to_string()];
    let (visibility, carrier) =
        match crate::api::knowledge::access::require_sharing_consent(tx, &subjects).await {
            Ok(()) => (
                Visibility::Team,
                Carrier {
                    kind: CarrierType::Team,
                    id: team.to_string(),
                },
            ),
            Err(Error::FailedPrecondition {
                reason: ErrorReason::ConsentRequired,
                ..
            }) => (
                Visibility::Branch,
                Carrier {
                    kind: CarrierType::Branch,
                    id: home_branch.to_string(),
                },
            ),
            Err(e) => return Err(e),
        };
    let category = complaint
        .category
        .map(ComplaintCategory::as_str)
        .unwrap_or("UNSPECIFIED");
    let product = if complaint.product.is_empty() {
        "-"
    } else {
        &complaint.product
    };
    Ok(NewItem {
        id: uuid::Uuid::now_v7().to_string(),
        content: ItemContent {
            title: format!("Complaint root cause: {category}, {product}"),
            body: format!(
                "Category: {category}\nProduct: {product}\nRoot cause: {}",
                complaint.root_cause
            ),
            kind: KnowledgeKind::ComplaintInsight,
            subjects,
            visibility,
            sensitivity: Sensitivity::Internal,
            tags: Vec::new(),
            sources: vec![resolved.name()],
        },
        nature: Nature::Explicit,
        carrier,
        author: caller.subject.clone(),
        scope_team: team.to_string(),
        scope_branch: home_branch.to_string(),
    })
}

pub(super) async fn resolve_complaint(
    api: &InteractionApi,
    request: Request<pb::ResolveComplaintRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        caller.customer_write_scope()?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let target = ComplaintTarget::read(&req.name, &req.etag, &mut violations);
        let resolution = required_text(
            &req.resolution,
            rules::MAX_RESOLUTION,
            "resolution",
            &mut violations,
        );
        let root_cause = rules::text(&req.root_cause, rules::MAX_ROOT_CAUSE)
            .inspect_err(|e| violations.add("root_cause", e.clone()))
            .unwrap_or_default();
        let key = request_key(&caller, &req)?;
        let target = violations.into_value(target)?;
        api.transition(&caller, key.as_ref(), &target, RESOLVE, |c, now| {
            c.state = ComplaintState::Resolved;
            c.resolution = resolution;
            if !root_cause.is_empty() {
                c.root_cause = root_cause;
            }
            c.resolve_time = Some(now);
        })
        .await
    })
    .await
}

pub(super) async fn close_complaint(
    api: &InteractionApi,
    request: Request<pb::CloseComplaintRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        caller.customer_write_scope()?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let target = ComplaintTarget::read(&req.name, &req.etag, &mut violations);
        let key = request_key(&caller, &req)?;
        let target = violations.into_value(target)?;
        api.transition(&caller, key.as_ref(), &target, CLOSE, |c, now| {
            c.state = ComplaintState::Closed;
            c.close_time = Some(now);
        })
        .await
    })
    .await
}

pub(super) async fn reopen_complaint(
    api: &InteractionApi,
    request: Request<pb::ReopenComplaintRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        caller.customer_write_scope()?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let target = ComplaintTarget::read(&req.name, &req.etag, &mut violations);
        let reason = required_text(
            &req.reason,
            rules::MAX_REOPEN_REASON,
            "reason",
            &mut violations,
        );
        let key = request_key(&caller, &req)?;
        let target = violations.into_value(target)?;
        let sla = api.sla;
        api.transition(&caller, key.as_ref(), &target, REOPEN, |c, now| {
            // Open again, due anew by its SLA; the old resolution no longer
            // holds, the root cause stays until a new one is found.
            c.state = ComplaintState::Open;
            c.due_time = sla.due(c.severity, now);
            c.resolution.clear();
            c.resolve_time = None;
            c.close_time = None;
            c.reopen_count += 1;
            c.reopen_reason = reason;
        })
        .await
    })
    .await
}

impl ComplaintUpdate {
    /// The complaint after the update, if its life cycle allows it: OPEN →
    /// IN_PROGRESS → RESOLVED → CLOSED one step at a time, a resolution to
    /// resolve; `now` stamps the step taken.
    fn apply(&self, mut complaint: Complaint, now: DateTime<Utc>) -> Result<Complaint, Error> {
        let next = self.state.unwrap_or(complaint.state);
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
        if !self.resolution.is_empty() {
            complaint.resolution = self.resolution.clone();
        }
        if self.category.is_some() {
            complaint.category = self.category;
        }
        for (value, field) in [
            (&self.product, &mut complaint.product),
            (&self.root_cause, &mut complaint.root_cause),
            (&self.assignee, &mut complaint.assignee),
        ] {
            if !value.is_empty() {
                field.clone_from(value);
            }
        }
        if let Some(due) = self.due_time {
            complaint.due_time = due;
        }
        if next == ComplaintState::Resolved && complaint.resolution.is_empty() {
            return Err(Error::invalid(
                "resolution",
                "is required to resolve a complaint",
            ));
        }
        if next != complaint.state {
            match next {
                ComplaintState::Resolved => complaint.resolve_time = Some(now),
                ComplaintState::Closed => complaint.close_time = Some(now),
                _ => {}
            }
        }
        complaint.state = next;
        Ok(complaint)
    }
}

pub(super) async fn list_complaints(
    api: &InteractionApi,
    request: Request<pb::ListComplaintsRequest>,
) -> Result<Response<pb::ListComplaintsResponse>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().parent);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let customer = parse_parent(&req.parent)?;
        let limit = page_size(req.page_size)?;
        let (mut query, order, after, pages) = worklist(
            &api.page_tokens,
            "ListComplaints",
            &caller.subject,
            &req.parent,
            &req.filter,
            &req.order_by,
            &req.page_token,
            complaint_filter,
        )?;
        query.order = order;
        query.after = after;
        let mut conn = api.db.acquire_read().await?;
        if let Some(customer) = &customer {
            readable_customer(&mut conn, customer, &scope).await?;
        }
        query.customer = customer;
        let mut page = store::list_complaints(&mut conn, scope.branch(), &query, limit + 1).await?;
        drop(conn);
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |i| interaction_to(i, Utc::now()).encoded_len(),
            |last| {
                let due = last
                    .fields
                    .complaint
                    .as_ref()
                    .map(|c| c.due_time)
                    .unwrap_or_default();
                due_keys(due, last.update_time, &last.customer, &last.fields.id)
            },
        );
        crate::audit::note_customers(&request, page.iter().map(|c| c.customer.as_str()));
        Ok(pb::ListComplaintsResponse {
            interactions: page.iter().map(|x| interaction_to(x, Utc::now())).collect(),
            next_page_token,
        })
    })
    .await
}

pub(super) async fn complaint_summary(
    api: &InteractionApi,
    request: Request<pb::GetComplaintSummaryRequest>,
) -> Result<Response<pb::ComplaintSummary>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let reach = caller.customer_read_scope()?;
        let req = request.get_ref();
        let scope = crate::api::report_scope(
            Report::ComplaintSummary,
            &req.name,
            ReportScope {
                branch: req.branch.clone(),
                ..ReportScope::default()
            },
        )?;
        let mut violations = Violations::default();
        let period = service_metrics::ReportPeriod::read(
            &scope.branch,
            &req.start_time,
            &req.end_time,
            &mut violations,
        );
        violations.into_result(())?;
        period.check_reach(&reach, "complaints")?;
        let mut conn = api.db.acquire_read().await?;
        let rows = store::complaint_summary(
            &mut conn,
            reach.branch(),
            period.branch(),
            period.start,
            period.end,
        )
        .await?;
        drop(conn);
        Ok(summary_to(rows, &period.branch, period.start, period.end))
    })
    .await
}

/// The report from the grouped rows of `store::complaint_summary`.
fn summary_to(
    rows: Vec<store::ComplaintFiguresRow>,
    branch: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> pb::ComplaintSummary {
    use pb::complaint_summary::{BranchRow, CategoryRow, ProductRow};
    let mut summary = pb::ComplaintSummary {
        name: report_name(
            Report::ComplaintSummary,
            &ReportScope {
                branch: branch.to_string(),
                ..ReportScope::default()
            },
        ),
        branch: branch.to_string(),
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        interval: Some(interval(start, end)),
        total: Some(figures_to(&store::ComplaintFiguresRow {
            dimension: String::new(),
            key: String::new(),
            received: 0,
            resolved: 0,
            open: 0,
            overdue: 0,
            reopened: 0,
            median_resolution_seconds: None,
        })),
        ..Default::default()
    };
    for row in rows {
        let figures = Some(figures_to(&row));
        match row.dimension.as_str() {
            "category" => summary.categories.push(CategoryRow {
                category: category_to(ComplaintCategory::parse(&row.key)) as i32,
                figures,
            }),
            "product" => summary.products.push(ProductRow {
                product: row.key,
                figures,
            }),
            "branch" => summary.branches.push(BranchRow {
                branch: row.key,
                figures,
            }),
            _ => summary.total = figures,
        }
    }
    summary.categories.sort_by_key(|r| r.category);
    summary.products.sort_by(|a, b| a.product.cmp(&b.product));
    summary.branches.sort_by(|a, b| a.branch.cmp(&b.branch));
    summary
}

fn figures_to(row: &store::ComplaintFiguresRow) -> pb::ComplaintFigures {
    let rate = |n: i64| {
        if row.received == 0 {
            0.0
        } else {
            n as f64 / row.received as f64
        }
    };
    pb::ComplaintFigures {
        received_count: row.received,
        resolved_count: row.resolved,
        open_count: row.open,
        overdue_count: row.overdue,
        resolution_rate: rate(row.resolved),
        median_resolution_seconds: row.median_resolution_seconds,
        reopen_rate: rate(row.reopened),
    }
}
