//! `CampaignService`: campaigns as resources, from the plan and budget to
//! contacts, responses and results. The draw and the figures are in
//! `domain::campaign`, the SQL in `store::campaigns`; contacts are appended
//! through the interaction store's own append path.

pub(crate) mod convert;
mod execute;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::{
    page_token::{ListTokens, PageTokens, RowKeys, list_order},
    principal, request_key, respond,
};
use crate::{
    domain::{
        campaign::{self as rules, CampaignState, parse_campaign_name},
        customer::{CustomerId, org_code},
        filter::{parse_terms, time_range},
        principal::{BranchScope, Principal},
    },
    error::{Error, ErrorReason, Violations},
    pb::v1::{self as pb, campaign_service_server::CampaignService},
    store::{
        Db,
        campaigns::{self, CampaignQuery, Reach},
    },
};

/// ListCampaigns pages newest first by (create_time, id).
const LIST_TOKENS: ListTokens = ListTokens {
    natural_timed: true,
    order_always_named: false,
};

/// The filter of ListCampaigns: `update_time` comparisons joined by AND.
fn campaign_filter(filter: &str) -> Result<CampaignQuery, String> {
    let mut query = CampaignQuery::default();
    for term in parse_terms(filter)? {
        match term.field.as_str() {
            "update_time" => time_range(&term, &mut query.updated_from, &mut query.updated_before)?,
            field => return Err(format!("unknown field {field}: filter on update_time")),
        }
    }
    Ok(query)
}

use convert::{campaign_to, read_activity, read_campaign};

pub struct CampaignApi {
    db: Db,
    page_tokens: PageTokens,
}

impl CampaignApi {
    pub fn new(db: Db, page_tokens: PageTokens) -> Self {
        CampaignApi { db, page_tokens }
    }
}

/// What a caller may not reach answers: PERMISSION_DENIED for a
/// branch-bound caller whether or not the campaign exists (AIP-211), else
/// NOT_FOUND.
fn unreached(scope: &BranchScope, name: &str) -> Error {
    match scope {
        BranchScope::All => Error::not_found(name),
        BranchScope::Branch(b) => Error::denied(format!(
            "reach {name}: campaigns of branch {b} and bank-wide ones only"
        )),
    }
}

/// Campaigns a reader reaches: their branch's and the bank-wide ones.
fn read_reach(scope: &BranchScope) -> Reach<'_> {
    Reach {
        branch: scope.branch(),
        bank_wide: true,
    }
}

/// Campaigns a planner changes: their branch's only (bank-wide campaigns
/// are the bank's: admins and calling systems).
fn write_reach(scope: &BranchScope) -> Reach<'_> {
    Reach {
        branch: scope.branch(),
        bank_wide: false,
    }
}

fn campaign_id(name: &str, violations: &mut Violations) -> Option<String> {
    parse_campaign_name(name)
        .inspect_err(|why| violations.add("name", why.clone()))
        .ok()
}

pub(super) fn wrong_state(name: &str, state: CampaignState, call: &str, wanted: &str) -> Error {
    Error::WrongState {
        reason: ErrorReason::CampaignState,
        state: state.as_str().to_string(),
        message: format!(
            "{name} is {}; {call} takes a campaign that is {wanted}",
            state.as_str()
        ),
    }
}

impl CampaignApi {
    async fn create(
        &self,
        caller: &Principal,
        req: pb::CreateCampaignRequest,
    ) -> Result<pb::Campaign, Error> {
        let scope = caller.customer_write_scope()?;
        let mut violations = Violations::default();
        let id = if req.campaign_id.is_empty() {
            Some(uuid::Uuid::now_v7().to_string())
        } else {
            CustomerId::parse(&req.campaign_id)
                .map(|id| id.as_str().to_string())
                .inspect_err(|why| violations.add("campaign_id", why.clone()))
                .ok()
        };
        let campaign = match (&req.campaign, id) {
            (Some(c), Some(id)) => read_campaign(
                c,
                id,
                rand::random::<i64>(),
                caller.subject.clone(),
                Utc::now(),
                &mut violations,
            ),
            (None, _) => {
                violations.add("campaign", "is required");
                None
            }
            (Some(_), None) => None,
        };
        let key = request_key(caller, &req)?;
        let campaign = violations.into_value(campaign)?;
        if let BranchScope::Branch(own) = &scope {
            if campaign.target.branch.is_empty() {
                return Err(Error::denied(
                    "create a bank-wide campaign (admins and calling systems only); name your branch in target.branch",
                ));
            }
            if &campaign.target.branch != own {
                return Err(Error::denied(format!(
                    "create a campaign for branch {}: it is outside your reach",
                    campaign.target.branch
                )));
            }
        }
        self.db
            .write(
                key.as_ref(),
                |c: &pb::Campaign| vec![c.name.clone()],
                async |tx, names| self.reread(tx, &scope, &names[0]).await,
                async |tx| Ok(campaign_to(&campaigns::insert(tx, &campaign).await?)),
            )
            .await
    }

