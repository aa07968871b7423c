//! Read-only views over the knowledge graph: lineage and the flow matrix.

use super::*;
use crate::domain::report::{Report, ReportScope, report_name};

pub(super) async fn get_knowledge_lineage(
    api: &KnowledgeApi,
    request: Request<pb::GetKnowledgeLineageRequest>,
) -> Result<Response<pb::KnowledgeLineage>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let req = request.get_ref();
        let id = parse_item("name", &req.name)?;
        let depth = match req.depth {
            0 => 3,
            d if (1..=rules::MAX_LINEAGE_DEPTH).contains(&d) => d,
            _ => {
                return Err(Error::invalid(
                    "depth",
                    format!("must be between 1 and {}", rules::MAX_LINEAGE_DEPTH),
                ));
            }
        };
        // A retracted item keeps its lineage: the root may be one.
        let root = api.db.get_admitted_knowledge_item(&id, &access).await?;
        found(root, &access, &id)?;
        let mut rows = api.db.knowledge_lineage(&id, depth).await?;
        let truncated = rows.nodes.len() > 1000;
        rows.nodes.truncate(1000);
        let ids: Vec<&str> = rows.nodes.iter().map(|(n, _)| n.as_str()).collect();
        let visible: BTreeMap<String, KnowledgeItem> = api
            .db
            .visible_knowledge_items(&access, &ids)
            .await?
            .into_iter()
            .map(|i| (i.item.id.clone(), i))
            .collect();
        let kept: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        let retracted = api.db.retracted_among(&ids).await?;
        let seen: Vec<&str> = visible.keys().map(String::as_str).collect();
        let internalizations = api.db.internalizations_of(&seen).await?;
        Ok(pb::KnowledgeLineage {
            root: rules::item_name(&id),
            nodes: rows
                .nodes
                .iter()
                .map(|(node, depth)| pb::knowledge_lineage::Node {
                    name: rules::item_name(node),
                    redacted: !visible.contains_key(node),
                    item: visible.get(node).map(|x| item_pb(x, Utc::now())),
                    depth: *depth,
                    retracted: retracted.contains(node.as_str()),
                })
                .collect(),
            edges: rows
                .edges
                .iter()
                .filter(|(s, t, _, _)| kept.contains(s.as_str()) && kept.contains(t.as_str()))
                .map(|(s, t, c, time)| pb::knowledge_lineage::Edge {
                    source: rules::item_name(s),
                    target: rules::item_name(t),
                    conversion: conversion_to(*c) as i32,
                    create_time: Some(timestamp(*time)),
                })
                .collect(),
            internalizations: internalizations
                .iter()
                .map(|(item, employee, tacit, time)| pb::Internalization {
                    item: rules::item_name(item),
                    employee: employee.clone(),
                    tacit_item: if tacit.is_empty() {
                        String::new()
                    } else {
                        rules::item_name(tacit)
                    },
                    create_time: Some(timestamp(*time)),
                })
                .collect(),
            shares: visible
                .values()
                .flat_map(|i| i.grants.iter().map(share_pb))
                .collect(),
            truncated,
        })
    })
    .await
    .inspect(|response| crate::audit::note_customers_in(&request, response.get_ref()))
}

