//! Which customers, interactions and follow-ups the caller may reach, and
//! what an idempotent replay re-reads.

use super::*;

/// The error for a customer a write could not reach: told apart precisely
/// only on this error path, on the write's own connection (a second one,
/// taken while the transaction holds the first, could wait on a drained pool
/// forever).
pub(super) async fn unreachable_customer(
    conn: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Error {
    unreachable_because(conn, id, scope)
        .await
        .unwrap_or_else(|e| e)
}

/// `unreachable_customer`, telling the database's own failure (Err: the
/// transaction is lost) from the caller's error (Ok).
pub(super) async fn unreachable_because(
    conn: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Result<Error, Error> {
    let found = customers::get(conn, id, scope.branch(), Lock::None).await?;
    Ok(match resolve(found, scope, id) {
        Err(e) => e,
        Ok(_) => Error::Internal(anyhow::anyhow!("customer became reachable mid-call")),
    })
}

/// A write under an external reference that holds another interaction.
pub(super) fn external_ref_conflict(existing: String) -> Error {
    Error::AlreadyExists {
        resource: "an interaction with this external_ref and other content".into(),
        reason: ErrorReason::ExternalRefConflict,
        existing: Some(existing),
    }
}

/// Interactions by name as they are now, each of a customer the caller may
/// still reach in `scope`: what an idempotent replay returns.
pub(super) async fn current_interactions(
    tx: &mut sqlx::PgConnection,
    names: &[String],
    scope: &BranchScope,
) -> Result<Vec<Interaction>, Error> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(current_interaction(tx, name, scope).await??);
    }
    Ok(out)
}

/// One interaction of `current_interactions`: Err when the database failed
/// (the transaction is lost), Ok(Err) for the caller's own error.
pub(super) async fn current_interaction(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: &BranchScope,
) -> Result<Result<Interaction, Error>, Error> {
    let (customer, id) = match rules::parse_child_name(name, "interactions") {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Err(Error::Internal(anyhow::anyhow!("stored name: {e}")))),
    };
    let found = customers::get(tx, &customer, scope.branch(), Lock::None).await?;
    if let Err(e) = resolve(found, scope, &customer) {
        return Ok(Err(e));
    }
    Ok(store::get(tx, &customer, &id, false)
        .await?
        .ok_or_else(|| Error::not_found(name.to_string())))
}

/// A follow-up by name as it is now, of a customer the caller may still reach.
pub(super) async fn current_follow_up(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: &BranchScope,
) -> Result<FollowUp, Error> {
    let (customer, id) = rules::parse_child_name(name, "followUps")
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
    let found = customers::get(tx, &customer, scope.branch(), Lock::None).await?;
    resolve(found, scope, &customer)?;
    store::get_follow_up(tx, &customer, &id, false)
        .await?
        .ok_or_else(|| Error::not_found(name.to_string()))
}

/// A customer the caller may read: Ok, or the error to return (AIP-211).
pub async fn readable_customer(
    conn: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Result<(), Error> {
    let found = customers::get(conn, id, scope.branch(), Lock::None).await?;
    resolve(found, scope, id).map(|_| ())
}

impl InteractionApi {
    /// `Db::write` for a call that answers one follow-up: the key keeps its
    /// name, and a retry re-reads it as it is now, in the caller's reach.
    pub(super) async fn write_follow_up(
        &self,
        key: Option<&IdempotencyKey>,
        scope: &BranchScope,
        write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<FollowUp, Error>,
    ) -> Result<pb::FollowUp, Error> {
        self.db
            .write(
                key,
                |f: &pb::FollowUp| vec![f.name.clone()],
                async |tx, names| {
                    Ok(follow_up_to(
                        &current_follow_up(tx, &names[0], scope).await?,
                        Utc::now(),
                    ))
                },
                async |tx| Ok(follow_up_to(&write(tx).await?, Utc::now())),
            )
            .await
    }

    /// `Db::write` for a call that answers one interaction, replayed the
    /// same way.
    pub(super) async fn write_interaction(
        &self,
        key: Option<&IdempotencyKey>,
        scope: &BranchScope,
        write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<Interaction, Error>,
    ) -> Result<pb::Interaction, Error> {
        self.db
            .write(
                key,
                |i: &pb::Interaction| vec![i.name.clone()],
                async |tx, names| {
                    Ok(interaction_to(
                        &current_interactions(tx, &names, scope).await?.remove(0),
                        Utc::now(),
                    ))
                },
                async |tx| Ok(interaction_to(&write(tx).await?, Utc::now())),
            )
            .await
    }
}
