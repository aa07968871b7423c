//! Reading and validating an interaction to log, collecting every field
//! violation at once.

use super::*;

/// Reads and validates an interaction to log, collecting violations under
/// `prefix` (e.g. `interaction` or `requests[3].interaction`).
/// `recorded_by` comes from the caller for employees; a service may state it.
/// The complaint and service-request SLAs and the source systems are the
/// service's (`api`).
pub(super) fn read_interaction(
    input: &pb::Interaction,
    id: Option<&str>,
    caller: &Principal,
    api: &InteractionApi,
    prefix: &str,
    violations: &mut Violations,
) -> NewInteraction {
    // Destructured so that a new proto field cannot be forgotten here.
    let pb::Interaction {
        name: _,
        channel,
        kind,
        occur_time,
        recorded_by,
        summary,
        notes,
        products,
        amount,
        campaign,
        outcome,
        sentiment,
        satisfaction,
        nps,
        external_ref,
        source_system,
        complaint,
        etag: _,
        create_time: _,
        update_time: _,
        void_time: _,
        void_reason: _,
        voided_by: _,
        superseded_by: _,
        corrects: _,
        service_request,
    } = input;
    let mut bad = |field: &str, why: String| violations.add(format!("{prefix}.{field}"), why);
    let now = Utc::now();
    let channel = channel_from(*channel).unwrap_or_else(|| {
        bad("channel", "is required: BRANCH, PHONE, MOBILE_APP, ONLINE_BANKING, EMAIL, SOCIAL_MEDIA, CHAT, ATM or FIELD_VISIT".into());
        Channel::Branch
    });
    let kind = kind_from(*kind).unwrap_or_else(|| {
        bad("kind", "is required: INQUIRY, TRANSACTION, COMPLAINT, SERVICE_REQUEST, PROMOTION, FOLLOW_UP or SURVEY".into());
        Kind::Inquiry
    });
    let occur_time = match occur_time {
        None => now,
        Some(ts) => match from_timestamp(ts) {
            Some(t) if t > now + rules::MAX_FUTURE_SKEW => {
                bad(
                    "occur_time",
                    "must not be more than 5 minutes in the future".into(),
                );
                now
            }
            Some(t) if t.timestamp() < -2_208_988_800 => {
                bad("occur_time", "must not be before 1900".into());
                now
            }
            Some(t) => t,
            None => {
                bad("occur_time", "is not a valid timestamp".into());
                now
            }
        },
    };
    let mut text = |field: &str, value: &str, max: usize| {
        rules::text(value, max).unwrap_or_else(|why| {
            bad(field, why);
            String::new()
        })
    };
    let summary = text("summary", summary, rules::MAX_SUMMARY);
    let notes = text("notes", notes, rules::MAX_NOTES);
    let campaign = text("campaign", campaign, rules::MAX_CAMPAIGN);
    let outcome = text("outcome", outcome, rules::MAX_OUTCOME);
    let mut bad = |field: &str, why: String| violations.add(format!("{prefix}.{field}"), why);
    if products.len() > rules::MAX_PRODUCTS {
        bad(
            "products",
            format!("must hold at most {}", rules::MAX_PRODUCTS),
        );
    }
    let products = products
        .iter()
        .take(rules::MAX_PRODUCTS)
        .enumerate()
        .filter_map(|(i, p)| {
            rules::product(p)
                .map_err(|why| bad(&format!("products[{i}]"), why))
                .ok()
        })
        .collect();
    let amount = amount.as_ref().and_then(|m| {
        Money::new(&m.currency_code, m.units, m.nanos)
            .map_err(|(part, why)| bad(&format!("amount.{part}"), why))
            .ok()
    });
    let sentiment = sentiment_from(*sentiment).unwrap_or_else(|_| {
        bad("sentiment", "must be POSITIVE, NEUTRAL or NEGATIVE".into());
        None
    });
    let satisfaction = satisfaction.and_then(|s| {
        if (1..=5).contains(&s) {
            Some(s as i16)
        } else {
            bad("satisfaction", "must be a CSAT score from 1 to 5".into());
            None
        }
    });
    let nps = nps.and_then(|n| {
        if (0..=10).contains(&n) {
            Some(n as i16)
        } else {
            bad("nps", "must be an NPS answer from 0 to 10".into());
            None
        }
    });
    let external_ref = rules::external_ref(external_ref).unwrap_or_else(|why| {
        bad("external_ref", why);
        String::new()
    });
    let source_system = if !caller.has(Role::Service) {
        if !source_system.is_empty() && *source_system != staff_source(&caller.subject) {
            bad(
                "source_system",
                "is for calling systems; staff entries are recorded under the employee's own source (leave it empty)".into(),
            );
        }
        staff_source(&caller.subject)
    } else if source_system.is_empty() {
        caller.subject.clone()
    } else {
        match org_code(source_system, true) {
            Ok(source) if api.sources.owns(&caller.subject, &source) => source,
            Ok(source) => {
                bad(
                    "source_system",
                    format!(
                        "{source} is another system's: a system writes only under its own name and its configured aliases"
                    ),
                );
                String::new()
            }
            Err(why) => {
                bad("source_system", why);
                String::new()
            }
        }
    };
    let recorded_by = if caller.has(Role::Service) {
        let stated = recorded_by.clone().unwrap_or_default();
        let mut code = |field: &str, value: &str| {
            org_code(value, false).unwrap_or_else(|why| {
                bad(&format!("recorded_by.{field}"), why);
                String::new()
            })
        };
        RecordedBy {
            employee: code("employee", &stated.employee),
            team: code("team", &stated.team),
            branch: code("branch", &stated.branch),
        }
    } else {
        RecordedBy {
            employee: caller.subject.clone(),
            team: caller.team.clone().unwrap_or_default(),
            branch: caller.branch.clone().unwrap_or_default(),
        }
    };
    let severity = complaint
        .as_ref()
        .map(|c| {
            severity_from(c.severity).unwrap_or_else(|_| {
                bad(
                    "complaint.severity",
                    "must be LOW, MEDIUM, HIGH or CRITICAL".into(),
                );
                None
            })
        })
        .unwrap_or_default();
    let given = complaint.clone().unwrap_or_default();
    let category = category_from(given.category).unwrap_or_else(|_| {
        bad(
            "complaint.category",
            "must be FEES, SERVICE_QUALITY, PRODUCT, DIGITAL_CHANNELS, STAFF_CONDUCT, FRAUD_DISPUTE or OTHER".into(),
        );
        None
    });
    let product = org_code(&given.product, false).unwrap_or_else(|why| {
        bad("complaint.product", why);
        String::new()
    });
    let assignee = org_code(&given.assignee, false).unwrap_or_else(|why| {
        bad("complaint.assignee", why);
        String::new()
    });
    let complaint = (kind == Kind::Complaint).then(|| {
        let severity = severity.unwrap_or(Severity::Medium);
        Complaint {
            category,
            product,
            assignee,
            ..Complaint::opened(severity, api.sla.due(severity, occur_time))
        }
    });
    // Like `complaint`, read on the kind it belongs to and ignored on others.
    let service_request = (kind == Kind::ServiceRequest).then(|| {
        let given = service_request.clone().unwrap_or_default();
        let priority = service_requests::priority_from(given.priority).unwrap_or_else(|| {
            bad(
                "service_request.priority",
                "must be LOW, MEDIUM, HIGH or URGENT".into(),
            );
            Priority::Medium
        });
        let assignee = org_code(&given.assignee, false).unwrap_or_else(|why| {
            bad("service_request.assignee", why);
            String::new()
        });
        api.service_sla.intake(priority, assignee)
    });
    let id = match id {
        None | Some("") => uuid::Uuid::now_v7().to_string(),
        Some(id) => CustomerId::parse(id)
            .map(|id| id.as_str().to_string())
            .unwrap_or_else(|why| {
                violations.add(
                    prefix.replace("interaction", "interaction_id"),
                    why.replace("must", "an interaction id must"),
                );
                String::new()
            }),
    };
    NewInteraction {
        id,
        channel,
        kind,
        occur_time_stated: input.occur_time.is_some(),
        occur_time,
        recorded_by,
        summary,
        notes,
        products,
        amount,
        campaign,
        outcome,
        sentiment,
        satisfaction,
        nps,
        source_system,
        external_ref,
        complaint,
        service_request,
    }
}

