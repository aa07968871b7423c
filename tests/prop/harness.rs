//! The five gRPC services with no database behind them, called directly
//! (no transport, no interceptor), for the property tests (`tests/prop`) and
//! the fuzz targets (`fuzz/`), which include this file by path.
//!
//! The pool is lazy, points at a closed loopback port and is closed before
//! the first call, so a request that passes a handler's validation answers
//! UNAVAILABLE at once instead of touching Postgres. Every call gets a
//! `Principal` in its extensions, as the auth interceptor attaches one, and
//! an audit note, as the per-call layer does. Calls run as tasks of a
//! current-thread runtime on the calling thread, so a panic comes back as a
//! `JoinError` (and every allocation of a call happens on the caller's thread,
//! which the allocation check of `tests/prop` relies on).

#![allow(dead_code)]

use std::{
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use customer_knowledge::{
    api::{
        Streams,
        audit::AuditApi,
        campaign::CampaignApi,
        customer::CustomerApi,
        insight::InsightApi,
        interaction::{InteractionApi, InteractionApiParts},
        knowledge::KnowledgeApi,
        operations::OperationsApi,
        page_token::PageTokens,
        status::ERROR_DOMAIN,
    },
    audit::{AuditLog, AuditWriter},
    config::DatabaseSettings,
    domain::{
        audit::Pseudonyms,
        interaction::{ComplaintSla, SourceSystems},
        principal::{Principal, Role},
    },
    metrics::Metrics,
    pb::google::longrunning::{self as lro, operations_server::Operations},
    pb::v1::{
        self as pb, audit_service_server::AuditService, campaign_service_server::CampaignService,
        customer_service_server::CustomerService, insight_service_server::InsightService,
        interaction_service_server::InteractionService, knowledge_service_server::KnowledgeService,
    },
    store::{Db, feed::ChangeFeed},
};
use prost::{Message, bytes::Bytes};
use tokio::sync::watch;
use tonic::{Code, Request, Status, codec::Codec};
use tonic_types::StatusExt;

/// The page-token key of the services under test.
pub const PAGE_TOKEN_KEY: &[u8] = b"property-test-page-token-key-32b";

/// The server's default `server.max_message_bytes`: tonic refuses a larger
/// request message before any handler sees it.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// How long one call may take before it counts as hung.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// Which service a method belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Customer,
    Interaction,
    Knowledge,
    Campaign,
    Insight,
    Audit,
    /// `google.longrunning.Operations`, as the service serves it.
    Operations,
}

/// How a method takes and answers messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Unary,
    /// A stream of requests, one answer (ImportInteractions).
    ClientStreaming,
    /// One request, a stream of answers (the Watch methods): judged by the
    /// answer to the call; the stream is dropped unread.
    ServerStreaming,
}

/// One method of the contract that a service implements.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub service: Service,
    pub name: &'static str,
    /// Full proto name of the request message.
    pub input: &'static str,
    pub shape: Shape,
}

impl Method {
    /// `/package.Service/Method`, as the audit records it.
    pub fn path(&self) -> String {
        let service = match self.service {
            Service::Customer => "CustomerService",
            Service::Interaction => "InteractionService",
            Service::Knowledge => "KnowledgeService",
            Service::Campaign => "CampaignService",
            Service::Insight => "InsightService",
            Service::Audit => "AuditService",
            Service::Operations => {
                return format!("/google.longrunning.Operations/{}", self.name);
            }
        };
        format!("/bank.customerknowledge.v1.{service}/{}", self.name)
    }
}

/// What became of one call.
#[derive(Debug)]
pub enum Outcome {
    /// The bytes are not a message of the request type (prost refused them;
    /// tonic answers such a request INTERNAL before any handler runs), or
    /// the message is over `MAX_MESSAGE_BYTES` (tonic refuses it too).
    NotDecoded,
    /// The handler answered: `Ok` or its status.
    Answered(Result<(), Status>),
    /// The handler panicked.
    Panicked(String),
    /// The handler did not answer within `CALL_LIMIT`.
    Hung,
}

/// Codes a handler may answer a request with. INTERNAL, UNKNOWN and
/// DATA_LOSS are server faults; UNIMPLEMENTED would mean a method the
/// service says it has is missing.
pub fn forbidden(code: Code) -> bool {
    matches!(
        code,
        Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented
    )
}

