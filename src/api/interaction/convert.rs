//! Conversions between the interaction domain and its wire (proto) types.

use super::*;

// Conversions.

pub(crate) fn channel_from(value: i32) -> Option<Channel> {
    use pb::interaction::Channel as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Branch => Channel::Branch,
        P::Phone => Channel::Phone,
        P::MobileApp => Channel::MobileApp,
        P::OnlineBanking => Channel::OnlineBanking,
        P::Email => Channel::Email,
        P::SocialMedia => Channel::SocialMedia,
        P::Chat => Channel::Chat,
        P::Atm => Channel::Atm,
        P::FieldVisit => Channel::FieldVisit,
    })
}

pub(crate) fn channel_to(channel: Channel) -> pb::interaction::Channel {
    use pb::interaction::Channel as P;
    match channel {
        Channel::Branch => P::Branch,
        Channel::Phone => P::Phone,
        Channel::MobileApp => P::MobileApp,
        Channel::OnlineBanking => P::OnlineBanking,
        Channel::Email => P::Email,
        Channel::SocialMedia => P::SocialMedia,
        Channel::Chat => P::Chat,
        Channel::Atm => P::Atm,
        Channel::FieldVisit => P::FieldVisit,
    }
}

pub(super) fn kind_from(value: i32) -> Option<Kind> {
    use pb::interaction::Kind as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Inquiry => Kind::Inquiry,
        P::Transaction => Kind::Transaction,
        P::Complaint => Kind::Complaint,
        P::ServiceRequest => Kind::ServiceRequest,
        P::Promotion => Kind::Promotion,
        P::FollowUp => Kind::FollowUp,
        P::Survey => Kind::Survey,
    })
}

pub(super) fn kind_to(kind: Kind) -> pb::interaction::Kind {
    use pb::interaction::Kind as P;
    match kind {
        Kind::Inquiry => P::Inquiry,
        Kind::Transaction => P::Transaction,
        Kind::Complaint => P::Complaint,
        Kind::ServiceRequest => P::ServiceRequest,
        Kind::Promotion => P::Promotion,
        Kind::FollowUp => P::FollowUp,
        Kind::Survey => P::Survey,
    }
}

pub(super) fn sentiment_from(value: i32) -> Result<Option<Sentiment>, ()> {
    use pb::interaction::Sentiment as P;
    Ok(match P::try_from(value).map_err(|_| ())? {
        P::Unspecified => None,
        P::Positive => Some(Sentiment::Positive),
        P::Neutral => Some(Sentiment::Neutral),
        P::Negative => Some(Sentiment::Negative),
    })
}

pub(super) fn severity_from(value: i32) -> Result<Option<Severity>, ()> {
    use pb::complaint::Severity as P;
    Ok(match P::try_from(value).map_err(|_| ())? {
        P::Unspecified => None,
        P::Low => Some(Severity::Low),
        P::Medium => Some(Severity::Medium),
        P::High => Some(Severity::High),
        P::Critical => Some(Severity::Critical),
    })
}

pub(super) fn complaint_state_from(value: i32) -> Option<ComplaintState> {
    use pb::complaint::State as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Open => ComplaintState::Open,
        P::InProgress => ComplaintState::InProgress,
        P::Resolved => ComplaintState::Resolved,
        P::Closed => ComplaintState::Closed,
    })
}

/// A category off the wire: None when unspecified, Err when unknown. The
/// proto names and the stored spellings are the same words.
pub(super) fn category_from(value: i32) -> Result<Option<ComplaintCategory>, ()> {
    use pb::complaint::Category as P;
    match P::try_from(value).map_err(|_| ())? {
        P::Unspecified => Ok(None),
        known => ComplaintCategory::parse(known.as_str_name())
            .map(Some)
            .ok_or(()),
    }
}

pub(super) fn category_to(category: Option<ComplaintCategory>) -> pb::complaint::Category {
    use pb::complaint::Category as P;
    category
        .and_then(|c| P::from_str_name(c.as_str()))
        .unwrap_or(P::Unspecified)
}

pub fn complaint_to(complaint: &Complaint, now: DateTime<Utc>) -> pb::Complaint {
    use pb::complaint::{Severity as S, State as P};
    pb::Complaint {
        state: match complaint.state {
            ComplaintState::Open => P::Open,
            ComplaintState::InProgress => P::InProgress,
            ComplaintState::Resolved => P::Resolved,
            ComplaintState::Closed => P::Closed,
        } as i32,
        severity: match complaint.severity {
            Severity::Low => S::Low,
            Severity::Medium => S::Medium,
            Severity::High => S::High,
            Severity::Critical => S::Critical,
        } as i32,
        due_time: Some(timestamp(complaint.due_time)),
        resolution: complaint.resolution.clone(),
        resolve_time: complaint.resolve_time.map(timestamp),
        close_time: complaint.close_time.map(timestamp),
        overdue: complaint.is_overdue(now),
        category: category_to(complaint.category) as i32,
        product: complaint.product.clone(),
        root_cause: complaint.root_cause.clone(),
        assignee: complaint.assignee.clone(),
        reopen_count: complaint.reopen_count,
        reopen_reason: complaint.reopen_reason.clone(),
    }
}

