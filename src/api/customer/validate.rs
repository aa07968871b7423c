//! Reading and validating customer requests: profiles, update masks and
//! consent changes, each collecting every field violation at once.

use super::*;

/// A consent change a request asks for, validated: UpdateConsent,
/// GrantConsent and WithdrawConsent all come to one.
pub(super) struct ConsentCommand {
    pub(super) id: CustomerId,
    pub(super) change: ConsentChange,
    pub(super) etag: String,
}

impl TryFrom<&pb::UpdateConsentRequest> for ConsentCommand {
    type Error = Error;

    fn try_from(request: &pb::UpdateConsentRequest) -> Result<Self, Error> {
        let pb::UpdateConsentRequest {
            name,
            purpose,
            granted,
            etag,
            channel,
            evidence_ref,
            policy_version,
            request_id: _,
        } = request;
        let mut violations = Violations::default();
        if granted.is_none() {
            violations.add(
                "granted",
                "is required: true grants, false withdraws (GrantConsent and WithdrawConsent say it without a flag)",
            );
        }
        let channel = if channel.is_empty() {
            "UNSPECIFIED"
        } else {
            channel
        };
        let stated = ConsentStatement {
            name,
            purpose: *purpose,
            granted: granted.unwrap_or_default(),
            channel,
            evidence_ref,
            policy_version,
            policy_required: false,
        };
        read_consent(&stated, etag, violations)
    }
}

impl TryFrom<&pb::GrantConsentRequest> for ConsentCommand {
    type Error = Error;

    fn try_from(request: &pb::GrantConsentRequest) -> Result<Self, Error> {
        let pb::GrantConsentRequest {
            name,
            purpose,
            channel,
            evidence_ref,
            policy_version,
            etag,
            request_id: _,
        } = request;
        let stated = ConsentStatement {
            name,
            purpose: *purpose,
            granted: true,
            channel,
            evidence_ref,
            policy_version,
            policy_required: true,
        };
        read_consent(&stated, etag, Violations::default())
    }
}

impl TryFrom<&pb::WithdrawConsentRequest> for ConsentCommand {
    type Error = Error;

    fn try_from(request: &pb::WithdrawConsentRequest) -> Result<Self, Error> {
        let pb::WithdrawConsentRequest {
            name,
            purpose,
            channel,
            evidence_ref,
            policy_version,
            etag,
            request_id: _,
        } = request;
        let stated = ConsentStatement {
            name,
            purpose: *purpose,
            granted: false,
            channel,
            evidence_ref,
            policy_version,
            policy_required: false,
        };
        read_consent(&stated, etag, Violations::default())
    }
}

/// A consent change as a request states it, before validation.
struct ConsentStatement<'a> {
    name: &'a str,
    purpose: i32,
    granted: bool,
    channel: &'a str,
    evidence_ref: &'a str,
    policy_version: &'a str,
    /// Grants name the policy the customer agreed to.
    policy_required: bool,
}

/// Validates a consent change, adding to `violations` found earlier.
fn read_consent(
    stated: &ConsentStatement,
    etag: &str,
    mut violations: Violations,
) -> Result<ConsentCommand, Error> {
    let id = CustomerId::from_name(stated.name)
        .inspect_err(|e| violations.add("name", e.clone()))
        .ok();
    let purpose = purpose_from_proto(stated.purpose);
    if purpose.is_none() {
        violations.add(
            "purpose",
            "must be MARKETING, CROSS_SELL, ANALYTICS or KNOWLEDGE_SHARING",
        );
    }
    let channel = rules::org_code(stated.channel, true)
        .inspect_err(|e| violations.add("channel", e.clone()))
        .unwrap_or_default();
    let evidence_ref = rules::bounded_text(stated.evidence_ref.trim(), rules::MAX_EVIDENCE_REF)
        .inspect_err(|e| violations.add("evidence_ref", e.clone()))
        .unwrap_or_default();
    let policy_version =
        rules::bounded_text(stated.policy_version.trim(), rules::MAX_POLICY_VERSION)
            .inspect_err(|e| violations.add("policy_version", e.clone()))
            .unwrap_or_default();
    if stated.policy_required && policy_version.is_empty() {
        violations.add(
            "policy_version",
            "is required: the version of the policy the customer agreed to",
        );
    }
    let (id, purpose) = violations.into_result((id, purpose))?;
    let (Some(id), Some(purpose)) = (id, purpose) else {
        return Err(Error::unreported_missing_part());
    };
    Ok(ConsentCommand {
        id,
        change: ConsentChange {
            purpose,
            granted: stated.granted,
            channel,
            evidence_ref,
            policy_version,
        },
        etag: etag.to_string(),
    })
}

