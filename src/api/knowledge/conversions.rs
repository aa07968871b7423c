//! The four SECI conversions (externalize, combine, internalize,
//! socialize), each recorded with its lineage.

use super::*;

pub(super) async fn externalize_knowledge(
    api: &KnowledgeApi,
    request: Request<pb::ExternalizeKnowledgeRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let (items, interaction_sources) = split_sources(&req.source_items, &mut violations);
        if req.source_items.is_empty() {
            violations.add(
                "source_items",
                "must name at least one tacit item or interaction",
            );
        }
        let (mut item, subjects_given) = read_new_item(
            req.knowledge_item.as_ref(),
            &req.knowledge_item_id,
            Nature::Explicit,
            &caller,
            &mut violations,
        );
        let key = request_key(&caller, &req)?;
        violations.into_result(())?;
        item.content.sources = interaction_sources
            .iter()
            .map(|(c, i)| format!("customers/{c}/interactions/{i}"))
            .collect();
        api.write_item(key.as_ref(), &access, async |tx| {
            let sources = api.load_sources(tx, &access, &items).await?;
            if let Some(explicit) = sources.iter().find(|s| s.item.nature != Nature::Tacit) {
                return Err(wrong_nature(
                    explicit,
                    Nature::Tacit,
                    "ExternalizeKnowledge",
                ));
            }
            if !subjects_given {
                item.content.subjects = union_subjects(&sources, &interaction_sources);
            }
            api.insert_new(tx, &caller, &access, &item, &interaction_sources)
                .await?;
            store::record_conversion(
                tx,
                &converted(
                    &caller,
                    Conversion::Externalization,
                    &items,
                    &item.id,
                    // Only interactions: the customer carried it.
                    if sources.is_empty() {
                        CarrierType::Customer
                    } else {
                        CarrierType::Employee
                    },
                    item.carrier.kind,
                ),
            )
            .await?;
            store::reread(tx, &item.id).await
        })
        .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}

pub(super) async fn combine_knowledge(
    api: &KnowledgeApi,
    request: Request<pb::CombineKnowledgeRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let mut items = Vec::new();
        for (i, name) in req.source_items.iter().take(rules::MAX_SOURCES).enumerate() {
            match rules::parse_item_name(name) {
                Ok(id) if !items.contains(&id) => items.push(id),
                Ok(_) => violations.add(format!("source_items[{i}]"), "is listed twice"),
                Err(why) => violations.add(format!("source_items[{i}]"), why),
            }
        }
        if req.source_items.len() < 2 || req.source_items.len() > rules::MAX_SOURCES {
            violations.add(
                "source_items",
                format!("must name 2 to {} explicit items", rules::MAX_SOURCES),
            );
        }
        let (mut item, subjects_given) = read_new_item(
            req.knowledge_item.as_ref(),
            &req.knowledge_item_id,
            Nature::Explicit,
            &caller,
            &mut violations,
        );
        let key = request_key(&caller, &req)?;
        violations.into_result(())?;
        api.write_item(key.as_ref(), &access, async |tx| {
            let sources = api.load_sources(tx, &access, &items).await?;
            if let Some(tacit) = sources.iter().find(|s| s.item.nature != Nature::Explicit) {
                return Err(wrong_nature(tacit, Nature::Explicit, "CombineKnowledge"));
            }
            if !subjects_given {
                item.content.subjects = union_subjects(&sources, &[]);
            }
            api.insert_new(tx, &caller, &access, &item, &[]).await?;
            store::record_conversion(
                tx,
                &converted(
                    &caller,
                    Conversion::Combination,
                    &items,
                    &item.id,
                    sources[0].item.carrier.kind,
                    item.carrier.kind,
                ),
            )
            .await?;
            store::reread(tx, &item.id).await
        })
        .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}

