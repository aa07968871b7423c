//! The rest of a follow-up's life cycle: read one, hand it to someone else,
//! cancel it. Scheduling and completing stay with the interaction handlers
//! (completing logs an interaction).

use store::FollowUpChange;

use super::*;

/// A follow-up locked for a change that only a SCHEDULED one may take, after
/// the caller's etag (when given) is checked.
pub(super) async fn scheduled_follow_up(
    tx: &mut sqlx::PgConnection,
    customer: &CustomerId,
    id: &str,
    name: &str,
    etag: &str,
) -> Result<FollowUp, Error> {
    let task = store::get_follow_up(tx, customer, id, true)
        .await?
        .ok_or_else(|| Error::not_found(name.to_string()))?;
    if !etag.is_empty() && etag != crate::domain::customer::etag(task.version) {
        return Err(Error::EtagMismatch {
            resource: name.to_string(),
        });
    }
    match task.state {
        FollowUpState::Scheduled => Ok(task),
        FollowUpState::Completed => Err(Error::FailedPrecondition {
            reason: ErrorReason::FollowUpAlreadyCompleted,
            message: format!("{name} is already completed"),
        }),
        FollowUpState::Cancelled => Err(Error::FailedPrecondition {
            reason: ErrorReason::FollowUpNotScheduled,
            message: format!("{name} was cancelled"),
        }),
    }
}

pub(super) async fn get(
    api: &InteractionApi,
    request: Request<pb::GetFollowUpRequest>,
) -> Result<Response<pb::FollowUp>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let name = &request.get_ref().name;
        let (customer, id) =
            rules::parse_child_name(name, "followUps").map_err(|e| Error::invalid("name", e))?;
        check_acting_for(&caller, customer.as_str())?;
        let mut conn = api.db.acquire().await?;
        readable_customer(&mut conn, &customer, &scope).await?;
        let task = store::get_follow_up(&mut conn, &customer, &id, false)
            .await?
            .ok_or_else(|| Error::not_found(name.clone()))?;
        Ok(follow_up_to(&task))
    })
    .await
}

pub(super) async fn reassign(
    api: &InteractionApi,
    request: Request<pb::ReassignFollowUpRequest>,
) -> Result<Response<pb::FollowUp>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let target = rules::parse_child_name(&req.name, "followUps")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let assignee = org_code(&req.assignee, true)
            .inspect_err(|e| violations.add("assignee", e.clone()))
            .unwrap_or_default();
        let branch = org_code(&req.branch, false)
            .inspect_err(|e| violations.add("branch", e.clone()))
            .unwrap_or_default();
        let due_time = req.due_time.as_ref().and_then(|ts| {
            from_timestamp(ts).or_else(|| {
                violations.add("due_time", "is not a valid timestamp");
                None
            })
        });
        let key = idempotency_key(
            &caller,
            "ReassignFollowUp",
            &req.request_id,
            &pb::ReassignFollowUpRequest {
                request_id: String::new(),
                ..req.clone()
            },
        )?;
        let (customer, id) = violations.into_value(target)?;
        if !branch.is_empty() && !scope.admits(&branch) {
            return Err(Error::denied(format!(
                "hand follow-ups to branch {branch} (outside the caller's reach)"
            )));
        }
        api.db
            .write(
                key.as_ref(),
                |f: &pb::FollowUp| vec![f.name.clone()],
                async |tx, names| {
                    Ok(follow_up_to(
                        &current_follow_up(tx, &names[0], &scope).await?,
                    ))
                },
                async |tx| {
                    lock_reachable_customer(tx, &customer, &scope).await?;
                    let task =
                        scheduled_follow_up(tx, &customer, &id, &req.name, &req.etag).await?;
                    let change = FollowUpChange::Reassign {
                        assignee: &assignee,
                        branch: if branch.is_empty() {
                            &task.branch
                        } else {
                            &branch
                        },
                        due_time: due_time.unwrap_or(task.due_time),
                    };
                    Ok(follow_up_to(
                        &store::change_follow_up(tx, &customer, &id, change).await?,
                    ))
                },
            )
            .await
    })
    .await
}

pub(super) async fn cancel(
    api: &InteractionApi,
    request: Request<pb::CancelFollowUpRequest>,
) -> Result<Response<pb::FollowUp>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let target = rules::parse_child_name(&req.name, "followUps")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let reason = match rules::text(req.reason.trim(), rules::MAX_PURPOSE) {
            Ok(reason) if !reason.is_empty() => reason,
            Ok(_) => {
                violations.add("reason", "is required");
                String::new()
            }
            Err(why) => {
                violations.add("reason", why);
                String::new()
            }
        };
        let key = idempotency_key(
            &caller,
            "CancelFollowUp",
            &req.request_id,
            &pb::CancelFollowUpRequest {
                request_id: String::new(),
                ..req.clone()
            },
        )?;
        let (customer, id) = violations.into_value(target)?;
        api.db
            .write(
                key.as_ref(),
                |f: &pb::FollowUp| vec![f.name.clone()],
                async |tx, names| {
                    Ok(follow_up_to(
                        &current_follow_up(tx, &names[0], &scope).await?,
                    ))
                },
                async |tx| {
                    lock_reachable_customer(tx, &customer, &scope).await?;
                    scheduled_follow_up(tx, &customer, &id, &req.name, &req.etag).await?;
                    let change = FollowUpChange::Cancel { reason: &reason };
                    Ok(follow_up_to(
                        &store::change_follow_up(tx, &customer, &id, change).await?,
                    ))
                },
            )
            .await
    })
    .await
}
