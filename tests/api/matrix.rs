//! The access matrix (DESIGN §3): every method of the contract's services,
//! enumerated from the encoded descriptor set so that a new RPC is covered
//! without editing this file, called over real gRPC/TCP by every kind of
//! caller, with two checks per cell:
//!
//! 1. the status code is one the expectation table allows for the caller's
//!    role class and the method's kind;
//! 2. callers who may not read the B01 target customer get nothing of it: none
//!    of its PII or free text appears in a response body, a status message,
//!    status details or response metadata; analysts, who read it masked, get
//!    none of its PII values whole.
//!
//! Requests are built with prost-reflect from the method's input descriptor:
//! a per-method JSON override (for the methods known when this was written)
//! plus one generic fill of `name`, `parent`, `customer` and `request_id`
//! (`resource_named` is the rule). They go out as raw bytes through
//! `tonic::client::Grpc` with a pass-through codec. A server stream is judged
//! by its response headers (the call returning `Ok`) or its status; it is
//! dropped without reading, so nothing here waits for a stream or a timer.
//!
//! Every variant gets its own fixtures, so one caller's writes (admin erasing
//! the customer, completing the follow-up) never change another's answers;
//! within a variant, voids, corrections and merges run after the rest, and
//! erasures (`Delete*`) last.

use customer_knowledge::pb::{FILE_DESCRIPTOR_SET, v1 as pb};
use futures::future::join_all;
use prost::{
    Message as _,
    bytes::{Buf, BufMut},
};
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use serde_json::json;
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::Channel,
};

use crate::helpers::{Caller, TestApp, sign};

const PACKAGE: &str = "bank.customerknowledge.v1";
const SERVICES: [&str; 6] = [
    "CustomerService",
    "InteractionService",
    "KnowledgeService",
    "InsightService",
    "CampaignService",
    "AuditService",
];

// The B01 target's distinctive data: none of it may reach a caller who may
// not read B01 (`leaks`).
const TARGET_NAME: &str = "欧阳锋";
const TARGET_PHONE: &str = "+86 139 7731 0042";
const TARGET_EMAIL: &str = "ouyang.feng.7731@baituo.example";
const TARGET_NATIONAL_ID: &str = "65010219770731004X";
const TARGET_BIRTH_DATE: &str = "1977-07-31";
/// The month and day of that date as `google.type.Date` puts them on the
/// wire (`Customer.date_of_birth`: field 2 = 7, field 3 = 31), which a text
/// search for the date would miss.
const TARGET_BIRTH_DATE_WIRE: &str = "\u{10}\u{7}\u{18}\u{1f}";
const TARGET_ADDRESS: &str = "白驼山庄 7731号";
const INTERACTION_SUMMARY: &str = "蛤蟆功 card swallowed by the ATM";
const INTERACTION_NOTES: &str = "灵蛇杖 notes: keep the nephew 欧阳克 away from the account";
const FOLLOW_UP_PURPOSE: &str = "回访: did the 蛤蟆功 card arrive";
const KNOWLEDGE_TITLE: &str = "九阴真经 reading circle";
const KNOWLEDGE_BODY: &str = "客户偏好逆练九阴真经式理财; call after dusk only";

/// Fragments searched for besides the whole values above (a service that
/// reformats a value still trips on these).
const FRAGMENTS: [&str; 7] = [
    "欧阳",
    "白驼",
    "蛤蟆功",
    "灵蛇",
    "九阴真经",
    "13977310042",
    "ouyang.feng",
];

