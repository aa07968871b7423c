//! Wire compatibility with the baseline contract: a client generated from the
//! contract as callers first built against it (`tests/fixtures/
//! contract-baseline`, the contract of main on 2026-11-29) keeps working
//! against today's server. Two checks:
//!
//! 1. Structure: every message, field, enum value and method of the baseline
//!    is still there with the same number, name, type and cardinality, except
//!    the changes `docs/contract-changes.md` lists as intended (`INTENDED`).
//! 2. Over the wire: requests encoded with the baseline's descriptors are
//!    served, and the answers decode with the baseline's descriptors to the
//!    same values a current client reads; fields added since arrive as
//!    unknown fields, which an old client skips.

use customer_knowledge::pb::FILE_DESCRIPTOR_SET;
use prost::Message as _;
use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
};
use serde_json::json;
use tonic::Request;

use crate::{
    helpers::{Caller, TestApp},
    matrix::RawCodec,
};

const PACKAGE: &str = "bank.customerknowledge.v1";

/// Breaking changes made on purpose since the baseline, each explained in
/// docs/contract-changes.md: (element, what changed).
const INTENDED: &[(&str, &str)] = &[(
    "bank.customerknowledge.v1.InsightService.RecomputeSegments",
    "output type",
)];

/// Messages replaced by a standard one of the same fields, numbers and types
/// (so the same wire and JSON), each in docs/contract-changes.md: (baseline
/// message, its replacement). A field of the old type may have the new one.
const REPLACED: &[(&str, &str)] = &[("bank.customerknowledge.v1.Money", "google.type.Money")];

fn baseline() -> DescriptorPool {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/contract-baseline"
    );
    let dir = format!("{root}/bank/customerknowledge/v1");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    let set = protox::compile(&files, [root]).expect("the baseline compiles");
    DescriptorPool::from_file_descriptor_set(set).unwrap()
}

fn current() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap()
}

fn intended(element: &str, what: &str) -> bool {
    INTENDED.contains(&(element, what))
}

/// A field's type as the wire and JSON see it (a replaced message under its
/// replacement's name).
fn kind_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) => REPLACED
            .iter()
            .find(|(old, _)| *old == m.full_name())
            .map_or(m.full_name(), |(_, new)| new)
            .to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}"),
    }
}

fn compare_message(old: &MessageDescriptor, new: &MessageDescriptor, breaks: &mut Vec<String>) {
    for field in old.fields() {
        let element = format!("{}.{}", old.full_name(), field.name());
        let Some(now) = new.get_field(field.number()) else {
            breaks.push(format!("{element}: field {} removed", field.number()));
            continue;
        };
        if now.name() != field.name() {
            breaks.push(format!("{element}: renamed to {}", now.name()));
        }
        if kind_name(&now) != kind_name(&field) && !intended(&element, "type") {
            breaks.push(format!(
                "{element}: type {} became {}",
                kind_name(&field),
                kind_name(&now)
            ));
        }
        let list = |c: Cardinality| c == Cardinality::Repeated;
        if list(now.cardinality()) != list(field.cardinality()) || now.is_map() != field.is_map() {
            breaks.push(format!("{element}: cardinality changed"));
        }
    }
}

#[test]
fn the_contract_keeps_every_baseline_element_but_the_intended_changes() {
    let (old, new) = (baseline(), current());
    let mut breaks = Vec::new();
    for message in old.all_messages() {
        let replaced = REPLACED.iter().find(|(o, _)| *o == message.full_name());
        let name = replaced.map_or(message.full_name(), |(_, new)| new);
        match new.get_message_by_name(name) {
            None => breaks.push(format!("{}: message removed", message.full_name())),
            Some(now) => compare_message(&message, &now, &mut breaks),
        }
    }
    for e in old.all_enums() {
        let Some(now) = new.get_enum_by_name(e.full_name()) else {
            breaks.push(format!("{}: enum removed", e.full_name()));
            continue;
        };
        for value in e.values() {
            match now.get_value(value.number()) {
                Some(v) if v.name() == value.name() => {}
                _ => breaks.push(format!("{}: value changed or removed", value.full_name())),
            }
        }
    }
    for service in old.services() {
        let Some(now) = new.get_service_by_name(service.full_name()) else {
            breaks.push(format!("{}: service removed", service.full_name()));
            continue;
        };
        for method in service.methods() {
            let element = method.full_name().to_string();
            let Some(m) = now.methods().find(|m| m.name() == method.name()) else {
                breaks.push(format!("{element}: method removed"));
                continue;
            };
            if m.input().full_name() != method.input().full_name() {
                breaks.push(format!("{element}: input type changed"));
            }
            if m.output().full_name() != method.output().full_name()
                && !intended(&element, "output type")
            {
                breaks.push(format!("{element}: output type changed"));
            }
            if (m.is_client_streaming(), m.is_server_streaming())
                != (method.is_client_streaming(), method.is_server_streaming())
            {
                breaks.push(format!("{element}: streaming changed"));
            }
        }
    }
    assert!(
        breaks.is_empty(),
        "breaking changes not listed in docs/contract-changes.md:\n{}",
        breaks.join("\n")
    );
    // A replacement has exactly the fields of what it replaces (the compare
    // above looked at each old field), and no more; the replaced message is gone.
    for (old_name, new_name) in REPLACED {
        let was = old.get_message_by_name(old_name).unwrap();
        let now = new.get_message_by_name(new_name).unwrap();
        assert_eq!(was.fields().len(), now.fields().len(), "{new_name}");
        assert!(
            new.get_message_by_name(old_name).is_none(),
            "{old_name} is listed but still there"
        );
    }
    // Every intended change is still real (the list does not go stale).
    for (element, _) in INTENDED {
        let (service, method) = element.rsplit_once('.').unwrap();
        let old_output = old
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .map(|m| m.output().full_name().to_string());
        let new_output = new
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .map(|m| m.output().full_name().to_string());
        assert_ne!(old_output, new_output, "{element} is listed but unchanged");
    }
}