impl NewInteraction {
    /// Stands in for a row whose interaction is missing; never written.
    pub(super) fn placeholder() -> NewInteraction {
        NewInteraction {
            id: String::new(),
            channel: Channel::Branch,
            kind: Kind::Inquiry,
            occur_time: Utc::now(),
            recorded_by: RecordedBy::default(),
            summary: String::new(),
            notes: String::new(),
            products: Vec::new(),
            amount: None,
            campaign: String::new(),
            outcome: String::new(),
            sentiment: None,
            satisfaction: None,
            nps: None,
            source_system: String::new(),
            external_ref: String::new(),
            complaint: None,
            service_request: None,
            occur_time_stated: false,
        }
    }
}

/// A follow-up a request names (`customers/{c}/followUps/{f}`), with the
/// etag the caller last saw.
pub(super) struct FollowUpEdit {
    pub(super) customer: CustomerId,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) etag: String,
    pub(super) action: FollowUpAction,
}

/// What ReassignFollowUp or CancelFollowUp asks of a SCHEDULED follow-up.
pub(super) enum FollowUpAction {
    /// An empty branch keeps the current one; no due time keeps it too.
    Reassign {
        assignee: String,
        branch: String,
        due_time: Option<DateTime<Utc>>,
    },
    Cancel {
        reason: String,
    },
}

