//! Knowledge items: create, read, update, list, search and verify.

use super::*;
use crate::api::{
    page_token::{ListTokens, RowKeys, list_order},
    read_mask::Shape,
};

pub(super) async fn create_knowledge_item(
    api: &KnowledgeApi,
    request: Request<pb::CreateKnowledgeItemRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let input = req.knowledge_item.clone().unwrap_or_default();
        if req.knowledge_item.is_none() {
            violations.add("knowledge_item", "is required");
        }
        let content_fields: Vec<&str> = CONTENT_FIELDS.to_vec();
        let mut content = read_content(&input, &content_fields, "knowledge_item", &mut violations);
        let nature = nature_from(input.nature).unwrap_or_else(|| {
            violations.add("knowledge_item.nature", "is required: TACIT or EXPLICIT");
            Nature::Explicit
        });
        let sources =
            read_interaction_sources(&input.sources, "knowledge_item.sources", &mut violations);
        content.sources = input.sources.clone();
        let carrier = read_carrier(input.carrier.as_ref(), nature, &caller, &mut violations);
        let id = new_id(&req.knowledge_item_id, &mut violations);
        let key = request_key(&caller, &req)?;
        violations.into_result(())?;
        let (scope_team, scope_branch) = scope_of(&carrier, &caller);
        let item = NewItem {
            id,
            content,
            nature,
            carrier,
            author: caller.subject.clone(),
            scope_team,
            scope_branch,
        };
        api.write_item(key.as_ref(), &access, async |tx| {
            api.insert_new(tx, &caller, &access, &item, &sources).await
        })
        .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}

pub(super) async fn get_knowledge_item(
    api: &KnowledgeApi,
    request: Request<pb::GetKnowledgeItemRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let req = request.get_ref();
        let id = parse_item("name", &req.name)?;
        let shape = Shape::of::<pb::KnowledgeItem>(req.view, req.read_mask.as_ref(), true)?;
        let item = api.db.get_knowledge_item(&id, &access).await?;
        let item = item_pb(&found(item, &access, &id)?, Utc::now());
        // The audit names every subject, whatever the mask leaves out.
        crate::audit::note_customers_in(&request, &item);
        Ok(shape.apply(item))
    })
    .await
}

pub(super) async fn update_knowledge_item(
    api: &KnowledgeApi,
    request: Request<pb::UpdateKnowledgeItemRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let input = req
            .knowledge_item
            .clone()
            .ok_or_else(|| Error::invalid("knowledge_item", "is required"))?;
        let id = parse_item("knowledge_item.name", &input.name)?;
        let mut violations = Violations::default();
        let paths = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add("update_mask", "must name the fields to change");
        }
        let mut fields: Vec<&str> = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            // AIP-134: `*` replaces every field an update may change;
            // what the request leaves unset is cleared (or refused when
            // required).
            if path == "*" {
                fields = CONTENT_FIELDS.to_vec();
                continue;
            }
            match CONTENT_FIELDS.iter().find(|f| **f == path.as_str()) {
                Some(f) if !fields.contains(f) => fields.push(f),
                Some(_) => {}
                None if FIXED_FIELDS.contains(&path.as_str()) => violations.add(
                    format!("update_mask.paths[{i}]"),
                    format!("{path} cannot be changed by an update"),
                ),
                None => violations.add(
                    format!("update_mask.paths[{i}]"),
                    format!("{path} is not a field of KnowledgeItem"),
                ),
            }
        }
        let values = read_content(&input, &fields, "knowledge_item", &mut violations);
        let key = request_key(&caller, &req)?;
        violations.into_result(())?;
        api.write_item(key.as_ref(), &access, async |tx| {
                let current = found(store::get(tx, &id, &access, true).await?, &access, &id)?;
                if current.item.author != caller.subject && !caller.has(Role::Admin) {
                    return Err(Error::denied("change an item someone else wrote"));
                }
                if !input.etag.is_empty()
                    && input.etag != crate::domain::customer::etag(current.version)
                {
                    return Err(Error::EtagMismatch {
                        resource: current.name(),
                    });
                }
                let mut content = current.item.content.clone();
                for field in &fields {
                    match *field {
                        "title" => content.title = values.title.clone(),
                        "body" => content.body = values.body.clone(),
                        "kind" => content.kind = values.kind,
                        "subjects" => content.subjects = values.subjects.clone(),
                        "visibility" => content.visibility = values.visibility,
                        "sensitivity" => content.sensitivity = values.sensitivity,
                        "tags" => content.tags = values.tags.clone(),
                        _ => {}
                    }
                }
                if content.visibility.is_wider_than(current.item.content.visibility) {
                    return Err(Error::FailedPrecondition {
                        reason: ErrorReason::NotNarrower,
                        message: format!(
                            "an update only narrows visibility: the item is {}; widen it with ShareKnowledgeItem",
                            current.item.content.visibility.as_str()
                        ),
                    });
                }
                if fields.contains(&"subjects") {
                    api.check_references(tx, &caller, &content, &[]).await?;
                }
                check_visibility(
                    tx,
                    &caller,
                    &NewItem {
                        content: content.clone(),
                        ..current.item.clone()
                    },
                )
                .await?;
                let reset = fields
                    .iter()
                    .any(|f| ["title", "body", "kind", "subjects"].contains(f));
                let updated = store::update(tx, &id, &content, reset, &fields).await?;
                Ok(updated)
            })
        .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}

