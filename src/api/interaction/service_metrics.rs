//! GetServiceMetrics: a branch's, team's or employee's service KPIs in a
//! period, and the report period and branch check it shares with
//! GetComplaintSummary.

use std::collections::BTreeMap;

use super::*;
use crate::api::report_scope;
use crate::domain::report::{Report, ReportScope, report_name};
use crate::store::service_requests::{
    self as requests, FollowUpRow, MetricsSubject, RatingRow, ResolutionRow,
};

/// The period a report covers when none is given.
const DEFAULT_REPORT_DAYS: i64 = 30;

/// The longest period GetServiceMetrics reports on: a year, so one call's
/// statements stay bounded.
const MAX_METRICS_DAYS: i64 = 366;

/// A report's branch and period as requested: the branch (empty: all in
/// reach) must be the caller's own when the caller is bound to a branch;
/// the period defaults to the 30 days before `end_time` (default: now).
pub(super) struct ReportPeriod {
    pub(super) branch: String,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
}

impl ReportPeriod {
    /// Reads the branch and times, adding violations; None when any.
    pub(super) fn read(
        branch: &str,
        start_time: &Option<prost_types::Timestamp>,
        end_time: &Option<prost_types::Timestamp>,
        violations: &mut Violations,
    ) -> ReportPeriod {
        let branch = org_code(branch, false)
            .inspect_err(|e| violations.add("branch", e.clone()))
            .unwrap_or_default();
        let mut time = |field: &str, ts: &Option<prost_types::Timestamp>| {
            ts.as_ref().and_then(|ts| {
                from_timestamp(ts).or_else(|| {
                    violations.add(field, "is not a valid timestamp");
                    None
                })
            })
        };
        let end = time("end_time", end_time).unwrap_or_else(Utc::now);
        let start =
            time("start_time", start_time).unwrap_or(end - Duration::days(DEFAULT_REPORT_DAYS));
        if start >= end {
            violations.add("start_time", "must be before end_time");
        }
        ReportPeriod { branch, start, end }
    }

    /// PERMISSION_DENIED when a caller bound to a branch asks for another.
    pub(super) fn check_reach(&self, reach: &BranchScope, what: &str) -> Result<(), Error> {
        if let BranchScope::Branch(own) = reach
            && !self.branch.is_empty()
            && &self.branch != own
        {
            return Err(Error::denied(format!(
                "report on the {what} of branch {}: it is outside the caller's reach",
                self.branch
            )));
        }
        Ok(())
    }

    /// The requested branch, None when every branch in reach.
    pub(super) fn branch(&self) -> Option<&str> {
        Some(self.branch.as_str()).filter(|b| !b.is_empty())
    }
}

pub(super) async fn get(
    api: &InteractionApi,
    request: Request<pb::GetServiceMetricsRequest>,
) -> Result<Response<pb::ServiceMetrics>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let reach = caller.customer_read_scope()?;
        if acting_for(&caller).is_some() {
            return Err(Error::denied(
                "read service metrics while acting for a customer",
            ));
        }
        let req = request.get_ref();
        let scope = report_scope(
            Report::ServiceMetrics,
            &req.name,
            ReportScope {
                branch: req.branch.clone(),
                team: req.team.clone(),
                employee: req.employee.clone(),
            },
        )?;
        let mut violations = Violations::default();
        let period = ReportPeriod::read(
            &scope.branch,
            &req.start_time,
            &req.end_time,
            &mut violations,
        );
        let mut code = |field: &str, value: &str| {
            org_code(value, false)
                .inspect_err(|e| violations.add(field, e.clone()))
                .unwrap_or_default()
        };
        let team = code("team", &scope.team);
        let employee = code("employee", &scope.employee);
        if period.end - period.start > Duration::days(MAX_METRICS_DAYS) {
            violations.add(
                "start_time",
                format!("the period may span at most {MAX_METRICS_DAYS} days"),
            );
        }
        violations.into_result(())?;
        period.check_reach(&reach, "service")?;
        let subject = MetricsSubject {
            reach: reach.branch().map(str::to_string),
            branch: period.branch().map(str::to_string),
            team: Some(team.clone()).filter(|t| !t.is_empty()),
            employee: Some(employee.clone()).filter(|e| !e.is_empty()),
            start: period.start,
            end: period.end,
        };
        let mut conn = api.db.acquire_read().await?;
        let rows = requests::metrics(&mut conn, &subject).await?;
        drop(conn);
        let mut total = empty_figures();
        // Channel rows keyed by the proto channel number, so they come out
        // in channel order.
        let mut channels: BTreeMap<i32, pb::ServiceFigures> = BTreeMap::new();
        for row in &rows.ratings {
            slot(&mut total, &mut channels, row.total, &row.channel).satisfaction =
                Some(satisfaction_to(row));
        }
        for row in &rows.requests {
            slot(&mut total, &mut channels, row.total, &row.channel).service_requests =
                Some(resolution_to(row));
        }
        for row in &rows.complaints {
            slot(&mut total, &mut channels, row.total, &row.channel).complaints =
                Some(resolution_to(row));
        }
        for row in &rows.follow_ups {
            slot(&mut total, &mut channels, row.total, &row.channel).follow_ups =
                Some(follow_ups_to(row));
        }
        let report = pb::ServiceMetrics {
            name: report_name(
                Report::ServiceMetrics,
                &ReportScope {
                    branch: period.branch.clone(),
                    team: team.clone(),
                    employee: employee.clone(),
                },
            ),
            branch: period.branch.clone(),
            team,
            employee,
            start_time: Some(timestamp(period.start)),
            end_time: Some(timestamp(period.end)),
            interval: Some(interval(period.start, period.end)),
            total: Some(total),
            channels: channels
                .into_iter()
                .map(|(channel, figures)| pb::service_metrics::ChannelRow {
                    channel,
                    figures: Some(figures),
                })
                .collect(),
        };
        Ok(report)
    })
    .await
}