impl TryFrom<&pb::ReassignFollowUpRequest> for FollowUpEdit {
    type Error = Error;

    fn try_from(request: &pb::ReassignFollowUpRequest) -> Result<Self, Error> {
        let pb::ReassignFollowUpRequest {
            name,
            assignee,
            branch,
            due_time,
            etag,
            request_id: _,
        } = request;
        let mut violations = Violations::default();
        let target = rules::parse_child_name(name, "followUps")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let assignee = org_code(assignee, true)
            .inspect_err(|e| violations.add("assignee", e.clone()))
            .unwrap_or_default();
        let branch = org_code(branch, false)
            .inspect_err(|e| violations.add("branch", e.clone()))
            .unwrap_or_default();
        let due_time = due_time.as_ref().and_then(|ts| {
            from_timestamp(ts).or_else(|| {
                violations.add("due_time", "is not a valid timestamp");
                None
            })
        });
        let (customer, id) = violations.into_value(target)?;
        Ok(FollowUpEdit {
            customer,
            id,
            name: name.clone(),
            etag: etag.clone(),
            action: FollowUpAction::Reassign {
                assignee,
                branch,
                due_time,
            },
        })
    }
}

impl TryFrom<&pb::CancelFollowUpRequest> for FollowUpEdit {
    type Error = Error;

    fn try_from(request: &pb::CancelFollowUpRequest) -> Result<Self, Error> {
        let pb::CancelFollowUpRequest {
            name,
            reason,
            etag,
            request_id: _,
        } = request;
        let mut violations = Violations::default();
        let target = rules::parse_child_name(name, "followUps")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let reason = match rules::text(reason.trim(), rules::MAX_PURPOSE) {
            Ok(reason) if !reason.is_empty() => reason,
            Ok(_) => {
                violations.add("reason", "is required");
                String::new()
            }
            Err(why) => {
                violations.add("reason", why);
                String::new()
            }
        };
        let (customer, id) = violations.into_value(target)?;
        Ok(FollowUpEdit {
            customer,
            id,
            name: name.clone(),
            etag: etag.clone(),
            action: FollowUpAction::Cancel { reason },
        })
    }
}