/// The properties every answer must have; `Err` says which one broke.
///
/// - no panic, no hang;
/// - no INTERNAL, UNKNOWN, DATA_LOSS or UNIMPLEMENTED;
/// - every error the service makes carries `google.rpc.ErrorInfo` of its
///   domain, and INVALID_ARGUMENT carries at least one `BadRequest` field
///   violation (the one error mapping of `api::status` was used).
pub fn judge(outcome: &Outcome) -> Result<(), String> {
    let status = match outcome {
        Outcome::NotDecoded | Outcome::Answered(Ok(())) => return Ok(()),
        Outcome::Panicked(message) => return Err(format!("the handler panicked: {message}")),
        Outcome::Hung => return Err(format!("the handler did not answer in {CALL_LIMIT:?}")),
        Outcome::Answered(Err(status)) => status,
    };
    let shown = || {
        let message: String = status.message().chars().take(300).collect();
        format!("{:?}: {message}", status.code())
    };
    if forbidden(status.code()) {
        return Err(format!("answered {}", shown()));
    }
    let details = status.get_error_details();
    match details.error_info() {
        Some(info) if info.domain == ERROR_DOMAIN => {}
        // The service's errors never map to these two: they come from
        // tonic's decoding of a request stream (a message over the size
        // limit), passed on as they are.
        None if matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted) => {}
        _ => return Err(format!("no ErrorInfo of {ERROR_DOMAIN} in {}", shown())),
    }
    if status.code() == Code::InvalidArgument
        && details
            .bad_request()
            .is_none_or(|b| b.field_violations.is_empty())
    {
        return Err(format!(
            "INVALID_ARGUMENT without a field violation: {}",
            shown()
        ));
    }
    Ok(())
}

/// The most header bytes (RFC 9113 §6.5.2: name, value and 32 per field)
/// the hyper HTTP/2 client under tonic accepts by default; other clients
/// take as little as 8 KiB.
pub const CLIENT_HEADER_LIST_LIMIT: usize = 16 << 10;

/// Room left in the response headers for what else they carry
/// (`:status`, `content-type`, ...).
const OTHER_HEADERS: usize = 512;

/// What a status takes of the response headers or trailers (`grpc-status`,
/// `grpc-message` percent-encoded, `grpc-status-details-bin` in base64),
/// counted as HTTP/2 counts them.
pub fn header_list_size(status: &Status) -> usize {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        return usize::MAX;
    }
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// The property `judge` leaves out: the status fits in the headers a
/// client accepts, or it never reaches the client (which sees INTERNAL or
/// RESOURCE_EXHAUSTED "h2 protocol error" instead; `transport.rs` shows it).
pub fn judge_status_size(outcome: &Outcome) -> Result<(), String> {
    let Outcome::Answered(Err(status)) = outcome else {
        return Ok(());
    };
    let size = header_list_size(status);
    if size + OTHER_HEADERS > CLIENT_HEADER_LIST_LIMIT {
        let violations = status
            .get_error_details()
            .bad_request()
            .map(|b| b.field_violations.len())
            .unwrap_or_default();
        let message: String = status.message().chars().take(200).collect();
        return Err(format!(
            "answered {:?} with a status of {size} header bytes ({violations} field \
             violations), more than the {CLIENT_HEADER_LIST_LIMIT} a client accepts: {message}",
            status.code()
        ));
    }
    Ok(())
}

