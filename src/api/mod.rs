//! gRPC services: validate requests, convert proto ⇄ domain, map errors.

pub mod audit;
pub mod campaign;
pub mod customer;
pub mod insight;
pub mod interaction;
pub mod knowledge;
pub mod operations;
pub mod page_token;
pub mod read_mask;
pub mod status;
pub mod unimplemented;

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};
use uuid::Uuid;

use crate::{domain::principal::Principal, error::Error, store::idempotency::IdempotencyKey};

/// The caller the auth interceptor attached to the request.
pub(crate) fn principal<T>(request: &Request<T>) -> Result<Principal, Error> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("no credentials".into()))?;
    // Read-your-writes keys the call's writes and reads on its caller.
    crate::store::replica::identify_caller(&principal.subject);
    Ok(principal)
}

/// The idempotency key of a mutating request, if it carries a `request_id`.
/// `without_request_id` is the request with its `request_id` cleared: its
/// bytes are the fingerprint that tells a retry from a different request.
fn idempotency_key(
    principal: &Principal,
    method: &'static str,
    request_id: &str,
    without_request_id: &impl Message,
) -> Result<Option<IdempotencyKey>, Error> {
    Ok(
        stream_key(principal, method, request_id)?.map(|key| IdempotencyKey {
            fingerprint: Sha256::digest(without_request_id.encode_to_vec()).to_vec(),
            ..key
        }),
    )
}

/// A mutating request that may carry a `request_id` (AIP-155), under the
/// method name its idempotency keys are stored with.
pub(crate) trait Mutation: Message + Clone {
    const METHOD: &'static str;
    fn request_id(&self) -> &str;
    /// The request with its `request_id` cleared: the fingerprint's bytes.
    fn without_request_id(&self) -> Self;
}

macro_rules! mutations {
    ($($request:ident => $method:literal),+ $(,)?) => {$(
        impl Mutation for crate::pb::v1::$request {
            const METHOD: &'static str = $method;
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn without_request_id(&self) -> Self {
                crate::pb::v1::$request {
                    request_id: String::new(),
                    ..self.clone()
                }
            }
        }
    )+};
}

mutations!(
    CreateCustomerRequest => "CreateCustomer",
    UpdateCustomerRequest => "UpdateCustomer",
    DeleteCustomerRequest => "DeleteCustomer",
    UpdateConsentRequest => "UpdateConsent",
    GrantConsentRequest => "GrantConsent",
    WithdrawConsentRequest => "WithdrawConsent",
    LinkCustomersRequest => "LinkCustomers",
    UnlinkCustomersRequest => "UnlinkCustomers",
    LogInteractionRequest => "LogInteraction",
    BatchLogInteractionsRequest => "BatchLogInteractions",
    UpdateComplaintRequest => "UpdateComplaint",
    ResolveComplaintRequest => "ResolveComplaint",
    CloseComplaintRequest => "CloseComplaint",
    ReopenComplaintRequest => "ReopenComplaint",
    ScheduleFollowUpRequest => "ScheduleFollowUp",
    CompleteFollowUpRequest => "CompleteFollowUp",
    ReassignFollowUpRequest => "ReassignFollowUp",
    CancelFollowUpRequest => "CancelFollowUp",
    ConfirmServiceRequestRequest => "ConfirmServiceRequest",
    ProposeServiceRequestSolutionRequest => "ProposeServiceRequestSolution",
    StartServiceRequestRequest => "StartServiceRequest",
    ResolveServiceRequestRequest => "ResolveServiceRequest",
    CheckServiceRequestSatisfactionRequest => "CheckServiceRequestSatisfaction",
    CancelServiceRequestRequest => "CancelServiceRequest",
    CreateKnowledgeItemRequest => "CreateKnowledgeItem",
    UpdateKnowledgeItemRequest => "UpdateKnowledgeItem",
    VerifyKnowledgeItemRequest => "VerifyKnowledgeItem",
    ShareKnowledgeItemRequest => "ShareKnowledgeItem",
    ExternalizeKnowledgeRequest => "ExternalizeKnowledge",
    CombineKnowledgeRequest => "CombineKnowledge",
    InternalizeKnowledgeRequest => "InternalizeKnowledge",
    SocializeKnowledgeRequest => "SocializeKnowledge",
    RetractKnowledgeItemRequest => "RetractKnowledgeItem",
    RevokeKnowledgeGrantRequest => "RevokeKnowledgeGrant",
    VoidInteractionRequest => "VoidInteraction",
    CorrectInteractionRequest => "CorrectInteraction",
    MergeCustomersRequest => "MergeCustomers",
    CreateCampaignRequest => "CreateCampaign",
    AddCampaignActivityRequest => "AddCampaignActivity",
    GenerateCampaignContactsRequest => "GenerateCampaignContacts",
    RecordCampaignResponseRequest => "RecordCampaignResponse",
);

