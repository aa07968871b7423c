//! Complaints: their life cycle and the complaint list.

use super::*;

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
        let (customer, id, name) = (&update.customer, &update.id, &update.name);
        api.write_interaction(key.as_ref(), &scope, async |tx| {
            lock_reachable_customer(tx, customer, &scope).await?;
            let current = store::get(tx, customer, id, true)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            if !update.etag.is_empty() && update.etag != current.etag() {
                return Err(Error::EtagMismatch {
                    resource: name.clone(),
                });
            }
            let Some(complaint) = current.fields.complaint.clone() else {
                return Err(Error::FailedPrecondition {
                    reason: ErrorReason::NotAComplaint,
                    message: format!("{name} is not a complaint"),
                });
            };
            let complaint = update.apply(complaint, Utc::now())?;
            store::update_complaint(tx, customer, id, &complaint).await
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
        let mut query = complaint_filter(&req.filter).map_err(|e| Error::invalid("filter", e))?;
        let context = format!(
            "ListComplaints|{}|{}|{}",
            caller.subject, req.parent, req.filter
        );
        if let Some(cursor) = api.page_tokens.decode(&req.page_token, &context)? {
            query.after = Some(parse_due_cursor(&cursor)?);
        }
        let mut conn = api.db.acquire().await?;
        if let Some(customer) = &customer {
            readable_customer(&mut conn, customer, &scope).await?;
        }
        query.customer = customer;
        let mut page = store::list_complaints(&mut conn, scope.branch(), &query, limit + 1).await?;
        drop(conn);
        let next_page_token = api.page_tokens.next_sized_page(
            &mut page,
            limit,
            &context,
            |i| interaction_to(i, Utc::now()).encoded_len(),
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
            interactions: page.iter().map(|x| interaction_to(x, Utc::now())).collect(),
            next_page_token,
        })
    })
    .await
}