/// What a period report is about, as its answer echoes it.
struct Period {
    /// The report's singleton name for this scope.
    name: String,
    /// The branch and team reported on ('' for all).
    branch: String,
    team: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Period {
    /// The scope of `report` from its `name` and/or its scope fields (which
    /// must agree) and its period. Branch staff report on their own branch
    /// or team only; the period defaults to `default_days` before `end_time`
    /// (default now).
    #[allow(clippy::too_many_arguments)]
    fn of(
        report: Report,
        access: &KnowledgeAccess,
        name: &str,
        branch: &str,
        team: &str,
        start_time: Option<&prost_types::Timestamp>,
        end_time: Option<&prost_types::Timestamp>,
        default_days: i64,
    ) -> Result<Self, Error> {
        let scope = crate::api::report_scope(
            report,
            name,
            ReportScope {
                branch: branch.to_string(),
                team: team.to_string(),
                ..ReportScope::default()
            },
        )?;
        if !scope.branch.is_empty() {
            org_code(&scope.branch, true).map_err(|e| Error::invalid("branch", e))?;
        }
        if !scope.team.is_empty() {
            org_code(&scope.team, true).map_err(|e| Error::invalid("team", e))?;
        }
        if access.subject_branch.is_some() {
            let own_branch = scope.branch.is_empty() || scope.branch == access.branch;
            let own_team = scope.team.is_empty() || scope.team == access.team;
            if scope.branch.is_empty() && scope.team.is_empty() || !own_branch || !own_team {
                return Err(Error::denied(
                    "report on knowledge beyond its own branch or team",
                ));
            }
        }
        let end = match end_time {
            Some(ts) => from_timestamp(ts)
                .ok_or_else(|| Error::invalid("end_time", "is not a valid timestamp"))?,
            None => Utc::now(),
        };
        let start = match start_time {
            Some(ts) => from_timestamp(ts)
                .ok_or_else(|| Error::invalid("start_time", "is not a valid timestamp"))?,
            None => end - Duration::days(default_days),
        };
        if start >= end {
            return Err(Error::invalid("start_time", "must be before end_time"));
        }
        Ok(Period {
            name: report_name(report, &scope),
            branch: scope.branch,
            team: scope.team,
            start,
            end,
        })
    }

    fn branch(&self) -> Option<&str> {
        (!self.branch.is_empty()).then_some(self.branch.as_str())
    }

    fn team(&self) -> Option<&str> {
        (!self.team.is_empty()).then_some(self.team.as_str())
    }
}

/// `n` as a fraction of `total` (0 when there is nothing).
fn fraction(n: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 / total as f64
    }
}

