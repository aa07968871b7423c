//! The ends of an item's life: retraction (kept for lineage, hidden from
//! reads) and the revocation of a grant before it lapses.

use super::*;

/// Who may retract an item: its author, the employee who carries it, or an
/// admin.
fn may_retract(caller: &Principal, item: &KnowledgeItem) -> bool {
    item.item.author == caller.subject
        || (item.item.carrier.kind == CarrierType::Employee
            && item.item.carrier.id == caller.subject)
        || caller.has(Role::Admin)
}

fn check_item_etag(etag: &str, item: &KnowledgeItem) -> Result<(), Error> {
    if !etag.is_empty() && etag != crate::domain::customer::etag(item.version) {
        return Err(Error::EtagMismatch {
            resource: item.name(),
        });
    }
    Ok(())
}

pub(super) async fn retract_knowledge_item(
    api: &KnowledgeApi,
    request: Request<pb::RetractKnowledgeItemRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let id = rules::parse_item_name(&req.name)
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let reason = match bounded_text(req.reason.trim(), 500) {
            Ok(r) if !r.is_empty() => r,
            Ok(_) => {
                violations.add("reason", "is required: why the item is retracted");
                String::new()
            }
            Err(why) => {
                violations.add("reason", why);
                String::new()
            }
        };
        let key = request_key(&caller, &req)?;
        let Some(id) = violations.into_result(id)? else {
            return Err(Error::unreported_missing_part());
        };
        api.db
            .write(
                key.as_ref(),
                |item: &pb::KnowledgeItem| vec![item.name.clone()],
                // A retry answers the retracted item, as the caller is
                // admitted to it now.
                async |tx, names| {
                    let id = rules::parse_item_name(&names[0])
                        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
                    let item = found(store::get_admitted(tx, &id, &access).await?, &access, &id)?;
                    Ok(item_pb(&item, Utc::now()))
                },
                async |tx| {
                    let current = found(store::get(tx, &id, &access, true).await?, &access, &id)?;
                    if !may_retract(&caller, &current) {
                        return Err(Error::denied(
                            "retract an item it neither wrote nor carries",
                        ));
                    }
                    check_item_etag(&req.etag, &current)?;
                    let retracted = store::retract(tx, &id, &reason, &caller.subject).await?;
                    Ok(item_pb(&retracted, Utc::now()))
                },
            )
            .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}

pub(super) async fn revoke_knowledge_grant(
    api: &KnowledgeApi,
    request: Request<pb::RevokeKnowledgeGrantRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let id = rules::parse_item_name(&req.name)
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let grantee = match req.grantee.as_ref() {
            None => {
                violations.add(
                    "grantee",
                    "is required: the team or branch whose grant ends",
                );
                None
            }
            Some(g) => match carrier_from(g.r#type) {
                Some(kind @ (CarrierType::Team | CarrierType::Branch)) => {
                    match org_code(&g.id, true) {
                        Ok(id) => Some(Carrier { kind, id }),
                        Err(why) => {
                            violations.add("grantee.id", why);
                            None
                        }
                    }
                }
                _ => {
                    violations.add("grantee.type", "must be TEAM or BRANCH");
                    None
                }
            },
        };
        let key = request_key(&caller, &req)?;
        let (Some(id), Some(grantee)) = violations.into_result((id, grantee))? else {
            return Err(Error::unreported_missing_part());
        };
        api.write_item(key.as_ref(), &access, async |tx| {
            let current = found(store::get(tx, &id, &access, true).await?, &access, &id)?;
            if current.item.author != caller.subject && !caller.has(Role::Admin) {
                return Err(Error::denied(
                    "revoke a grant of an item someone else wrote",
                ));
            }
            check_item_etag(&req.etag, &current)?;
            store::revoke_grant(tx, &id, &grantee, &caller.subject).await
        })
        .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}
