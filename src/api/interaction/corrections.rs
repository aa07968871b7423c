//! Taking an interaction out of the record without deleting it:
//! VoidInteraction, and CorrectInteraction (a new interaction supersedes the
//! original). The original stays, with who, when and why, for audit.

use super::*;

/// Why reasons are bounded: they are free text kept with the record.
const MAX_REASON: usize = 500;

/// The answer an ordinary read gets for an interaction out of the record:
/// NOT_FOUND naming why, and the correction to read instead.
pub(crate) fn not_current(interaction: &Interaction) -> Error {
    let name = interaction.name();
    match &interaction.void {
        Some(v) if !v.superseded_by.is_empty() => {
            let correction = rules::interaction_name(&interaction.customer, &v.superseded_by);
            Error::Gone {
                reason: ErrorReason::InteractionSuperseded,
                message: format!("{name} was superseded by the correction {correction}"),
                metadata: vec![("resource".into(), name), ("correction".into(), correction)],
            }
        }
        _ => Error::Gone {
            reason: ErrorReason::InteractionVoided,
            message: format!("{name} was voided"),
            metadata: vec![("resource".into(), name)],
        },
    }
}

/// Ok for an interaction still in the record; a voided or superseded one
/// cannot change again (FAILED_PRECONDITION naming its state).
pub(crate) fn check_current(interaction: &Interaction) -> Result<(), Error> {
    let Some(void) = &interaction.void else {
        return Ok(());
    };
    let name = interaction.name();
    let mut metadata = vec![
        ("resource".to_string(), name.clone()),
        ("state".to_string(), void.state().to_string()),
    ];
    let mut message = format!("{name} is {}", void.state());
    if !void.superseded_by.is_empty() {
        let correction = rules::interaction_name(&interaction.customer, &void.superseded_by);
        message.push_str(&format!(" by {correction}; change the correction instead"));
        metadata.push(("correction".to_string(), correction));
    } else {
        message.push_str("; it cannot change any more");
    }
    Err(Error::Blocked {
        reason: ErrorReason::InteractionNotCurrent,
        message,
        metadata,
    })
}

/// The interaction a void or a correction takes out of the record.
struct Target {
    customer: CustomerId,
    id: String,
    name: String,
    reason: String,
    etag: String,
}

/// Reads the parts shared by both methods, adding every violation.
fn read_target(name: &str, reason: &str, etag: &str, violations: &mut Violations) -> Target {
    let (customer, id) = match rules::parse_child_name(name, "interactions") {
        Ok(parsed) => parsed,
        Err(e) => {
            violations.add("name", e);
            (CustomerId::generate(), String::new())
        }
    };
    let reason = match rules::text(reason.trim(), MAX_REASON) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            violations.add(
                "reason",
                "is required: why the interaction leaves the record",
            );
            String::new()
        }
        Err(why) => {
            violations.add("reason", why);
            String::new()
        }
    };
    Target {
        customer,
        id,
        name: name.to_string(),
        reason,
        etag: etag.to_string(),
    }
}

impl TryFrom<&pb::VoidInteractionRequest> for Target {
    type Error = Error;

    fn try_from(req: &pb::VoidInteractionRequest) -> Result<Self, Error> {
        let pb::VoidInteractionRequest {
            name,
            reason,
            etag,
            request_id: _,
        } = req;
        let mut violations = Violations::default();
        let target = read_target(name, reason, etag, &mut violations);
        violations.into_result(target)
    }
}

/// Locks the customer (in the caller's write scope, in SQL) and the
/// interaction, and checks that it may still leave the record.
async fn locked_current(
    tx: &mut sqlx::PgConnection,
    target: &Target,
    scope: &BranchScope,
) -> Result<Interaction, Error> {
    lock_reachable_customer(tx, &target.customer, scope).await?;
    let current = store::get(tx, &target.customer, &target.id, true)
        .await?
        .ok_or_else(|| Error::not_found(target.name.clone()))?;
    check_current(&current)?;
    if !target.etag.is_empty() && target.etag != current.etag() {
        return Err(Error::EtagMismatch {
            resource: target.name.clone(),
        });
    }
    Ok(current)
}

pub(super) async fn void_interaction(
    api: &InteractionApi,
    request: Request<pb::VoidInteractionRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let key = request_key(&caller, &req)?;
        let target = Target::try_from(&req)?;
        check_acting_for(&caller, target.customer.as_str())?;
        api.write_interaction(key.as_ref(), &scope, async |tx| {
            locked_current(tx, &target, &scope).await?;
            store::void(
                tx,
                &target.customer,
                &target.id,
                &target.reason,
                &caller.subject,
                "",
            )
            .await
        })
        .await
    })
    .await
}

pub(super) async fn correct_interaction(
    api: &InteractionApi,
    request: Request<pb::CorrectInteractionRequest>,
) -> Result<Response<pb::Interaction>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let pb::CorrectInteractionRequest {
            name,
            interaction,
            interaction_id,
            reason,
            etag,
            request_id: _,
        } = &req;
        let mut violations = Violations::default();
        let target = read_target(name, reason, etag, &mut violations);
        let correction = match interaction {
            Some(interaction) => read_interaction(
                interaction,
                Some(interaction_id),
                &caller,
                api,
                "interaction",
                &mut violations,
            ),
            None => {
                violations.add("interaction", "is required: the corrected interaction");
                NewInteraction::placeholder()
            }
        };
        if !target.id.is_empty() && correction.id == target.id {
            violations.add(
                "interaction_id",
                "must differ from the corrected interaction's",
            );
        }
        let key = request_key(&caller, &req)?;
        let (target, correction) = violations.into_result((target, correction))?;
        check_acting_for(&caller, target.customer.as_str())?;
        api.write_interaction(key.as_ref(), &scope, async |tx| {
            let original = locked_current(tx, &target, &scope).await?;
            let mut correction = correction.clone();
            // A correction is of what happened then: without a time of its
            // own it keeps the original's.
            if !correction.occur_time_stated {
                correction.occur_time = original.fields.occur_time;
            }
            let correction_id = correction.id.clone();
            let rows = [(target.customer.clone(), correction)];
            // The original first: a watcher sees it SUPERSEDED just before
            // the correction that replaces it.
            store::void(
                tx,
                &target.customer,
                &target.id,
                &target.reason,
                &caller.subject,
                &correction_id,
            )
            .await?;
            let logged = api.append_all(tx, &scope, &rows).await?.remove(0);
            if logged.fields.id != correction_id {
                // A re-sent external_ref answered a stored interaction: a
                // correction must be new.
                return Err(external_ref_conflict(logged.name()));
            }
            store::mark_correction(tx, &target.customer, &correction_id, &target.id).await
        })
        .await
    })
    .await
}
