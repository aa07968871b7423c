//! `KnowledgeService`: tacit and explicit knowledge, its carriers, the four
//! SECI conversions with lineage, sharing, verification, search, the flow
//! matrix and the live stream of newly visible items.

use std::{collections::BTreeMap, pin::Pin};

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{
    Streams,
    customer::access::parse_name,
    draining_status, from_timestamp, interval,
    page_token::{PageTokens, page_size},
    parse_resume_token, principal, request_key, respond, resume_token, timestamp,
};

use crate::{
    domain::{
        customer::{ConsentPurpose, CustomerId, bounded_text, org_code, tag},
        filter::{Op, parse_terms, set_once, time_range, unsupported},
        interaction::parse_child_name,
        knowledge::{
            self as rules, Carrier, CarrierType, Change, Conversion, ItemContent, KnowledgeAccess,
            KnowledgeItem, KnowledgeKind, Nature, NewItem, Sensitivity, Share, VerificationState,
            Visibility,
        },
        principal::{Principal, Role},
        search,
    },
    error::{Error, ErrorReason, Violations},
    pb::v1::{self as pb, knowledge_service_server::KnowledgeService},
    store::{
        Db, customers,
        feed::ChangeFeed,
        idempotency::IdempotencyKey,
        interactions,
        knowledge::{self as store, ConversionRecord, ItemQuery, KnowledgeEvent},
    },
};

pub mod access;
mod conversions;
pub mod convert;
mod items;
mod lifecycle;
mod reports;
mod sharing;
mod validate;
mod watch;

use access::*;
use convert::*;
use validate::*;
use watch::*;

pub struct KnowledgeApi {
    db: Db,
    page_tokens: PageTokens,
    feed: ChangeFeed,
    streams: Streams,
}

impl KnowledgeApi {
    pub fn new(db: Db, page_tokens: PageTokens, feed: ChangeFeed, streams: Streams) -> Self {
        KnowledgeApi {
            db,
            page_tokens,
            feed,
            streams,
        }
    }
}