pub(super) async fn internalize_knowledge(
    api: &KnowledgeApi,
    request: Request<pb::InternalizeKnowledgeRequest>,
) -> Result<Response<pb::InternalizeKnowledgeResponse>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let id = parse_item("name", &req.name)?;
        let employee = if req.employee.is_empty() {
            caller.subject.clone()
        } else {
            org_code(&req.employee, true).map_err(|e| Error::invalid("employee", e))?
        };
        if employee != caller.subject && !caller.has(Role::Admin) {
            return Err(Error::denied("record what another employee absorbed"));
        }
        let reflection = bounded_text(req.reflection.trim(), rules::MAX_BODY)
            .map_err(|e| Error::invalid("reflection", e))?;
        let key = request_key(&caller, &req)?;
        api.db
            .write(
                key.as_ref(),
                |r: &pb::InternalizeKnowledgeResponse| {
                    let i = r.internalization.clone().unwrap_or_default();
                    std::iter::once(i.item)
                        .chain(Some(i.tacit_item).filter(|t| !t.is_empty()))
                        .collect()
                },
                async |tx, names| {
                    let items = current_items(tx, &names, &access).await?;
                    let tacit = items.get(1).map(|t| t.item.id.clone());
                    let time =
                        store::internalization_time(tx, &id, &employee, tacit.as_deref()).await?;
                    Ok(pb::InternalizeKnowledgeResponse {
                        internalization: Some(pb::Internalization {
                            item: items[0].name(),
                            employee: employee.clone(),
                            tacit_item: tacit.map(|t| rules::item_name(&t)).unwrap_or_default(),
                            create_time: Some(timestamp(time)),
                        }),
                        tacit_item: items.get(1).map(|x| item_pb(x, Utc::now())),
                    })
                },
                async |tx| {
                    let source = found(store::get(tx, &id, &access, false).await?, &access, &id)?;
                    if source.item.nature != Nature::Explicit {
                        return Err(wrong_nature(
                            &source,
                            Nature::Explicit,
                            "InternalizeKnowledge",
                        ));
                    }
                    let tacit = if reflection.is_empty() {
                        None
                    } else {
                        let mut title = format!("Absorbed: {}", source.item.content.title);
                        title = title.chars().take(rules::MAX_TITLE).collect();
                        let carrier = Carrier {
                            kind: CarrierType::Employee,
                            id: employee.clone(),
                        };
                        let (scope_team, scope_branch) = scope_of(&carrier, &caller);
                        let item = NewItem {
                            id: uuid::Uuid::now_v7().to_string(),
                            content: ItemContent {
                                title,
                                body: reflection.clone(),
                                kind: source.item.content.kind,
                                subjects: source.item.content.subjects.clone(),
                                visibility: Visibility::Private,
                                sensitivity: source.item.content.sensitivity,
                                tags: source.item.content.tags.clone(),
                                sources: Vec::new(),
                            },
                            nature: Nature::Tacit,
                            carrier,
                            author: employee.clone(),
                            scope_team,
                            scope_branch,
                        };
                        store::insert(tx, &item, &access).await?;
                        Some(item.id)
                    };
                    let target = tacit.clone().unwrap_or_else(|| id.clone());
                    store::record_conversion(
                        tx,
                        &converted(
                            &caller,
                            Conversion::Internalization,
                            if tacit.is_some() {
                                std::slice::from_ref(&id)
                            } else {
                                &[]
                            },
                            &target,
                            source.item.carrier.kind,
                            CarrierType::Employee,
                        ),
                    )
                    .await?;
                    let time =
                        store::record_internalization(tx, &id, &employee, tacit.as_deref()).await?;
                    let tacit_item = match &tacit {
                        Some(t) => Some(item_pb(&store::reread(tx, t).await?, Utc::now())),
                        None => None,
                    };
                    Ok(pb::InternalizeKnowledgeResponse {
                        internalization: Some(pb::Internalization {
                            item: source.name(),
                            employee: employee.clone(),
                            tacit_item: tacit.map(|t| rules::item_name(&t)).unwrap_or_default(),
                            create_time: Some(timestamp(time)),
                        }),
                        tacit_item,
                    })
                },
            )
            .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}

pub(super) async fn socialize_knowledge(
    api: &KnowledgeApi,
    request: Request<pb::SocializeKnowledgeRequest>,
) -> Result<Response<pb::SocializeKnowledgeResponse>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let id = parse_item("name", &req.name)?;
        let mut violations = Violations::default();
        if req.recipients.is_empty() || req.recipients.len() > rules::MAX_RECIPIENTS {
            violations.add(
                "recipients",
                format!("must name 1 to {} employees", rules::MAX_RECIPIENTS),
            );
        }
        let mut recipients = Vec::new();
        for (i, r) in req
            .recipients
            .iter()
            .take(rules::MAX_RECIPIENTS)
            .enumerate()
        {
            match org_code(r, true) {
                Ok(r) if r == caller.subject => {
                    violations.add(format!("recipients[{i}]"), "is the mentor")
                }
                Ok(r) if !recipients.contains(&r) => recipients.push(r),
                Ok(_) => {}
                Err(why) => violations.add(format!("recipients[{i}]"), why),
            }
        }
        let notes = bounded_text(req.session_notes.trim(), rules::MAX_BODY)
            .inspect_err(|e| violations.add("session_notes", e.clone()))
            .unwrap_or_default();
        let key = request_key(&caller, &req)?;
        violations.into_result(())?;
        api.db
            .write(
                key.as_ref(),
                |r: &pb::SocializeKnowledgeResponse| {
                    r.knowledge_items.iter().map(|i| i.name.clone()).collect()
                },
                async |tx, names| {
                    let items = current_items(tx, &names, &access).await?;
                    Ok(pb::SocializeKnowledgeResponse {
                        knowledge_items: items.iter().map(|x| item_pb(x, Utc::now())).collect(),
                    })
                },
                async |tx| {
                    let source = found(store::get(tx, &id, &access, false).await?, &access, &id)?;
                    if source.item.nature != Nature::Tacit {
                        return Err(wrong_nature(&source, Nature::Tacit, "SocializeKnowledge"));
                    }
                    if source.item.carrier.id != caller.subject && !caller.has(Role::Admin) {
                        return Err(Error::denied("share tacit knowledge it does not carry"));
                    }
                    let mut created = Vec::new();
                    for recipient in &recipients {
                        let carrier = Carrier {
                            kind: CarrierType::Employee,
                            id: recipient.clone(),
                        };
                        let item = NewItem {
                            id: uuid::Uuid::now_v7().to_string(),
                            content: ItemContent {
                                body: if notes.is_empty() {
                                    source.item.content.body.clone()
                                } else {
                                    notes.clone()
                                },
                                visibility: Visibility::Private,
                                sources: Vec::new(),
                                ..source.item.content.clone()
                            },
                            nature: Nature::Tacit,
                            carrier,
                            author: recipient.clone(),
                            scope_team: source.item.scope_team.clone(),
                            scope_branch: source.item.scope_branch.clone(),
                        };
                        check_visibility(tx, &caller, &item).await?;
                        store::insert(tx, &item, &access).await?;
                        store::record_conversion(
                            tx,
                            &converted(
                                &caller,
                                Conversion::Socialization,
                                std::slice::from_ref(&id),
                                &item.id,
                                CarrierType::Employee,
                                CarrierType::Employee,
                            ),
                        )
                        .await?;
                        created.push(item_pb(&store::reread(tx, &item.id).await?, Utc::now()));
                    }
                    Ok(pb::SocializeKnowledgeResponse {
                        knowledge_items: created,
                    })
                },
            )
            .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}
