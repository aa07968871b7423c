//! Which customers the caller may reach (DESIGN §3, AIP-211), and what an
//! idempotent replay re-reads.

use super::*;

/// A customer the caller asked for, or why they cannot have it: outside the
/// caller's scope is PERMISSION_DENIED whether or not it exists (AIP-211).
pub fn resolve(found: Found, scope: &BranchScope, id: &CustomerId) -> Result<Customer, Error> {
    match found {
        Found::Customer(customer) => Ok(*customer),
        Found::Erased => Err(Error::not_found(id.name())),
        Found::Merged(survivor) => Err(merged_into(id, &survivor)),
        Found::Nothing => match scope {
            BranchScope::All => Err(Error::not_found(id.name())),
            BranchScope::Branch(_) => Err(Error::denied(format!(
                "reach {}: it does not exist or is outside your reach",
                id.name()
            ))),
        },
    }
}

/// The customer a write hangs off (an interaction, a follow-up, a complaint
/// change), share-locked until the transaction ends so that an erasure
/// cannot commit in between; NOT_FOUND when one committed first.
pub async fn lock_reachable_customer(
    tx: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Result<Customer, Error> {
    let found = customers::get(tx, id, scope.branch(), Lock::Share).await?;
    resolve(found, scope, id)
}

/// NOT_FOUND for a merged duplicate, naming the survivor to call instead.
pub fn merged_into(id: &CustomerId, survivor: &CustomerId) -> Error {
    Error::Gone {
        reason: crate::error::ErrorReason::CustomerMerged,
        message: format!("{} was merged into {}", id.name(), survivor.name()),
        metadata: vec![
            ("resource".into(), id.name()),
            ("survivor".into(), survivor.name()),
        ],
    }
}

pub fn parse_name(field: &str, name: &str) -> Result<CustomerId, Error> {
    CustomerId::from_name(name).map_err(|e| Error::invalid(field, e))
}

/// The customer as the caller may see it now: what an idempotent replay
/// returns (AIP-155), after the same access check as the original write.
pub(super) async fn current_customer(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: &BranchScope,
    caller: &Principal,
) -> Result<pb::Customer, Error> {
    let id = CustomerId::from_name(name)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
    let found = customers::get(tx, &id, scope.branch(), Lock::None).await?;
    Ok(customer_to_proto(&resolve(found, scope, &id)?, caller))
}

/// What an idempotency key keeps of a customer response: its name only.
pub(super) fn customer_names(customer: &pb::Customer) -> Vec<String> {
    vec![customer.name.clone()]
}

pub fn check_etag(etag: &str, customer: &Customer) -> Result<(), Error> {
    if !etag.is_empty() && etag != customer.etag() {
        return Err(Error::EtagMismatch {
            resource: customer.id.name(),
        });
    }
    Ok(())
}

impl CustomerApi {
    /// `Db::write` for a call that answers one customer: the key keeps its
    /// name, and a retry re-reads it as the caller may see it now.
    pub(super) async fn write_customer(
        &self,
        key: Option<&IdempotencyKey>,
        scope: &BranchScope,
        caller: &Principal,
        write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<Customer, Error>,
    ) -> Result<pb::Customer, Error> {
        self.db
            .write(
                key,
                customer_names,
                async |tx, names| current_customer(tx, &names[0], scope, caller).await,
                async |tx| Ok(customer_to_proto(&write(tx).await?, caller)),
            )
            .await
    }
}