/// The wire form of an interaction; `now` tells whether its complaint is
/// overdue.
pub fn interaction_to(interaction: &Interaction, now: DateTime<Utc>) -> pb::Interaction {
    let f = &interaction.fields;
    pb::Interaction {
        name: interaction.name(),
        channel: channel_to(f.channel) as i32,
        kind: kind_to(f.kind) as i32,
        occur_time: Some(timestamp(f.occur_time)),
        recorded_by: Some(pb::RecordedBy {
            employee: f.recorded_by.employee.clone(),
            team: f.recorded_by.team.clone(),
            branch: f.recorded_by.branch.clone(),
        }),
        summary: f.summary.clone(),
        notes: f.notes.clone(),
        products: f.products.clone(),
        amount: f.amount.as_ref().map(|m| pb::Money {
            currency_code: m.currency_code.clone(),
            units: m.units,
            nanos: m.nanos,
        }),
        campaign: f.campaign.clone(),
        outcome: f.outcome.clone(),
        sentiment: match f.sentiment {
            None => pb::interaction::Sentiment::Unspecified,
            Some(Sentiment::Positive) => pb::interaction::Sentiment::Positive,
            Some(Sentiment::Neutral) => pb::interaction::Sentiment::Neutral,
            Some(Sentiment::Negative) => pb::interaction::Sentiment::Negative,
        } as i32,
        satisfaction: f.satisfaction.map(i32::from),
        nps: f.nps.map(i32::from),
        external_ref: f.external_ref.clone(),
        source_system: f.source_system.clone(),
        complaint: f.complaint.as_ref().map(|c| complaint_to(c, now)),
        // Read when logging only: the request is a resource of its own.
        service_request: None,
        etag: interaction.etag(),
        create_time: Some(timestamp(interaction.create_time)),
        update_time: Some(timestamp(interaction.update_time)),
        ..void_record(interaction)
    }
}

/// Only the void record of an interaction and where it belongs: what a
/// watcher gets of a VOIDED or SUPERSEDED one, none of what it said.
pub fn void_record(interaction: &Interaction) -> pb::Interaction {
    let name_of = |id: &str| {
        if id.is_empty() {
            String::new()
        } else {
            rules::interaction_name(&interaction.customer, id)
        }
    };
    let void = interaction.void.as_ref();
    pb::Interaction {
        name: interaction.name(),
        etag: interaction.etag(),
        update_time: Some(timestamp(interaction.update_time)),
        void_time: void.map(|v| timestamp(v.time)),
        void_reason: void.map(|v| v.reason.clone()).unwrap_or_default(),
        voided_by: void.map(|v| v.by.clone()).unwrap_or_default(),
        superseded_by: void.map(|v| name_of(&v.superseded_by)).unwrap_or_default(),
        corrects: name_of(&interaction.corrects),
        ..Default::default()
    }
}

/// The wire form of a follow-up; `now` tells whether it is overdue.
pub fn follow_up_to(task: &FollowUp, now: DateTime<Utc>) -> pb::FollowUp {
    pb::FollowUp {
        name: format!("customers/{}/followUps/{}", task.customer.as_str(), task.id),
        assignee: task.assignee.clone(),
        branch: task.branch.clone(),
        due_time: Some(timestamp(task.due_time)),
        state: match task.state {
            FollowUpState::Scheduled => pb::follow_up::State::Scheduled,
            FollowUpState::Completed => pb::follow_up::State::Completed,
            FollowUpState::Cancelled => pb::follow_up::State::Cancelled,
        } as i32,
        purpose: task.purpose.clone(),
        channel: task.channel.map(channel_to).unwrap_or_default() as i32,
        source_interaction: task.source_interaction.clone(),
        completion_interaction: task.completion_interaction.clone(),
        complete_time: task.complete_time.map(timestamp),
        created_by: task.created_by.clone(),
        overdue: task.state == FollowUpState::Scheduled && task.due_time < now,
        etag: crate::domain::customer::etag(task.version),
        create_time: Some(timestamp(task.create_time)),
        update_time: Some(timestamp(task.update_time)),
        cancel_reason: task.cancel_reason.clone(),
        cancel_time: task.cancel_time.map(timestamp),
        recurrence: task
            .recurrence
            .is_recurring()
            .then_some(pb::FollowUpRecurrence {
                every_days: task.recurrence.days as i32,
                every_months: task.recurrence.months as i32,
            }),
    }
}

/// An interaction as the caller may see it: a system acting for the end
/// customer gets no internal notes, outcome, campaign, sentiment (a risk
/// signal), staff identities (nor a complaint's assignee) or the root cause
/// the bank found for a complaint.
pub fn for_caller(interaction: pb::Interaction, caller: &Principal) -> pb::Interaction {
    if acting_for(caller).is_none() {
        return interaction;
    }
    // Entries staff made by hand are filed under `staff:<employee>`: an
    // employee id the end customer's channel must not see.
    let source_system = if interaction.source_system.starts_with("staff:") {
        String::new()
    } else {
        interaction.source_system.clone()
    };
    let external_ref = if source_system.is_empty() {
        String::new()
    } else {
        interaction.external_ref.clone()
    };
    pb::Interaction {
        notes: String::new(),
        outcome: String::new(),
        campaign: String::new(),
        sentiment: 0,
        recorded_by: None,
        voided_by: String::new(),
        complaint: interaction.complaint.map(|c| pb::Complaint {
            assignee: String::new(),
            root_cause: String::new(),
            ..c
        }),
        source_system,
        external_ref,
        ..interaction
    }
}