/// An old client: encodes `request` (proto3 JSON) with the baseline's input
/// type of `method`, calls it, and decodes the answer with the baseline's
/// output type.
async fn old_call(
    app: &TestApp,
    pool: &DescriptorPool,
    caller: &Caller,
    method: &str,
    request: serde_json::Value,
) -> DynamicMessage {
    let (service, name) = method.split_once('/').unwrap();
    let service = pool
        .get_service_by_name(&format!("{PACKAGE}.{service}"))
        .unwrap();
    let method = service.methods().find(|m| m.name() == name).unwrap();
    let body = DynamicMessage::deserialize(method.input(), request)
        .unwrap()
        .encode_to_vec();
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let mut call = Request::new(body);
    call.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", caller.token()).parse().unwrap(),
    );
    let path = format!("/{}/{}", service.full_name(), method.name())
        .parse()
        .unwrap();
    let answer = grpc
        .unary(call, path, RawCodec)
        .await
        .unwrap_or_else(|s| panic!("{}: {s:?}", method.full_name()))
        .into_inner();
    DynamicMessage::decode(method.output(), answer.as_slice()).unwrap()
}

fn text(message: &DynamicMessage, field: &str) -> String {
    message
        .get_field_by_name(field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_client_built_from_the_baseline_contract_still_reads_the_new_messages() {
    let app = TestApp::spawn().await;
    let pool = baseline();
    let admin = Caller::admin();
    let rm = Caller::rm("B01");

    let created = old_call(
        &app,
        &pool,
        &admin,
        "CustomerService/CreateCustomer",
        json!({"customer": {"displayName": "旧客户 Old Client", "homeBranch": "B01",
               "kind": "INDIVIDUAL", "birthDate": "1990-03-07"}}),
    )
    .await;
    let name = text(&created, "name");
    assert!(name.starts_with("customers/"), "{created:?}");
    assert_eq!(text(&created, "display_name"), "旧客户 Old Client");

    let read = old_call(
        &app,
        &pool,
        &rm,
        "CustomerService/GetCustomer",
        json!({"name": name}),
    )
    .await;
    assert_eq!(text(&read, "etag"), text(&created, "etag"));
    // The deprecated string still carries the date (date_of_birth arrives as
    // an unknown field).
    assert_eq!(text(&read, "birth_date"), "1990-03-07");

    let logged = old_call(
        &app,
        &pool,
        &rm,
        "InteractionService/LogInteraction",
        json!({"parent": name, "interaction": {"channel": "PHONE", "kind": "COMPLAINT",
               "summary": "card blocked abroad"}}),
    )
    .await;
    let interaction = text(&logged, "name");
    assert!(!interaction.is_empty(), "{logged:?}");

    // Interaction has gained fields since the baseline (the complaint's
    // category, root cause, assignee…): they arrive as unknown fields.
    let listed = old_call(
        &app,
        &pool,
        &rm,
        "InteractionService/ListInteractions",
        json!({"parent": name}),
    )
    .await;
    let rows = listed.get_field_by_name("interactions").unwrap();
    let rows = rows.as_list().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        text(rows[0].as_message().unwrap(), "summary"),
        "card blocked abroad"
    );

    let view = old_call(
        &app,
        &pool,
        &rm,
        "InsightService/GetCustomer360",
        json!({"name": name}),
    )
    .await;
    let customer = view.get_field_by_name("customer").unwrap();
    assert_eq!(
        text(customer.as_message().unwrap(), "display_name"),
        "旧客户 Old Client"
    );
    let complaints = view.get_field_by_name("open_complaints").unwrap();
    assert_eq!(complaints.as_list().unwrap().len(), 1);

    // Money is google.type.Money now; the baseline's own Money reads it.
    let paid = old_call(
        &app,
        &pool,
        &rm,
        "InteractionService/LogInteraction",
        json!({"parent": name, "interaction": {"channel": "BRANCH", "kind": "TRANSACTION",
               "summary": "term deposit", "amount": {"currencyCode": "CNY",
               "units": "50000", "nanos": 250000000}}}),
    )
    .await;
    let read = old_call(
        &app,
        &pool,
        &rm,
        "InteractionService/GetInteraction",
        json!({"name": text(&paid, "name")}),
    )
    .await;
    let amount = read.get_field_by_name("amount").unwrap();
    let amount = amount.as_message().unwrap();
    assert_eq!(
        prost_reflect::ReflectMessage::descriptor(amount).full_name(),
        "bank.customerknowledge.v1.Money"
    );
    assert_eq!(text(amount, "currency_code"), "CNY");
    assert_eq!(
        amount.get_field_by_name("units").unwrap().as_i64(),
        Some(50_000)
    );
    assert_eq!(
        amount.get_field_by_name("nanos").unwrap().as_i32(),
        Some(250_000_000)
    );
}
