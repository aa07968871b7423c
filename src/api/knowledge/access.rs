//! Who may see and write knowledge: the visibility rule, sharing consent,
//! source loading and what an idempotent replay re-reads.

use super::*;

/// The item, or AIP-211: a caller who does not see everything gets
/// PERMISSION_DENIED whether or not it exists.
pub fn found(
    item: Option<KnowledgeItem>,
    access: &KnowledgeAccess,
    id: &str,
) -> Result<KnowledgeItem, Error> {
    item.ok_or_else(|| {
        if access.all {
            Error::not_found(rules::item_name(id))
        } else {
            Error::denied(format!("see {}", rules::item_name(id)))
        }
    })
}

pub fn writer(caller: &Principal) -> Result<KnowledgeAccess, Error> {
    if !KnowledgeAccess::may_write(caller) {
        return Err(Error::denied("change customer knowledge"));
    }
    KnowledgeAccess::of(caller)
}

/// A conversion performed by `caller`, credited to their branch and team.
pub(super) fn converted<'a>(
    caller: &'a Principal,
    conversion: Conversion,
    sources: &'a [String],
    target: &'a str,
    from: CarrierType,
    to: CarrierType,
) -> ConversionRecord<'a> {
    ConversionRecord {
        conversion,
        sources,
        target,
        from,
        to,
        actor: &caller.subject,
        actor_branch: caller.branch.as_deref().unwrap_or_default(),
        actor_team: caller.team.as_deref().unwrap_or_default(),
    }
}

/// The one visibility rule, applied on every path that sets or widens who
/// sees an item (create, the four conversions, update, share): the item is
/// carried by and scoped to the caller's own team or branch (admins excepted);
/// a RESTRICTED item never reaches the whole bank; the whole bank only with
/// every subject customer's KNOWLEDGE_SHARING consent, read in the writing
/// transaction so a withdrawal takes effect at once.
pub async fn check_visibility(
    tx: &mut sqlx::PgConnection,
    caller: &Principal,
    item: &NewItem,
) -> Result<(), Error> {
    if !caller.has(Role::Admin) {
        let own = |claim: &Option<String>, id: &str| claim.as_deref() == Some(id);
        let foreign_carrier = match item.carrier.kind {
            CarrierType::Team => !own(&caller.team, &item.carrier.id),
            CarrierType::Branch => !own(&caller.branch, &item.carrier.id),
            _ => false,
        };
        let foreign_scope = match item.content.visibility {
            Visibility::Team => !own(&caller.team, &item.scope_team),
            Visibility::Branch => !own(&caller.branch, &item.scope_branch),
            _ => false,
        };
        if foreign_carrier || foreign_scope {
            return Err(Error::denied(
                "place knowledge with a team or branch other than its own",
            ));
        }
    }
    if item.content.visibility == Visibility::Bank {
        if item.content.sensitivity == Sensitivity::Restricted {
            return Err(Error::FailedPrecondition {
                reason: ErrorReason::Restricted,
                message: "a RESTRICTED item cannot be visible to the whole bank".into(),
            });
        }
        require_sharing_consent(tx, &item.content.subjects).await?;
    }
    Ok(())
}

/// Every subject customer has consented to KNOWLEDGE_SHARING beyond the
/// home branch (DESIGN §4).
pub async fn require_sharing_consent(
    tx: &mut sqlx::PgConnection,
    subjects: &[String],
) -> Result<(), Error> {
    if subjects.is_empty() {
        return Ok(());
    }
    let consented =
        customers::count_consented(tx, subjects, ConsentPurpose::KnowledgeSharing).await?;
    if consented != subjects.len() as i64 {
        return Err(Error::FailedPrecondition {
            reason: ErrorReason::ConsentRequired,
            message:
                "a subject customer has not consented to KNOWLEDGE_SHARING beyond the home branch"
                    .into(),
        });
    }
    Ok(())
}

