//! A follow-up's life cycle: schedule, read, hand to someone else, cancel,
//! complete (which logs an interaction), and the follow-up list.

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
        Ok(follow_up_to(&task, Utc::now()))
    })
    .await
}

pub(super) async fn reassign(
    api: &InteractionApi,
    request: Request<pb::ReassignFollowUpRequest>,
) -> Result<Response<pb::FollowUp>, Status> {
    crate::audit::note_customer(&request, &request.get_ref().name);
    edit(api, request).await
}

pub(super) async fn cancel(
    api: &InteractionApi,
    request: Request<pb::CancelFollowUpRequest>,
) -> Result<Response<pb::FollowUp>, Status> {
    crate::audit::note_customer(&request, &request.get_ref().name);
    edit(api, request).await
}

/// ReassignFollowUp and CancelFollowUp: a change only a SCHEDULED
/// follow-up of a customer the caller may write takes.
async fn edit<R>(
    api: &InteractionApi,
    request: Request<R>,
) -> Result<Response<pb::FollowUp>, Status>
where
    R: Mutation,
    for<'a> FollowUpEdit: TryFrom<&'a R, Error = Error>,
{
    respond(async {
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let key = request_key(&caller, &req)?;
        let edit = FollowUpEdit::try_from(&req)?;
        if let FollowUpAction::Reassign { branch, .. } = &edit.action
            && !branch.is_empty()
            && !scope.admits(branch)
        {
            return Err(Error::denied(format!(
                "hand follow-ups to branch {branch} (outside the caller's reach)"
            )));
        }
        let FollowUpEdit {
            customer,
            id,
            name,
            etag,
            action,
        } = &edit;
        api.write_follow_up(key.as_ref(), &scope, async |tx| {
            lock_reachable_customer(tx, customer, &scope).await?;
            let task = scheduled_follow_up(tx, customer, id, name, etag).await?;
            let change = match action {
                FollowUpAction::Reassign {
                    assignee,
                    branch,
                    due_time,
                } => FollowUpChange::Reassign {
                    assignee,
                    branch: if branch.is_empty() {
                        &task.branch
                    } else {
                        branch
                    },
                    due_time: due_time.unwrap_or(task.due_time),
                },
                FollowUpAction::Cancel { reason } => FollowUpChange::Cancel { reason },
            };
            store::change_follow_up(tx, customer, id, change).await
        })
        .await
    })
    .await
}

pub(super) async fn schedule_follow_up(
    api: &InteractionApi,
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
        // Given (both 0: a one-off), or None: the customer's tier decides.
        let recurrence = input.recurrence.as_ref().map(|r| {
            let mut bounded = |field: &str, value: i32, max: u32| {
                u32::try_from(value)
                    .ok()
                    .filter(|v| *v <= max)
                    .unwrap_or_else(|| {
                        violations.add(
                            format!("follow_up.recurrence.{field}"),
                            format!("must be 0 to {max}"),
                        );
                        0
                    })
            };
            let days = bounded("every_days", r.every_days, rules::MAX_RECURRENCE_DAYS);
            let months = bounded("every_months", r.every_months, rules::MAX_RECURRENCE_MONTHS);
            if days > 0 && months > 0 {
                violations.add(
                    "follow_up.recurrence",
                    "set every_days or every_months, not both",
                );
            }
            rules::Recurrence { days, months }
        });
        let id = if req.follow_up_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            CustomerId::parse(&req.follow_up_id)
                .map(|id| id.as_str().to_string())
                .inspect_err(|e| violations.add("follow_up_id", e.clone()))
                .unwrap_or_default()
        };
        let key = request_key(&caller, &req)?;
        let customer = violations.into_value(customer)?;
        api.write_follow_up(key.as_ref(), &scope, async |tx| {
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
                recurrence: recurrence.unwrap_or_else(|| api.cadence.for_tier(owner.tier)),
                created_by: caller.subject.clone(),
                version: 1,
                create_time: now,
                update_time: now,
            };
            store::insert_follow_up(tx, &task).await
        })
        .await
    })
    .await
}