/// An UpdateComplaint request, validated.
pub(super) struct ComplaintUpdate {
    pub(super) customer: CustomerId,
    pub(super) id: String,
    pub(super) name: String,
    /// None keeps the state.
    pub(super) state: Option<ComplaintState>,
    /// Empty keeps the resolution.
    pub(super) resolution: String,
    pub(super) due_time: Option<DateTime<Utc>>,
    pub(super) etag: String,
    /// None keeps the category; likewise empty text below keeps the field.
    pub(super) category: Option<ComplaintCategory>,
    pub(super) product: String,
    pub(super) root_cause: String,
    pub(super) assignee: String,
}

impl TryFrom<&pb::UpdateComplaintRequest> for ComplaintUpdate {
    type Error = Error;

    fn try_from(request: &pb::UpdateComplaintRequest) -> Result<Self, Error> {
        let pb::UpdateComplaintRequest {
            name,
            state,
            resolution,
            due_time,
            etag,
            request_id: _,
            category,
            product,
            root_cause,
            assignee,
        } = request;
        let mut violations = Violations::default();
        let target = rules::parse_child_name(name, "interactions")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let category = category_from(*category).unwrap_or_else(|_| {
            violations.add("category", "is not a complaint category");
            None
        });
        let product = org_code(product, false)
            .inspect_err(|e| violations.add("product", e.clone()))
            .unwrap_or_default();
        let root_cause = rules::text(root_cause, rules::MAX_ROOT_CAUSE)
            .inspect_err(|e| violations.add("root_cause", e.clone()))
            .unwrap_or_default();
        let assignee = org_code(assignee, false)
            .inspect_err(|e| violations.add("assignee", e.clone()))
            .unwrap_or_default();
        let state = match *state {
            0 => None,
            value => complaint_state_from(value).or_else(|| {
                violations.add("state", "must be OPEN, IN_PROGRESS, RESOLVED or CLOSED");
                None
            }),
        };
        let resolution = rules::text(resolution, rules::MAX_RESOLUTION)
            .inspect_err(|e| violations.add("resolution", e.clone()))
            .unwrap_or_default();
        let due_time = due_time.as_ref().and_then(|ts| {
            from_timestamp(ts).or_else(|| {
                violations.add("due_time", "is not a valid timestamp");
                None
            })
        });
        let (customer, id) = violations.into_value(target)?;
        Ok(ComplaintUpdate {
            customer,
            id,
            name: name.clone(),
            state,
            resolution,
            due_time,
            etag: etag.clone(),
            category,
            product,
            root_cause,
            assignee,
        })
    }
}

/// The complaint a Resolve, Close or Reopen request names, with the etag
/// the caller last saw.
pub(super) struct ComplaintTarget {
    pub(super) customer: CustomerId,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) etag: String,
}

impl ComplaintTarget {
    pub(super) fn read(
        name: &str,
        etag: &str,
        violations: &mut Violations,
    ) -> Option<ComplaintTarget> {
        let (customer, id) = rules::parse_child_name(name, "interactions")
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok()?;
        Some(ComplaintTarget {
            customer,
            id,
            name: name.to_string(),
            etag: etag.to_string(),
        })
    }
}

/// Required free text of at most `max` characters.
pub(super) fn required_text(
    value: &str,
    max: usize,
    field: &str,
    violations: &mut Violations,
) -> String {
    match rules::text(value.trim(), max) {
        Ok(text) if !text.is_empty() => text,
        Ok(_) => {
            violations.add(field, "is required");
            String::new()
        }
        Err(why) => {
            violations.add(field, why);
            String::new()
        }
    }
}
