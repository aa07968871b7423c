//! Conversions between the knowledge domain and its wire (proto) types.

use super::*;

// Conversions between proto and domain.

macro_rules! enum_map {
    ($to:ident, $from:ident, $domain:ty, $proto:ty, { $($d:ident <=> $p:ident),+ $(,)? }) => {
        pub fn $to(value: $domain) -> $proto {
            match value { $(<$domain>::$d => <$proto>::$p),+ }
        }
        // Not every enum is read from requests (some are output only).
        #[allow(dead_code)]
        pub fn $from(value: i32) -> Option<$domain> {
            match <$proto>::try_from(value).ok()? {
                $(<$proto>::$p => Some(<$domain>::$d),)+
                _ => None,
            }
        }
    };
}

enum_map!(nature_to, nature_from, Nature, pb::knowledge_item::Nature, {
    Tacit <=> Tacit, Explicit <=> Explicit
});

enum_map!(kind_to, kind_from, KnowledgeKind, pb::knowledge_item::Kind, {
    Preference <=> Preference, Need <=> Need, Risk <=> Risk, Relationship <=> Relationship,
    ProductFit <=> ProductFit, ServiceExperience <=> ServiceExperience,
    ComplaintInsight <=> ComplaintInsight, Playbook <=> Playbook, Other <=> Other
});

enum_map!(visibility_to, visibility_from, Visibility, pb::knowledge_item::Visibility, {
    Private <=> Private, Team <=> Team, Branch <=> Branch, Bank <=> Bank
});

enum_map!(sensitivity_to, sensitivity_from, Sensitivity, pb::knowledge_item::Sensitivity, {
    Internal <=> Internal, Confidential <=> Confidential, Restricted <=> Restricted
});

enum_map!(carrier_to, carrier_from, CarrierType, pb::carrier::Type, {
    Customer <=> Customer, Employee <=> Employee, Team <=> Team, Branch <=> Branch, Bank <=> Bank
});

enum_map!(conversion_to, conversion_from, Conversion, pb::derivation::Conversion, {
    Socialization <=> Socialization, Externalization <=> Externalization,
    Combination <=> Combination, Internalization <=> Internalization
});

enum_map!(state_to, state_from, VerificationState, pb::verification::State, {
    Unverified <=> Unverified, Verified <=> Verified, Stale <=> Stale
});

enum_map!(change_to, change_from, Change, pb::watch_knowledge_response::Change, {
    Created <=> Created, Shared <=> Shared, Verified <=> Verified, Retracted <=> Retracted,
    Updated <=> Updated, Erased <=> Erased
});

pub fn carrier_pb(carrier: &Carrier) -> pb::Carrier {
    pb::Carrier {
        r#type: carrier_to(carrier.kind) as i32,
        id: carrier.id.clone(),
    }
}

pub fn share_pb(share: &Share) -> pb::KnowledgeShare {
    pb::KnowledgeShare {
        item: share.item.clone(),
        from_carrier: Some(carrier_pb(&share.from)),
        to_carrier: Some(carrier_pb(&share.to)),
        grant: share.grant,
        visibility: share.visibility.map(visibility_to).unwrap_or_default() as i32,
        purpose: share.purpose.clone(),
        expire_time: share.expire_time.map(timestamp),
        shared_by: share.shared_by.clone(),
        create_time: Some(timestamp(share.create_time)),
        revoke_time: share.revoked.as_ref().map(|(t, _)| timestamp(*t)),
        revoked_by: share
            .revoked
            .as_ref()
            .map(|(_, by)| by.clone())
            .unwrap_or_default(),
    }
}

/// The wire form of an item; `now` tells whether its verification is stale.
pub fn item_pb(item: &KnowledgeItem, now: DateTime<Utc>) -> pb::KnowledgeItem {
    let i = &item.item;
    let c = &i.content;
    pb::KnowledgeItem {
        name: item.name(),
        title: c.title.clone(),
        body: c.body.clone(),
        nature: nature_to(i.nature) as i32,
        kind: kind_to(c.kind) as i32,
        subjects: c
            .subjects
            .iter()
            .map(|s| format!("customers/{s}"))
            .collect(),
        carrier: Some(carrier_pb(&i.carrier)),
        author: i.author.clone(),
        visibility: visibility_to(c.visibility) as i32,
        sensitivity: sensitivity_to(c.sensitivity) as i32,
        tags: c.tags.clone(),
        sources: c.sources.clone(),
        derived_from: item
            .derived_from
            .iter()
            .map(|d| pb::Derivation {
                item: d.item.clone(),
                conversion: conversion_to(d.conversion) as i32,
            })
            .collect(),
        verification: Some(pb::Verification {
            state: state_to(item.verification.as_of(now)) as i32,
            verifier: item.verification.verifier.clone(),
            verify_time: item.verification.verify_time.map(timestamp),
            next_review_time: item.verification.next_review_time.map(timestamp),
        }),
        grants: item.grants.iter().map(share_pb).collect(),
        etag: crate::domain::customer::etag(item.version),
        create_time: Some(timestamp(item.create_time)),
        update_time: Some(timestamp(item.update_time)),
        ..retraction_pb(item)
    }
}

/// Only the retraction fields of an item.
fn retraction_pb(item: &KnowledgeItem) -> pb::KnowledgeItem {
    pb::KnowledgeItem {
        retract_time: item.retraction.as_ref().map(|r| timestamp(r.time)),
        retract_reason: item
            .retraction
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// What a RETRACTED change tells a watcher: the item's name and its
/// retraction, none of what it said.
pub fn retracted_pb(item: &KnowledgeItem) -> pb::KnowledgeItem {
    pb::KnowledgeItem {
        name: item.name(),
        etag: crate::domain::customer::etag(item.version),
        update_time: Some(timestamp(item.update_time)),
        ..retraction_pb(item)
    }
}
