//! Reading and validating knowledge requests: content, carriers, sources
//! and filters, each collecting every field violation at once.

use super::*;

/// The content fields an update mask may name.
pub(super) const CONTENT_FIELDS: &[&str] = &[
    "title",
    "body",
    "kind",
    "subjects",
    "visibility",
    "sensitivity",
    "tags",
];

/// Fields fixed at creation or kept by the service.
pub(super) const FIXED_FIELDS: &[&str] = &[
    "name",
    "nature",
    "carrier",
    "author",
    "sources",
    "derived_from",
    "verification",
    "grants",
    "etag",
    "create_time",
    "update_time",
];

/// Reads the content fields in `fields`, collecting violations under
/// `prefix`; fields not listed keep defaults and are not looked at.
pub(super) fn read_content(
    input: &pb::KnowledgeItem,
    fields: &[&str],
    prefix: &str,
    violations: &mut Violations,
) -> ItemContent {
    let mut content = ItemContent {
        title: String::new(),
        body: String::new(),
        kind: KnowledgeKind::Other,
        subjects: Vec::new(),
        visibility: Visibility::Private,
        sensitivity: Sensitivity::Internal,
        tags: Vec::new(),
        sources: Vec::new(),
    };
    let mut bad = |field: &str, why: String| violations.add(format!("{prefix}.{field}"), why);
    for field in fields {
        match *field {
            "title" => match bounded_text(input.title.trim(), rules::MAX_TITLE) {
                Ok(t) if !t.is_empty() => content.title = t,
                Ok(_) => bad("title", "is required".into()),
                Err(why) => bad("title", why),
            },
            "body" => match bounded_text(&input.body, rules::MAX_BODY) {
                Ok(b) => content.body = b,
                Err(why) => bad("body", why),
            },
            "kind" => match kind_from(input.kind) {
                Some(k) => content.kind = k,
                None => bad(
                    "kind",
                    "is required: PREFERENCE, NEED, RISK, RELATIONSHIP, PRODUCT_FIT, SERVICE_EXPERIENCE, COMPLAINT_INSIGHT, PLAYBOOK or OTHER".into(),
                ),
            },
            "subjects" => {
                if input.subjects.len() > rules::MAX_SUBJECTS {
                    bad("subjects", format!("must hold at most {}", rules::MAX_SUBJECTS));
                }
                for (i, subject) in input.subjects.iter().take(rules::MAX_SUBJECTS).enumerate() {
                    match CustomerId::from_name(subject) {
                        Ok(id) if !content.subjects.contains(&id.as_str().to_string()) => {
                            content.subjects.push(id.as_str().to_string())
                        }
                        Ok(_) => {}
                        Err(why) => bad(&format!("subjects[{i}]"), why),
                    }
                }
            }
            "visibility" => match input.visibility {
                0 => content.visibility = Visibility::Private,
                v => match visibility_from(v) {
                    Some(v) => content.visibility = v,
                    None => bad("visibility", "must be PRIVATE, TEAM, BRANCH or BANK".into()),
                },
            },
            "sensitivity" => match input.sensitivity {
                0 => content.sensitivity = Sensitivity::Internal,
                v => match sensitivity_from(v) {
                    Some(s) => content.sensitivity = s,
                    None => bad("sensitivity", "must be INTERNAL, CONFIDENTIAL or RESTRICTED".into()),
                },
            },
            "tags" => {
                if input.tags.len() > crate::domain::customer::MAX_TAGS {
                    bad("tags", "must hold at most 50".into());
                }
                // Past the limit the list is refused anyway; reading only
                // that many keeps the duplicate check cheap.
                let limit = crate::domain::customer::MAX_TAGS;
                for (i, t) in input.tags.iter().take(limit).enumerate() {
                    match tag(t) {
                        Ok(t) if !content.tags.contains(&t) => content.tags.push(t),
                        Ok(_) => {}
                        Err(why) => bad(&format!("tags[{i}]"), why),
                    }
                }
            }
            _ => {}
        }
    }
    if content.sensitivity == Sensitivity::Restricted && content.visibility == Visibility::Bank {
        bad(
            "visibility",
            "a RESTRICTED item cannot be visible to the whole bank".into(),
        );
    }
    content
}

