//! The append path: one interaction and a batch (the bulk import stream is
//! in `import`).

use super::*;

impl InteractionApi {
    /// Appends interactions for customers the caller may write, in one
    /// transaction; a customer out of reach fails the whole call.
    pub(super) async fn append_all(
        &self,
        conn: &mut sqlx::PgConnection,
        scope: &BranchScope,
        rows: &[(CustomerId, NewInteraction)],
    ) -> Result<Vec<Interaction>, Error> {
        let mut ids: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let reachable = store::lock_customers(conn, &ids, scope.branch()).await?;
        if let Some(missing) = ids.iter().find(|id| !reachable.iter().any(|r| r == *id)) {
            let id = CustomerId::parse(missing).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            return Err(unreachable_customer(conn, &id, scope).await);
        }
        self.metrics.observe_append_batch(rows.len());
        store::append(conn, rows, true)
            .await?
            .into_iter()
            .map(|appended| match appended {
                Appended::New(i) | Appended::Duplicate(i) => Ok(*i),
                Appended::Conflict(existing) => Err(external_ref_conflict(existing)),
                Appended::Skipped => {
                    Err(Error::Internal(anyhow::anyhow!("duplicate not read back")))
                }
            })
            .collect()
    }
}

pub(super) async fn log_interaction(
    api: &InteractionApi,
    request: Request<pb::LogInteractionRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().parent);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let customer = CustomerId::from_name(&req.parent)
            .inspect_err(|e| violations.add("parent", e.clone()))
            .ok();
        let new = match &req.interaction {
            Some(interaction) => read_interaction(
                interaction,
                Some(&req.interaction_id),
                &caller,
                api,
                "interaction",
                &mut violations,
            ),
            None => {
                violations.add("interaction", "is required");
                read_interaction(
                    &Default::default(),
                    None,
                    &caller,
                    api,
                    "interaction",
                    &mut Violations::default(),
                )
            }
        };
        let key = request_key(&caller, &req)?;
        let customer = violations.into_value(customer)?;
        let mut call = group_commit::Queued {
            key,
            scope,
            customer,
            new,
        };
        if let Some(group) = &api.group_commit {
            match group.submit(call).await {
                Ok((answer, written_at)) => {
                    if answer.is_ok() {
                        api.db.note_write_at(written_at);
                    }
                    return answer;
                }
                Err(back) => call = back,
            }
        }
        let group_commit::Queued {
            key,
            scope,
            customer,
            new,
        } = call;
        let rows = [(customer, new)];
        api.write_interaction(key.as_ref(), &scope, async |tx| {
            Ok(api.append_all(tx, &scope, &rows).await?.remove(0))
        })
        .await
    })
    .await
}

pub(super) async fn batch_log_interactions(
    api: &InteractionApi,
    request: Request<pb::BatchLogInteractionsRequest>,
) -> Result<Response<pb::BatchLogInteractionsResponse>, Status> {
    respond(async {
        crate::audit::note_customers(
            &request,
            request.get_ref().requests.iter().map(|r| r.parent.as_str()),
        );
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        if req.requests.is_empty() || req.requests.len() > rules::MAX_BATCH {
            return Err(Error::invalid(
                "requests",
                format!("must hold 1 to {} interactions", rules::MAX_BATCH),
            ));
        }
        let mut violations = Violations::default();
        let mut rows = Vec::with_capacity(req.requests.len());
        for (i, one) in req.requests.iter().enumerate() {
            let customer = CustomerId::from_name(&one.parent)
                .inspect_err(|e| violations.add(format!("requests[{i}].parent"), e.clone()))
                .ok();
            let prefix = format!("requests[{i}].interaction");
            let new = match &one.interaction {
                Some(interaction) => read_interaction(
                    interaction,
                    Some(&one.interaction_id),
                    &caller,
                    api,
                    &prefix,
                    &mut violations,
                ),
                None => {
                    violations.add(prefix, "is required");
                    continue;
                }
            };
            if let Some(customer) = customer {
                rows.push((customer, new));
            }
        }
        let key = request_key(&caller, &req)?;
        let rows = violations.into_result(rows)?;
        api.db
            .write(
                key.as_ref(),
                |r: &pb::BatchLogInteractionsResponse| {
                    r.interactions.iter().map(|i| i.name.clone()).collect()
                },
                async |tx, names| {
                    let current = current_interactions(tx, &names, &scope).await?;
                    Ok(pb::BatchLogInteractionsResponse {
                        interactions: current
                            .iter()
                            .map(|x| interaction_to(x, Utc::now()))
                            .collect(),
                    })
                },
                async |tx| {
                    let logged = api.append_all(tx, &scope, &rows).await?;
                    Ok(pb::BatchLogInteractionsResponse {
                        interactions: logged
                            .iter()
                            .map(|x| interaction_to(x, Utc::now()))
                            .collect(),
                    })
                },
            )
            .await
    })
    .await
}
