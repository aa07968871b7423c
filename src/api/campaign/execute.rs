//! Executing a campaign (the control-group draw and the contacts, appended as
//! PROMOTION interactions), recording responses, and the results.

use crate::domain::report::{CAMPAIGN_RESULTS, singleton_name, strip_singleton};
use chrono::{DateTime, Utc};

use super::{
    CampaignApi, campaign_id,
    convert::{contact_to, figures_to, money_to, outcome_from, read_customer, tier_to},
    read_reach, unreached, write_reach, wrong_state,
};
use crate::{
    api::{from_timestamp, interaction::convert::channel_from, request_key},
    domain::{
        campaign::{self as rules, CampaignState, Counts, campaign_name, draw_control},
        customer::{CustomerId, Tier},
        interaction::{Kind, MAX_FUTURE_SKEW, NewInteraction, RecordedBy},
        principal::{BranchScope, Principal, Role},
    },
    error::{Error, ErrorReason, Violations},
    pb::v1 as pb,
    store::{
        campaigns::{self, Group},
        interactions::{self, Appended},
    },
};

/// An optional time of the request: now when unset; never in the future.
/// Cut to microseconds, as Postgres keeps it, so that what is compared here
/// is what is stored.
fn stated_time(
    ts: Option<&prost_types::Timestamp>,
    field: &str,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let micros = |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros());
    let Some(ts) = ts else {
        return micros(now);
    };
    match from_timestamp(ts) {
        Some(t) if t > now + MAX_FUTURE_SKEW => {
            violations.add(field, "must not be in the future");
            None
        }
        Some(t) => micros(t).or_else(|| {
            violations.add(field, "is not a valid time");
            None
        }),
        None => {
            violations.add(field, "is not a valid time");
            None
        }
    }
}

/// Who a contact is recorded by: an employee is themselves; a calling
/// system records none.
fn recorded_by(caller: &Principal) -> RecordedBy {
    if caller.has(Role::Service) {
        RecordedBy::default()
    } else {
        RecordedBy {
            employee: caller.subject.clone(),
            team: caller.team.clone().unwrap_or_default(),
            branch: caller.branch.clone().unwrap_or_default(),
        }
    }
}