    /// A campaign as it is now, for a replayed write.
    async fn reread(
        &self,
        conn: &mut sqlx::PgConnection,
        scope: &BranchScope,
        name: &str,
    ) -> Result<pb::Campaign, Error> {
        let id = parse_campaign_name(name).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        campaigns::get(conn, &id, read_reach(scope), false)
            .await?
            .map(|c| campaign_to(&c))
            .ok_or_else(|| unreached(scope, name))
    }

    async fn get(&self, caller: &Principal, name: &str) -> Result<pb::Campaign, Error> {
        let scope = caller.customer_read_scope()?;
        let mut violations = Violations::default();
        let id = campaign_id(name, &mut violations);
        let id = violations.into_value(id)?;
        let mut conn = self.db.acquire().await?;
        campaigns::get(&mut conn, &id, read_reach(&scope), false)
            .await?
            .map(|c| campaign_to(&c))
            .ok_or_else(|| unreached(&scope, name))
    }

    async fn list(
        &self,
        caller: &Principal,
        req: &pb::ListCampaignsRequest,
    ) -> Result<pb::ListCampaignsResponse, Error> {
        let scope = caller.customer_read_scope()?;
        let mut violations = Violations::default();
        let limit = crate::api::page_token::page_size(req.page_size)
            .inspect_err(|_| violations.add("page_size", "must not be negative"))
            .unwrap_or(1);
        let branch = org_code(&req.branch, false)
            .inspect_err(|why| violations.add("branch", why.clone()))
            .unwrap_or_default();
        let mut query = campaign_filter(&req.filter)
            .inspect_err(|why| violations.add("filter", why.clone()))
            .unwrap_or_default();
        query.order = list_order(&req.order_by, &mut violations);
        // Tokens of the default order without a filter keep the context they
        // had before filter and order_by existed.
        let mut context = format!("ListCampaigns|{}|{branch}", scope.branch().unwrap_or("*"));
        if !req.filter.is_empty() {
            context = format!("{context}|{}", req.filter);
        }
        let pages = self.page_tokens.ordered(LIST_TOKENS, query.order, context);
        let after = pages
            .resume::<1>(&req.page_token)
            .inspect_err(|_| {
                violations.add(
                    "page_token",
                    "is not a page token this service issued for this query",
                )
            })
            .ok()
            .flatten();
        violations.into_result(())?;
        if let BranchScope::Branch(own) = &scope
            && !branch.is_empty()
            && &branch != own
        {
            return Err(Error::denied(format!(
                "list the campaigns of branch {branch}: it is outside your reach"
            )));
        }
        if let Some(keyset) = after {
            let (time, [id]) = keyset.timed()?;
            query.after = Some((time, id));
        }
        query.branch = Some(branch).filter(|b| !b.is_empty());
        let mut conn = self.db.acquire_read().await?;
        let mut page = campaigns::list(&mut conn, read_reach(&scope), &query, limit + 1).await?;
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |_| 0,
            |c| RowKeys {
                natural_time: Some(c.create_time),
                update_time: c.update_time,
                ids: [c.id.clone()],
            },
        );
        Ok(pb::ListCampaignsResponse {
            campaigns: page.iter().map(campaign_to).collect(),
            next_page_token,
        })
    }

    async fn add_activity(
        &self,
        caller: &Principal,
        req: pb::AddCampaignActivityRequest,
    ) -> Result<pb::Campaign, Error> {
        let scope = caller.customer_write_scope()?;
        let mut violations = Violations::default();
        let id = campaign_id(&req.name, &mut violations);
        let activity = read_activity(req.activity.as_ref(), &mut violations);
        let key = request_key(caller, &req)?;
        let (id, activity) = violations.into_value(id.zip(activity))?;
        let name = req.name.clone();
        self.db
            .write(
                key.as_ref(),
                |c: &pb::Campaign| vec![c.name.clone()],
                async |tx, names| self.reread(tx, &scope, &names[0]).await,
                async |tx| {
                    let campaign = campaigns::get(tx, &id, write_reach(&scope), true)
                        .await?
                        .ok_or_else(|| unreached(&scope, &name))?;
                    if campaign.state != CampaignState::Planned {
                        return Err(wrong_state(
                            &name,
                            campaign.state,
                            "AddCampaignActivity",
                            "PLANNED",
                        ));
                    }
                    let mut violations = Violations::default();
                    if activity.cost.currency_code != campaign.budget.currency_code {
                        violations.add(
                            "activity.cost.currency_code",
                            format!(
                                "must be the budget's currency, {}",
                                campaign.budget.currency_code
                            ),
                        );
                    }
                    if activity.schedule_time < campaign.start_time
                        || activity.schedule_time > campaign.end_time
                    {
                        violations.add(
                            "activity.schedule_time",
                            "must be within the campaign's start_time and end_time",
                        );
                    }
                    if campaign.activities.len() >= rules::MAX_ACTIVITIES {
                        violations.add(
                            "activity",
                            format!(
                                "a campaign holds at most {} activities",
                                rules::MAX_ACTIVITIES
                            ),
                        );
                    }
                    violations.into_result(())?;
                    let planned = campaign.planned_nanos() + rules::nanos(&activity.cost);
                    if planned > rules::nanos(&campaign.budget) {
                        let shown = |n: i128| {
                            let units = n / 1_000_000_000;
                            let fraction = format!("{:09}", n % 1_000_000_000);
                            let fraction = fraction.trim_end_matches('0');
                            let currency = &campaign.budget.currency_code;
                            if fraction.is_empty() {
                                format!("{currency} {units}")
                            } else {
                                format!("{currency} {units}.{fraction}")
                            }
                        };
                        return Err(Error::FailedPrecondition {
                            reason: ErrorReason::CampaignOverBudget,
                            message: format!(
                                "{name}: the activities would cost {}, over the budget of {}",
                                shown(planned),
                                shown(rules::nanos(&campaign.budget))
                            ),
                        });
                    }
                    let update_time = campaigns::add_activity(tx, &campaign, &activity).await?;
                    let mut campaign = campaign;
                    campaign.activities.push(activity.clone());
                    campaign.update_time = update_time;
                    Ok(campaign_to(&campaign))
                },
            )
            .await
    }
}

