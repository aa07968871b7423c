//! Every method of every service, called with requests made three ways:
//!
//! - `*_arbitrary_bytes`: any bytes, decoded as the method's request type
//!   (bytes prost refuses never reach a handler; the rest are sent);
//! - `*_near_valid`: messages built by `shape.rs`, mostly valid with
//!   extreme values in some fields;
//! - `*_mutated`: those messages' encodings with bytes overwritten,
//!   inserted, deleted or cut off.
//!
//! Each call is judged by `harness::judge` (no panic, no INTERNAL, UNKNOWN,
//! DATA_LOSS or UNIMPLEMENTED, ErrorInfo and field violations present) and
//! by the heap it used: at most `ALLOC_BASE` plus `ALLOC_PER_BYTE` times the
//! request's size.

use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};
use prost_reflect::DynamicMessage;

use crate::{
    alloc::peak_during,
    config,
    harness::{
        self, Harness, Method, PRINCIPALS, Service, Shape, judge, judge_status_size, methods_of,
    },
    shape::Shapes,
};

/// Heap one call may use whatever its request: the services' fixed costs
/// (tracing spans, status details, the idempotency fingerprint).
const ALLOC_BASE: usize = 16 << 20;
/// Heap one call may use per byte of request: the decoded message, the
/// clones handlers take (`..req.clone()` for the fingerprint), its encoding,
/// and the violations that quote it.
const ALLOC_PER_BYTE: usize = 32;

/// The request, readable: proto3 JSON of the message (cut short), and the
/// bytes in hex when they are few.
fn describe(shapes: &Shapes, method: Method, messages: &[Vec<u8>]) -> String {
    let desc = shapes.message(method.input);
    messages
        .iter()
        .map(|bytes| {
            let json = DynamicMessage::decode(desc.clone(), bytes.as_slice())
                .ok()
                .and_then(|m| serde_json::to_string(&m).ok())
                .unwrap_or_else(|| "(not a message)".into());
            let json: String = json.chars().take(3000).collect();
            if bytes.len() <= 256 {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                format!("{json} (bytes {hex})")
            } else {
                format!("{json} ({} bytes)", bytes.len())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which properties a test checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Properties {
    /// `judge` and the heap bound.
    Answer,
    /// Those and `judge_status_size`.
    AnswerAndStatusSize,
}

fn check(
    harness: &Harness,
    shapes: &Shapes,
    method: Method,
    messages: Vec<Vec<u8>>,
    principal: usize,
    properties: Properties,
) -> Result<(), TestCaseError> {
    let size: usize = messages.iter().map(Vec::len).sum();
    let shown = |why: String| {
        TestCaseError::fail(format!(
            "{} as principal({principal}): {why}\n  request: {}",
            method.name,
            describe(shapes, method, &messages)
        ))
    };
    let (outcome, peak) =
        peak_during(|| harness.call(method, messages.clone(), harness::principal(principal)));
    judge(&outcome).map_err(shown)?;
    if properties == Properties::AnswerAndStatusSize {
        judge_status_size(&outcome).map_err(shown)?;
    }
    let limit = ALLOC_BASE + ALLOC_PER_BYTE * size;
    if peak > limit {
        return Err(shown(format!(
            "used {peak} bytes of heap for a request of {size} bytes (limit {limit})"
        )));
    }
    Ok(())
}

/// Mostly the caller with every role, so that requests reach validation.
fn principals() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => 0..PRINCIPALS]
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Any bytes as the request of any method of `service`.
fn arbitrary_bytes(service: Service) {
    let harness = Harness::new();
    let shapes = Shapes::new();
    let methods = methods_of(service);
    run(
        (
            proptest::sample::select(methods),
            principals(),
            vec(vec(any::<u8>(), 0..512), 1..=3),
        ),
        |(method, principal, messages)| {
            check(
                &harness,
                &shapes,
                method,
                messages,
                principal,
                Properties::Answer,
            )
        },
    );
}

/// Requests of `method`, from `tapes` (several for a stream of requests).
fn near_valid_messages(shapes: &Shapes, method: Method, tapes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let tapes = match method.shape {
        Shape::ClientStreaming => tapes,
        Shape::Unary | Shape::ServerStreaming => &tapes[..1],
    };
    tapes
        .iter()
        .map(|tape| shapes.near_valid(method.input, tape))
        .collect()
}

fn tapes() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 0..400), 1..=3)
}