pub(super) async fn complete_follow_up(
    api: &InteractionApi,
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
        let new = read_interaction(&input, None, &caller, api, "interaction", &mut violations);
        let key = request_key(&caller, &req)?;
        let (customer, id) = violations.into_value(target)?;
        api.db
            .write(
                key.as_ref(),
                |r: &pb::CompleteFollowUpResponse| {
                    let follow_up = r.follow_up.as_ref().map(|f| f.name.clone());
                    let interaction = r.interaction.as_ref().map(|i| i.name.clone());
                    let next = r.next_follow_up.as_ref().map(|f| f.name.clone());
                    follow_up
                        .into_iter()
                        .chain(interaction)
                        .chain(next)
                        .collect()
                },
                async |tx, names| {
                    let task = current_follow_up(tx, &names[0], &scope).await?;
                    let logged = current_interactions(tx, &names[1..2], &scope).await?;
                    let next = match names.get(2) {
                        Some(name) => Some(current_follow_up(tx, name, &scope).await?),
                        None => None,
                    };
                    Ok(pb::CompleteFollowUpResponse {
                        follow_up: Some(follow_up_to(&task, Utc::now())),
                        interaction: logged.first().map(|x| interaction_to(x, Utc::now())),
                        next_follow_up: next.map(|f| follow_up_to(&f, Utc::now())),
                    })
                },
                async |tx| {
                    let rows = [(customer.clone(), new)];
                    lock_reachable_customer(tx, &customer, &scope).await?;
                    scheduled_follow_up(tx, &customer, &id, &req.name, &req.etag).await?;
                    let logged = api.append_all(tx, &scope, &rows).await?.remove(0);
                    let task =
                        store::complete_follow_up(tx, &customer, &id, &logged.name()).await?;
                    let now = Utc::now();
                    let next = match next_occurrence(&task, &caller, now) {
                        Some(next) => Some(store::insert_follow_up(tx, &next).await?),
                        None => None,
                    };
                    Ok(pb::CompleteFollowUpResponse {
                        follow_up: Some(follow_up_to(&task, now)),
                        interaction: Some(interaction_to(&logged, now)),
                        next_follow_up: next.map(|f| follow_up_to(&f, now)),
                    })
                },
            )
            .await
    })
    .await
}

/// The next occurrence of a recurring follow-up just completed: the first
/// due time of its series after `now` (occurrences missed while it was late
/// are not scheduled after the fact), same assignee, branch, purpose,
/// channel, source and recurrence. None for a one-off.
fn next_occurrence(done: &FollowUp, caller: &Principal, now: DateTime<Utc>) -> Option<FollowUp> {
    let mut due = done.recurrence.next(done.due_time)?;
    if due <= now && done.recurrence.days > 0 {
        // Whole periods of days behind, skipped in one step.
        let period = i64::from(done.recurrence.days) * 86_400;
        let behind = (now - due).num_seconds() / period + 1;
        due = due.checked_add_signed(Duration::seconds(behind.checked_mul(period)?))?;
    }
    // Months differ in length: step them; a due time a follow-up can hold
    // (years 1 to 9999) is at most 120,000 monthly steps behind.
    while due <= now {
        due = done.recurrence.next(due)?;
    }
    Some(FollowUp {
        customer: done.customer.clone(),
        id: uuid::Uuid::now_v7().to_string(),
        assignee: done.assignee.clone(),
        branch: done.branch.clone(),
        due_time: due,
        state: FollowUpState::Scheduled,
        purpose: done.purpose.clone(),
        channel: done.channel,
        source_interaction: done.source_interaction.clone(),
        completion_interaction: String::new(),
        complete_time: None,
        cancel_reason: String::new(),
        cancel_time: None,
        created_by: caller.subject.clone(),
        version: 1,
        create_time: now,
        update_time: now,
        recurrence: done.recurrence,
    })
}

pub(super) async fn list_follow_ups(
    api: &InteractionApi,
    request: Request<pb::ListFollowUpsRequest>,
) -> Result<Response<pb::ListFollowUpsResponse>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().parent);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let customer = parse_parent(&req.parent)?;
        let limit = page_size(req.page_size)?;
        let (mut query, order, after, pages) = worklist(
            &api.page_tokens,
            "ListFollowUps",
            &caller.subject,
            &req.parent,
            &req.filter,
            &req.order_by,
            &req.page_token,
            follow_up_filter,
        )?;
        query.order = order;
        query.after = after;
        let mut conn = api.db.acquire_read().await?;
        if let Some(customer) = &customer {
            readable_customer(&mut conn, customer, &scope).await?;
        }
        query.customer = customer;
        let mut page = store::list_follow_ups(&mut conn, scope.branch(), &query, limit + 1).await?;
        drop(conn);
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |_| 0,
            |last| due_keys(last.due_time, last.update_time, &last.customer, &last.id),
        );
        crate::audit::note_customers(&request, page.iter().map(|f| f.customer.as_str()));
        Ok(pb::ListFollowUpsResponse {
            follow_ups: page.iter().map(|x| follow_up_to(x, Utc::now())).collect(),
            next_page_token,
        })
    })
    .await
}
