//! What the properties found, one small reproduction each, at the handler
//! (no transport; `transport.rs` shows the first kind end to end). Both
//! failed before their fixes (a byte budget on error details in
//! `api::status`; lists read only up to their limit) and keep them fixed.
//!
//! 1. A caller's mistake can make a status too large to deliver. The
//!    violations listed are bounded (20, each field and description cut to
//!    200 characters: `api::status`), but 20 quoted paths or preference keys
//!    of 200 characters, or of CJK characters that `grpc-message`
//!    percent-encodes to 9 bytes each, still need more than the 16 KiB of
//!    headers an HTTP/2 client accepts: the client gets INTERNAL "h2
//!    protocol error" instead of INVALID_ARGUMENT. The other cases here
//!    (a thousand bad batch rows, 300 bad tags) pass since that bound.
//! 2. Some lists are checked for duplicates with `Vec::contains` before (or
//!    without) their length is checked, so one request of many distinct
//!    values costs time quadratic in their number.

use std::collections::BTreeMap;

use customer_knowledge::pb::v1 as pb;
use prost::Message;
use tonic::Code;

use crate::harness::{self, Harness, METHODS, Method, Outcome, judge, judge_status_size};

fn method(name: &str) -> Method {
    *METHODS.iter().find(|m| m.name == name).expect("a method")
}

/// Calls `name` with `request` as the caller with every role; the answer
/// must be INVALID_ARGUMENT and pass `judge` and `judge_status_size`.
fn rejected_deliverably(harness: &Harness, name: &str, request: &impl Message) -> Vec<String> {
    let outcome = harness.call(
        method(name),
        vec![request.encode_to_vec()],
        harness::principal(0),
    );
    let mut found = Vec::new();
    match &outcome {
        Outcome::Answered(Err(status)) if status.code() == Code::InvalidArgument => {}
        other => found.push(format!("{name}: expected INVALID_ARGUMENT, got {other:?}")),
    }
    for check in [judge, judge_status_size] {
        if let Err(why) = check(&outcome) {
            found.push(format!("{name}: {why}"));
        }
    }
    found
}

fn long(prefix: &str, i: usize, len: usize) -> String {
    format!("{prefix}{i}{}", "x".repeat(len))
}

fn interaction_without_channel() -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: "customers/c-1".into(),
        interaction: Some(pb::Interaction {
            kind: pb::interaction::Kind::Inquiry as i32,
            summary: "no channel".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn statuses_of_rejected_requests_fit_in_http2_headers() {
    let harness = Harness::new();
    let mut found = Vec::new();

    // UpdateCustomer: 10 unknown update_mask paths of ~1000 characters.
    found.extend(rejected_deliverably(
        &harness,
        "UpdateCustomer",
        &pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: "customers/c-1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: (0..10).map(|i| long("p", i, 1000)).collect(),
            }),
            request_id: String::new(),
        },
    ));

    // UpdateCustomer: 25 unknown update_mask paths of 100 CJK characters
    // (each quoted path is cut to 200 characters, but `grpc-message`
    // percent-encodes every byte of a CJK character: 9 bytes each).
    found.extend(rejected_deliverably(
        &harness,
        "UpdateCustomer",
        &pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: "customers/c-1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: (0..25)
                    .map(|i| format!("{i}{}", "偏".repeat(100)))
                    .collect(),
            }),
            request_id: String::new(),
        },
    ));

    // UpdateKnowledgeItem: the same as the first.
    found.extend(rejected_deliverably(
        &harness,
        "UpdateKnowledgeItem",
        &pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                name: "knowledgeItems/k-1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: (0..10).map(|i| long("p", i, 1000)).collect(),
            }),
            request_id: String::new(),
        },
    ));

    // CreateCustomer: 20 invalid preference keys of ~1000 characters (the
    // key is quoted in the violation's field path).
    found.extend(rejected_deliverably(
        &harness,
        "CreateCustomer",
        &pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "Probe".into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: "B01".into(),
                preferences: (0..20)
                    .map(|i| (long("K", i, 1000), "v".to_string()))
                    .collect::<BTreeMap<_, _>>(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ));

    // BatchLogInteractions: 200 interactions without a channel (nothing of
    // the caller's quoted: 200 violations of ~150 bytes).
    found.extend(rejected_deliverably(
        &harness,
        "BatchLogInteractions",
        &pb::BatchLogInteractionsRequest {
            requests: vec![interaction_without_channel(); 200],
            request_id: String::new(),
        },
    ));

    // CreateKnowledgeItem: 300 invalid tags; the count is reported, and
    // then every tag as well.
    found.extend(rejected_deliverably(
        &harness,
        "CreateKnowledgeItem",
        &pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: "t".into(),
                nature: pb::knowledge_item::Nature::Tacit as i32,
                kind: pb::knowledge_item::Kind::Need as i32,
                tags: (0..300).map(|i| format!("T{i}")).collect(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ));

    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Distinct valid values: `{prefix}{i}`.
/// Distinct entries each of which is invalid on its own: a handler that
/// reads past the list's limit reports one violation per entry.
fn distinct_invalid(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i} !")).collect()
}

/// How many distinct values the long lists get: far beyond every limit, so
/// a handler that walked them all (checking each against the ones before)
/// would do 7.2e7 comparisons and report thousands of violations.
const MANY: usize = 12_000;
/// Violations a refusal may count: the limit of the list and a few more.
/// Walking all MANY entries would count thousands.
const MOST_VIOLATIONS: usize = 200;

#[test]
fn long_lists_are_refused_in_linear_time() {
    let harness = Harness::new();
    let item = |tags: Vec<String>| pb::KnowledgeItem {
        title: "t".into(),
        nature: pb::knowledge_item::Nature::Explicit as i32,
        kind: pb::knowledge_item::Kind::Need as i32,
        tags,
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "CreateKnowledgeItem",
            pb::CreateKnowledgeItemRequest {
                knowledge_item: Some(item(distinct_invalid("T", MANY))),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "CombineKnowledge",
            pb::CombineKnowledgeRequest {
                source_items: distinct_invalid("knowledgeItems/K", MANY),
                knowledge_item: Some(item(Vec::new())),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "ExternalizeKnowledge",
            pb::ExternalizeKnowledgeRequest {
                source_items: distinct_invalid("knowledgeItems/K", MANY),
                knowledge_item: Some(item(Vec::new())),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "SocializeKnowledge",
            pb::SocializeKnowledgeRequest {
                name: "knowledgeItems/k-1".into(),
                recipients: distinct_invalid("E", MANY),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    let mut found = Vec::new();
    for (name, bytes) in cases {
        let outcome = harness.call(method(name), vec![bytes], harness::principal(0));
        if let Err(why) = judge(&outcome) {
            found.push(format!("{name}: {why}"));
        }
        // The handler stops reading a list at its limit: the violations it
        // counts stay near the limit, never one per entry sent.
        if let Outcome::Answered(Err(status)) = &outcome {
            use tonic_types::StatusExt;
            let counted: usize = status
                .get_error_details()
                .error_info()
                .and_then(|info| info.metadata.get("violations").cloned())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if counted > MOST_VIOLATIONS {
                found.push(format!(
                    "{name}: {counted} violations counted for {MANY} entries: the handler \
                     walked the whole list past its limit"
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
