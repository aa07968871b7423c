//! RecomputeSegments, GetSegmentSummary and ListAtRiskCustomers: access,
//! validation and the shape of the answers; the computing is set-based SQL
//! in `store::segments`.

use crate::domain::report::{Report, ReportScope, report_name};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use prost::Message;
use tracing::Instrument;

use super::{InsightApi, convert};
use crate::{
    api::{
        from_timestamp, idempotency_key, operations,
        page_token::{join_cursor, page_size, split_cursor, time_from_micros},
        timestamp,
    },
    config::InsightSettings,
    domain::{
        customer::{Tier, org_code},
        insight::{Level, MODEL_VERSION, SegmentModel},
        principal::{BranchScope, Principal, Role},
    },
    error::{Error, Violations},
    pb::{google::longrunning as lro, v1 as pb},
    store::{
        Db, allow_statement_time,
        segments::{self, Run, RunSpec, Scope},
    },
};

/// Worklist entries per page at most.
const MAX_AT_RISK_PAGE: i64 = 500;

/// Postgres keeps microseconds: an `as_of` is cut to them before use, so the
/// run answers with the instant it is stored under.
fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// Which customers a report covers: the caller's reach, narrowed by the
/// branch and book asked for; a branch outside the reach is refused.
fn report_scope(
    caller: &Principal,
    branch: &str,
    relationship_manager: &str,
    violations: &mut Violations,
) -> Result<Scope, Error> {
    let reach = caller.customer_read_scope()?;
    let branch = org_code(branch, false)
        .inspect_err(|e| violations.add("branch", e.clone()))
        .unwrap_or_default();
    let relationship_manager = org_code(relationship_manager, false)
        .inspect_err(|e| violations.add("relationship_manager", e.clone()))
        .unwrap_or_default();
    if let BranchScope::Branch(own) = &reach
        && !branch.is_empty()
        && &branch != own
    {
        return Err(Error::denied(format!(
            "report on branch {branch}: it is outside your reach"
        )));
    }
    Ok(Scope {
        reach: reach.branch().map(str::to_string),
        branch: Some(branch).filter(|b| !b.is_empty()),
        relationship_manager: Some(relationship_manager).filter(|r| !r.is_empty()),
    })
}

/// Runs a segmentation with the configured model; `recompute-segments` and
/// RecomputeSegments both come here. Returns the run.
async fn run_segmentation(
    conn: &mut sqlx::PgConnection,
    model: &SegmentModel,
    timeout: StdDuration,
    as_of: DateTime<Utc>,
    window_months: u32,
) -> Result<Run, Error> {
    allow_statement_time(conn, timeout).await?;
    let spec = RunSpec {
        as_of,
        window_months,
        window_start: model.window_start(as_of, window_months),
        model,
    };
    segments::recompute(conn, &spec).await?;
    segments::run(conn, Some(as_of))
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the run just stored is missing")))
}

/// The `recompute-segments` job: one segmentation as of `as_of` (default
/// now) in its own transaction. Returns (as_of, customers, tier changes).
pub async fn recompute_now(
    db: &Db,
    settings: &InsightSettings,
    as_of: Option<DateTime<Utc>>,
    window_months: Option<u32>,
) -> Result<(DateTime<Utc>, i64, i64), Error> {
    let model = settings.model();
    let now = Utc::now();
    let as_of = micros(as_of.unwrap_or(now));
    if as_of > now + chrono::Duration::minutes(5) {
        return Err(Error::invalid("as_of", "must not be in the future"));
    }
    let mut tx = db.begin().await?;
    let run = run_segmentation(
        &mut tx,
        &model,
        StdDuration::from_secs(settings.recompute_timeout_secs),
        as_of,
        window_months.unwrap_or(model.window_months),
    )
    .await?;
    tx.commit().await?;
    Ok((run.as_of, run.customer_count, run.tier_changed_count))
}