macro_rules! methods {
    ($($service:ident $shape:ident $name:literal $handler:ident $request:ident;)*) => {
        /// Every unary, client-streaming and server-streaming method the four
        /// services implement.
        pub const METHODS: &[Method] = &[$(Method {
            service: Service::$service,
            name: $name,
            input: methods!(@input $service $request),
            shape: Shape::$shape,
        }),*];

        impl Harness {
            async fn dispatch(
                services: Services,
                method: Method,
                messages: Vec<Vec<u8>>,
                principal: Principal,
                audit: customer_knowledge::audit::AuditNote,
            ) -> Option<Result<(), Status>> {
                match method.name {
                    $($name => methods!(@call $service $shape services $handler $request messages principal audit),)*
                    other => unreachable!("no method {other}"),
                }
            }
        }
    };
    (@call $service:ident Unary $services:ident $handler:ident $request:ident $messages:ident $principal:ident $audit:ident) => {{
        let message = <methods!(@type $service $request)>::decode(first(&$messages)).ok()?;
        let request = with_caller(Request::new(message), $principal, $audit);
        Some(methods!(@service $service $services).$handler(request).await.map(|_| ()))
    }};
    (@call $service:ident ServerStreaming $services:ident $handler:ident $request:ident $messages:ident $principal:ident $audit:ident) => {{
        let message = pb::$request::decode(first(&$messages)).ok()?;
        let request = with_caller(Request::new(message), $principal, $audit);
        Some(methods!(@service $service $services).$handler(request).await.map(drop))
    }};
    (@call $service:ident ClientStreaming $services:ident $handler:ident $request:ident $messages:ident $principal:ident $audit:ident) => {{
        let mut body = Vec::new();
        for bytes in &$messages {
            let message = pb::$request::decode(bytes.as_slice()).ok()?;
            frame(&message.encode_to_vec(), &mut body);
        }
        let stream = tonic::codec::Streaming::new_request(
            tonic_prost::ProstCodec::<(), pb::$request>::default().decoder(),
            OneChunk(Some(Bytes::from(body))),
            None,
            None,
        );
        let request = with_caller(Request::new(stream), $principal, $audit);
        Some(methods!(@service $service $services).$handler(request).await.map(|_| ()))
    }};
    (@service Customer $services:ident) => { $services.customers };
    (@service Interaction $services:ident) => { $services.interactions };
    (@service Knowledge $services:ident) => { $services.knowledge };
    (@service Campaign $services:ident) => { $services.campaigns };
    (@service Insight $services:ident) => { $services.insights };
    (@service Audit $services:ident) => { $services.audit };
    (@service Operations $services:ident) => { $services.operations };
    (@input Operations $request:ident) => { concat!("google.longrunning.", stringify!($request)) };
    (@input $service:ident $request:ident) => { concat!("bank.customerknowledge.v1.", stringify!($request)) };
    (@type Operations $request:ident) => { lro::$request };
    (@type $service:ident $request:ident) => { pb::$request };
}

