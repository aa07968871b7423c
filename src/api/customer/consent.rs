//! Consent changes and their history, and links between customers.

use super::*;

pub(super) async fn update_consent(
    api: &CustomerApi,
    request: Request<pb::UpdateConsentRequest>,
) -> Result<Response<pb::Customer>, Status> {
    crate::audit::note_customer(&request, &request.get_ref().name);
    change_consent(api, request).await
}

/// UpdateConsent, GrantConsent and WithdrawConsent: records a consent
/// change for a customer the caller may write.
pub(super) async fn change_consent<R>(
    api: &CustomerApi,
    request: Request<R>,
) -> Result<Response<pb::Customer>, Status>
where
    R: Mutation,
    for<'a> ConsentCommand: TryFrom<&'a R, Error = Error>,
{
    respond(async {
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let ConsentCommand { id, change, etag } = ConsentCommand::try_from(&req)?;
        let key = request_key(&caller, &req)?;
        api.write_customer(key.as_ref(), &scope, &caller, async |tx| {
            let found = customers::get(tx, &id, scope.branch(), Lock::Update).await?;
            let current = resolve(found, &scope, &id)?;
            check_etag(&etag, &current)?;
            let updated = customers::set_consent(tx, &id, &change, &caller.subject).await?;
            Ok(updated)
        })
        .await
    })
    .await
}

pub(super) async fn list_consent_events(
    api: &CustomerApi,
    request: Request<pb::ListConsentEventsRequest>,
) -> Result<Response<pb::ListConsentEventsResponse>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let id = parse_name("parent", &req.parent)?;
        let limit = page_size(req.page_size)?;
        let context = format!("ListConsentEvents|{}|{}", caller.subject, req.parent);
        let before =
            match api.page_tokens.decode(&req.page_token, &context)? {
                None => None,
                Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this list")
                })?),
            };
        let mut conn = api.db.acquire().await?;
        resolve(
            customers::get(&mut conn, &id, scope.branch(), Lock::None).await?,
            &scope,
            &id,
        )?;
        let mut page = customers::consent_events(&mut conn, &id, before, limit + 1).await?;
        let next_page_token = api
            .page_tokens
            .next_page(&mut page, limit, &context, |last| last.id.to_string());
        Ok(pb::ListConsentEventsResponse {
            consent_events: page
                .iter()
                .map(|e| pb::ConsentEvent {
                    purpose: purpose_to_proto(e.change.purpose) as i32,
                    granted: e.change.granted,
                    channel: e.change.channel.clone(),
                    evidence_ref: e.change.evidence_ref.clone(),
                    policy_version: e.change.policy_version.clone(),
                    recorded_by: e.recorded_by.clone(),
                    event_time: Some(timestamp(e.event_time)),
                })
                .collect(),
            next_page_token,
        })
    })
    .await
}

/// The two customers and the relationship of a link request, every bad
/// field reported together.
fn link_parts(
    name: &str,
    linked_customer: &str,
    relationship: i32,
) -> Result<(CustomerId, CustomerId, Relationship), Error> {
    let mut violations = Violations::default();
    let id = CustomerId::from_name(name)
        .inspect_err(|e| violations.add("name", e.clone()))
        .ok();
    let linked = CustomerId::from_name(linked_customer)
        .inspect_err(|e| violations.add("linked_customer", e.clone()))
        .ok();
    if id.is_some() && id == linked {
        violations.add("linked_customer", "must not be the customer itself");
    }
    let relationship = relationship_from_proto(relationship);
    if relationship.is_none() {
        violations.add(
            "relationship",
            "must be HOUSEHOLD, SPOUSE, GUARANTOR or DIRECTOR",
        );
    }
    match violations.into_result((id, linked, relationship))? {
        (Some(id), Some(linked), Some(relationship)) => Ok((id, linked, relationship)),
        _ => Err(Error::unreported_missing_part()),
    }
}

/// Locks both customers of a link for update, in id order so that two
/// opposite link changes cannot deadlock; the caller must be able to write
/// both. Returns `id` as it reads now.
async fn lock_pair(
    tx: &mut sqlx::PgConnection,
    id: &CustomerId,
    linked: &CustomerId,
    scope: &BranchScope,
) -> Result<Customer, Error> {
    let (first, second) = if id < linked {
        (id, linked)
    } else {
        (linked, id)
    };
    let mut customer = None;
    for each in [first, second] {
        let found = resolve(
            customers::get(tx, each, scope.branch(), Lock::Update).await?,
            scope,
            each,
        )?;
        if each == id {
            customer = Some(found);
        }
    }
    customer.ok_or_else(Error::unreported_missing_part)
}

/// A link to make or remove, as a request gave it.
struct LinkChange<'a> {
    name: &'a str,
    linked_customer: &'a str,
    relationship: i32,
    etag: &'a str,
    remove: bool,
}

pub(super) async fn link_customers(
    api: &CustomerApi,
    request: Request<pb::LinkCustomersRequest>,
) -> Result<Response<pb::Customer>, Status> {
    change_link(api, request, |r| LinkChange {
        name: &r.name,
        linked_customer: &r.linked_customer,
        relationship: r.relationship,
        etag: "",
        remove: false,
    })
    .await
}

pub(super) async fn unlink_customers(
    api: &CustomerApi,
    request: Request<pb::UnlinkCustomersRequest>,
) -> Result<Response<pb::Customer>, Status> {
    change_link(api, request, |r| LinkChange {
        name: &r.name,
        linked_customer: &r.linked_customer,
        relationship: r.relationship,
        etag: &r.etag,
        remove: true,
    })
    .await
}

/// LinkCustomers and UnlinkCustomers: both customers locked, the caller
/// must be able to write both; a retry re-reads `name`.
async fn change_link<R: Mutation>(
    api: &CustomerApi,
    request: Request<R>,
    change: impl Fn(&R) -> LinkChange<'_>,
) -> Result<Response<pb::Customer>, Status> {
    respond(async {
        {
            let c = change(request.get_ref());
            crate::audit::note_customers(&request, [c.name, c.linked_customer]);
        }
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let c = change(&req);
        let (id, linked, relationship) = link_parts(c.name, c.linked_customer, c.relationship)?;
        let key = request_key(&caller, &req)?;
        api.db
            .write(
                key.as_ref(),
                customer_names,
                async |tx, names| {
                    current_customer(tx, &linked.name(), &scope, &caller).await?;
                    current_customer(tx, &names[0], &scope, &caller).await
                },
                async |tx| {
                    let current = lock_pair(tx, &id, &linked, &scope).await?;
                    check_etag(c.etag, &current)?;
                    let updated = if c.remove {
                        customers::unlink(tx, &id, &linked, relationship).await?
                    } else {
                        customers::link(tx, &id, &linked, relationship).await?
                    };
                    Ok(customer_to_proto(&updated, &caller))
                },
            )
            .await
    })
    .await
}
