//! `InsightService`: the customer 360 view, value segmentation (RFM and the
//! customer pyramid), churn worklists and next-best actions. The rules are
//! in `domain::insight` and `store::segments`; this module checks access and
//! shapes answers.

mod convert;
mod segments;
mod view;

use tonic::{Request, Response, Status};

use super::{page_token::PageTokens, principal, respond};
use crate::{
    config::InsightSettings,
    domain::insight::SegmentModel,
    pb::v1::{self as pb, insight_service_server::InsightService},
    store::Db,
};

pub use segments::recompute_now;

pub struct InsightApi {
    db: Db,
    page_tokens: PageTokens,
    model: SegmentModel,
    settings: InsightSettings,
}

impl InsightApi {
    pub fn new(db: Db, page_tokens: PageTokens, settings: InsightSettings) -> Self {
        InsightApi {
            db,
            page_tokens,
            model: settings.model(),
            settings,
        }
    }
}

#[tonic::async_trait]
impl InsightService for InsightApi {
    #[tracing::instrument(skip_all, name = "GetCustomer360")]
    async fn get_customer360(
        &self,
        request: Request<pb::GetCustomer360Request>,
    ) -> Result<Response<pb::Customer360>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            self.customer_360(&caller, &request.get_ref().name).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "RecomputeSegments")]
    async fn recompute_segments(
        &self,
        request: Request<pb::RecomputeSegmentsRequest>,
    ) -> Result<Response<crate::pb::google::longrunning::Operation>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.recompute(&caller, request.into_inner()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GetSegmentSummary")]
    async fn get_segment_summary(
        &self,
        request: Request<pb::GetSegmentSummaryRequest>,
    ) -> Result<Response<pb::SegmentSummary>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.summary(&caller, request.get_ref()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListAtRiskCustomers")]
    async fn list_at_risk_customers(
        &self,
        request: Request<pb::ListAtRiskCustomersRequest>,
    ) -> Result<Response<pb::ListAtRiskCustomersResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let page = self.at_risk(&caller, request.get_ref()).await?;
            crate::audit::note_customers(
                &request,
                page.customers.iter().map(|c| c.customer.as_str()),
            );
            Ok(page)
        })
        .await
    }
}