/// Methods known when this test was written, with JSON (proto3 JSON mapping)
/// that the generic fill then completes, so that they are well-formed.
/// `$customer`, `$peer`, `$interaction`, `$item_a`, `$item_b`, `$tacit`,
/// `$cif`, `$future` (a week ahead) and `$fresh` (a new UUID) are replaced
/// first. A contract method missing here is new: it gets the generic fill
/// only, and INVALID_ARGUMENT is tolerated from it.
const KNOWN_METHODS: &[(&str, &str)] = &[
    (
        "CustomerService/CreateCustomer",
        r#"{"customer": {"display_name": "Matrix Probe", "kind": "INDIVIDUAL", "home_branch": "B01"}}"#,
    ),
    ("CustomerService/GetCustomer", "{}"),
    (
        "CustomerService/LookupCustomer",
        r#"{"system": "CIF", "value": "$cif"}"#,
    ),
    (
        "CustomerService/UpdateCustomer",
        r#"{"customer": {"name": "$customer", "tags": ["matrix"]}, "update_mask": "tags"}"#,
    ),
    (
        "CustomerService/ListCustomers",
        r#"{"filter": "home_branch = \"B01\""}"#,
    ),
    ("CustomerService/SearchCustomers", r#"{"query": "欧阳锋"}"#),
    ("CustomerService/DeleteCustomer", "{}"),
    (
        "CustomerService/UpdateConsent",
        r#"{"purpose": "MARKETING", "granted": true}"#,
    ),
    (
        "CustomerService/GrantConsent",
        r#"{"purpose": "ANALYTICS", "channel": "BRANCH_FORM", "policy_version": "2026.1"}"#,
    ),
    (
        "CustomerService/WithdrawConsent",
        r#"{"purpose": "MARKETING", "channel": "PHONE_RECORDED"}"#,
    ),
    ("CustomerService/ListConsentEvents", "{}"),
    (
        "CustomerService/LinkCustomers",
        r#"{"linked_customer": "$peer", "relationship": "HOUSEHOLD"}"#,
    ),
    (
        "CustomerService/UnlinkCustomers",
        r#"{"linked_customer": "$peer", "relationship": "HOUSEHOLD"}"#,
    ),
    (
        "CustomerService/MergeCustomers",
        r#"{"duplicate": "$peer"}"#,
    ),
    (
        "InteractionService/VoidInteraction",
        r#"{"reason": "matrix probe"}"#,
    ),
    (
        "InteractionService/CorrectInteraction",
        r#"{"reason": "matrix probe", "interaction": {"channel": "BRANCH", "kind": "INQUIRY",
            "summary": "matrix probe"}}"#,
    ),
    (
        "InteractionService/LogInteraction",
        r#"{"interaction": {"channel": "BRANCH", "kind": "INQUIRY", "summary": "matrix probe"}}"#,
    ),
    (
        "InteractionService/BatchLogInteractions",
        r#"{"requests": [{"parent": "$customer",
            "interaction": {"channel": "BRANCH", "kind": "INQUIRY", "summary": "matrix probe"}}]}"#,
    ),
    (
        "InteractionService/ImportInteractions",
        r#"{"rows": [{"parent": "$customer", "interaction": {"channel": "ONLINE_BANKING",
            "kind": "TRANSACTION", "summary": "matrix probe", "external_ref": "MX-$fresh",
            "amount": {"currency_code": "CNY", "units": "100"}}}]}"#,
    ),
    ("InteractionService/GetInteraction", "{}"),
    ("InteractionService/ListInteractions", "{}"),
    (
        "InteractionService/UpdateComplaint",
        r#"{"state": "IN_PROGRESS"}"#,
    ),
    ("InteractionService/ListComplaints", "{}"),
    (
        "InteractionService/ResolveComplaint",
        r#"{"resolution": "matrix probe", "root_cause": "matrix probe"}"#,
    ),
    ("InteractionService/CloseComplaint", "{}"),
    (
        "InteractionService/ReopenComplaint",
        r#"{"reason": "matrix probe"}"#,
    ),
    (
        "InteractionService/GetComplaintSummary",
        r#"{"branch": "B01"}"#,
    ),
    (
        "InteractionService/ScheduleFollowUp",
        r#"{"follow_up": {"assignee": "E-rm-B01", "due_time": "$future", "purpose": "matrix probe"}}"#,
    ),
    (
        "InteractionService/CompleteFollowUp",
        r#"{"interaction": {"channel": "PHONE", "summary": "matrix probe"}}"#,
    ),
    ("InteractionService/ListFollowUps", "{}"),
    ("InteractionService/GetServiceRequest", "{}"),
    ("InteractionService/ListServiceRequests", "{}"),
    (
        "InteractionService/ConfirmServiceRequest",
        r#"{"need": "matrix probe"}"#,
    ),
    (
        "InteractionService/ProposeServiceRequestSolution",
        r#"{"solution": "matrix probe"}"#,
    ),
    ("InteractionService/StartServiceRequest", "{}"),
    (
        "InteractionService/ResolveServiceRequest",
        r#"{"resolution": "matrix probe"}"#,
    ),
    (
        "InteractionService/CheckServiceRequestSatisfaction",
        r#"{"satisfaction": 4}"#,
    ),
    (
        "InteractionService/CancelServiceRequest",
        r#"{"reason": "matrix probe"}"#,
    ),
    (
        "InteractionService/GetServiceMetrics",
        r#"{"branch": "B01"}"#,
    ),
    ("InteractionService/WatchInteractions", "{}"),
    (
        "KnowledgeService/CreateKnowledgeItem",
        r#"{"knowledge_item": {"title": "matrix probe", "body": "matrix probe", "nature": "EXPLICIT",
            "kind": "NEED", "subjects": ["$customer"], "visibility": "PRIVATE"}}"#,
    ),
    ("KnowledgeService/GetKnowledgeItem", "{}"),
    (
        "KnowledgeService/UpdateKnowledgeItem",
        r#"{"knowledge_item": {"name": "$item_a", "tags": ["matrix"]}, "update_mask": "tags"}"#,
    ),
    (
        "KnowledgeService/ListKnowledgeItems",
        r#"{"filter": "subjects:\"$customer\""}"#,
    ),
    (
        "KnowledgeService/SearchKnowledgeItems",
        r#"{"query": "九阴真经"}"#,
    ),
    (
        "KnowledgeService/ExternalizeKnowledge",
        r#"{"source_items": ["$tacit"], "knowledge_item": {"title": "matrix probe",
            "body": "matrix probe", "nature": "EXPLICIT", "kind": "NEED", "visibility": "PRIVATE",
            "sources": ["$interaction"]}}"#,
    ),
    (
        "KnowledgeService/CombineKnowledge",
        r#"{"source_items": ["$item_a", "$item_b"], "knowledge_item": {"title": "matrix probe",
            "body": "matrix probe", "nature": "EXPLICIT", "kind": "PLAYBOOK", "visibility": "PRIVATE"}}"#,
    ),
    ("KnowledgeService/InternalizeKnowledge", "{}"),
    (
        "KnowledgeService/SocializeKnowledge",
        r#"{"name": "$tacit", "recipients": ["E-new-hire"]}"#,
    ),
    (
        "KnowledgeService/ShareKnowledgeItem",
        r#"{"grantee": {"type": "TEAM", "id": "T-RISK"}, "purpose": "matrix probe",
            "expire_time": "$future"}"#,
    ),
    ("KnowledgeService/VerifyKnowledgeItem", "{}"),
    ("KnowledgeService/GetKnowledgeLineage", "{}"),
    ("KnowledgeService/GetKnowledgeFlow", r#"{"branch": "B01"}"#),
    (
        "KnowledgeService/GetKnowledgeSharingMetrics",
        r#"{"branch": "B01"}"#,
    ),
    (
        "KnowledgeService/WatchKnowledge",
        r#"{"subjects": ["$customer"]}"#,
    ),
    (
        "KnowledgeService/RevokeKnowledgeGrant",
        r#"{"grantee": {"type": "TEAM", "id": "T-RISK"}}"#,
    ),
    (
        "KnowledgeService/RetractKnowledgeItem",
        r#"{"reason": "matrix probe"}"#,
    ),
    ("InsightService/GetCustomer360", "{}"),
    ("InsightService/RecomputeSegments", "{}"),
    ("InsightService/GetSegmentSummary", r#"{"branch": "B01"}"#),
    ("InsightService/ListAtRiskCustomers", r#"{"branch": "B01"}"#),
    (
        "CampaignService/CreateCampaign",
        r#"{"campaign": {"display_name": "matrix probe", "products": ["DEPOSIT-1Y"],
            "budget": {"currency_code": "CNY", "units": "1000"},
            "start_time": "2026-01-01T00:00:00Z", "end_time": "$future",
            "target": {"branch": "B01"}}}"#,
    ),
    ("CampaignService/GetCampaign", "{}"),
    ("CampaignService/ListCampaigns", r#"{"branch": "B01"}"#),
    (
        "CampaignService/AddCampaignActivity",
        r#"{"activity": {"title": "matrix probe", "channel": "PHONE",
            "cost": {"currency_code": "CNY", "units": "10"}, "schedule_time": "$future"}}"#,
    ),
    (
        "CampaignService/GenerateCampaignContacts",
        r#"{"channel": "PHONE"}"#,
    ),
    (
        "CampaignService/RecordCampaignResponse",
        r#"{"outcome": "INTERESTED"}"#,
    ),
    ("CampaignService/GetCampaignResults", "{}"),
    ("AuditService/ListAccessEvents", "{}"),
    ("AuditService/VerifyAuditChain", "{}"),
];