/// The idempotency key of a mutating request, if it carries a `request_id`.
pub(crate) fn request_key<R: Mutation>(
    principal: &Principal,
    request: &R,
) -> Result<Option<IdempotencyKey>, Error> {
    if request.request_id().is_empty() {
        return Ok(None);
    }
    idempotency_key(
        principal,
        R::METHOD,
        request.request_id(),
        &request.without_request_id(),
    )
}

/// The idempotency key of a client-streaming request (ImportInteractions)
/// whose `request_id` came in its first message. Its body is known only at
/// the end of the stream, so its `fingerprint` starts empty and the handler
/// fills it in with the hash of what it read.
pub(crate) fn stream_key(
    principal: &Principal,
    method: &'static str,
    request_id: &str,
) -> Result<Option<IdempotencyKey>, Error> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let request_id =
        Uuid::parse_str(request_id).map_err(|_| Error::invalid("request_id", "must be a UUID"))?;
    Ok(Some(IdempotencyKey {
        principal: principal.subject.clone(),
        method,
        request_id,
        fingerprint: Vec::new(),
    }))
}

/// The proto form of a time (public for the property tests).
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// The period from `start` (inclusive) to `end` (exclusive) as the standard
/// google.type.Interval that reports echo next to their start and end times.
pub fn interval(start: DateTime<Utc>, end: DateTime<Utc>) -> crate::pb::v1::Interval {
    crate::pb::v1::Interval {
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
    }
}

/// A request's timestamp, or None when it is outside what a
/// `google.protobuf.Timestamp` may hold (years 1 to 9999, nanos below 1e9),
/// which is also inside what Postgres stores.
pub fn from_timestamp(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    const MIN_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return None;
    }
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// The opaque resume token of a watch stream position (transaction id,
/// sequence); `kind` keeps one stream's tokens out of another. Public so
/// that the property tests and fuzz targets can reach it.
pub fn resume_token(kind: &str, cursor: (i64, i64)) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(format!("{kind}:{}:{}", cursor.0, cursor.1))
}

/// The position of a token made by `resume_token` with the same `kind`;
/// anything else is INVALID_ARGUMENT.
pub fn parse_resume_token(kind: &str, token: &str) -> Result<(i64, i64), Error> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let invalid = || Error::invalid("resume_token", "is not a resume token of this stream");
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    match text.split(':').collect::<Vec<_>>().as_slice() {
        [k, txid, seq] if *k == kind => Ok((
            txid.parse().map_err(|_| invalid())?,
            seq.parse().map_err(|_| invalid())?,
        )),
        _ => Err(invalid()),
    }
}

/// What every stream handler needs of the server: when to send heartbeats,
/// how long an inbound stream may stay silent, and whether the server is
/// draining.
#[derive(Clone)]
pub struct Streams {
    pub heartbeat: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Streams {
    /// Resolves once the server starts draining.
    pub(crate) async fn draining(&self) {
        let mut stopping = self.stopping.clone();
        let _ = stopping.wait_for(|s| *s).await;
    }
}

/// How a stream ends when the server drains: UNAVAILABLE, so the client
/// reconnects (to another replica) with its last resume token, rather than
/// an OK that looks like a normal end.
pub(crate) fn draining_status() -> Status {
    status::layer_status(
        tonic::Code::Unavailable,
        crate::error::ErrorReason::ServerDraining,
        "the server is shutting down; reconnect with the last resume_token received",
        Some(std::time::Duration::from_secs(1)),
    )
}

/// Runs a handler body and maps its error to a `Status` in one place.
pub(crate) async fn respond<T>(
    body: impl Future<Output = Result<T, Error>>,
) -> Result<tonic::Response<T>, Status> {
    body.await.map(tonic::Response::new).map_err(Status::from)
}

/// The scope of a report asked for by its singleton name, by its scope
/// fields, or by both when they agree (`domain::report::merge_scope`).
pub(crate) fn report_scope(
    report: crate::domain::report::Report,
    name: &str,
    fields: crate::domain::report::ReportScope,
) -> Result<crate::domain::report::ReportScope, Error> {
    crate::domain::report::merge_scope(report, name, fields).map_err(|violations| {
        Error::InvalidArgument(
            violations
                .into_iter()
                .map(|(field, description)| crate::error::FieldViolation::new(field, description))
                .collect(),
        )
    })
}
