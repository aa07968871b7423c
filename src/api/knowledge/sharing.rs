//! Sharing an item: widening its visibility or granting a team or branch
//! access for a while.

use super::*;

pub(super) async fn share_knowledge_item(
    api: &KnowledgeApi,
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
        let key = request_key(&caller, &req)?;
        violations.into_result(())?;
        // The id of the recorded share, for the idempotency key.
        let share_id = std::sync::OnceLock::<i64>::new();
        api.db
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
                        knowledge_item: Some(item_pb(&item, Utc::now())),
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
                    revoked: None,
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
                    knowledge_item: Some(item_pb(&updated, Utc::now())),
                    share: Some(share_pb(&share)),
                })
            },
            )
            .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}