/// Interaction names among `sources` (`customers/{c}/interactions/{i}`).
pub(super) fn read_interaction_sources(
    names: &[String],
    field: &str,
    violations: &mut Violations,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if names.len() > rules::MAX_INTERACTION_SOURCES {
        violations.add(
            field,
            format!("must name at most {}", rules::MAX_INTERACTION_SOURCES),
        );
        return out;
    }
    for (i, name) in names.iter().enumerate() {
        match parse_child_name(name, "interactions") {
            Ok((customer, id)) => out.push((customer.as_str().to_string(), id)),
            Err(why) => violations.add(format!("{field}[{i}]"), why),
        }
    }
    out
}

/// The carrier of a new item (DESIGN §1): a tacit item is always carried by
/// an employee (its author unless stated); an explicit one by an employee,
/// team, branch or the bank.
pub(super) fn read_carrier(
    input: Option<&pb::Carrier>,
    nature: Nature,
    caller: &Principal,
    violations: &mut Violations,
) -> Carrier {
    let stated = input.and_then(|c| carrier_from(c.r#type));
    if let Some(c) = input
        && c.r#type != 0
        && stated.is_none()
    {
        violations.add(
            "knowledge_item.carrier.type",
            "is not a carrier type: EMPLOYEE, TEAM, BRANCH, BANK or CUSTOMER",
        );
    }
    let id = input.map(|c| c.id.clone()).unwrap_or_default();
    let kind = match (nature, stated) {
        (_, None) => CarrierType::Employee,
        (Nature::Tacit, Some(CarrierType::Employee)) => CarrierType::Employee,
        (Nature::Tacit, Some(_)) => {
            violations.add(
                "knowledge_item.carrier.type",
                "a TACIT item is carried by an EMPLOYEE",
            );
            CarrierType::Employee
        }
        (Nature::Explicit, Some(CarrierType::Customer)) => {
            violations.add(
                "knowledge_item.carrier.type",
                "an EXPLICIT item is carried by an EMPLOYEE, TEAM, BRANCH or the BANK",
            );
            CarrierType::Employee
        }
        (Nature::Explicit, Some(kind)) => kind,
    };
    let default_id = match kind {
        CarrierType::Employee => caller.subject.clone(),
        CarrierType::Team => caller.team.clone().unwrap_or_default(),
        CarrierType::Branch => caller.branch.clone().unwrap_or_default(),
        CarrierType::Bank | CarrierType::Customer => String::new(),
    };
    let id = if id.is_empty() || kind == CarrierType::Bank {
        default_id
    } else {
        org_code(&id, true).unwrap_or_else(|why| {
            violations.add("knowledge_item.carrier.id", why);
            String::new()
        })
    };
    if id.is_empty() && kind != CarrierType::Bank {
        violations.add(
            "knowledge_item.carrier.id",
            "is required (the caller has no team or branch claim to default to)",
        );
    }
    Carrier { kind, id }
}

/// The team and branch TEAM and BRANCH visibility refer to.
pub(super) fn scope_of(carrier: &Carrier, caller: &Principal) -> (String, String) {
    let team = match carrier.kind {
        CarrierType::Team => carrier.id.clone(),
        _ => caller.team.clone().unwrap_or_default(),
    };
    let branch = match carrier.kind {
        CarrierType::Branch => carrier.id.clone(),
        _ => caller.branch.clone().unwrap_or_default(),
    };
    (team, branch)
}

pub(super) fn new_id(requested: &str, violations: &mut Violations) -> String {
    if requested.is_empty() {
        return uuid::Uuid::now_v7().to_string();
    }
    CustomerId::parse(requested)
        .map(|id| id.as_str().to_string())
        .unwrap_or_else(|why| {
            violations.add("knowledge_item_id", why);
            String::new()
        })
}

pub(super) fn parse_item(field: &str, name: &str) -> Result<String, Error> {
    rules::parse_item_name(name).map_err(|e| Error::invalid(field, e))
}

pub(super) fn item_filter(filter: &str) -> Result<ItemQuery, String> {
    let mut query = ItemQuery::default();
    for term in parse_terms(filter)? {
        let value = term.value.clone();
        let field = term.field.as_str();
        match (field, term.op) {
            ("subjects", Op::Has) => {
                let id = CustomerId::from_name(&value).map_err(|e| format!("subjects: {e}"))?;
                set_once(&mut query.subject, &term, id.as_str().to_string())?
            }
            ("kind", Op::Eq) => {
                let kind = KnowledgeKind::parse(&value)
                    .ok_or_else(|| format!("kind {value} is not a knowledge kind"))?;
                set_once(&mut query.kind, &term, kind)?
            }
            ("nature", Op::Eq) => {
                let nature = Nature::parse(&value)
                    .ok_or_else(|| format!("nature must be TACIT or EXPLICIT, not {value}"))?;
                set_once(&mut query.nature, &term, nature)?
            }
            ("carrier.type", Op::Eq) => {
                let kind = CarrierType::parse(&value)
                    .ok_or_else(|| format!("carrier.type {value} is not a carrier"))?;
                set_once(&mut query.carrier_type, &term, kind)?
            }
            ("carrier.id", Op::Eq) => set_once(&mut query.carrier_id, &term, value)?,
            ("author", Op::Eq) => set_once(&mut query.author, &term, value)?,
            ("visibility", Op::Eq) => {
                let v = Visibility::parse(&value)
                    .ok_or_else(|| format!("visibility {value} is not a visibility"))?;
                set_once(&mut query.visibility, &term, v)?
            }
            ("verification.state", Op::Eq) => {
                let state = VerificationState::parse(&value).ok_or_else(|| {
                    format!("verification.state must be UNVERIFIED, VERIFIED or STALE, not {value}")
                })?;
                set_once(&mut query.verification, &term, state)?
            }
            ("tags", Op::Has) => query.tags.push(value),
            ("update_time", _) => {
                time_range(&term, &mut query.updated_from, &mut query.updated_before)?
            }
            ("subjects" | "tags", _) => return Err(unsupported(&term, "':'")),
            (
                "kind" | "nature" | "carrier.type" | "carrier.id" | "author" | "visibility"
                | "verification.state",
                _,
            ) => {
                return Err(unsupported(&term, "'='"));
            }
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on subjects, kind, nature, carrier.type, carrier.id, author, visibility, verification.state, tags or update_time"
                ));
            }
        }
    }
    Ok(query)
}