#[tonic::async_trait]
impl CampaignService for CampaignApi {
    #[tracing::instrument(skip_all, name = "CreateCampaign")]
    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.create(&caller, request.into_inner()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GetCampaign")]
    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.get(&caller, &request.get_ref().name).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListCampaigns")]
    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.list(&caller, request.get_ref()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "AddCampaignActivity")]
    async fn add_campaign_activity(
        &self,
        request: Request<pb::AddCampaignActivityRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.add_activity(&caller, request.into_inner()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GenerateCampaignContacts")]
    async fn generate_campaign_contacts(
        &self,
        request: Request<pb::GenerateCampaignContactsRequest>,
    ) -> Result<Response<pb::GenerateCampaignContactsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.generate_contacts(&caller, request.into_inner()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "RecordCampaignResponse")]
    async fn record_campaign_response(
        &self,
        request: Request<pb::RecordCampaignResponseRequest>,
    ) -> Result<Response<pb::CampaignContact>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().customer);
            let caller = principal(&request)?;
            self.record_response(&caller, request.into_inner()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GetCampaignResults")]
    async fn get_campaign_results(
        &self,
        request: Request<pb::GetCampaignResultsRequest>,
    ) -> Result<Response<pb::CampaignResults>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.results(&caller, &request.get_ref().name).await
        })
        .await
    }
}
