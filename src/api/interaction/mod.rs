//! `InteractionService`: the append path (single, batch, bulk import), the
//! timeline, complaints, follow-ups and the live feed.

use std::{pin::Pin, sync::Arc};

use tokio::time::Instant;

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::{
    Mutation, Streams,
    customer::access::{lock_reachable_customer, parse_name, resolve},
    draining_status, from_timestamp, interval,
    page_token::{Keyset, ListTokens, PageTokens, RowKeys, list_order, page_size},
    parse_resume_token, principal, request_key, respond, resume_token, timestamp,
};

use crate::{
    domain::{
        customer::{CustomerId, org_code},
        filter::{Op, Term, parse_terms, set_once, unsupported},
        interaction::{
            self as rules, Channel, Complaint, ComplaintCategory, ComplaintPolicy, ComplaintSla,
            ComplaintState, FollowUpCadence, FollowUpState, Interaction, Kind, Money,
            NewInteraction, RecordedBy, Sentiment, Severity, SourceSystems, staff_source,
        },
        principal::{BranchScope, Principal, Role},
        service::{Priority, ServiceRequest, ServiceRequestState, ServiceSla},
        systems::{acting_for, check_acting_for},
    },
    error::{Error, ErrorReason, Violations},
    metrics::Metrics,
    pb::v1::{self as pb, interaction_service_server::InteractionService},
    store::{
        Db,
        customers::{self, Lock},
        feed::{ChangeFeed, FEED_PAGE},
        idempotency::IdempotencyKey,
        interactions::{
            self as store, Appended, ComplaintQuery, DueCursor, FeedCursor, FeedItem, FollowUp,
            FollowUpQuery, TimelineQuery,
        },
    },
};

pub mod access;
mod append;
mod complaints;
pub mod convert;
mod corrections;
mod follow_ups;
mod group_commit;
mod import;
mod lifecycle;
mod query;
mod service_metrics;
mod service_requests;
mod timeline;
mod validate;
mod watch;

use access::*;
use convert::*;
use corrections::{check_current, not_current};
pub use group_commit::GroupCommitSettings;
use query::*;
use validate::*;
use watch::*;

pub struct InteractionApi {
    db: Db,
    page_tokens: PageTokens,
    sla: ComplaintSla,
    service_sla: ServiceSla,
    cadence: FollowUpCadence,
    complaints: ComplaintPolicy,
    sources: SourceSystems,
    import_batch_size: usize,
    feed: ChangeFeed,
    streams: Streams,
    metrics: Metrics,
    /// LogInteraction's group commit; None: each call commits alone.
    group_commit: Option<group_commit::GroupCommit>,
}

/// What InteractionApi is built from.
pub struct InteractionApiParts {
    pub db: Db,
    pub page_tokens: PageTokens,
    pub sla: ComplaintSla,
    pub service_sla: ServiceSla,
    pub cadence: FollowUpCadence,
    pub complaints: ComplaintPolicy,
    pub sources: SourceSystems,
    pub import_batch_size: usize,
    pub feed: ChangeFeed,
    pub streams: Streams,
    pub metrics: Metrics,
}

impl InteractionApi {
    pub fn new(parts: InteractionApiParts) -> Self {
        let InteractionApiParts {
            db,
            page_tokens,
            sla,
            service_sla,
            cadence,
            complaints,
            sources,
            import_batch_size,
            feed,
            streams,
            metrics,
        } = parts;
        InteractionApi {
            db,
            page_tokens,
            sla,
            service_sla,
            cadence,
            complaints,
            sources,
            import_batch_size,
            feed,
            streams,
            metrics,
            group_commit: None,
        }
    }

    /// Turns LogInteraction's group commit on (`interactions.group_commit`);
    /// its batchers run on the current Tokio runtime until the service is
    /// dropped.
    pub fn with_group_commit(mut self, settings: GroupCommitSettings) -> Self {
        self.group_commit = Some(group_commit::GroupCommit::start(
            self.db.clone(),
            self.metrics.clone(),
            settings,
        ));
        self
    }
}

#[tonic::async_trait]
impl InteractionService for InteractionApi {
    #[tracing::instrument(skip_all, name = "LogInteraction")]
    async fn log_interaction(
        &self,
        request: Request<pb::LogInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        append::log_interaction(self, request).await
    }