impl CampaignApi {
    pub(super) async fn generate_contacts(
        &self,
        caller: &Principal,
        req: pb::GenerateCampaignContactsRequest,
    ) -> Result<pb::GenerateCampaignContactsResponse, Error> {
        let scope = caller.customer_write_scope()?;
        let now = Utc::now();
        let mut violations = Violations::default();
        let id = campaign_id(&req.name, &mut violations);
        let channel = channel_from(req.channel).or_else(|| {
            violations.add("channel", "must be a channel such as PHONE or EMAIL");
            None
        });
        let contact_time = stated_time(
            req.contact_time.as_ref(),
            "contact_time",
            now,
            &mut violations,
        );
        let key = request_key(caller, &req)?;
        let ((id, channel), contact_time) =
            violations.into_value(id.zip(channel).zip(contact_time))?;
        let name = req.name.clone();
        let counts = |target, without, control, contacted| pb::GenerateCampaignContactsResponse {
            campaign: name.clone(),
            target_count: target,
            without_consent_count: without,
            control_count: control,
            contacted_count: contacted,
        };
        self.db
            .write(
                key.as_ref(),
                |r: &pb::GenerateCampaignContactsResponse| vec![r.campaign.clone()],
                async |tx, _| {
                    campaigns::get(tx, &id, write_reach(&scope), false)
                        .await?
                        .ok_or_else(|| unreached(&scope, &name))?;
                    let (target, without, control, contacted) =
                        campaigns::execution_counts(tx, &id).await?;
                    Ok(counts(target, without, control, contacted))
                },
                async |tx| {
                    let campaign = campaigns::get(tx, &id, write_reach(&scope), true)
                        .await?
                        .ok_or_else(|| unreached(&scope, &name))?;
                    if campaign.state != CampaignState::Planned {
                        return Err(wrong_state(
                            &name,
                            campaign.state,
                            "GenerateCampaignContacts",
                            "PLANNED",
                        ));
                    }
                    if campaign.activities.is_empty() {
                        return Err(Error::FailedPrecondition {
                            reason: ErrorReason::CampaignWithoutActivity,
                            message: format!(
                                "{name} has no activity planned: add one with AddCampaignActivity first"
                            ),
                        });
                    }
                    if contact_time < campaign.start_time || contact_time > campaign.end_time {
                        return Err(Error::invalid(
                            "contact_time",
                            "must be within the campaign's start_time and end_time",
                        ));
                    }
                    let (target, consenting) =
                        campaigns::count_target(tx, &campaign.target, scope.branch()).await?;
                    if consenting > rules::MAX_CONTACTS {
                        return Err(Error::FailedPrecondition {
                            reason: ErrorReason::CampaignTargetTooLarge,
                            message: format!(
                                "{name}: {consenting} consenting customers match the target, more than the {} one campaign contacts; narrow the target",
                                rules::MAX_CONTACTS
                            ),
                        });
                    }
                    let customers =
                        campaigns::consenting_target(tx, &campaign.target, scope.branch()).await?;
                    let consenting = customers.len() as i64;
                    let (control, contacted) = draw_control(
                        campaign.seed,
                        campaign.control_percent,
                        customers,
                        |c| c.id.as_str(),
                    );
                    let mut rows = Vec::with_capacity(contacted.len());
                    for c in &contacted {
                        let customer = CustomerId::parse(&c.id)
                            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
                        rows.push((
                            customer,
                            NewInteraction {
                                id: uuid::Uuid::now_v7().to_string(),
                                channel,
                                kind: Kind::Promotion,
                                occur_time: contact_time,
                                recorded_by: recorded_by(caller),
                                summary: format!("Campaign contact: {}", campaign.display_name),
                                notes: String::new(),
                                products: campaign.products.clone(),
                                amount: None,
                                campaign: campaign.name(),
                                outcome: String::new(),
                                sentiment: None,
                                satisfaction: None,
                                nps: None,
                                // A source no caller can write under (':' is
                                // not allowed in a system name), keyed by the
                                // campaign: one contact per customer at most.
                                source_system: format!("campaign:{}", campaign.id),
                                external_ref: "contact".into(),
                                complaint: None,
                                service_request: None,
                                occur_time_stated: true,
                            },
                        ));
                    }
                    let appended = interactions::append(tx, &rows, true).await?;
                    let mut recorded = Vec::with_capacity(contacted.len() + control.len());
                    let mut ids = Vec::with_capacity(appended.len());
                    for a in appended {
                        match a {
                            Appended::New(i) | Appended::Duplicate(i) => ids.push(i.fields.id),
                            Appended::Conflict(_) | Appended::Skipped => {
                                return Err(Error::Internal(anyhow::anyhow!(
                                    "a campaign contact was stored before"
                                )));
                            }
                        }
                    }
                    for (c, i) in contacted.iter().zip(&ids) {
                        recorded.push((c, Some(i.as_str())));
                    }
                    for c in &control {
                        recorded.push((c, None));
                    }
                    campaigns::record_execution(
                        tx,
                        &campaign,
                        contact_time,
                        (target, target - consenting),
                        &recorded,
                    )
                    .await?;
                    tracing::info!(
                        contacted = contacted.len(),
                        control = control.len(),
                        "campaign executed"
                    );
                    Ok(counts(
                        target,
                        target - consenting,
                        control.len() as i64,
                        contacted.len() as i64,
                    ))
                },
            )
            .await
    }

