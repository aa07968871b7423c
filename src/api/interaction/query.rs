//! List filters and page-token cursors of the interaction lists.

use super::*;
use crate::{api::page_token::OrderedPages, domain::filter::ListOrder};

/// `customers/-` (every reachable customer) or one customer.
pub(super) fn parse_parent(parent: &str) -> Result<Option<CustomerId>, Error> {
    if parent == "customers/-" {
        Ok(None)
    } else {
        parse_name("parent", parent).map(Some)
    }
}

pub(super) use crate::domain::filter::time_range;

pub(super) fn parse_bool(term: &Term) -> Result<bool, String> {
    match (term.op, term.value.as_str()) {
        (Op::Eq, "true") => Ok(true),
        (Op::Eq, "false") => Ok(false),
        _ => Err(format!("{} takes = true or = false", term.field)),
    }
}

pub(super) fn timeline_filter(filter: &str) -> Result<TimelineQuery, String> {
    let mut query = TimelineQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("channel", Op::Eq) => {
                let channel = Channel::parse(&term.value)
                    .ok_or_else(|| format!("channel {} is not a channel", term.value))?;
                set_once(&mut query.channel, &term, channel)?
            }
            ("kind", Op::Eq) => {
                let kind = Kind::parse(&term.value)
                    .ok_or_else(|| format!("kind {} is not an interaction kind", term.value))?;
                set_once(&mut query.kind, &term, kind)?
            }
            ("occur_time", _) => time_range(&term, &mut query.occur_from, &mut query.occur_before)?,
            ("update_time", _) => {
                time_range(&term, &mut query.updated_from, &mut query.updated_before)?
            }
            ("channel" | "kind", _) => return Err(unsupported(&term, "'='")),
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on channel, kind, occur_time or update_time"
                ));
            }
        }
    }
    Ok(query)
}

pub(super) fn complaint_filter(filter: &str) -> Result<ComplaintQuery, String> {
    let mut query = ComplaintQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("home_branch", Op::Eq) => set_once(&mut query.home_branch, &term, term.value.clone())?,
            ("state", Op::Eq) => {
                let state = ComplaintState::parse(&term.value)
                    .ok_or_else(|| format!("state {} is not a complaint state", term.value))?;
                set_once(&mut query.state, &term, state)?
            }
            ("severity", Op::Eq) => {
                let severity = Severity::parse(&term.value)
                    .ok_or_else(|| format!("severity {} is not a severity", term.value))?;
                set_once(&mut query.severity, &term, severity)?
            }
            ("overdue", _) => set_once(&mut query.overdue, &term, parse_bool(&term)?)?,
            ("update_time", _) => {
                time_range(&term, &mut query.updated_from, &mut query.updated_before)?
            }
            ("home_branch" | "state" | "severity", _) => return Err(unsupported(&term, "'='")),
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on home_branch, state, severity, overdue or update_time"
                ));
            }
        }
    }
    Ok(query)
}

pub(super) fn follow_up_filter(filter: &str) -> Result<FollowUpQuery, String> {
    let mut query = FollowUpQuery::default();
    for term in parse_terms(filter)? {
        match (term.field.as_str(), term.op) {
            ("assignee", Op::Eq) => set_once(&mut query.assignee, &term, term.value.clone())?,
            ("branch", Op::Eq) => set_once(&mut query.branch, &term, term.value.clone())?,
            ("state", Op::Eq) => {
                let state = FollowUpState::parse(&term.value)
                    .ok_or_else(|| format!("state {} is not SCHEDULED or COMPLETED", term.value))?;
                set_once(&mut query.state, &term, state)?
            }
            ("overdue", _) => set_once(&mut query.overdue, &term, parse_bool(&term)?)?,
            ("due_time", _) => time_range(&term, &mut query.due_from, &mut query.due_before)?,
            ("update_time", _) => {
                time_range(&term, &mut query.updated_from, &mut query.updated_before)?
            }
            ("assignee" | "branch" | "state", _) => return Err(unsupported(&term, "'='")),
            (field, _) => {
                return Err(format!(
                    "unknown field {field}: filter on assignee, branch, state, overdue, due_time or update_time"
                ));
            }
        }
    }
    Ok(query)
}

/// The lists of rows of every customer (complaints, follow-ups, service
/// requests) page by (due time, customer, id); tokens of that order keep the
/// context they had before order_by existed.
pub(super) const DUE_LIST_TOKENS: ListTokens = ListTokens {
    natural_timed: true,
    order_always_named: false,
};

/// The (time, customer, id) a page of such a list resumes after.
/// What a worklist request (ListComplaints, ListFollowUps,
/// ListServiceRequests) asks for, read the same way for each: its `filter`
/// parsed by `parse` and its `order_by`, every violation at once; its page
/// tokens bound to `method`, the caller and the query; and the position
/// its page starts after.
#[allow(clippy::too_many_arguments)]
pub(super) fn worklist<'a, Q: Default>(
    tokens: &'a PageTokens,
    method: &str,
    subject: &str,
    parent: &str,
    filter: &str,
    order_by: &str,
    page_token: &str,
    parse: impl FnOnce(&str) -> Result<Q, String>,
) -> Result<(Q, ListOrder, Option<DueCursor>, OrderedPages<'a>), Error> {
    let mut violations = Violations::default();
    let query = parse(filter)
        .inspect_err(|e| violations.add("filter", e.clone()))
        .unwrap_or_default();
    let order = list_order(order_by, &mut violations);
    violations.into_result(())?;
    let pages = tokens.ordered(
        DUE_LIST_TOKENS,
        order,
        format!("{method}|{subject}|{parent}|{filter}"),
    );
    let after = due_cursor(pages.resume(page_token)?)?;
    Ok((query, order, after, pages))
}

pub(super) fn due_cursor(keyset: Option<Keyset<2>>) -> Result<Option<DueCursor>, Error> {
    keyset
        .map(|keyset| {
            let (time, [customer, id]) = keyset.timed()?;
            Ok((time, customer, id))
        })
        .transpose()
}

/// A row's place in either order of such a list.
pub(super) fn due_keys(
    due: DateTime<Utc>,
    update_time: DateTime<Utc>,
    customer: &CustomerId,
    id: &str,
) -> RowKeys<2> {
    RowKeys {
        natural_time: Some(due),
        update_time,
        ids: [customer.as_str().to_string(), id.to_string()],
    }
}