pub(super) async fn get_knowledge_sharing_metrics(
    api: &KnowledgeApi,
    request: Request<pb::GetKnowledgeSharingMetricsRequest>,
) -> Result<Response<pb::KnowledgeSharingMetrics>, Status> {
    use pb::knowledge_sharing_metrics as m;
    const REPORT: Report = Report::KnowledgeSharingMetrics;
    respond(async {
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let req = request.get_ref();
        let period = Period::of(
            REPORT,
            &access,
            &req.name,
            &req.branch,
            &req.team,
            req.start_time.as_ref(),
            req.end_time.as_ref(),
            30,
        )?;
        let rows = api
            .db
            .knowledge_sharing(
                &access,
                period.branch(),
                period.team(),
                period.start,
                period.end,
            )
            .await?;
        let (explicit, verified_now, stale_now) = rows.explicit;
        let mut items_by_nature = rows
            .natures
            .iter()
            .map(|(nature, count)| {
                Ok(m::NatureCount {
                    nature: nature_to(parse_stored("nature", nature, Nature::parse)?) as i32,
                    count: *count,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        items_by_nature.sort_by_key(|n| n.nature);
        let mut conversions = rows
            .conversions
            .iter()
            .map(|(conversion, count)| {
                Ok(m::ConversionCount {
                    conversion: conversion_to(parse_stored(
                        "conversion",
                        conversion,
                        Conversion::parse,
                    )?) as i32,
                    count: *count,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        conversions.sort_by_key(|c| c.conversion);
        Ok(pb::KnowledgeSharingMetrics {
            start_time: Some(timestamp(period.start)),
            end_time: Some(timestamp(period.end)),
            interval: Some(interval(period.start, period.end)),
            name: period.name,
            branch: period.branch,
            team: period.team,
            items_by_nature,
            conversions,
            playbooks: rows
                .playbooks
                .iter()
                .map(|(item, employees)| m::PlaybookReach {
                    item: rules::item_name(item),
                    employee_count: *employees,
                })
                .collect(),
            median_seconds_to_explicit: rows.to_explicit.0.unwrap_or_default(),
            explicit_with_source_count: rows.to_explicit.1,
            median_seconds_to_verification: rows.to_verification.0.unwrap_or_default(),
            verified_count: rows.to_verification.1,
            verified_share: fraction(verified_now, explicit),
            stale_share: fraction(stale_now, explicit),
            explicit_count: explicit,
            contributions: rows
                .contributions
                .into_iter()
                .map(
                    |(employee, items_authored, conversions, verifications, internalizations)| {
                        m::Contribution {
                            employee,
                            items_authored,
                            conversions,
                            verifications,
                            internalizations,
                        }
                    },
                )
                .collect(),
        })
    })
    .await
}

/// A code read back from the database, which only ever stores known ones.
fn parse_stored<T>(what: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, Error> {
    parse(value).ok_or_else(|| Error::Internal(anyhow::anyhow!("stored {what} {value:?}")))
}

pub(super) async fn get_knowledge_flow(
    api: &KnowledgeApi,
    request: Request<pb::GetKnowledgeFlowRequest>,
) -> Result<Response<pb::KnowledgeFlow>, Status> {
    const REPORT: Report = Report::KnowledgeFlow;
    respond(async {
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let req = request.get_ref();
        let period = Period::of(
            REPORT,
            &access,
            &req.name,
            &req.branch,
            &req.team,
            req.start_time.as_ref(),
            req.end_time.as_ref(),
            30,
        )?;
        let rows = api
            .db
            .knowledge_flow(
                &access,
                period.branch(),
                period.team(),
                period.start,
                period.end,
            )
            .await?;
        let conversion_count: i64 = rows.conversions.iter().map(|r| r.3).sum();
        let share_count: i64 = rows.shares.iter().map(|r| r.2).sum();
        let mut transitions: BTreeMap<(CarrierType, CarrierType), i64> = BTreeMap::new();
        for (_, from, to, n) in &rows.conversions {
            *transitions.entry((*from, *to)).or_default() += n;
        }
        Ok(pb::KnowledgeFlow {
            start_time: Some(timestamp(period.start)),
            end_time: Some(timestamp(period.end)),
            interval: Some(interval(period.start, period.end)),
            name: period.name,
            branch: period.branch,
            team: period.team,
            cells: rows
                .conversions
                .iter()
                .map(|(c, from, to, n)| pb::knowledge_flow::Cell {
                    conversion: conversion_to(*c) as i32,
                    from_carrier: carrier_to(*from) as i32,
                    to_carrier: carrier_to(*to) as i32,
                    count: *n,
                    fraction: fraction(*n, conversion_count),
                })
                .collect(),
            conversion_totals: Conversion::ALL
                .iter()
                .map(|c| {
                    let n = rows
                        .conversions
                        .iter()
                        .filter(|r| r.0 == *c)
                        .map(|r| r.3)
                        .sum();
                    pb::knowledge_flow::ConversionTotal {
                        conversion: conversion_to(*c) as i32,
                        count: n,
                        fraction: fraction(n, conversion_count),
                    }
                })
                .collect(),
            transition_totals: transitions
                .iter()
                .map(|((from, to), n)| pb::knowledge_flow::TransitionTotal {
                    from_carrier: carrier_to(*from) as i32,
                    to_carrier: carrier_to(*to) as i32,
                    count: *n,
                    fraction: fraction(*n, conversion_count),
                })
                .collect(),
            shares: rows
                .shares
                .iter()
                .map(|(from, to, n)| pb::knowledge_flow::ShareTotal {
                    from_carrier: carrier_to(*from) as i32,
                    to_carrier: carrier_to(*to) as i32,
                    count: *n,
                    fraction: fraction(*n, share_count),
                })
                .collect(),
            conversion_count,
            share_count,
        })
    })
    .await
}