    pub(super) async fn record_response(
        &self,
        caller: &Principal,
        req: pb::RecordCampaignResponseRequest,
    ) -> Result<pb::CampaignContact, Error> {
        let scope = caller.customer_write_scope()?;
        let now = Utc::now();
        let mut violations = Violations::default();
        let id = campaign_id(&req.name, &mut violations);
        let customer = read_customer(&req.customer, "customer", &mut violations);
        let outcome = outcome_from(req.outcome).or_else(|| {
            violations.add(
                "outcome",
                "must be INTERESTED, ACCEPTED, DECLINED or OPTED_OUT",
            );
            None
        });
        let time = stated_time(
            req.response_time.as_ref(),
            "response_time",
            now,
            &mut violations,
        );
        let key = request_key(caller, &req)?;
        let (((id, customer), outcome), time) =
            violations.into_value(id.zip(customer).zip(outcome).zip(time))?;
        let name = req.name.clone();
        let shown = |c: &campaigns::Contact| contact_to(&id, &customer, c);
        self.db
            .write(
                key.as_ref(),
                |c: &pb::CampaignContact| vec![c.campaign.clone(), c.customer.clone()],
                async |tx, _| {
                    campaigns::get(tx, &id, read_reach(&scope), false)
                        .await?
                        .ok_or_else(|| unreached(&scope, &name))?;
                    let contact =
                        campaigns::contact(tx, &id, customer.as_str(), scope.branch())
                            .await?
                            .ok_or_else(|| Error::not_found(customer.name()))?;
                    Ok(shown(&contact))
                },
                async |tx| {
                    let campaign = campaigns::get(tx, &id, read_reach(&scope), false)
                        .await?
                        .ok_or_else(|| unreached(&scope, &name))?;
                    if campaign.state != CampaignState::Executing {
                        return Err(wrong_state(
                            &name,
                            campaign.state,
                            "RecordCampaignResponse",
                            "EXECUTING",
                        ));
                    }
                    let reachable =
                        interactions::lock_customers(tx, &[customer.as_str()], scope.branch())
                            .await?;
                    if reachable.is_empty() {
                        return Err(match &scope {
                            BranchScope::All => Error::not_found(customer.name()),
                            BranchScope::Branch(_) => {
                                Error::denied(format!("record a response of {}", customer.name()))
                            }
                        });
                    }
                    let contact = campaigns::contact(tx, &id, customer.as_str(), scope.branch())
                        .await?
                        .filter(|c| !c.in_control)
                        .ok_or_else(|| Error::FailedPrecondition {
                            reason: ErrorReason::NotCampaignContact,
                            message: format!(
                                "{} was not contacted by {name}: it was outside the consenting target or held back in the control group",
                                customer.name()
                            ),
                        })?;
                    if time < contact.contact_time {
                        return Err(Error::invalid(
                            "response_time",
                            "must not be before the customer was contacted",
                        ));
                    }
                    campaigns::record_response(tx, &id, customer.as_str(), outcome, time).await?;
                    Ok(shown(&campaigns::Contact {
                        response_outcome: Some(outcome.as_str().to_string()),
                        response_time: Some(time),
                        ..contact
                    }))
                },
            )
            .await
    }

    pub(super) async fn results(
        &self,
        caller: &Principal,
        name: &str,
    ) -> Result<pb::CampaignResults, Error> {
        let scope = caller.customer_read_scope()?;
        let name = strip_singleton(name, CAMPAIGN_RESULTS);
        let mut violations = Violations::default();
        let id = campaign_id(name, &mut violations);
        let id = violations.into_value(id)?;
        let mut conn = self.db.acquire().await?;
        let campaign = campaigns::get(&mut conn, &id, read_reach(&scope), false)
            .await?
            .ok_or_else(|| unreached(&scope, name))?;
        let rows = campaigns::results(&mut conn, &campaign, scope.branch()).await?;
        let mut total = Counts::default();
        let mut by_tier = Vec::new();
        let mut by_branch = Vec::new();
        for (group, counts) in rows {
            match group {
                Group::Total => total = counts,
                Group::Tier(tier) => {
                    let tier = tier.as_deref().and_then(Tier::parse);
                    by_tier.push((tier, counts));
                }
                Group::Branch(branch) => by_branch.push(pb::CampaignBranchFigures {
                    branch,
                    figures: Some(figures_to(&counts)),
                }),
            }
        }
        // Pyramid order, customers without a tier last.
        by_tier.sort_by_key(|(tier, _)| match tier {
            Some(t) => Tier::ALL
                .iter()
                .position(|x| x == t)
                .unwrap_or(Tier::ALL.len()),
            None => Tier::ALL.len(),
        });
        by_branch.sort_by(|a, b| a.branch.cmp(&b.branch));
        // A branch-bound reader of a bank-wide campaign sees part of its
        // customers: a share of the cost is not defined, so none is given.
        let whole = matches!(scope, BranchScope::All) || !campaign.target.branch.is_empty();
        let cost = whole
            .then(|| rules::money(&campaign.budget.currency_code, campaign.planned_nanos()))
            .flatten();
        let cost_per_conversion = cost
            .as_ref()
            .and_then(|c| rules::cost_per_conversion(c, total.converted));
        Ok(pb::CampaignResults {
            name: singleton_name(&campaign_name(&campaign.id), CAMPAIGN_RESULTS),
            campaign: campaign_name(&campaign.id),
            state: super::convert::state_to(campaign.state) as i32,
            total: Some(figures_to(&total)),
            cost: cost.as_ref().map(money_to),
            cost_per_conversion: cost_per_conversion.as_ref().map(money_to),
            by_tier: by_tier
                .into_iter()
                .map(|(tier, counts)| pb::CampaignTierFigures {
                    tier: tier_to(tier) as i32,
                    figures: Some(figures_to(&counts)),
                })
                .collect(),
            by_branch,
            conversion_window_days: campaign.window_days,
        })
    }
}