/// Output-only fields of `Customer`: never accepted in an update mask.
pub(super) const OUTPUT_ONLY: &[&str] = &[
    "name",
    "consents",
    "tier",
    "rfm",
    "links",
    "etag",
    "create_time",
    "update_time",
];

/// Reads the profile fields in `fields` from a proto customer, validating each
/// and collecting every violation under `prefix`. Fields not listed keep
/// their defaults and are not looked at.
// `birth_date` is deprecated for callers, still served and accepted.
#[allow(deprecated)]
pub(super) fn read_profile(
    customer: &pb::Customer,
    fields: &[ProfileField],
    prefix: &str,
    violations: &mut Violations,
) -> Profile {
    // Destructured so that a new proto field cannot be forgotten here.
    let pb::Customer {
        name: _,
        display_name,
        kind,
        external_ids,
        home_branch,
        relationship_manager,
        national_id,
        phone,
        email,
        birth_date,
        address,
        tags,
        preferences,
        consents: _,
        tier: _,
        rfm: _,
        links: _,
        etag: _,
        create_time: _,
        update_time: _,
        date_of_birth,
    } = customer;
    let mut profile = Profile {
        display_name: String::new(),
        kind: CustomerKind::Individual,
        external_ids: Vec::new(),
        home_branch: String::new(),
        relationship_manager: String::new(),
        pii: Pii::default(),
        tags: Vec::new(),
        preferences: BTreeMap::new(),
    };
    let mut check = |field: &str, result: Result<(), String>| {
        if let Err(description) = result {
            violations.add(format!("{prefix}.{field}"), description);
        }
    };
    for field in fields {
        let path = field.path();
        match field {
            ProfileField::DisplayName => check(
                path,
                rules::display_name(display_name).map(|v| profile.display_name = v),
            ),
            ProfileField::Kind => check(
                path,
                match pb::customer::Kind::try_from(*kind) {
                    Ok(pb::customer::Kind::Individual) => {
                        profile.kind = CustomerKind::Individual;
                        Ok(())
                    }
                    Ok(pb::customer::Kind::Corporate) => {
                        profile.kind = CustomerKind::Corporate;
                        Ok(())
                    }
                    _ => Err("must be INDIVIDUAL or CORPORATE".into()),
                },
            ),
            ProfileField::ExternalIds => {
                if external_ids.len() > rules::MAX_EXTERNAL_IDS {
                    check(
                        path,
                        Err(format!("must hold at most {}", rules::MAX_EXTERNAL_IDS)),
                    );
                    continue;
                }
                for (i, external) in external_ids.iter().enumerate() {
                    match rules::external_id(&external.system, &external.value) {
                        Ok(id) if profile.external_ids.contains(&id) => {
                            check(&format!("{path}[{i}]"), Err("is listed twice".into()))
                        }
                        Ok(id) => profile.external_ids.push(id),
                        Err((part, description)) => {
                            check(&format!("{path}[{i}].{part}"), Err(description))
                        }
                    }
                }
            }
            ProfileField::HomeBranch => check(
                path,
                rules::org_code(home_branch, true).map(|v| profile.home_branch = v),
            ),
            ProfileField::RelationshipManager => check(
                path,
                rules::org_code(relationship_manager, false)
                    .map(|v| profile.relationship_manager = v),
            ),
            ProfileField::NationalId => check(
                path,
                rules::national_id(national_id).map(|v| profile.pii.national_id = v),
            ),
            ProfileField::Phone => check(path, rules::phone(phone).map(|v| profile.pii.phone = v)),
            ProfileField::Email => check(path, rules::email(email).map(|v| profile.pii.email = v)),
            ProfileField::BirthDate => {
                // The deprecated string and the google.type.Date: either, or
                // both when they agree.
                let text = rules::birth_date(birth_date);
                let date = date_of_birth
                    .as_ref()
                    .map_or(Ok(None), |d| rules::birth_date_ymd(d.year, d.month, d.day));
                match (text, date) {
                    (Ok(Some(text)), Ok(Some(date))) if text != date => check(
                        "date_of_birth",
                        Err(format!("is {date}, which disagrees with birth_date {text}")),
                    ),
                    (Ok(text), Ok(date)) => profile.pii.birth_date = text.or(date),
                    (text, date) => {
                        check(path, text.map(drop));
                        check("date_of_birth", date.map(drop));
                    }
                }
            }
            ProfileField::Address => check(
                path,
                rules::bounded_text(address, rules::MAX_ADDRESS).map(|v| profile.pii.address = v),
            ),
            ProfileField::Tags => {
                if tags.len() > rules::MAX_TAGS {
                    check(path, Err(format!("must hold at most {}", rules::MAX_TAGS)));
                    continue;
                }
                for (i, tag) in tags.iter().enumerate() {
                    match rules::tag(tag) {
                        Ok(tag) if !profile.tags.contains(&tag) => profile.tags.push(tag),
                        Ok(_) => {}
                        Err(description) => check(&format!("{path}[{i}]"), Err(description)),
                    }
                }
            }
            ProfileField::Preferences => {
                if preferences.len() > rules::MAX_PREFERENCES {
                    check(
                        path,
                        Err(format!("must hold at most {}", rules::MAX_PREFERENCES)),
                    );
                    continue;
                }
                for (key, value) in preferences {
                    let result = rules::preference_key(key).and_then(|key| {
                        rules::bounded_text(value, rules::MAX_PREFERENCE_VALUE)
                            .map(|value| (key, value))
                    });
                    match result {
                        Ok((key, value)) => {
                            profile.preferences.insert(key, value);
                        }
                        Err(description) => check(&format!("{path}[{key:?}]"), Err(description)),
                    }
                }
            }
        }
    }
    profile
}

