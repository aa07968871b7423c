//! The append path: one interaction, a batch, and the bulk import stream.

use super::*;

/// Most rows one ImportInteractions message may carry.
pub(super) const MAX_IMPORT_ROWS_PER_MESSAGE: usize = 5000;

/// Rejections reported back by an import.
pub(super) const MAX_REPORTED_REJECTIONS: usize = 100;

/// How an import stream that went silent ends: its completed batches stay
/// committed, and re-sending the stream adds no row twice.
pub(super) fn idle_stream(idle: std::time::Duration) -> Status {
    crate::api::status::layer_status(
        tonic::Code::DeadlineExceeded,
        crate::error::ErrorReason::StreamIdle,
        &format!(
            "no message for {} s (api.stream_idle_timeout_secs); the batches completed so far are committed",
            idle.as_secs()
        ),
        None,
    )
}

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

    /// Writes one batch of an import: rows of customers out of reach are
    /// rejected, duplicates counted. Returns (accepted, duplicates).
    pub(super) async fn import_batch(
        &self,
        scope: &BranchScope,
        batch: &mut Vec<(i64, CustomerId, NewInteraction)>,
        rejections: &mut Vec<pb::import_interactions_response::Rejection>,
        rejected: &mut i64,
    ) -> Result<(i64, i64), Error> {
        if batch.is_empty() {
            return Ok((0, 0));
        }
        let mut tx = self.db.begin().await?;
        let mut ids: Vec<&str> = batch.iter().map(|(_, c, _)| c.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let reachable = store::lock_customers(&mut tx, &ids, scope.branch()).await?;
        let mut rows = Vec::with_capacity(batch.len());
        let mut indexes = Vec::with_capacity(batch.len());
        for (index, customer, new) in batch.drain(..) {
            if reachable
                .binary_search_by(|r| r.as_str().cmp(customer.as_str()))
                .is_ok()
            {
                rows.push((customer, new));
                indexes.push(index);
            } else {
                *rejected += 1;
                if rejections.len() < MAX_REPORTED_REJECTIONS {
                    rejections.push(pb::import_interactions_response::Rejection {
                        index,
                        field: "parent".into(),
                        reason: "the customer does not exist or is not reachable by the caller"
                            .into(),
                    });
                }
            }
        }
        let appended = store::append(&mut tx, &rows, false).await?;
        tx.commit().await?;
        self.db.note_write().await;
        self.metrics.observe_append_batch(rows.len());
        let (mut accepted, mut duplicates) = (0, 0);
        for (appended, index) in appended.iter().zip(indexes) {
            match appended {
                Appended::New(_) => accepted += 1,
                Appended::Duplicate(_) | Appended::Skipped => duplicates += 1,
                Appended::Conflict(existing) => {
                    *rejected += 1;
                    if rejections.len() < MAX_REPORTED_REJECTIONS {
                        rejections.push(pb::import_interactions_response::Rejection {
                            index,
                            field: "interaction.external_ref".into(),
                            reason: format!(
                                "EXTERNAL_REF_CONFLICT: {existing} is stored under this external_ref with other content"
                            ),
                        });
                    }
                }
            }
        }
        Ok((accepted, duplicates))
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
                Ok(answer) => {
                    if answer.is_ok() {
                        api.db.note_write().await;
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

pub(super) async fn import_interactions(
    api: &InteractionApi,
    request: Request<Streaming<pb::ImportInteractionsRequest>>,
) -> Result<Response<pb::ImportInteractionsResponse>, Status> {
    let audit = crate::audit::note(&request);
    let caller = principal(&request).map_err(Status::from)?;
    if !(caller.has(Role::Service) || caller.has(Role::Admin)) {
        return Err(Error::denied("import interactions (calling systems and admins only)").into());
    }
    let scope = caller.customer_write_scope().map_err(Status::from)?;
    let mut stream = request.into_inner();
    let mut batch: Vec<(i64, CustomerId, NewInteraction)> = Vec::new();
    let mut rejections = Vec::new();
    let (mut accepted, mut duplicates, mut rejected) = (0i64, 0i64, 0i64);
    let mut index = 0i64;
    let idle = api.streams.idle_timeout;
    while let Some(message) = tokio::time::timeout(idle, stream.message())
        .await
        .map_err(|_| idle_stream(idle))??
    {
        if message.rows.len() > MAX_IMPORT_ROWS_PER_MESSAGE {
            return Err(Error::invalid(
                "rows",
                format!("a message may carry at most {MAX_IMPORT_ROWS_PER_MESSAGE} rows"),
            )
            .into());
        }
        for row in message.rows {
            audit.customer(&row.parent);
            let mut violations = Violations::default();
            let customer = CustomerId::from_name(&row.parent)
                .inspect_err(|e| violations.add("parent", e.clone()))
                .ok();
            let new = match &row.interaction {
                Some(interaction) => read_interaction(
                    interaction,
                    None,
                    &caller,
                    api,
                    "interaction",
                    &mut violations,
                ),
                None => {
                    violations.add("interaction", "is required");
                    NewInteraction::placeholder()
                }
            };
            if new.external_ref.is_empty() && row.interaction.is_some() {
                violations.add(
                    "interaction.external_ref",
                    "is required for imports, so a re-sent stream creates no duplicates",
                );
            }
            match violations.into_result(customer) {
                Ok(Some(customer)) => batch.push((index, customer, new)),
                Ok(None) => return Err(Error::unreported_missing_part().into()),
                Err(Error::InvalidArgument(found)) => {
                    rejected += 1;
                    if rejections.len() < MAX_REPORTED_REJECTIONS {
                        let first = &found[0];
                        rejections.push(pb::import_interactions_response::Rejection {
                            index,
                            field: first.field.clone(),
                            reason: first.description.clone(),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
            index += 1;
            if batch.len() >= api.import_batch_size {
                let (a, d) = api
                    .import_batch(&scope, &mut batch, &mut rejections, &mut rejected)
                    .await?;
                accepted += a;
                duplicates += d;
            }
        }
    }
    let (a, d) = api
        .import_batch(&scope, &mut batch, &mut rejections, &mut rejected)
        .await?;
    accepted += a;
    duplicates += d;
    tracing::info!(accepted, duplicates, rejected, "import finished");
    Ok(Response::new(pb::ImportInteractionsResponse {
        accepted_count: accepted,
        duplicate_count: duplicates,
        rejected_count: rejected,
        rejections,
    }))
}