    #[tracing::instrument(skip_all, name = "BatchLogInteractions")]
    async fn batch_log_interactions(
        &self,
        request: Request<pb::BatchLogInteractionsRequest>,
    ) -> Result<Response<pb::BatchLogInteractionsResponse>, Status> {
        append::batch_log_interactions(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ImportInteractions")]
    async fn import_interactions(
        &self,
        request: Request<Streaming<pb::ImportInteractionsRequest>>,
    ) -> Result<Response<pb::ImportInteractionsResponse>, Status> {
        import::import_interactions(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetInteraction")]
    async fn get_interaction(
        &self,
        request: Request<pb::GetInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        timeline::get_interaction(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListInteractions")]
    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        timeline::list_interactions(self, request).await
    }

    #[tracing::instrument(skip_all, name = "UpdateComplaint")]
    async fn update_complaint(
        &self,
        request: Request<pb::UpdateComplaintRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        complaints::update_complaint(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListComplaints")]
    async fn list_complaints(
        &self,
        request: Request<pb::ListComplaintsRequest>,
    ) -> Result<Response<pb::ListComplaintsResponse>, Status> {
        complaints::list_complaints(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ResolveComplaint")]
    async fn resolve_complaint(
        &self,
        request: Request<pb::ResolveComplaintRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        complaints::resolve_complaint(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CloseComplaint")]
    async fn close_complaint(
        &self,
        request: Request<pb::CloseComplaintRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        complaints::close_complaint(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ReopenComplaint")]
    async fn reopen_complaint(
        &self,
        request: Request<pb::ReopenComplaintRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        complaints::reopen_complaint(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetComplaintSummary")]
    async fn get_complaint_summary(
        &self,
        request: Request<pb::GetComplaintSummaryRequest>,
    ) -> Result<Response<pb::ComplaintSummary>, Status> {
        complaints::complaint_summary(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetServiceRequest")]
    async fn get_service_request(
        &self,
        request: Request<pb::GetServiceRequestRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::get(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListServiceRequests")]
    async fn list_service_requests(
        &self,
        request: Request<pb::ListServiceRequestsRequest>,
    ) -> Result<Response<pb::ListServiceRequestsResponse>, Status> {
        service_requests::list(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ConfirmServiceRequest")]
    async fn confirm_service_request(
        &self,
        request: Request<pb::ConfirmServiceRequestRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::confirm(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ProposeServiceRequestSolution")]
    async fn propose_service_request_solution(
        &self,
        request: Request<pb::ProposeServiceRequestSolutionRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::propose(self, request).await
    }

    #[tracing::instrument(skip_all, name = "StartServiceRequest")]
    async fn start_service_request(
        &self,
        request: Request<pb::StartServiceRequestRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::start(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ResolveServiceRequest")]
    async fn resolve_service_request(
        &self,
        request: Request<pb::ResolveServiceRequestRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::resolve(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CheckServiceRequestSatisfaction")]
    async fn check_service_request_satisfaction(
        &self,
        request: Request<pb::CheckServiceRequestSatisfactionRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::check_satisfaction(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CancelServiceRequest")]
    async fn cancel_service_request(
        &self,
        request: Request<pb::CancelServiceRequestRequest>,
    ) -> Result<Response<pb::ServiceRequest>, Status> {
        service_requests::cancel(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetServiceMetrics")]
    async fn get_service_metrics(
        &self,
        request: Request<pb::GetServiceMetricsRequest>,
    ) -> Result<Response<pb::ServiceMetrics>, Status> {
        service_metrics::get(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ScheduleFollowUp")]
    async fn schedule_follow_up(
        &self,
        request: Request<pb::ScheduleFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::schedule_follow_up(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CompleteFollowUp")]
    async fn complete_follow_up(
        &self,
        request: Request<pb::CompleteFollowUpRequest>,
    ) -> Result<Response<pb::CompleteFollowUpResponse>, Status> {
        follow_ups::complete_follow_up(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListFollowUps")]
    async fn list_follow_ups(
        &self,
        request: Request<pb::ListFollowUpsRequest>,
    ) -> Result<Response<pb::ListFollowUpsResponse>, Status> {
        follow_ups::list_follow_ups(self, request).await
    }

    type WatchInteractionsStream = WatchStream;

    #[tracing::instrument(skip_all, name = "GetFollowUp")]
    async fn get_follow_up(
        &self,
        request: Request<pb::GetFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::get(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ReassignFollowUp")]
    async fn reassign_follow_up(
        &self,
        request: Request<pb::ReassignFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::reassign(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CancelFollowUp")]
    async fn cancel_follow_up(
        &self,
        request: Request<pb::CancelFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        follow_ups::cancel(self, request).await
    }

    #[tracing::instrument(skip_all, name = "VoidInteraction")]
    async fn void_interaction(
        &self,
        request: Request<pb::VoidInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        corrections::void_interaction(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CorrectInteraction")]
    async fn correct_interaction(
        &self,
        request: Request<pb::CorrectInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        corrections::correct_interaction(self, request).await
    }

    #[tracing::instrument(skip_all, name = "WatchInteractions")]
    async fn watch_interactions(
        &self,
        request: Request<pb::WatchInteractionsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        watch::watch_interactions(self, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_and_refuse_garbage() {
        assert_eq!(
            parse_resume_token(STREAM, &resume_token(STREAM, (42, 7))).unwrap(),
            (42, 7)
        );
        assert!(parse_resume_token(STREAM, "v1:1:2").is_err());
        assert!(parse_resume_token(STREAM, "").is_err());
    }

    #[test]
    fn timeline_filters_parse_time_ranges() {
        let q = timeline_filter(
            r#"channel = MOBILE_APP AND kind = COMPLAINT AND occur_time >= "2026-01-01T00:00:00Z" AND occur_time < "2026-02-01T00:00:00Z""#,
        )
        .unwrap();
        assert_eq!(q.channel, Some(Channel::MobileApp));
        assert_eq!(q.kind, Some(Kind::Complaint));
        assert!(q.occur_from.is_some() && q.occur_before.is_some());
        assert!(timeline_filter("occur_time = \"2026-01-01T00:00:00Z\"").is_err());
        assert!(timeline_filter("occur_time > yesterday").is_err());
        assert!(timeline_filter("amount > 5").is_err());
        assert!(complaint_filter("overdue = true AND state = OPEN").is_ok());
        assert!(complaint_filter("overdue = maybe").is_err());
        assert!(
            follow_up_filter(r#"assignee = "E1" AND due_time < "2026-01-01T00:00:00Z""#).is_ok()
        );
    }
}
