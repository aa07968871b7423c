//! Reports as singleton resources (AIP-156): each report of a scope has a
//! name, e.g. `branches/B01/complaintSummary`, `teams/T-WEALTH/knowledgeFlow`
//! or the bank-wide `knowledgeFlow`. The period (or segmentation) reported on
//! stays a parameter of the Get, not part of the name.
//!
//! A scope is a path of `branches/{branch}`, `teams/{team}` and
//! `employees/{employee}` segments, each at most once and in that order, each
//! only where the report can be narrowed that way.

use super::customer::org_code;

/// One way a report can be narrowed, in the order the segments appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopePart {
    Branch,
    Team,
    Employee,
}

impl ScopePart {
    /// The collection segment of the name.
    pub fn collection(self) -> &'static str {
        match self {
            ScopePart::Branch => "branches",
            ScopePart::Team => "teams",
            ScopePart::Employee => "employees",
        }
    }

    /// The request field that gives the same scope the old way.
    pub fn field(self, report: Report) -> &'static str {
        match (self, report) {
            (ScopePart::Branch, _) => "branch",
            (ScopePart::Team, _) => "team",
            (ScopePart::Employee, Report::SegmentSummary) => "relationship_manager",
            (ScopePart::Employee, _) => "employee",
        }
    }
}

/// The reports shaped as scoped singletons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    KnowledgeFlow,
    KnowledgeSharingMetrics,
    ComplaintSummary,
    ServiceMetrics,
    SegmentSummary,
}

impl Report {
    /// The last segment of the name.
    pub fn singleton(self) -> &'static str {
        match self {
            Report::KnowledgeFlow => "knowledgeFlow",
            Report::KnowledgeSharingMetrics => "knowledgeSharingMetrics",
            Report::ComplaintSummary => "complaintSummary",
            Report::ServiceMetrics => "serviceMetrics",
            Report::SegmentSummary => "segmentSummary",
        }
    }

    /// The ways the report can be narrowed, in name order.
    pub fn parts(self) -> &'static [ScopePart] {
        use ScopePart::*;
        match self {
            Report::KnowledgeFlow | Report::KnowledgeSharingMetrics => &[Branch, Team],
            Report::ComplaintSummary => &[Branch],
            Report::ServiceMetrics => &[Branch, Team, Employee],
            Report::SegmentSummary => &[Branch, Employee],
        }
    }
}

/// The scope of a report; an empty string is "not narrowed that way".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportScope {
    pub branch: String,
    pub team: String,
    pub employee: String,
}

impl ReportScope {
    pub fn get(&self, part: ScopePart) -> &str {
        match part {
            ScopePart::Branch => &self.branch,
            ScopePart::Team => &self.team,
            ScopePart::Employee => &self.employee,
        }
    }

    fn slot(&mut self, part: ScopePart) -> &mut String {
        match part {
            ScopePart::Branch => &mut self.branch,
            ScopePart::Team => &mut self.team,
            ScopePart::Employee => &mut self.employee,
        }
    }
}

/// The longest report name accepted: three segments of 64-character codes
/// and their collections fit well within it.
pub const MAX_REPORT_NAME: usize = 300;

/// The name of `report` over `scope`, e.g. `branches/B01/teams/T1/serviceMetrics`.
/// Scope parts the report cannot be narrowed by are left out.
pub fn report_name(report: Report, scope: &ReportScope) -> String {
    let mut name = String::new();
    for part in report.parts() {
        let value = scope.get(*part);
        if !value.is_empty() {
            name.push_str(part.collection());
            name.push('/');
            name.push_str(value);
            name.push('/');
        }
    }
    name.push_str(report.singleton());
    name
}

/// The scope named by a report name (see [`report_name`]).
pub fn parse_report_name(report: Report, name: &str) -> Result<ReportScope, String> {
    let shape = || {
        let segments: Vec<String> = report
            .parts()
            .iter()
            .map(|p| format!("{}/{{{}}}/", p.collection(), p.field(report)))
            .collect();
        format!(
            "must be `{}` narrowed by optional {} segments in that order, e.g. `{}`",
            report.singleton(),
            segments.join(", "),
            report_name(
                report,
                &ReportScope {
                    branch: "B01".into(),
                    ..ReportScope::default()
                }
            )
        )
    };
    if name.len() > MAX_REPORT_NAME {
        return Err(format!("must be at most {MAX_REPORT_NAME} bytes"));
    }
    let rest = name.strip_suffix(report.singleton()).ok_or_else(shape)?;
    let mut scope = ReportScope::default();
    if rest.is_empty() {
        return Ok(scope);
    }
    let segments: Vec<&str> = rest
        .strip_suffix('/')
        .ok_or_else(shape)?
        .split('/')
        .collect();
    if !segments.len().is_multiple_of(2) {
        return Err(shape());
    }
    let mut allowed = report.parts();
    for pair in segments.chunks(2) {
        let (collection, id) = (pair[0], pair[1]);
        let at = allowed
            .iter()
            .position(|p| p.collection() == collection)
            .ok_or_else(shape)?;
        let part = allowed[at];
        *scope.slot(part) =
            org_code(id, true).map_err(|e| format!("{}: {e}", part.collection()))?;
        allowed = &allowed[at + 1..];
    }
    Ok(scope)
}

