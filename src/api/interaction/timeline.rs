//! Reading interactions: one by name, and a customer's timeline.

use super::*;
use crate::api::{
    page_token::{ListTokens, RowKeys, list_order},
    read_mask::Shape,
};

/// A timeline pages by (occur_time, id), newest first; tokens of that order
/// keep the context they had before order_by existed.
const TIMELINE_TOKENS: ListTokens = ListTokens {
    natural_timed: true,
    order_always_named: false,
};

pub(super) async fn get_interaction(
    api: &InteractionApi,
    request: Request<pb::GetInteractionRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let name = &req.name;
        let (customer, id) =
            rules::parse_child_name(name, "interactions").map_err(|e| Error::invalid("name", e))?;
        let shape = Shape::of::<pb::Interaction>(req.view, req.read_mask.as_ref(), true)?;
        check_acting_for(&caller, customer.as_str())?;
        let mut conn = api.db.acquire().await?;
        readable_customer(&mut conn, &customer, &scope).await?;
        match store::get(&mut conn, &customer, &id, false).await? {
            Some(interaction) if !caller.reads_audit() && interaction.void.is_some() => {
                Err(not_current(&interaction))
            }
            Some(interaction) => Ok(shape.apply(for_caller(
                interaction_to(&interaction, Utc::now()),
                &caller,
            ))),
            None => Err(Error::not_found(name.clone())),
        }
    })
    .await
}

pub(super) async fn list_interactions(
    api: &InteractionApi,
    request: Request<pb::ListInteractionsRequest>,
) -> Result<Response<pb::ListInteractionsResponse>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().parent);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let customer = parse_name("parent", &req.parent)?;
        let limit = page_size(req.page_size)?;
        let shape = Shape::of::<pb::Interaction>(req.view, req.read_mask.as_ref(), false)?;
        let mut violations = Violations::default();
        let mut query = timeline_filter(&req.filter)
            .inspect_err(|e| violations.add("filter", e.clone()))
            .unwrap_or_default();
        query.order = list_order(&req.order_by, &mut violations);
        violations.into_result(())?;
        let pages = api.page_tokens.ordered(
            TIMELINE_TOKENS,
            query.order,
            format!(
                "ListInteractions|{}|{}|{}",
                caller.subject, req.parent, req.filter
            ),
        );
        if let Some(keyset) = pages.resume::<1>(&req.page_token)? {
            let (time, [id]) = keyset.timed()?;
            query.after = Some((time, id));
        }
        check_acting_for(&caller, customer.as_str())?;
        let mut conn = api.db.acquire_read().await?;
        readable_customer(&mut conn, &customer, &scope).await?;
        let mut page = store::timeline(&mut conn, &customer, &query, limit + 1).await?;
        drop(conn);
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |i| shape.apply(interaction_to(i, Utc::now())).encoded_len(),
            |last| RowKeys {
                natural_time: Some(last.fields.occur_time),
                update_time: last.update_time,
                ids: [last.fields.id.clone()],
            },
        );
        Ok(pb::ListInteractionsResponse {
            interactions: page
                .iter()
                .map(|i| shape.apply(for_caller(interaction_to(i, Utc::now()), &caller)))
                .collect(),
            next_page_token,
        })
    })
    .await
}