/// The resources one variant's calls act on.
#[derive(Clone, Debug)]
struct Fixture {
    /// The B01 target, with the distinctive PII.
    customer: String,
    /// Another B01 customer (LinkCustomers).
    peer: String,
    /// A B02 customer: the one the mobile backend acts for.
    other: String,
    /// The target's CIF number.
    cif: String,
    /// A COMPLAINT of the target, with distinctive notes.
    interaction: String,
    follow_up: String,
    /// The service request a SERVICE_REQUEST interaction of the target
    /// opened.
    service_request: String,
    /// BRANCH-visible EXPLICIT knowledge about the target, written by a B01
    /// relationship manager who is none of the callers.
    item_a: String,
    item_b: String,
    /// BRANCH-visible TACIT knowledge about the target, carried by that
    /// manager (ExternalizeKnowledge, SocializeKnowledge).
    tacit: String,
    /// A PLANNED campaign for B01 with one activity, made by an admin.
    campaign: String,
}

impl Fixture {
    /// The names (and the CIF number) of B01 customer data: a request naming
    /// one of them acts on B01.
    fn b01_customer_data(&self) -> [&str; 6] {
        [
            &self.customer,
            &self.peer,
            &self.interaction,
            &self.follow_up,
            &self.service_request,
            &self.cif,
        ]
    }

    fn b01_items(&self) -> [&str; 3] {
        [&self.item_a, &self.item_b, &self.tacit]
    }

    /// What must not reach `class`: nothing of the target for a caller who
    /// may not read B01, no whole PII value for an analyst (masked reads).
    fn secrets(&self, class: Class) -> Vec<&str> {
        if class == Class::Analyst {
            return vec![
                TARGET_PHONE,
                TARGET_EMAIL,
                TARGET_NATIONAL_ID,
                TARGET_BIRTH_DATE,
                TARGET_BIRTH_DATE_WIRE,
                TARGET_ADDRESS,
                "13977310042",
                "ouyang.feng",
                "白驼",
            ];
        }
        if !class.is_stranger() {
            return Vec::new();
        }
        let mut all = vec![
            TARGET_NAME,
            TARGET_PHONE,
            TARGET_EMAIL,
            TARGET_NATIONAL_ID,
            TARGET_BIRTH_DATE,
            TARGET_BIRTH_DATE_WIRE,
            TARGET_ADDRESS,
            INTERACTION_SUMMARY,
            INTERACTION_NOTES,
            FOLLOW_UP_PURPOSE,
            KNOWLEDGE_TITLE,
            KNOWLEDGE_BODY,
            &self.cif,
        ];
        all.extend(FRAGMENTS);
        all
    }
}

fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn in_a_week() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: now_secs() + 7 * 86_400,
        nanos: 0,
    }
}

/// The relationship manager of B01 who writes the fixtures' knowledge; no
/// variant calls as them, so author-only rules apply to every variant.
fn author() -> Caller {
    Caller {
        team: Some("T-WEALTH".into()),
        ..Caller::new("E-author-B01", Some("B01"), &["relationship_manager"])
    }
}

async fn create_customer(app: &TestApp, customer: pb::Customer) -> String {
    app.customers(&Caller::admin())
        .await
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer),
            ..Default::default()
        })
        .await
        .expect("create a fixture customer")
        .into_inner()
        .name
}

/// Creates one variant's fixtures with the generated clients, as an admin
/// and as B01 relationship managers.
#[allow(deprecated)] // seeds the deprecated `birth_date`, still accepted
async fn fixture(app: &TestApp) -> Fixture {
    let cif = format!("MX-{}", uuid::Uuid::now_v7().simple());
    let customer = create_customer(
        app,
        pb::Customer {
            display_name: TARGET_NAME.into(),
            kind: pb::customer::Kind::Individual as i32,
            home_branch: "B01".into(),
            relationship_manager: "E-rm-B01".into(),
            national_id: TARGET_NATIONAL_ID.into(),
            phone: TARGET_PHONE.into(),
            email: TARGET_EMAIL.into(),
            birth_date: TARGET_BIRTH_DATE.into(),
            address: TARGET_ADDRESS.into(),
            external_ids: vec![pb::ExternalId {
                system: "CIF".into(),
                value: cif.clone(),
            }],
            ..Default::default()
        },
    )
    .await;
    let plain = |name: &str, branch: &str| pb::Customer {
        display_name: name.into(),
        kind: pb::customer::Kind::Individual as i32,
        home_branch: branch.into(),
        phone: "+86 10 0000 0000".into(),
        email: "someone@example.org".into(),
        ..Default::default()
    };
    let peer = create_customer(app, plain("Peer Of Target", "B01")).await;
    let other = create_customer(app, plain("Mobile User", "B02")).await;

    let mut interactions = app.interactions(&Caller::rm("B01")).await;
    let interaction = interactions
        .log_interaction(pb::LogInteractionRequest {
            parent: customer.clone(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::Phone as i32,
                kind: pb::interaction::Kind::Complaint as i32,
                summary: INTERACTION_SUMMARY.into(),
                notes: INTERACTION_NOTES.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("log the fixture complaint")
        .into_inner()
        .name;
    let service_request = interactions
        .log_interaction(pb::LogInteractionRequest {
            parent: customer.clone(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::Branch as i32,
                kind: pb::interaction::Kind::ServiceRequest as i32,
                summary: INTERACTION_SUMMARY.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("log the fixture service request")
        .into_inner()
        .name
        .replace("/interactions/", "/serviceRequests/");
    let follow_up = interactions
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: customer.clone(),
            follow_up: Some(pb::FollowUp {
                assignee: "E-rm-B01".into(),
                due_time: Some(in_a_week()),
                purpose: FOLLOW_UP_PURPOSE.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("schedule the fixture follow-up")
        .into_inner()
        .name;

    let knowledge = app.knowledge(&author()).await;
    let item = |title: String, nature: pb::knowledge_item::Nature| {
        let mut knowledge = knowledge.clone();
        let request = pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title,
                body: KNOWLEDGE_BODY.into(),
                nature: nature as i32,
                kind: pb::knowledge_item::Kind::Preference as i32,
                subjects: vec![customer.clone()],
                visibility: pb::knowledge_item::Visibility::Branch as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        async move {
            knowledge
                .create_knowledge_item(request)
                .await
                .expect("create fixture knowledge")
                .into_inner()
                .name
        }
    };
    use pb::knowledge_item::Nature::{Explicit, Tacit};
    let item_a = item(KNOWLEDGE_TITLE.into(), Explicit).await;
    let item_b = item(format!("{KNOWLEDGE_TITLE}, second volume"), Explicit).await;
    let tacit = item(format!("{KNOWLEDGE_TITLE}, a hunch"), Tacit).await;
    let campaign = fixture_campaign(app).await;
    Fixture {
        customer,
        peer,
        other,
        cif,
        interaction,
        follow_up,
        service_request,
        item_a,
        item_b,
        tacit,
        campaign,
    }
}

/// A PLANNED B01 campaign with one activity, so that every CampaignService
/// method has something to act on.
async fn fixture_campaign(app: &TestApp) -> String {
    use pb::campaign_service_client::CampaignServiceClient;
    let mut admin = CampaignServiceClient::with_interceptor(
        app.channel().await,
        crate::helpers::Bearer::of(&Caller::admin()),
    );
    let now = now_secs();
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let cny = |units: i64| {
        Some(pb::Money {
            currency_code: "CNY".into(),
            units,
            nanos: 0,
        })
    };
    let name = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(pb::Campaign {
                display_name: "Matrix campaign".into(),
                products: vec!["DEPOSIT-1Y".into()],
                budget: cny(1000),
                start_time: at(now - 86_400),
                end_time: at(now + 30 * 86_400),
                target: Some(pb::CampaignTarget {
                    branch: "B01".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create the fixture campaign")
        .into_inner()
        .name;
    admin
        .add_campaign_activity(pb::AddCampaignActivityRequest {
            name: name.clone(),
            activity: Some(pb::CampaignActivity {
                title: "Calls".into(),
                channel: pb::interaction::Channel::Phone as i32,
                cost: cny(100),
                schedule_time: at(now),
            }),
            ..Default::default()
        })
        .await
        .expect("plan the fixture campaign's activity");
    name
}

/// Who calls, as far as the expectation table cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// No token, or one the service must refuse.
    Unauthenticated,
    /// Relationship manager or teller of B02.
    OtherBranch,
    /// Relationship manager or teller of B01.
    SameBranch,
    Analyst,
    Compliance,
    Admin,
    /// core-banking, `methods = ["*"]`.
    Service,
    /// The mobile backend acting for a B02 customer.
    MobileForOther,
}

impl Class {
    /// Whether the caller may not read the B01 target at all.
    fn is_stranger(self) -> bool {
        matches!(
            self,
            Class::Unauthenticated | Class::OtherBranch | Class::MobileForOther
        )
    }
}

/// The callers, one column each.
const VARIANTS: [(&str, Class); 12] = [
    ("none", Class::Unauthenticated),
    ("expired", Class::Unauthenticated),
    ("aud", Class::Unauthenticated),
    ("nbf", Class::Unauthenticated),
    ("rm@B02", Class::OtherBranch),
    ("tl@B02", Class::OtherBranch),
    ("rm@B01", Class::SameBranch),
    ("tl@B01", Class::SameBranch),
    ("analyst", Class::Analyst),
    ("complnc", Class::Compliance),
    ("admin", Class::Admin),
    ("service", Class::Service),
];

/// The mobile backend acting for a B02 customer: a test of its own, which
/// fails until `on_behalf_of` and `[auth.systems.*]` are enforced (until then
/// the config keys are ignored and a `service` caller reads every customer).
const MOBILE: (&str, Class) = ("mob>B02", Class::MobileForOther);

/// The bearer token of a variant. The refused tokens are those of a B01
/// relationship manager, who could otherwise read the target.
fn token(label: &str, fx: &Fixture) -> Option<String> {
    let now = now_secs();
    let mut claims = Caller::rm("B01").claims();
    match label {
        "none" => return None,
        "expired" => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        "aud" => claims["aud"] = json!("another-service"),
        "nbf" => claims["nbf"] = json!(now + 3600),
        "rm@B02" => claims = Caller::rm("B02").claims(),
        "tl@B02" => claims = Caller::teller("B02").claims(),
        "rm@B01" => {}
        "tl@B01" => claims = Caller::teller("B01").claims(),
        "analyst" => claims = Caller::analyst().claims(),
        "complnc" => claims = Caller::compliance().claims(),
        "admin" => claims = Caller::admin().claims(),
        "service" => claims = Caller::service().claims(),
        "mob>B02" => {
            claims = Caller::new("mobile-backend", None, &["service"]).claims();
            claims["on_behalf_of"] = json!(fx.other);
        }
        other => panic!("no token for variant {other}"),
    }
    Some(sign(&claims))
}

/// What a method does, for the expectation table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Reads a B01 customer or its interactions, complaints, follow-ups.
    ReadCustomer,
    /// Writes them, or creates data about or in B01.
    WriteCustomer,
    /// Reads the BRANCH-visible B01 knowledge items.
    ReadItem,
    /// Converts, absorbs or verifies them.
    WriteItem,
    /// Changes them as their author or carrier would (update, share,
    /// socialize, revoke a grant, retract): author/carrier or admin only.
    CurateItem,
    /// A read naming no resource (list, search, flow, summary): answered
    /// from what the caller may read.
    Query,
    /// Import or recompute: service and admin callers only.
    Bulk,
    /// AuditService: compliance and admin only.
    Audit,
    /// Folds one customer into another (MergeCustomers): admin only.
    Govern,
}

const KINDS: [Kind; 9] = [
    Kind::ReadCustomer,
    Kind::WriteCustomer,
    Kind::ReadItem,
    Kind::WriteItem,
    Kind::CurateItem,
    Kind::Query,
    Kind::Bulk,
    Kind::Audit,
    Kind::Govern,
];

/// An entry of the expectation table.
#[derive(Clone, Copy, Debug)]
enum Allow {
    /// UNAUTHENTICATED.
    N,
    /// PERMISSION_DENIED.
    D,
    /// OK (answered from what the caller may read) or PERMISSION_DENIED.
    F,
    /// Allowed: OK, or FAILED_PRECONDITION (a rule about the data: consent,
    /// nature, state); never an access error, and never NOT_FOUND since
    /// every variant's fixtures exist until its erasure runs last.
    A,
}
use Allow::{A, D, F, N};

/// The expectation table (DESIGN §3, README "Access"), columns in `KINDS`
/// order: ReadCustomer, WriteCustomer, ReadItem, WriteItem, CurateItem,
/// Query, Bulk, Audit, Govern.
const TABLE: [(Class, [Allow; 9]); 8] = [
    (Class::Unauthenticated, [N, N, N, N, N, N, N, N, N]),
    (Class::OtherBranch, [D, D, D, D, D, F, D, D, D]),
    (Class::SameBranch, [A, A, A, A, D, A, D, D, D]),
    (Class::Analyst, [A, D, D, D, D, A, D, D, D]),
    (Class::Compliance, [A, D, A, D, D, A, D, A, D]),
    (Class::Admin, [A, A, A, A, A, A, A, A, A]),
    (Class::Service, [A, A, D, D, D, A, A, D, D]),
    (Class::MobileForOther, [D, D, D, D, D, D, D, D, D]),
];

fn allow(class: Class, kind: Kind) -> Allow {
    let row = TABLE.iter().find(|(c, _)| *c == class).expect("a row").1;
    row[KINDS.iter().position(|k| *k == kind).expect("a column")]
}

/// The codes a call may answer with.
fn expected(class: Class, kind: Kind, known: bool) -> Vec<Code> {
    let mut codes: Vec<Code> = match allow(class, kind) {
        N => [Code::Unauthenticated].into(),
        D => [Code::PermissionDenied].into(),
        F => [Code::Ok, Code::PermissionDenied].into(),
        A => [Code::Ok, Code::FailedPrecondition].into(),
    };
    if class != Class::Unauthenticated {
        // A new method's generic request may be malformed.
        if !known {
            codes.push(Code::InvalidArgument);
        }
    }
    codes
}

/// The one rule for what a `name` field names: the campaign in
/// CampaignService, the follow-up for FollowUp methods, the service request
/// for ServiceRequest methods, the interaction for Interaction and Complaint
/// methods, the first
/// knowledge item in KnowledgeService (or for Knowledge methods), else the
/// target customer. `parent` and `customer` are always the target customer.
/// The reports whose request takes an optional singleton name (AIP-156)
/// besides its scope fields.
const SCOPED_REPORTS: &[&str] = &[
    "GetKnowledgeFlow",
    "GetKnowledgeSharingMetrics",
    "GetComplaintSummary",
    "GetServiceMetrics",
    "GetSegmentSummary",
];

fn resource_named(method: &MethodDescriptor, fx: &Fixture) -> String {
    let name = method.name();
    if method.parent_service().name() == "CampaignService" {
        fx.campaign.clone()
    } else if name.contains("FollowUp") {
        fx.follow_up.clone()
    } else if name.contains("ServiceRequest") {
        fx.service_request.clone()
    } else if name.contains("Interaction") || name.contains("Complaint") {
        fx.interaction.clone()
    } else if method.parent_service().name() == "KnowledgeService" || name.contains("Knowledge") {
        fx.item_a.clone()
    } else {
        fx.customer.clone()
    }
}

fn method_key(method: &MethodDescriptor) -> String {
    format!("{}/{}", method.parent_service().name(), method.name())
}

/// The request of `method` for `fx`, and whether the method is known.
fn request(method: &MethodDescriptor, fx: &Fixture) -> (DynamicMessage, bool) {
    let key = method_key(method);
    let known = KNOWN_METHODS.iter().find(|(m, _)| *m == key);
    let mut message = match known {
        Some((_, json)) => {
            let json = json
                .replace("$customer", &fx.customer)
                .replace("$peer", &fx.peer)
                .replace("$interaction", &fx.interaction)
                .replace("$item_a", &fx.item_a)
                .replace("$item_b", &fx.item_b)
                .replace("$tacit", &fx.tacit)
                .replace("$cif", &fx.cif)
                .replace(
                    "$future",
                    &chrono::DateTime::from_timestamp(in_a_week().seconds, 0)
                        .unwrap()
                        .to_rfc3339(),
                )
                .replace("$fresh", &uuid::Uuid::now_v7().simple().to_string());
            let mut de = serde_json::Deserializer::from_str(&json);
            let message = DynamicMessage::deserialize(method.input(), &mut de)
                .unwrap_or_else(|e| panic!("the JSON of {key} does not fit its request: {e}"));
            de.end().unwrap();
            message
        }
        None => DynamicMessage::new(method.input()),
    };
    for field in method.input().fields() {
        if field.kind() != prost_reflect::Kind::String
            || field.is_list()
            || message.has_field(&field)
        {
            continue;
        }
        let value = match field.name() {
            // A scoped report's optional singleton name: left empty, so the
            // scope fields (or their absence) name the report as before.
            "name" if SCOPED_REPORTS.contains(&method.name()) => continue,
            "name" => resource_named(method, fx),
            "parent" | "customer" => fx.customer.clone(),
            "request_id" => uuid(),
            _ => continue,
        };
        message.set_field(&field, Value::String(value));
    }
    (message, known.is_some())
}

/// Every string in a message, nested messages and lists included.
fn strings<'a>(message: &'a DynamicMessage, out: &mut Vec<&'a str>) {
    fn value<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Message(m) => strings(m, out),
            Value::List(items) => items.iter().for_each(|i| value(i, out)),
            Value::Map(map) => map.values().for_each(|i| value(i, out)),
            _ => {}
        }
    }
    for (_, v) in message.fields() {
        value(v, out);
    }
}

/// A method's kind: by service and verb, and by which fixture resources the
/// request names (exactly, anywhere in it; filter strings do not count).
fn kind(method: &MethodDescriptor, request: &DynamicMessage, fx: &Fixture) -> Kind {
    let name = method.name();
    if method.parent_service().name() == "AuditService" {
        return Kind::Audit;
    }
    if name.starts_with("Import") || name.starts_with("Recompute") {
        return Kind::Bulk;
    }
    if name.starts_with("Merge") {
        return Kind::Govern;
    }
    let read = ["Get", "List", "Search", "Lookup", "Watch"]
        .iter()
        .any(|verb| name.starts_with(verb));
    let mut named = Vec::new();
    strings(request, &mut named);
    let names_item = named.iter().any(|s| fx.b01_items().contains(s));
    let names_customer_data = named.iter().any(|s| fx.b01_customer_data().contains(s));
    match (read, names_item, names_customer_data) {
        (true, true, _) => Kind::ReadItem,
        (true, false, true) => Kind::ReadCustomer,
        (true, false, false) => Kind::Query,
        (false, true, _)
            if ["Update", "Share", "Socialize", "Revoke", "Retract"]
                .iter()
                .any(|verb| name.starts_with(verb)) =>
        {
            Kind::CurateItem
        }
        (false, true, _) => Kind::WriteItem,
        (false, false, _) => Kind::WriteCustomer,
    }
}

/// Passes encoded messages through unchanged: requests are encoded from
/// `DynamicMessage`s, answers are searched as raw bytes.
#[derive(Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// What one call answered.
struct Outcome {
    code: Code,
    message: String,
    /// Response body (unary and client streaming), status details and
    /// metadata: everything searched for leaks besides the message.
    bytes: Vec<u8>,
}

fn metadata_bytes(metadata: &MetadataMap) -> Vec<u8> {
    let headers = metadata.clone().into_headers();
    headers
        .values()
        .flat_map(|v| v.as_bytes().iter().copied().chain([b'\n']))
        .collect()
}

/// Calls `method` with an encoded request: unary, server streaming (judged by
/// its headers, then dropped), client streaming (one message), or both.
async fn call(
    channel: Channel,
    method: &MethodDescriptor,
    body: Vec<u8>,
    token: Option<&str>,
) -> Outcome {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name())
        .parse::<http::uri::PathAndQuery>()
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let authorize = |metadata: &mut MetadataMap| {
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
    };
    let unary = |body: Vec<u8>| {
        let mut request = Request::new(body);
        authorize(request.metadata_mut());
        request
    };
    let streamed = |body: Vec<u8>| {
        let mut request = Request::new(tokio_stream::iter([body]));
        authorize(request.metadata_mut());
        request
    };
    let answer = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => grpc
            .unary(unary(body), path, RawCodec)
            .await
            .map(|r| (metadata_bytes(r.metadata()), r.into_inner())),
        (false, true) => grpc
            .server_streaming(unary(body), path, RawCodec)
            .await
            .map(|r| (metadata_bytes(r.metadata()), Vec::new())),
        (true, false) => grpc
            .client_streaming(streamed(body), path, RawCodec)
            .await
            .map(|r| (metadata_bytes(r.metadata()), r.into_inner())),
        (true, true) => grpc
            .streaming(streamed(body), path, RawCodec)
            .await
            .map(|r| (metadata_bytes(r.metadata()), Vec::new())),
    };
    match answer {
        Ok((metadata, body)) => Outcome {
            code: Code::Ok,
            message: String::new(),
            bytes: [metadata, body].concat(),
        },
        Err(status) => Outcome {
            code: status.code(),
            message: status.message().to_string(),
            bytes: [status.details().to_vec(), metadata_bytes(status.metadata())].concat(),
        },
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The secrets of `fx` for `class` found in an outcome.
fn leaks<'a>(outcome: &Outcome, fx: &'a Fixture, class: Class) -> Vec<&'a str> {
    fx.secrets(class)
        .into_iter()
        .filter(|s| contains(&outcome.bytes, s) || outcome.message.contains(s))
        .collect()
}

fn short(code: Code) -> String {
    match code {
        Code::Ok => "OK".into(),
        Code::Unauthenticated => "UNAUTH".into(),
        Code::PermissionDenied => "DENIED".into(),
        Code::InvalidArgument => "INVALID".into(),
        Code::FailedPrecondition => "PRECOND".into(),
        Code::NotFound => "NOTFOUND".into(),
        Code::AlreadyExists => "EXISTS".into(),
        Code::Unimplemented => "UNIMPL".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// One cell of the matrix.
struct Cell {
    outcome: Outcome,
    kind: Kind,
    expected: Vec<Code>,
    leaked: Vec<String>,
}

impl Cell {
    fn failed(&self) -> bool {
        !self.expected.contains(&self.outcome.code) || !self.leaked.is_empty()
    }
}

/// Runs every method for one variant, on its own fixtures.
async fn run_variant(
    app: &TestApp,
    methods: &[MethodDescriptor],
    label: &str,
    class: Class,
) -> Vec<Cell> {
    let fx = fixture(app).await;
    let token = token(label, &fx);
    let channel = app.channel().await;
    let mut cells = Vec::new();
    for method in methods {
        let (message, known) = request(method, &fx);
        let kind = kind(method, &message, &fx);
        let outcome = call(
            channel.clone(),
            method,
            message.encode_to_vec(),
            token.as_deref(),
        )
        .await;
        let leaked = leaks(&outcome, &fx, class)
            .into_iter()
            .map(String::from)
            .collect();
        cells.push(Cell {
            expected: expected(class, kind, known),
            outcome,
            kind,
            leaked,
        });
    }
    cells
}

/// The contract's methods from the descriptor set: services in `SERVICES`
/// order (any other service of the package after them), methods in
/// declaration order, erasures last.
fn contract_methods() -> Vec<MethodDescriptor> {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
    let mut services: Vec<_> = pool
        .services()
        .filter(|s| s.package_name() == PACKAGE)
        .collect();
    services.sort_by_key(|s| {
        SERVICES
            .iter()
            .position(|n| *n == s.name())
            .unwrap_or(usize::MAX)
    });
    for name in SERVICES {
        assert!(
            services.iter().any(|s| s.name() == name),
            "{name} is missing from the descriptor set"
        );
    }
    let mut methods: Vec<MethodDescriptor> = services.iter().flat_map(|s| s.methods()).collect();
    // What takes a fixture out of reach runs last: voids and corrections
    // (the interaction), merges (the peer), then erasures (the target).
    methods.sort_by_key(|m| {
        let name = m.name();
        if name.starts_with("Delete") {
            2
        } else if ["Void", "Correct", "Merge"]
            .iter()
            .any(|verb| name.starts_with(verb))
        {
            1
        } else {
            0
        }
    });
    for (key, _) in KNOWN_METHODS {
        assert!(
            methods.iter().any(|m| method_key(m) == *key),
            "{key} is in KNOWN_METHODS but not in the contract"
        );
    }
    methods
}

fn render(
    methods: &[MethodDescriptor],
    variants: &[(&str, Class)],
    columns: &[Vec<Cell>],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    writeln!(
        out,
        "\naccess matrix: method × caller → status (* not expected, ! leaked B01 data)"
    )
    .unwrap();
    write!(out, "{:<45} {:<13}", "method", "kind").unwrap();
    for (label, _) in variants {
        write!(out, " {label:<9}").unwrap();
    }
    writeln!(out).unwrap();
    for (row, method) in methods.iter().enumerate() {
        let key = method_key(method);
        let known = KNOWN_METHODS.iter().any(|(m, _)| *m == key);
        let key = if known { key } else { format!("{key} (new)") };
        let kind = format!("{:?}", columns[0][row].kind);
        write!(out, "{key:<45} {kind:<13}").unwrap();
        for column in columns {
            let cell = &column[row];
            let mut text = short(cell.outcome.code);
            if !cell.expected.contains(&cell.outcome.code) {
                text.push('*');
            }
            if !cell.leaked.is_empty() {
                text.push('!');
            }
            write!(out, " {text:<9}").unwrap();
        }
        writeln!(out).unwrap();
    }
    out
}

/// Runs every contract method for every variant against one app, prints
/// the matrix and fails on any cell against the rules.
async fn run_matrix(variants: &[(&str, Class)]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[auth.systems.core-banking]
methods = ["*"]

[auth.systems.mobile-backend]
methods = ["CustomerService/GetCustomer", "InteractionService/ListInteractions", "InteractionService/GetInteraction"]
acts_for_customers = true
"#,
    )
    .unwrap();
    let app = TestApp::spawn_with(|env| {
        env.insert("CK_CONFIG".into(), config.display().to_string());
    })
    .await;
    let methods = contract_methods();

    let columns: Vec<Vec<Cell>> = join_all(
        variants
            .iter()
            .map(|(label, class)| run_variant(&app, &methods, label, *class)),
    )
    .await;

    let matrix = render(&methods, variants, &columns);
    println!("{matrix}");
    let mut failures = Vec::new();
    for (column, (label, class)) in columns.iter().zip(variants) {
        for (cell, method) in column.iter().zip(&methods) {
            if cell.failed() {
                failures.push(format!(
                    "{} as {label} ({class:?}, {:?}): {:?} {:?}, expected one of {:?}{}",
                    method_key(method),
                    cell.kind,
                    cell.outcome.code,
                    cell.outcome.message,
                    cell.expected,
                    if cell.leaked.is_empty() {
                        String::new()
                    } else {
                        format!("; LEAKED {:?}", cell.leaked)
                    }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells answered against the access rules (the matrix is printed above):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_every_caller_as_the_access_rules_say() {
    // The wire needle really is how the target's birth date is encoded.
    let encoded = prost::Message::encode_to_vec(&pb::Customer {
        date_of_birth: Some(pb::Date {
            year: 1977,
            month: 7,
            day: 31,
        }),
        ..Default::default()
    });
    assert!(contains(&encoded, TARGET_BIRTH_DATE_WIRE));
    run_matrix(&VARIANTS).await;
}

/// The mobile backend acting for one customer (`on_behalf_of`) reaches
/// nothing of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mobile_backend_acting_for_one_customer_gets_nothing_of_another() {
    run_matrix(&[MOBILE]).await;
}