/// The summary of run `run` over `scope`.
async fn summarize(
    conn: &mut sqlx::PgConnection,
    run: &Run,
    scope: &Scope,
) -> Result<pb::SegmentSummary, Error> {
    let currency = &run.reporting_currency;
    let tiers = segments::tier_totals(conn, run.as_of, scope).await?;
    let cells = segments::rfm_cells(conn, run.as_of, scope).await?;
    let relationships = segments::relationship_totals(conn, run.as_of, scope).await?;
    let previous = segments::previous_run(conn, run.as_of).await?;
    let migrations = match previous {
        Some(previous) => segments::migrations(conn, run.as_of, previous, scope).await?,
        None => Vec::new(),
    };
    let total: f64 = tiers.iter().map(|t| t.2).sum();
    let count: i64 = tiers.iter().map(|t| t.1).sum();
    let rank = |tier: &Option<String>| match tier.as_deref().and_then(Tier::parse) {
        Some(Tier::Vip) => 0,
        Some(Tier::Major) => 1,
        Some(Tier::Ordinary) => 2,
        Some(Tier::Small) => 3,
        None => 4,
    };
    let mut tiers = tiers;
    tiers.sort_by_key(|t| rank(&t.0));
    let parse_tier = |t: Option<&str>| convert::tier(t.and_then(Tier::parse)) as i32;
    Ok(pb::SegmentSummary {
        // Set by the caller, which knows how the report was named.
        name: String::new(),
        branch: scope.branch.clone().unwrap_or_default(),
        relationship_manager: scope.relationship_manager.clone().unwrap_or_default(),
        compute_time: Some(timestamp(run.compute_time)),
        as_of: Some(timestamp(run.as_of)),
        customer_count: count,
        total_value: Some(convert::money(currency, total)),
        tiers: tiers
            .iter()
            .map(
                |(tier, n, value, min, max)| pb::segment_summary::TierSummary {
                    tier: parse_tier(tier.as_deref()),
                    customer_count: *n,
                    total_value: Some(convert::money(currency, *value)),
                    value_fraction: if total > 0.0 { value / total } else { 0.0 },
                    min_value: Some(convert::money(currency, *min)),
                    max_value: Some(convert::money(currency, *max)),
                },
            )
            .collect(),
        rfm_cells: cells
            .iter()
            .map(|(r, f, m, n, value)| pb::segment_summary::RfmCell {
                rfm: convert::rfm(Some((*r, *f, *m))),
                customer_count: *n,
                total_value: Some(convert::money(currency, *value)),
            })
            .collect(),
        parameters: Some(convert::parameters(run)),
        previous_as_of: previous.map(timestamp),
        migrations: migrations
            .iter()
            .map(|(from, to, n)| pb::segment_summary::TierMigration {
                from: parse_tier(from.as_deref()),
                to: parse_tier(Some(to)),
                customer_count: *n,
            })
            .collect(),
        relationships: relationships
            .iter()
            .map(|(kind, n)| pb::RelationshipCount {
                relationship_type: convert::relationship(
                    kind.as_deref()
                        .and_then(crate::domain::insight::RelationshipType::parse),
                ) as i32,
                customer_count: *n,
            })
            .collect(),
    })
}

fn recompute_response(run: &Run, summary: pb::SegmentSummary) -> pb::RecomputeSegmentsResponse {
    pb::RecomputeSegmentsResponse {
        customer_count: run.customer_count,
        tier_changed_count: run.tier_changed_count,
        summary: Some(summary),
        as_of: Some(timestamp(run.as_of)),
        parameters: Some(convert::parameters(run)),
    }
}

impl InsightApi {
    pub(super) async fn recompute(
        &self,
        caller: &Principal,
        req: pb::RecomputeSegmentsRequest,
    ) -> Result<lro::Operation, Error> {
        if !(caller.has(Role::Admin) || caller.has(Role::Service)) {
            return Err(Error::denied(
                "recompute segments: only admin and service callers may",
            ));
        }
        let now = Utc::now();
        let mut violations = Violations::default();
        let as_of = match &req.as_of {
            None => Some(now),
            Some(ts) => match from_timestamp(ts) {
                Some(t) if t > now + chrono::Duration::minutes(5) => {
                    violations.add("as_of", "must not be in the future");
                    None
                }
                Some(t) => Some(t),
                None => {
                    violations.add("as_of", "is not a valid time");
                    None
                }
            },
        };
        let window_months = match req.window_months {
            0 => self.model.window_months,
            m @ 1..=60 => m as u32,
            _ => {
                violations.add("window_months", "must be 1 to 60, or 0 for the default");
                0
            }
        };
        let key = idempotency_key(
            caller,
            "RecomputeSegments",
            &req.request_id,
            &pb::RecomputeSegmentsRequest {
                request_id: String::new(),
                ..req.clone()
            },
        )?;
        let as_of = micros(violations.into_value(as_of)?);
        // The operation keeps the request as it runs: defaults filled in.
        let request = pb::RecomputeSegmentsRequest {
            request_id: String::new(),
            as_of: Some(timestamp(as_of)),
            window_months: window_months as i32,
        };
        let (operation, runner) = operations::start(
            &self.db,
            caller,
            key.as_ref(),
            operations::RECOMPUTE_SEGMENTS,
            &request.encode_to_vec(),
        )
        .await?;
        if let Some(runner) = runner {
            let model = self.model.clone();
            let timeout = StdDuration::from_secs(self.settings.recompute_timeout_secs);
            let job = async move {
                operations::run(runner, async |tx| {
                    let run = run_segmentation(tx, &model, timeout, as_of, window_months).await?;
                    let summary = summarize(tx, &run, &Scope::default()).await?;
                    Ok(recompute_response(&run, summary).encode_to_vec())
                })
                .await
            };
            tokio::spawn(job.instrument(tracing::info_span!("RecomputeSegments run")));
        }
        Ok(operation)
    }