/// The target item ids of `source_items`: knowledge items and interactions.
pub(super) fn split_sources(
    names: &[String],
    violations: &mut Violations,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut items = Vec::new();
    let mut interactions = Vec::new();
    if names.len() > rules::MAX_SOURCES {
        violations.add(
            "source_items",
            format!("must name at most {}", rules::MAX_SOURCES),
        );
    }
    for (i, name) in names.iter().take(rules::MAX_SOURCES).enumerate() {
        if name.starts_with("knowledgeItems/") {
            match rules::parse_item_name(name) {
                Ok(id) if !items.contains(&id) => items.push(id),
                Ok(_) => {}
                Err(why) => violations.add(format!("source_items[{i}]"), why),
            }
        } else {
            match parse_child_name(name, "interactions") {
                Ok((c, id)) => interactions.push((c.as_str().to_string(), id)),
                Err(_) => violations.add(
                    format!("source_items[{i}]"),
                    "must be knowledgeItems/{item} or customers/{customer}/interactions/{interaction}",
                ),
            }
        }
    }
    (items, interactions)
}

/// The new item of a conversion: content from the request, nature fixed by
/// the conversion. Returns whether subjects were given (else they are the
/// sources' subjects).
pub(super) fn read_new_item(
    input: Option<&pb::KnowledgeItem>,
    requested_id: &str,
    nature: Nature,
    caller: &Principal,
    violations: &mut Violations,
) -> (NewItem, bool) {
    let default = pb::KnowledgeItem::default();
    let input = input.unwrap_or_else(|| {
        violations.add("knowledge_item", "is required");
        &default
    });
    if input.nature != 0 && nature_from(input.nature) != Some(nature) {
        violations.add(
            "knowledge_item.nature",
            format!("this conversion creates {} knowledge", nature.as_str()),
        );
    }
    let content = read_content(input, CONTENT_FIELDS, "knowledge_item", violations);
    let carrier = read_carrier(input.carrier.as_ref(), nature, caller, violations);
    let (scope_team, scope_branch) = scope_of(&carrier, caller);
    (
        NewItem {
            id: new_id(requested_id, violations),
            content,
            nature,
            carrier,
            author: caller.subject.clone(),
            scope_team,
            scope_branch,
        },
        !input.subjects.is_empty(),
    )
}