pub(super) fn wrong_nature(item: &KnowledgeItem, wanted: Nature, operation: &str) -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::WrongNature,
        message: format!(
            "{} is {} knowledge; {operation} takes {} items",
            item.name(),
            item.item.nature.as_str(),
            wanted.as_str()
        ),
    }
}

impl KnowledgeApi {
    /// Checks the caller may read every subject customer and every source
    /// interaction, inside the writing transaction.
    pub(super) async fn check_references(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Principal,
        content: &ItemContent,
        interaction_sources: &[(String, String)],
    ) -> Result<(), Error> {
        let scope = caller.customer_read_scope()?;
        let subjects: Vec<&str> = content.subjects.iter().map(String::as_str).collect();
        let reachable = interactions::lock_customers(tx, &subjects, scope.branch()).await?;
        if reachable.len() != subjects.len() {
            return Err(Error::denied(
                "write knowledge about customers it cannot read (or that do not exist)",
            ));
        }
        if !interaction_sources.is_empty()
            && interactions::count_reachable(tx, interaction_sources, scope.branch()).await?
                != interaction_sources.len() as i64
        {
            return Err(Error::denied(
                "cite interactions it cannot read (or that do not exist)",
            ));
        }
        Ok(())
    }

    /// Inserts an item the caller writes from scratch (create, externalize,
    /// combine) after the checks every such item passes: the caller reads
    /// its subjects and cited interactions, and the visibility rule holds.
    pub(super) async fn insert_new(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Principal,
        access: &KnowledgeAccess,
        item: &NewItem,
        interaction_sources: &[(String, String)],
    ) -> Result<KnowledgeItem, Error> {
        self.check_references(tx, caller, &item.content, interaction_sources)
            .await?;
        check_visibility(tx, caller, item).await?;
        store::insert(tx, item, access).await
    }

    /// Loads source items the caller sees, in request order.
    pub(super) async fn load_sources(
        &self,
        tx: &mut sqlx::PgConnection,
        access: &KnowledgeAccess,
        ids: &[String],
    ) -> Result<Vec<KnowledgeItem>, Error> {
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let item = store::get(tx, id, access, false).await?;
            items.push(found(item, access, id)?);
        }
        Ok(items)
    }
}

/// Items by name as the caller may see them now: what an idempotent replay
/// returns, after the same visibility check as any read.
pub(super) async fn current_items(
    tx: &mut sqlx::PgConnection,
    names: &[String],
    access: &KnowledgeAccess,
) -> Result<Vec<KnowledgeItem>, Error> {
    let mut items = Vec::with_capacity(names.len());
    for name in names {
        let id = rules::parse_item_name(name)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
        items.push(found(
            store::get(tx, &id, access, false).await?,
            access,
            &id,
        )?);
    }
    Ok(items)
}

impl KnowledgeApi {
    /// `Db::write` for a call that answers one item: the key keeps its name,
    /// and a retry re-reads it as the caller may see it now.
    pub(super) async fn write_item(
        &self,
        key: Option<&IdempotencyKey>,
        access: &KnowledgeAccess,
        write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<KnowledgeItem, Error>,
    ) -> Result<pb::KnowledgeItem, Error> {
        self.db
            .write(
                key,
                |item: &pb::KnowledgeItem| vec![item.name.clone()],
                async |tx, names| {
                    Ok(item_pb(
                        &current_items(tx, &names, access).await?.remove(0),
                        Utc::now(),
                    ))
                },
                async |tx| Ok(item_pb(&write(tx).await?, Utc::now())),
            )
            .await
    }
}

pub(super) fn union_subjects(items: &[KnowledgeItem], extra: &[(String, String)]) -> Vec<String> {
    let mut subjects: Vec<String> = items
        .iter()
        .flat_map(|i| i.item.content.subjects.iter().cloned())
        .chain(extra.iter().map(|(c, _)| c.clone()))
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}