    pub(super) async fn summary(
        &self,
        caller: &Principal,
        req: &pb::GetSegmentSummaryRequest,
    ) -> Result<pb::SegmentSummary, Error> {
        let named = crate::api::report_scope(
            Report::SegmentSummary,
            &req.name,
            ReportScope {
                branch: req.branch.clone(),
                employee: req.relationship_manager.clone(),
                ..ReportScope::default()
            },
        )?;
        let mut violations = Violations::default();
        let scope = report_scope(caller, &named.branch, &named.employee, &mut violations)?;
        let as_of = match &req.as_of {
            None => None,
            Some(ts) => {
                let t = from_timestamp(ts);
                if t.is_none() {
                    violations.add("as_of", "is not a valid time");
                }
                t.map(micros)
            }
        };
        violations.into_result(())?;
        let mut conn = self.db.acquire_read().await?;
        let mut summary = match segments::run(&mut conn, as_of).await? {
            Some(run) => summarize(&mut conn, &run, &scope).await?,
            None => match as_of {
                Some(t) => {
                    return Err(Error::not_found(format!(
                        "the segmentation as of {}",
                        t.to_rfc3339()
                    )));
                }
                // Never computed: an empty summary says so (no as_of).
                None => pb::SegmentSummary {
                    branch: scope.branch.unwrap_or_default(),
                    relationship_manager: scope.relationship_manager.unwrap_or_default(),
                    ..Default::default()
                },
            },
        };
        summary.name = report_name(
            Report::SegmentSummary,
            &ReportScope {
                branch: summary.branch.clone(),
                employee: summary.relationship_manager.clone(),
                ..ReportScope::default()
            },
        );
        Ok(summary)
    }

    pub(super) async fn at_risk(
        &self,
        caller: &Principal,
        req: &pb::ListAtRiskCustomersRequest,
    ) -> Result<pb::ListAtRiskCustomersResponse, Error> {
        let mut violations = Violations::default();
        let scope = report_scope(
            caller,
            &req.branch,
            &req.relationship_manager,
            &mut violations,
        )?;
        let tier = convert::tier_from(req.tier)
            .inspect_err(|()| violations.add("tier", "must be VIP, MAJOR, ORDINARY or SMALL"))
            .unwrap_or_default();
        let level = convert::level_from(req.min_level)
            .inspect_err(|()| violations.add("min_level", "must be LOW, MEDIUM or HIGH"))
            .unwrap_or_default();
        let limit = page_size(req.page_size)
            .inspect_err(|_| violations.add("page_size", "must not be negative"))
            .unwrap_or_default()
            .min(MAX_AT_RISK_PAGE);
        violations.into_result(())?;
        let context = format!(
            "ListAtRiskCustomers|{}|{}|{}|{}|{}",
            caller.subject, req.branch, req.relationship_manager, req.tier, req.min_level
        );
        // A token pins the run it started on, so pages never mix two runs.
        let cursor = self.page_tokens.decode(&req.page_token, &context)?;
        let (as_of, after) = match cursor {
            None => (None, None),
            Some(cursor) => {
                let [run, priority, id] = split_cursor::<3>(&cursor)?;
                let priority = priority.parse::<f64>().map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this list")
                })?;
                (Some(time_from_micros(&run)?), Some((priority, id)))
            }
        };
        let mut conn = self.db.acquire_read().await?;
        let Some(run) = segments::run(&mut conn, as_of).await? else {
            return Ok(pb::ListAtRiskCustomersResponse::default());
        };
        let min_score = level.map_or(0.0, Level::floor);
        let args = segments::at_risk_args(run.as_of, &scope, tier, min_score, after, limit + 1);
        let mut rows = segments::at_risk(&mut conn, args).await?;
        drop(conn);
        let next_page_token = self
            .page_tokens
            .next_page(&mut rows, limit, &context, |last| {
                join_cursor(&[
                    &run.as_of.timestamp_micros().to_string(),
                    &last.priority.to_string(),
                    &last.customer_id,
                ])
            });
        let currency = &run.reporting_currency;
        let customers = rows
            .into_iter()
            .map(|row| {
                let (id, display_name, home_branch, relationship_manager, priority, facts) =
                    row.facts()?;
                Ok(pb::AtRiskCustomer {
                    customer: format!("customers/{id}"),
                    display_name,
                    home_branch,
                    relationship_manager,
                    tier: convert::tier(Some(facts.tier)) as i32,
                    churn_risk: Some(convert::churn(&facts.churn(), MODEL_VERSION)),
                    value: Some(convert::money(currency, facts.monetary)),
                    priority,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(pb::ListAtRiskCustomersResponse {
            customers,
            next_page_token,
            as_of: Some(timestamp(run.as_of)),
        })
    }
}