/// Near-valid requests of every method of `service`.
fn near_valid(service: Service, properties: Properties) {
    let harness = Harness::new();
    let shapes = Shapes::new();
    let methods = methods_of(service);
    run(
        (proptest::sample::select(methods), principals(), tapes()),
        |(method, principal, tapes)| {
            let messages = near_valid_messages(&shapes, method, &tapes);
            check(&harness, &shapes, method, messages, principal, properties)
        },
    );
}

/// One byte-level edit of an encoded request.
#[derive(Debug, Clone, Copy)]
enum Edit {
    Overwrite(u16, u8),
    Insert(u16, u8),
    Delete(u16),
    Truncate(u16),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(
        prop_oneof![
            (any::<u16>(), any::<u8>()).prop_map(|(at, b)| Edit::Overwrite(at, b)),
            (any::<u16>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
            any::<u16>().prop_map(Edit::Delete),
            any::<u16>().prop_map(Edit::Truncate),
        ],
        1..6,
    )
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let at = |i: u16, len: usize| usize::from(i) % (len + 1);
        match *edit {
            Edit::Overwrite(i, b) if !bytes.is_empty() => {
                let i = usize::from(i) % bytes.len();
                bytes[i] = b;
            }
            Edit::Insert(i, b) => bytes.insert(at(i, bytes.len()), b),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(usize::from(i) % bytes.len());
            }
            Edit::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            _ => {}
        }
    }
}

/// Near-valid requests with a few bytes changed.
fn mutated(service: Service) {
    let harness = Harness::new();
    let shapes = Shapes::new();
    let methods = methods_of(service);
    run(
        (
            proptest::sample::select(methods),
            principals(),
            tapes(),
            edits(),
        ),
        |(method, principal, tapes, edits)| {
            let mut messages = near_valid_messages(&shapes, method, &tapes);
            for message in &mut messages {
                apply(message, &edits);
            }
            check(
                &harness,
                &shapes,
                method,
                messages,
                principal,
                Properties::Answer,
            )
        },
    );
}

#[test]
fn customer_service_arbitrary_bytes() {
    arbitrary_bytes(Service::Customer);
}

#[test]
fn customer_service_near_valid() {
    near_valid(Service::Customer, Properties::Answer);
}

/// Fails while a caller's mistake can make a status too large for the
/// client to receive (see `transport.rs`).
#[test]
fn customer_service_statuses_fit_in_http2_headers() {
    near_valid(Service::Customer, Properties::AnswerAndStatusSize);
}

#[test]
fn customer_service_mutated() {
    mutated(Service::Customer);
}

#[test]
fn interaction_service_arbitrary_bytes() {
    arbitrary_bytes(Service::Interaction);
}

#[test]
fn interaction_service_near_valid() {
    near_valid(Service::Interaction, Properties::Answer);
}

/// Fails while a caller's mistake can make a status too large for the
/// client to receive (see `transport.rs`).
#[test]
fn interaction_service_statuses_fit_in_http2_headers() {
    near_valid(Service::Interaction, Properties::AnswerAndStatusSize);
}

#[test]
fn interaction_service_mutated() {
    mutated(Service::Interaction);
}

#[test]
fn knowledge_service_arbitrary_bytes() {
    arbitrary_bytes(Service::Knowledge);
}

#[test]
fn knowledge_service_near_valid() {
    near_valid(Service::Knowledge, Properties::Answer);
}

/// Fails while a caller's mistake can make a status too large for the
/// client to receive (see `transport.rs`).
#[test]
fn knowledge_service_statuses_fit_in_http2_headers() {
    near_valid(Service::Knowledge, Properties::AnswerAndStatusSize);
}