/// The figures a row belongs to: the total, or its channel's (a channel
/// the service does not know, or none, counts as CHANNEL_UNSPECIFIED).
fn slot<'a>(
    total: &'a mut pb::ServiceFigures,
    channels: &'a mut BTreeMap<i32, pb::ServiceFigures>,
    is_total: bool,
    channel: &Option<String>,
) -> &'a mut pb::ServiceFigures {
    if is_total {
        return total;
    }
    let key = channel
        .as_deref()
        .and_then(Channel::parse)
        .map(channel_to)
        .unwrap_or_default() as i32;
    channels.entry(key).or_insert_with(empty_figures)
}

/// Figures with every count 0, for sets a statement returned no row for.
fn empty_figures() -> pb::ServiceFigures {
    pb::ServiceFigures {
        satisfaction: Some(Default::default()),
        service_requests: Some(Default::default()),
        complaints: Some(Default::default()),
        follow_ups: Some(Default::default()),
    }
}

/// `part / whole`, 0 when there is no whole.
fn rate(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn satisfaction_to(row: &RatingRow) -> pb::SatisfactionFigures {
    pb::SatisfactionFigures {
        csat_count: row.csat_count,
        csat_sum: row.csat_sum,
        csat_average: (row.csat_count > 0).then(|| rate(row.csat_sum, row.csat_count)),
        nps_count: row.nps_count,
        promoter_count: row.promoters,
        passive_count: row.passives,
        detractor_count: row.detractors,
        nps: (row.nps_count > 0)
            .then(|| 100.0 * rate(row.promoters - row.detractors, row.nps_count)),
    }
}

fn resolution_to(row: &ResolutionRow) -> pb::ResolutionFigures {
    pb::ResolutionFigures {
        received_count: row.received,
        cancelled_count: row.cancelled,
        resolved_count: row.resolved,
        resolution_rate: rate(row.resolved, row.received - row.cancelled),
        responded_count: row.responded,
        responded_within_sla_count: row.responded_within_sla,
        response_within_sla_rate: rate(row.responded_within_sla, row.responded),
        median_response_seconds: row.median_response_seconds,
        p90_response_seconds: row.p90_response_seconds,
        resolved_within_sla_count: row.resolved_within_sla,
        resolution_within_sla_rate: rate(row.resolved_within_sla, row.resolved),
        median_resolution_seconds: row.median_resolution_seconds,
        p90_resolution_seconds: row.p90_resolution_seconds,
        response_overdue_count: row.response_overdue,
        resolution_overdue_count: row.resolution_overdue,
    }
}

fn follow_ups_to(row: &FollowUpRow) -> pb::FollowUpFigures {
    pb::FollowUpFigures {
        due_count: row.due,
        completed_count: row.completed,
        cancelled_count: row.cancelled,
        overdue_count: row.overdue,
        completion_rate: rate(row.completed, row.due - row.cancelled),
    }
}