/// Merges a report name with the scope fields of the same request: either
/// may be given, or both when they agree. The violations (field, description)
/// name the name and the disagreeing field.
pub fn merge_scope(
    report: Report,
    name: &str,
    fields: ReportScope,
) -> Result<ReportScope, Vec<(String, String)>> {
    if name.is_empty() {
        return Ok(fields);
    }
    let named = parse_report_name(report, name).map_err(|e| vec![("name".to_string(), e)])?;
    let mut violations = Vec::new();
    for part in report.parts() {
        let (from_name, from_field) = (named.get(*part), fields.get(*part));
        if !from_field.is_empty() && from_field != from_name {
            let field = part.field(report);
            let named_as = if from_name.is_empty() {
                "no ".to_string() + field
            } else {
                format!("{field} {from_name:?}")
            };
            violations.push((
                "name".to_string(),
                format!("names {named_as} but `{field}` is {from_field:?}"),
            ));
            violations.push((
                field.to_string(),
                format!("is {from_field:?} but `name` names {named_as}"),
            ));
        }
    }
    if violations.is_empty() {
        Ok(named)
    } else {
        Err(violations)
    }
}

/// The last segment of a campaign's results, `campaigns/{campaign}/results`.
pub const CAMPAIGN_RESULTS: &str = "results";

/// The last segment of a customer's 360 view, `customers/{customer}/view360`.
pub const CUSTOMER_VIEW_360: &str = "view360";

/// The name of the singleton `singleton` of the resource `parent`.
pub fn singleton_name(parent: &str, singleton: &str) -> String {
    format!("{parent}/{singleton}")
}

/// `{parent}/{singleton}` or the parent itself: the Get of a report that
/// belongs to one resource (a campaign's results, a customer's 360 view)
/// accepts either, so callers that send the parent keep working.
pub fn strip_singleton<'a>(name: &'a str, singleton: &str) -> &'a str {
    name.strip_suffix(singleton)
        .and_then(|parent| parent.strip_suffix('/'))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(branch: &str, team: &str, employee: &str) -> ReportScope {
        ReportScope {
            branch: branch.into(),
            team: team.into(),
            employee: employee.into(),
        }
    }

    #[test]
    fn names_round_trip() {
        for (report, s, name) in [
            (Report::KnowledgeFlow, scope("", "", ""), "knowledgeFlow"),
            (
                Report::KnowledgeFlow,
                scope("B01", "", ""),
                "branches/B01/knowledgeFlow",
            ),
            (
                Report::KnowledgeFlow,
                scope("", "T-1", ""),
                "teams/T-1/knowledgeFlow",
            ),
            (
                Report::ServiceMetrics,
                scope("B01", "T1", "E1"),
                "branches/B01/teams/T1/employees/E1/serviceMetrics",
            ),
            (
                Report::ServiceMetrics,
                scope("", "", "E1"),
                "employees/E1/serviceMetrics",
            ),
            (
                Report::SegmentSummary,
                scope("B01", "", "E1"),
                "branches/B01/employees/E1/segmentSummary",
            ),
            (
                Report::ComplaintSummary,
                scope("B02", "", ""),
                "branches/B02/complaintSummary",
            ),
        ] {
            assert_eq!(report_name(report, &s), name);
            assert_eq!(parse_report_name(report, name), Ok(s));
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        for (report, name) in [
            (Report::KnowledgeFlow, ""),
            (Report::KnowledgeFlow, "knowledgeflow"),
            (Report::KnowledgeFlow, "/knowledgeFlow"),
            (Report::KnowledgeFlow, "branches/knowledgeFlow"),
            (Report::KnowledgeFlow, "branches//knowledgeFlow"),
            (Report::KnowledgeFlow, "teams/T1/branches/B01/knowledgeFlow"),
            (
                Report::KnowledgeFlow,
                "branches/B01/branches/B02/knowledgeFlow",
            ),
            (Report::KnowledgeFlow, "employees/E1/knowledgeFlow"),
            (Report::KnowledgeFlow, "branches/B 01/knowledgeFlow"),
            (Report::KnowledgeFlow, "branches/B01/complaintSummary"),
            (Report::ComplaintSummary, "teams/T1/complaintSummary"),
            (Report::KnowledgeFlow, "xbranches/B01/knowledgeFlow"),
        ] {
            assert!(parse_report_name(report, name).is_err(), "{name}");
        }
        let long = format!("branches/{}/knowledgeFlow", "B".repeat(400));
        assert!(parse_report_name(Report::KnowledgeFlow, &long).is_err());
    }

    #[test]
    fn a_name_and_fields_must_agree() {
        let r = Report::ServiceMetrics;
        assert_eq!(
            merge_scope(r, "branches/B01/serviceMetrics", scope("", "T1", "")).map_err(|_| ()),
            Err(())
        );
        assert_eq!(
            merge_scope(r, "branches/B01/serviceMetrics", scope("B01", "", "")),
            Ok(scope("B01", "", ""))
        );
        assert_eq!(
            merge_scope(r, "", scope("B01", "", "E1")),
            Ok(scope("B01", "", "E1"))
        );
        let err = merge_scope(r, "branches/B01/serviceMetrics", scope("B02", "", "")).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["name", "branch"]);
        let err = merge_scope(
            Report::SegmentSummary,
            "segmentSummary",
            scope("", "", "E1"),
        )
        .unwrap_err();
        assert_eq!(err[1].0, "relationship_manager");
    }

    #[test]
    fn a_parent_or_its_singleton_names_the_parent() {
        assert_eq!(
            strip_singleton("campaigns/C1/results", "results"),
            "campaigns/C1"
        );
        assert_eq!(strip_singleton("campaigns/C1", "results"), "campaigns/C1");
        assert_eq!(strip_singleton("results", "results"), "results");
        assert_eq!(
            strip_singleton("customers/7/view360", "view360"),
            "customers/7"
        );
    }
}