/// ListKnowledgeItems pages by id; tokens of that order keep the context
/// they had before order_by existed.
const LIST_ITEMS_TOKENS: ListTokens = ListTokens {
    natural_timed: false,
    order_always_named: false,
};

pub(super) async fn list_knowledge_items(
    api: &KnowledgeApi,
    request: Request<pb::ListKnowledgeItemsRequest>,
) -> Result<Response<pb::ListKnowledgeItemsResponse>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let req = request.get_ref();
        let limit = page_size(req.page_size)?;
        let shape = Shape::of::<pb::KnowledgeItem>(req.view, req.read_mask.as_ref(), false)?;
        let mut violations = Violations::default();
        let query = item_filter(&req.filter)
            .inspect_err(|e| violations.add("filter", e.clone()))
            .unwrap_or_default();
        let order = list_order(&req.order_by, &mut violations);
        violations.into_result(())?;
        let pages = api.page_tokens.ordered(
            LIST_ITEMS_TOKENS,
            order,
            format!("ListKnowledgeItems|{}|{}", caller.subject, req.filter),
        );
        let after = pages.resume::<1>(&req.page_token)?;
        let mut page = api
            .db
            .list_knowledge_items(
                &access,
                &query,
                order,
                after.as_ref().map(|k| (k.time, k.ids[0].as_str())),
                limit + 1,
            )
            .await?;
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |i| shape.apply(item_pb(i, Utc::now())).encoded_len(),
            |last| RowKeys {
                natural_time: None,
                update_time: last.update_time,
                ids: [last.item.id.clone()],
            },
        );
        let mut page = pb::ListKnowledgeItemsResponse {
            knowledge_items: page.iter().map(|x| item_pb(x, Utc::now())).collect(),
            next_page_token,
        };
        // The audit names every subject, whatever the mask leaves out.
        crate::audit::note_customers_in(&request, &page);
        page.knowledge_items = shape.apply_all(page.knowledge_items);
        Ok(page)
    })
    .await
}

pub(super) async fn search_knowledge_items(
    api: &KnowledgeApi,
    request: Request<pb::SearchKnowledgeItemsRequest>,
) -> Result<Response<pb::SearchKnowledgeItemsResponse>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let req = request.get_ref();
        let limit = page_size(req.page_size)?;
        let shape = Shape::of::<pb::KnowledgeItem>(req.view, req.read_mask.as_ref(), false)?;
        if req.query.chars().count() > search::MAX_QUERY_CHARS {
            return Err(Error::invalid(
                "query",
                format!("must be at most {} characters", search::MAX_QUERY_CHARS),
            ));
        }
        let (latin, cjk) = search::split_query(&req.query);
        if latin.is_empty() && cjk.is_none() {
            return Err(Error::invalid("query", "must contain at least one word"));
        }
        let context = format!("SearchKnowledgeItems|{}|{}", caller.subject, req.query);
        let offset: i64 = match api.page_tokens.decode(&req.page_token, &context)? {
            None => 0,
            Some(cursor) => cursor
                .parse()
                .map_err(|_| Error::invalid("page_token", "is not a page token of this search"))?,
        };
        let mut page = api
            .db
            .search_knowledge_items(&access, &latin, cjk.as_deref(), offset, limit + 1)
            .await?;
        let next_page_token = api.page_tokens.next_sized_page(
            &mut page,
            limit,
            &context,
            |i| shape.apply(item_pb(i, Utc::now())).encoded_len(),
            |_, kept| (offset + kept as i64).to_string(),
        );
        let mut page = pb::SearchKnowledgeItemsResponse {
            knowledge_items: page.iter().map(|x| item_pb(x, Utc::now())).collect(),
            next_page_token,
        };
        crate::audit::note_customers_in(&request, &page);
        page.knowledge_items = shape.apply_all(page.knowledge_items);
        Ok(page)
    })
    .await
}

pub(super) async fn verify_knowledge_item(
    api: &KnowledgeApi,
    request: Request<pb::VerifyKnowledgeItemRequest>,
) -> Result<Response<pb::KnowledgeItem>, Status> {
    let audit = crate::audit::note(&request);
    respond(async {
        let caller = principal(&request)?;
        let access = writer(&caller)?;
        let req = request.into_inner();
        let id = parse_item("name", &req.name)?;
        let interval = req
            .review_interval
            .as_ref()
            .map(|d| {
                // Checked: a caller may send any i64 of seconds.
                Duration::try_seconds(d.seconds)
                    .and_then(|s| s.checked_add(&Duration::nanoseconds(i64::from(d.nanos))))
                    .ok_or_else(|| {
                        Error::invalid("review_interval", "is not a duration the service can hold")
                    })
            })
            .transpose()?;
        let interval =
            rules::review_interval(interval).map_err(|e| Error::invalid("review_interval", e))?;
        let key = request_key(&caller, &req)?;
        api.write_item(key.as_ref(), &access, async |tx| {
            let current = found(store::get(tx, &id, &access, true).await?, &access, &id)?;
            if current.item.author == caller.subject {
                return Err(Error::denied("verify an item it wrote itself"));
            }
            if !req.etag.is_empty() && req.etag != crate::domain::customer::etag(current.version) {
                return Err(Error::EtagMismatch {
                    resource: current.name(),
                });
            }
            let verified = store::verify(tx, &id, &caller.subject, Utc::now() + interval).await?;
            Ok(verified)
        })
        .await
    })
    .await
    .inspect(|response| audit.customers_in(response.get_ref()))
}