methods! {
    Customer Unary "CreateCustomer" create_customer CreateCustomerRequest;
    Customer Unary "GetCustomer" get_customer GetCustomerRequest;
    Customer Unary "LookupCustomer" lookup_customer LookupCustomerRequest;
    Customer Unary "UpdateCustomer" update_customer UpdateCustomerRequest;
    Customer Unary "ListCustomers" list_customers ListCustomersRequest;
    Customer Unary "SearchCustomers" search_customers SearchCustomersRequest;
    Customer Unary "DeleteCustomer" delete_customer DeleteCustomerRequest;
    Customer Unary "UpdateConsent" update_consent UpdateConsentRequest;
    Customer Unary "GrantConsent" grant_consent GrantConsentRequest;
    Customer Unary "WithdrawConsent" withdraw_consent WithdrawConsentRequest;
    Customer Unary "ListConsentEvents" list_consent_events ListConsentEventsRequest;
    Customer Unary "LinkCustomers" link_customers LinkCustomersRequest;
    Customer Unary "UnlinkCustomers" unlink_customers UnlinkCustomersRequest;
    Customer Unary "MergeCustomers" merge_customers MergeCustomersRequest;
    Interaction Unary "LogInteraction" log_interaction LogInteractionRequest;
    Interaction Unary "BatchLogInteractions" batch_log_interactions BatchLogInteractionsRequest;
    Interaction ClientStreaming "ImportInteractions" import_interactions ImportInteractionsRequest;
    Interaction Unary "GetInteraction" get_interaction GetInteractionRequest;
    Interaction Unary "ListInteractions" list_interactions ListInteractionsRequest;
    Interaction Unary "UpdateComplaint" update_complaint UpdateComplaintRequest;
    Interaction Unary "ResolveComplaint" resolve_complaint ResolveComplaintRequest;
    Interaction Unary "CloseComplaint" close_complaint CloseComplaintRequest;
    Interaction Unary "ReopenComplaint" reopen_complaint ReopenComplaintRequest;
    Interaction Unary "GetComplaintSummary" get_complaint_summary GetComplaintSummaryRequest;
    Interaction Unary "ListComplaints" list_complaints ListComplaintsRequest;
    Interaction Unary "GetServiceRequest" get_service_request GetServiceRequestRequest;
    Interaction Unary "ListServiceRequests" list_service_requests ListServiceRequestsRequest;
    Interaction Unary "ConfirmServiceRequest" confirm_service_request ConfirmServiceRequestRequest;
    Interaction Unary "ProposeServiceRequestSolution" propose_service_request_solution ProposeServiceRequestSolutionRequest;
    Interaction Unary "StartServiceRequest" start_service_request StartServiceRequestRequest;
    Interaction Unary "ResolveServiceRequest" resolve_service_request ResolveServiceRequestRequest;
    Interaction Unary "CheckServiceRequestSatisfaction" check_service_request_satisfaction CheckServiceRequestSatisfactionRequest;
    Interaction Unary "CancelServiceRequest" cancel_service_request CancelServiceRequestRequest;
    Interaction Unary "GetServiceMetrics" get_service_metrics GetServiceMetricsRequest;
    Interaction Unary "ScheduleFollowUp" schedule_follow_up ScheduleFollowUpRequest;
    Interaction Unary "CompleteFollowUp" complete_follow_up CompleteFollowUpRequest;
    Interaction Unary "ListFollowUps" list_follow_ups ListFollowUpsRequest;
    Interaction Unary "GetFollowUp" get_follow_up GetFollowUpRequest;
    Interaction Unary "ReassignFollowUp" reassign_follow_up ReassignFollowUpRequest;
    Interaction Unary "CancelFollowUp" cancel_follow_up CancelFollowUpRequest;
    Interaction Unary "VoidInteraction" void_interaction VoidInteractionRequest;
    Interaction Unary "CorrectInteraction" correct_interaction CorrectInteractionRequest;
    Interaction ServerStreaming "WatchInteractions" watch_interactions WatchInteractionsRequest;
    Knowledge Unary "CreateKnowledgeItem" create_knowledge_item CreateKnowledgeItemRequest;
    Knowledge Unary "GetKnowledgeItem" get_knowledge_item GetKnowledgeItemRequest;
    Knowledge Unary "UpdateKnowledgeItem" update_knowledge_item UpdateKnowledgeItemRequest;
    Knowledge Unary "ListKnowledgeItems" list_knowledge_items ListKnowledgeItemsRequest;
    Knowledge Unary "SearchKnowledgeItems" search_knowledge_items SearchKnowledgeItemsRequest;
    Knowledge Unary "ExternalizeKnowledge" externalize_knowledge ExternalizeKnowledgeRequest;
    Knowledge Unary "CombineKnowledge" combine_knowledge CombineKnowledgeRequest;
    Knowledge Unary "InternalizeKnowledge" internalize_knowledge InternalizeKnowledgeRequest;
    Knowledge Unary "SocializeKnowledge" socialize_knowledge SocializeKnowledgeRequest;
    Knowledge Unary "ShareKnowledgeItem" share_knowledge_item ShareKnowledgeItemRequest;
    Knowledge Unary "RevokeKnowledgeGrant" revoke_knowledge_grant RevokeKnowledgeGrantRequest;
    Knowledge Unary "RetractKnowledgeItem" retract_knowledge_item RetractKnowledgeItemRequest;
    Knowledge Unary "VerifyKnowledgeItem" verify_knowledge_item VerifyKnowledgeItemRequest;
    Knowledge Unary "GetKnowledgeLineage" get_knowledge_lineage GetKnowledgeLineageRequest;
    Knowledge Unary "GetKnowledgeFlow" get_knowledge_flow GetKnowledgeFlowRequest;
    Knowledge Unary "GetKnowledgeSharingMetrics" get_knowledge_sharing_metrics GetKnowledgeSharingMetricsRequest;
    Knowledge ServerStreaming "WatchKnowledge" watch_knowledge WatchKnowledgeRequest;
    Insight Unary "GetCustomer360" get_customer360 GetCustomer360Request;
    Insight Unary "RecomputeSegments" recompute_segments RecomputeSegmentsRequest;
    Insight Unary "GetSegmentSummary" get_segment_summary GetSegmentSummaryRequest;
    Insight Unary "ListAtRiskCustomers" list_at_risk_customers ListAtRiskCustomersRequest;
    Campaign Unary "CreateCampaign" create_campaign CreateCampaignRequest;
    Campaign Unary "GetCampaign" get_campaign GetCampaignRequest;
    Campaign Unary "ListCampaigns" list_campaigns ListCampaignsRequest;
    Campaign Unary "AddCampaignActivity" add_campaign_activity AddCampaignActivityRequest;
    Campaign Unary "GenerateCampaignContacts" generate_campaign_contacts GenerateCampaignContactsRequest;
    Campaign Unary "RecordCampaignResponse" record_campaign_response RecordCampaignResponseRequest;
    Campaign Unary "GetCampaignResults" get_campaign_results GetCampaignResultsRequest;
    Audit Unary "ListAccessEvents" list_access_events ListAccessEventsRequest;
    Audit Unary "VerifyAuditChain" verify_audit_chain VerifyAuditChainRequest;
    Operations Unary "ListOperations" list_operations ListOperationsRequest;
    Operations Unary "GetOperation" get_operation GetOperationRequest;
    Operations Unary "DeleteOperation" delete_operation DeleteOperationRequest;
    Operations Unary "CancelOperation" cancel_operation CancelOperationRequest;
    Operations Unary "WaitOperation" wait_operation WaitOperationRequest;
}