#[tonic::async_trait]
impl KnowledgeService for KnowledgeApi {
    #[tracing::instrument(skip_all, name = "CreateKnowledgeItem")]
    async fn create_knowledge_item(
        &self,
        request: Request<pb::CreateKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        items::create_knowledge_item(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeItem")]
    async fn get_knowledge_item(
        &self,
        request: Request<pb::GetKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        items::get_knowledge_item(self, request).await
    }

    #[tracing::instrument(skip_all, name = "UpdateKnowledgeItem")]
    async fn update_knowledge_item(
        &self,
        request: Request<pb::UpdateKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        items::update_knowledge_item(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListKnowledgeItems")]
    async fn list_knowledge_items(
        &self,
        request: Request<pb::ListKnowledgeItemsRequest>,
    ) -> Result<Response<pb::ListKnowledgeItemsResponse>, Status> {
        items::list_knowledge_items(self, request).await
    }

    #[tracing::instrument(skip_all, name = "SearchKnowledgeItems")]
    async fn search_knowledge_items(
        &self,
        request: Request<pb::SearchKnowledgeItemsRequest>,
    ) -> Result<Response<pb::SearchKnowledgeItemsResponse>, Status> {
        items::search_knowledge_items(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ExternalizeKnowledge")]
    async fn externalize_knowledge(
        &self,
        request: Request<pb::ExternalizeKnowledgeRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        conversions::externalize_knowledge(self, request).await
    }

    #[tracing::instrument(skip_all, name = "CombineKnowledge")]
    async fn combine_knowledge(
        &self,
        request: Request<pb::CombineKnowledgeRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        conversions::combine_knowledge(self, request).await
    }

    #[tracing::instrument(skip_all, name = "InternalizeKnowledge")]
    async fn internalize_knowledge(
        &self,
        request: Request<pb::InternalizeKnowledgeRequest>,
    ) -> Result<Response<pb::InternalizeKnowledgeResponse>, Status> {
        conversions::internalize_knowledge(self, request).await
    }

    #[tracing::instrument(skip_all, name = "SocializeKnowledge")]
    async fn socialize_knowledge(
        &self,
        request: Request<pb::SocializeKnowledgeRequest>,
    ) -> Result<Response<pb::SocializeKnowledgeResponse>, Status> {
        conversions::socialize_knowledge(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ShareKnowledgeItem")]
    async fn share_knowledge_item(
        &self,
        request: Request<pb::ShareKnowledgeItemRequest>,
    ) -> Result<Response<pb::ShareKnowledgeItemResponse>, Status> {
        sharing::share_knowledge_item(self, request).await
    }

    #[tracing::instrument(skip_all, name = "VerifyKnowledgeItem")]
    async fn verify_knowledge_item(
        &self,
        request: Request<pb::VerifyKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        items::verify_knowledge_item(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeLineage")]
    async fn get_knowledge_lineage(
        &self,
        request: Request<pb::GetKnowledgeLineageRequest>,
    ) -> Result<Response<pb::KnowledgeLineage>, Status> {
        reports::get_knowledge_lineage(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeFlow")]
    async fn get_knowledge_flow(
        &self,
        request: Request<pb::GetKnowledgeFlowRequest>,
    ) -> Result<Response<pb::KnowledgeFlow>, Status> {
        reports::get_knowledge_flow(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetKnowledgeSharingMetrics")]
    async fn get_knowledge_sharing_metrics(
        &self,
        request: Request<pb::GetKnowledgeSharingMetricsRequest>,
    ) -> Result<Response<pb::KnowledgeSharingMetrics>, Status> {
        reports::get_knowledge_sharing_metrics(self, request).await
    }

    #[tracing::instrument(skip_all, name = "RetractKnowledgeItem")]
    async fn retract_knowledge_item(
        &self,
        request: Request<pb::RetractKnowledgeItemRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        lifecycle::retract_knowledge_item(self, request).await
    }

    #[tracing::instrument(skip_all, name = "RevokeKnowledgeGrant")]
    async fn revoke_knowledge_grant(
        &self,
        request: Request<pb::RevokeKnowledgeGrantRequest>,
    ) -> Result<Response<pb::KnowledgeItem>, Status> {
        lifecycle::revoke_knowledge_grant(self, request).await
    }

    type WatchKnowledgeStream = WatchStream;

    #[tracing::instrument(skip_all, name = "WatchKnowledge")]
    async fn watch_knowledge(
        &self,
        request: Request<pb::WatchKnowledgeRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        watch::watch_knowledge(self, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_filters_parse() {
        let q = item_filter(
            r#"subjects:"customers/c-1" AND nature = TACIT AND carrier.type = EMPLOYEE AND verification.state = STALE AND tags:"wealth""#,
        )
        .unwrap();
        assert_eq!(q.subject.as_deref(), Some("c-1"));
        assert_eq!(q.nature, Some(Nature::Tacit));
        assert_eq!(q.verification, Some(VerificationState::Stale));
        assert!(item_filter("title = \"x\"").is_err());
        assert!(item_filter("nature : TACIT").is_err());
    }

    #[test]
    fn resume_tokens_round_trip() {
        assert_eq!(
            parse_resume_token(STREAM, &resume_token(STREAM, (9, 3))).unwrap(),
            (9, 3)
        );
        assert!(
            parse_resume_token(STREAM, "djE6MToy").is_err(),
            "an interaction token is refused"
        );
    }

    #[test]
    fn change_names_map_both_ways() {
        assert_eq!(
            change_from(change_to(Change::Shared) as i32),
            Some(Change::Shared)
        );
        assert_eq!(
            state_from(state_to(VerificationState::Stale) as i32),
            Some(VerificationState::Stale)
        );
    }
}