#[test]
fn knowledge_service_mutated() {
    mutated(Service::Knowledge);
}

#[test]
fn campaign_service_arbitrary_bytes() {
    arbitrary_bytes(Service::Campaign);
}

#[test]
fn campaign_service_near_valid() {
    near_valid(Service::Campaign, Properties::Answer);
}

/// Fails while a caller's mistake can make a status too large for the
/// client to receive (see `transport.rs`).
#[test]
fn campaign_service_statuses_fit_in_http2_headers() {
    near_valid(Service::Campaign, Properties::AnswerAndStatusSize);
}

#[test]
fn campaign_service_mutated() {
    mutated(Service::Campaign);
}

#[test]
fn insight_service_arbitrary_bytes() {
    arbitrary_bytes(Service::Insight);
}

#[test]
fn insight_service_near_valid() {
    near_valid(Service::Insight, Properties::AnswerAndStatusSize);
}

#[test]
fn insight_service_mutated() {
    mutated(Service::Insight);
}

#[test]
fn operations_arbitrary_bytes() {
    arbitrary_bytes(Service::Operations);
}

#[test]
fn operations_near_valid() {
    near_valid(Service::Operations, Properties::AnswerAndStatusSize);
}

#[test]
fn operations_mutated() {
    mutated(Service::Operations);
}

#[test]
fn audit_service_arbitrary_bytes() {
    arbitrary_bytes(Service::Audit);
}

#[test]
fn audit_service_near_valid() {
    near_valid(Service::Audit, Properties::Answer);
}

/// Fails while a caller's mistake can make a status too large for the
/// client to receive (see `transport.rs`).
#[test]
fn audit_service_statuses_fit_in_http2_headers() {
    near_valid(Service::Audit, Properties::AnswerAndStatusSize);
}

#[test]
fn audit_service_mutated() {
    mutated(Service::Audit);
}

/// The smallest tape makes a valid request of every method: it passes
/// validation and reaches the (absent) database, UNAVAILABLE, as the
/// caller with every role. Any other answer means `shape.rs` no longer
/// knows how to make that method's requests valid, and the near-valid
/// properties would test only the first check of its validation.
#[test]
fn the_plainest_request_of_every_method_is_valid() {
    let harness = Harness::new();
    let shapes = Shapes::new();
    let mut invalid = Vec::new();
    for method in harness::METHODS {
        let messages = near_valid_messages(&shapes, *method, &[Vec::new()]);
        match harness.call(*method, messages.clone(), harness::principal(0)) {
            harness::Outcome::Answered(Err(status))
                if status.code() == tonic::Code::Unavailable => {}
            outcome => invalid.push(format!(
                "{}: {outcome:?} ({})",
                method.name,
                describe(&shapes, *method, &messages)
            )),
        }
    }
    assert!(invalid.is_empty(), "{}", invalid.join("\n"));
}

/// Every method the services declare in the contract (and the
/// `google.longrunning.Operations` methods the server serves) is in
/// `harness::METHODS`, so a new RPC is not left out of these properties
/// (add it to the `methods!` table of `harness.rs`).
#[test]
fn every_method_of_the_services_is_covered() {
    let pool = prost_reflect::DescriptorPool::decode(customer_knowledge::pb::FILE_DESCRIPTOR_SET)
        .expect("the contract's descriptors");
    let mut missing = Vec::new();
    for service in [
        "CustomerService",
        "InteractionService",
        "KnowledgeService",
        "CampaignService",
        "InsightService",
        "AuditService",
    ]
    .map(|s| format!("bank.customerknowledge.v1.{s}"))
    .into_iter()
    .chain(["google.longrunning.Operations".to_string()])
    {
        let descriptor = pool
            .get_service_by_name(&service)
            .expect("a service of the contract");
        for method in descriptor.methods() {
            if !harness::METHODS.iter().any(|m| m.name == method.name()) {
                missing.push(format!("{service}/{}", method.name()));
            }
        }
    }
    assert!(missing.is_empty(), "not covered: {}", missing.join(", "));
}