/// The methods of one service.
pub fn methods_of(service: Service) -> Vec<Method> {
    METHODS
        .iter()
        .copied()
        .filter(|m| m.service == service)
        .collect()
}

fn first(messages: &[Vec<u8>]) -> &[u8] {
    messages.first().map(Vec::as_slice).unwrap_or_default()
}

fn with_caller<T>(
    mut request: Request<T>,
    principal: Principal,
    audit: customer_knowledge::audit::AuditNote,
) -> Request<T> {
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(audit);
    request
}

/// Appends one gRPC length-prefixed message (uncompressed).
fn frame(message: &[u8], body: &mut Vec<u8>) {
    body.push(0);
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
}

/// A request body that yields its bytes in one data frame.
struct OneChunk(Option<Bytes>);

impl http_body::Body for OneChunk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// The callers requests are made as: `principal(0)` holds every role (so
/// that requests get past the access checks to validation); the others are
/// the roles of DESIGN §3 one at a time, with and without the claims they
/// need.
pub const PRINCIPALS: usize = 10;

pub fn principal(choice: usize) -> Principal {
    let caller =
        |subject: &str, branch: Option<&str>, team: Option<&str>, roles: &[Role]| Principal {
            subject: subject.into(),
            branch: branch.map(Into::into),
            team: team.map(Into::into),
            roles: roles.to_vec(),
            on_behalf_of: None,
        };
    match choice % PRINCIPALS {
        0 => caller(
            "E1001",
            Some("B01"),
            Some("T1"),
            &[
                Role::Admin,
                Role::Compliance,
                Role::RelationshipManager,
                Role::Teller,
                Role::Analyst,
                Role::Service,
            ],
        ),
        1 => caller("E9000", None, None, &[Role::Admin]),
        2 => caller("core-banking", None, None, &[Role::Service]),
        3 => Principal {
            on_behalf_of: Some("customers/c-1".into()),
            ..caller("mobile-backend", None, None, &[Role::Service])
        },
        4 => caller(
            "E1002",
            Some("B01"),
            Some("T1"),
            &[Role::RelationshipManager],
        ),
        5 => caller("E1003", None, None, &[Role::Teller]),
        6 => caller("E1004", Some("B02"), None, &[Role::Analyst]),
        7 => caller("E1005", None, None, &[Role::Compliance]),
        8 => caller("E1006", Some(""), Some(""), &[Role::RelationshipManager]),
        _ => caller("nobody", Some("B01"), None, &[]),
    }
}

/// The services under test, shared by the tasks of one harness.
#[derive(Clone)]
struct Services {
    customers: Arc<CustomerApi>,
    interactions: Arc<InteractionApi>,
    knowledge: Arc<KnowledgeApi>,
    campaigns: Arc<CampaignApi>,
    insights: Arc<InsightApi>,
    audit: Arc<AuditApi>,
    operations: Arc<OperationsApi>,
}

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    services: Services,
    audit_log: AuditLog,
    _audit_writer: AuditWriter,
    _stopping: watch::Sender<bool>,
}

