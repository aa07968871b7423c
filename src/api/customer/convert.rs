//! Conversions between the customer domain and its wire (proto) types.

use chrono::Datelike;

use super::*;

/// What a customer sees of their own profile through a system acting for
/// them: no staff tags, value tier or scores, no relationship manager and no
/// other customers (links).
pub fn self_service_view(customer: pb::Customer) -> pb::Customer {
    pb::Customer {
        relationship_manager: String::new(),
        tags: Vec::new(),
        tier: 0,
        rfm: None,
        links: Vec::new(),
        ..customer
    }
}

// `birth_date` is deprecated for callers, still served and accepted.
#[allow(deprecated)]
pub fn customer_to_proto(customer: &Customer, caller: &Principal) -> pb::Customer {
    let profile = &customer.profile;
    let pii = &profile.pii;
    let show = caller.sees_pii_of(&profile.home_branch);
    let text = |value: &str| {
        if show {
            value.to_string()
        } else {
            mask::mask_text(value)
        }
    };
    pb::Customer {
        name: customer.id.name(),
        display_name: profile.display_name.clone(),
        kind: match profile.kind {
            CustomerKind::Individual => pb::customer::Kind::Individual,
            CustomerKind::Corporate => pb::customer::Kind::Corporate,
        } as i32,
        external_ids: profile
            .external_ids
            .iter()
            .map(|e| pb::ExternalId {
                system: e.system.clone(),
                value: e.value.clone(),
            })
            .collect(),
        home_branch: profile.home_branch.clone(),
        relationship_manager: profile.relationship_manager.clone(),
        national_id: text(&pii.national_id),
        phone: text(&pii.phone),
        email: text(&pii.email),
        birth_date: if show {
            pii.birth_date
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        } else {
            mask::mask_birth_date(pii.birth_date)
        },
        address: if show {
            pii.address.clone()
        } else {
            mask::mask_address(&pii.address)
        },
        tags: profile.tags.clone(),
        preferences: profile.preferences.clone(),
        consents: customer
            .consents
            .iter()
            .map(|c| pb::Consent {
                purpose: purpose_to_proto(c.purpose) as i32,
                granted: c.granted,
                update_time: Some(timestamp(c.update_time)),
            })
            .collect(),
        tier: tier_to_proto(customer.tier) as i32,
        rfm: customer.rfm.map(|r| pb::RfmScore {
            recency_score: r.recency.into(),
            frequency_score: r.frequency.into(),
            monetary_score: r.monetary.into(),
        }),
        links: customer
            .links
            .iter()
            .map(|l| pb::CustomerLink {
                customer: l.customer.name(),
                relationship: relationship_to_proto(l.relationship) as i32,
                inverse: l.inverse,
                create_time: Some(timestamp(l.create_time)),
            })
            .collect(),
        etag: customer.etag(),
        create_time: Some(timestamp(customer.create_time)),
        update_time: Some(timestamp(customer.update_time)),
        // The year alone when masked, like `birth_date`'s `1990-**-**`.
        date_of_birth: pii.birth_date.map(|d| pb::Date {
            year: d.year(),
            month: if show { d.month() as i32 } else { 0 },
            day: if show { d.day() as i32 } else { 0 },
        }),
    }
}

pub(super) fn purpose_to_proto(purpose: ConsentPurpose) -> pb::ConsentPurpose {
    match purpose {
        ConsentPurpose::Marketing => pb::ConsentPurpose::Marketing,
        ConsentPurpose::CrossSell => pb::ConsentPurpose::CrossSell,
        ConsentPurpose::Analytics => pb::ConsentPurpose::Analytics,
        ConsentPurpose::KnowledgeSharing => pb::ConsentPurpose::KnowledgeSharing,
    }
}

pub(super) fn purpose_from_proto(value: i32) -> Option<ConsentPurpose> {
    match pb::ConsentPurpose::try_from(value).ok()? {
        pb::ConsentPurpose::Unspecified => None,
        pb::ConsentPurpose::Marketing => Some(ConsentPurpose::Marketing),
        pb::ConsentPurpose::CrossSell => Some(ConsentPurpose::CrossSell),
        pb::ConsentPurpose::Analytics => Some(ConsentPurpose::Analytics),
        pb::ConsentPurpose::KnowledgeSharing => Some(ConsentPurpose::KnowledgeSharing),
    }
}

pub(super) fn relationship_to_proto(relationship: Relationship) -> pb::customer_link::Relationship {
    use pb::customer_link::Relationship as P;
    match relationship {
        Relationship::Household => P::Household,
        Relationship::Spouse => P::Spouse,
        Relationship::Guarantor => P::Guarantor,
        Relationship::Director => P::Director,
    }
}

pub(super) fn relationship_from_proto(value: i32) -> Option<Relationship> {
    use pb::customer_link::Relationship as P;
    match P::try_from(value).ok()? {
        P::Unspecified => None,
        P::Household => Some(Relationship::Household),
        P::Spouse => Some(Relationship::Spouse),
        P::Guarantor => Some(Relationship::Guarantor),
        P::Director => Some(Relationship::Director),
    }
}

/// A pyramid tier on the wire (the customer's, a segmentation's).
pub fn tier_to_proto(tier: Option<Tier>) -> pb::customer::Tier {
    match tier {
        None => pb::customer::Tier::Unspecified,
        Some(Tier::Vip) => pb::customer::Tier::Vip,
        Some(Tier::Major) => pb::customer::Tier::Major,
        Some(Tier::Ordinary) => pb::customer::Tier::Ordinary,
        Some(Tier::Small) => pb::customer::Tier::Small,
    }
}