/// The profile fields set (non-default) in a proto customer: what an update
/// without a mask changes.
// `birth_date` is deprecated for callers, still served and accepted.
#[allow(deprecated)]
pub(super) fn populated_fields(c: &pb::Customer) -> Vec<ProfileField> {
    ProfileField::ALL
        .iter()
        .copied()
        .filter(|field| match field {
            ProfileField::DisplayName => !c.display_name.is_empty(),
            ProfileField::Kind => c.kind != 0,
            ProfileField::ExternalIds => !c.external_ids.is_empty(),
            ProfileField::HomeBranch => !c.home_branch.is_empty(),
            ProfileField::RelationshipManager => !c.relationship_manager.is_empty(),
            ProfileField::NationalId => !c.national_id.is_empty(),
            ProfileField::Phone => !c.phone.is_empty(),
            ProfileField::Email => !c.email.is_empty(),
            ProfileField::BirthDate => {
                !c.birth_date.is_empty()
                    || c.date_of_birth.is_some_and(|d| d != pb::Date::default())
            }
            ProfileField::Address => !c.address.is_empty(),
            ProfileField::Tags => !c.tags.is_empty(),
            ProfileField::Preferences => !c.preferences.is_empty(),
        })
        .collect()
}

pub(super) fn mask_fields(
    mask: Option<&prost_types::FieldMask>,
    customer: &pb::Customer,
    violations: &mut Violations,
) -> Vec<ProfileField> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return populated_fields(customer);
    }
    let mut fields = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        if path == "*" {
            return ProfileField::ALL.to_vec();
        }
        match ProfileField::from_path(path) {
            Some(field) if !fields.contains(&field) => fields.push(field),
            Some(_) => {}
            None if OUTPUT_ONLY.contains(&path.as_str()) => violations.add(
                format!("update_mask.paths[{i}]"),
                format!("{path} is output only"),
            ),
            None => violations.add(
                format!("update_mask.paths[{i}]"),
                format!("{path} is not a field of Customer"),
            ),
        }
    }
    fields
}