impl Harness {
    pub fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let (services, audit_log, audit_writer, stopping) = runtime.block_on(async {
            let db = Db::connect_lazy(&DatabaseSettings {
                // Port 1 on loopback: nothing listens there.
                url: Some("postgres://nobody@127.0.0.1:1/none".to_string().into()),
                migrate: false,
                max_connections: 1,
                acquire_timeout_ms: 1,
                statement_timeout_ms: 1,
                health_check_interval_ms: 1000,
                read_url: None,
                read_your_writes_wait_ms: 100,
                read_your_writes_callers: 1,
                read_your_writes_ttl_secs: 60,
            })
            .expect("a lazy pool");
            // Closed before the first call: every acquire fails at once
            // (UNAVAILABLE) instead of waiting out the acquire timeout.
            db.pool().close().await;
            let page_tokens = PageTokens::new(PAGE_TOKEN_KEY);
            // Not draining: a draining server answers stream calls
            // UNAVAILABLE before looking at them. The change feed and the
            // watch streams end at their first read of the closed pool.
            let (stopping, stopping_rx) = watch::channel(false);
            let feed = ChangeFeed::start(db.clone(), stopping_rx.clone());
            let streams = Streams {
                heartbeat: Duration::from_secs(15),
                idle_timeout: Duration::from_secs(60),
                stopping: stopping_rx,
            };
            let metrics = Metrics::new();
            let hours = chrono::Duration::hours;
            let services = Services {
                customers: Arc::new(CustomerApi::new(db.clone(), page_tokens.clone())),
                interactions: Arc::new(InteractionApi::new(InteractionApiParts {
                    db: db.clone(),
                    page_tokens: page_tokens.clone(),
                    sla: ComplaintSla {
                        low: hours(240),
                        medium: hours(120),
                        high: hours(48),
                        critical: hours(24),
                    },
                    service_sla: customer_knowledge::domain::service::ServiceSla {
                        standard: [customer_knowledge::domain::service::SlaTimes {
                            response: hours(8),
                            resolution: hours(72),
                        }; 4],
                        key: [customer_knowledge::domain::service::SlaTimes {
                            response: hours(4),
                            resolution: hours(36),
                        }; 4],
                    },
                    cadence: Default::default(),
                    complaints: Default::default(),
                    sources: SourceSystems::new(HashMap::from([(
                        "core-banking".to_string(),
                        vec!["cbs".to_string()],
                    )])),
                    import_batch_size: 500,
                    feed: feed.clone(),
                    streams: streams.clone(),
                    metrics: metrics.clone(),
                })),
                knowledge: Arc::new(KnowledgeApi::new(
                    db.clone(),
                    page_tokens.clone(),
                    feed,
                    streams,
                )),
                campaigns: Arc::new(CampaignApi::new(db.clone(), page_tokens.clone())),
                // The documented defaults of [insights] (src/config.rs).
                insights: Arc::new(InsightApi::new(
                    db.clone(),
                    page_tokens.clone(),
                    customer_knowledge::config::Settings::load_from(
                        None,
                        &HashMap::from([
                            (
                                "DATABASE_URL".to_string(),
                                "postgres://127.0.0.1:1/closed".to_string(),
                            ),
                            ("CK__AUTH__MODE".to_string(), "trusted_headers".to_string()),
                        ]),
                    )
                    .expect("the default settings load")
                    .insights,
                )),
                operations: Arc::new(OperationsApi::new(db.clone(), page_tokens.clone())),
                audit: Arc::new(AuditApi::new(
                    db.clone(),
                    page_tokens,
                    Some(Pseudonyms::new(b"property-test-pseudonym-key")),
                )),
            };
            let writer = AuditLog::start(
                db,
                Pseudonyms::new(b"property-test-pseudonym-key"),
                16,
                metrics,
            );
            let log = writer.log();
            (services, log, writer, stopping)
        });
        Harness {
            runtime,
            services,
            audit_log,
            _audit_writer: audit_writer,
            _stopping: stopping,
        }
    }

    /// Calls `method` with the encoded request `messages` (one for unary and
    /// server-streaming methods, the stream for client-streaming ones) as
    /// `principal`.
    pub fn call(&self, method: Method, messages: Vec<Vec<u8>>, principal: Principal) -> Outcome {
        // Over the limit, a unary request never reaches its handler; a
        // stream's message is refused by the stream (OUT_OF_RANGE), which
        // `Streaming` does here too.
        if method.shape != Shape::ClientStreaming
            && messages.iter().any(|m| m.len() > MAX_MESSAGE_BYTES)
        {
            return Outcome::NotDecoded;
        }
        let services = self.services.clone();
        let audit = self
            .audit_log
            .begin(&method.path(), &http::HeaderMap::new(), None)
            .note();
        self.runtime.block_on(async move {
            let task = tokio::spawn(Harness::dispatch(
                services, method, messages, principal, audit,
            ));
            match tokio::time::timeout(CALL_LIMIT, task).await {
                Err(_) => Outcome::Hung,
                Ok(Ok(None)) => Outcome::NotDecoded,
                Ok(Ok(Some(answer))) => Outcome::Answered(answer),
                Ok(Err(join)) => Outcome::Panicked(match join.try_into_panic() {
                    Ok(payload) => payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into()),
                    Err(join) => join.to_string(),
                }),
            }
        })
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}
