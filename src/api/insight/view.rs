//! GetCustomer360: one customer from every side, as far as the caller may
//! see it. Every part is a bounded read on one connection (an index range
//! or the stored segmentation), so the call costs the same for a customer
//! with ten interactions as for one with a hundred thousand.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};

use super::{InsightApi, convert};
use crate::{
    api::{
        campaign::convert::contact_to,
        customer::{
            access::{parse_name, resolve},
            convert::customer_to_proto,
        },
        interaction::convert::{follow_up_to, for_caller, interaction_to},
        knowledge::convert::item_pb,
        timestamp,
    },
    domain::{
        customer::{ConsentPurpose, Customer},
        insight::{self, ActionInputs, Answers, MODEL_VERSION, OfferConsent},
        knowledge::{KnowledgeAccess, VerificationState},
        principal::Principal,
        report::{CUSTOMER_VIEW_360, singleton_name, strip_singleton},
        systems::check_acting_for,
    },
    error::Error,
    pb::v1 as pb,
    store::{
        campaigns,
        customers::{self, Lock},
        interactions::{self, TimelineQuery},
        knowledge, segments,
    },
};

/// The parts' sizes, as the contract states them.
const RECENT_INTERACTIONS: i64 = 20;
const OPEN_COMPLAINTS: i64 = 50;
const DUE_FOLLOW_UPS: i64 = 50;
const KNOWLEDGE_ITEMS: i64 = 10;
const CAMPAIGN_CONTACTS: i64 = 20;
/// The satisfaction summary's period, and the monthly trend's months.
const SATISFACTION_DAYS: i64 = 90;
const TREND_MONTHS: u32 = 12;

/// The consent an offer may rest on: CROSS_SELL first, else MARKETING.
fn offer_consent(customer: &Customer) -> Option<OfferConsent> {
    let granted = |purpose| {
        customer
            .consents
            .iter()
            .any(|c| c.purpose == purpose && c.granted)
    };
    if granted(ConsentPurpose::CrossSell) {
        Some(OfferConsent::CrossSell)
    } else if granted(ConsentPurpose::Marketing) {
        Some(OfferConsent::Marketing)
    } else {
        None
    }
}

/// The first instant of the month `months` before `now`'s month.
fn month_start(now: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    let first = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    first
        .checked_sub_months(chrono::Months::new(months))
        .unwrap_or(first)
}

fn satisfaction(
    current: &Answers,
    previous: &Answers,
    now: DateTime<Utc>,
) -> pb::SatisfactionSummary {
    let period = Duration::days(SATISFACTION_DAYS);
    let trend = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => a - b,
        _ => 0.0,
    };
    pb::SatisfactionSummary {
        current: Some(convert::window(current, now - period, now)),
        previous: Some(convert::window(
            previous,
            now - period - period,
            now - period,
        )),
        csat_trend: trend(current.csat_average(), previous.csat_average()),
        nps_trend: trend(current.nps(), previous.nps()),
    }
}

impl InsightApi {
    pub(super) async fn customer_360(
        &self,
        caller: &Principal,
        name: &str,
    ) -> Result<pb::Customer360, Error> {
        let scope = caller.customer_read_scope()?;
        let id = parse_name("name", strip_singleton(name, CUSTOMER_VIEW_360))?;
        check_acting_for(caller, id.as_str())?;
        let access = KnowledgeAccess::of(caller)?;
        let now = Utc::now();
        let mut conn = self.db.acquire_read().await?;
        let found = customers::get(&mut conn, &id, scope.branch(), Lock::None).await?;
        let customer = resolve(found, &scope, &id)?;
        let recent = interactions::timeline(
            &mut conn,
            &id,
            &TimelineQuery::default(),
            RECENT_INTERACTIONS,
        )
        .await?;
        let complaints = interactions::open_complaints(&mut conn, &id, OPEN_COMPLAINTS).await?;
        let follow_ups = interactions::scheduled_follow_ups(&mut conn, &id, DUE_FOLLOW_UPS).await?;
        let items =
            knowledge::useful_for_subject(&mut conn, &access, id.as_str(), KNOWLEDGE_ITEMS).await?;
        let facts = segments::customer_facts(&mut conn, id.as_str()).await?;
        // Which campaigns target a customer is the bank's, not the
        // customer's own channel's, to see.
        let contacts = if caller.on_behalf_of.is_some() {
            Vec::new()
        } else {
            campaigns::contacts_of(&mut conn, id.as_str(), CAMPAIGN_CONTACTS).await?
        };
        let period = Duration::days(SATISFACTION_DAYS);
        let current = segments::answers(&mut conn, id.as_str(), now - period, now).await?;
        let previous =
            segments::answers(&mut conn, id.as_str(), now - period - period, now - period).await?;
        let months =
            segments::monthly_answers(&mut conn, id.as_str(), month_start(now, TREND_MONTHS - 1))
                .await?;
        let fits = match &facts {
            Some(facts) => {
                let quiet = Duration::days(self.settings.offer_quiet_days);
                segments::product_fits(&mut conn, id.as_str(), facts, now - quiet).await?
            }
            None => Vec::new(),
        };
        drop(conn);

        let churn = facts.as_ref().map(insight::SegmentFacts::churn);
        let stale: Vec<String> = items
            .iter()
            .filter(|k| k.verification.as_of(now) == VerificationState::Stale)
            .map(|k| k.name())
            .collect();
        let profile = &customer.profile;
        let (actions, withheld) = insight::next_best_actions(&ActionInputs {
            customer_id: id.as_str(),
            now,
            churn: churn.as_ref(),
            open_complaints: complaints
                .iter()
                .map(|c| {
                    let overdue = c
                        .fields
                        .complaint
                        .as_ref()
                        .filter(|k| k.is_overdue(now))
                        .map(|k| (now - k.due_time).num_hours());
                    (c.fields.id.clone(), overdue)
                })
                .collect(),
            scheduled_follow_ups: follow_ups.len(),
            profile_update_time: customer.update_time,
            profile_incomplete: profile.pii.phone.is_empty() && profile.pii.email.is_empty(),
            stale_knowledge: stale,
            fits,
            offer_consent: offer_consent(&customer),
            profile_stale_days: self.settings.profile_stale_days,
            action_ttl: Duration::days(self.settings.action_ttl_days),
        });
        let knowledge_update_time = items.iter().map(|k| k.update_time).max();
        let profile = customer_to_proto(&customer, caller);
        Ok(pb::Customer360 {
            tier: profile.tier,
            rfm: profile.rfm,
            freshness: Some(pb::Freshness {
                profile_update_time: Some(timestamp(customer.update_time)),
                segment_compute_time: facts.as_ref().map(|f| timestamp(f.compute_time)),
                last_interaction_time: recent.first().map(|i| timestamp(i.fields.occur_time)),
                knowledge_update_time: knowledge_update_time.map(timestamp),
                assess_time: Some(timestamp(now)),
            }),
            name: singleton_name(&customer.id.name(), CUSTOMER_VIEW_360),
            customer: Some(profile),
            recent_interactions: recent
                .iter()
                .map(|i| for_caller(interaction_to(i, now), caller))
                .collect(),
            open_complaints: complaints
                .iter()
                .map(|i| for_caller(interaction_to(i, now), caller))
                .collect(),
            due_follow_ups: follow_ups.iter().map(|f| follow_up_to(f, now)).collect(),
            knowledge: items.iter().map(|k| item_pb(k, now)).collect(),
            satisfaction_trend: months
                .into_iter()
                .map(
                    |(month, csat_sum, csat_count, nps_sum, nps_count)| pb::SatisfactionPoint {
                        month,
                        average_satisfaction: if csat_count > 0 {
                            csat_sum as f64 / csat_count as f64
                        } else {
                            0.0
                        },
                        satisfaction_count: csat_count as i32,
                        average_nps: if nps_count > 0 {
                            nps_sum as f64 / nps_count as f64
                        } else {
                            0.0
                        },
                        nps_count: nps_count as i32,
                    },
                )
                .collect(),
            churn_risk: churn.as_ref().map(|c| convert::churn(c, MODEL_VERSION)),
            next_best_actions: actions.iter().map(convert::action).collect(),
            relationship_type: convert::relationship(facts.as_ref().and_then(|f| f.relationship))
                as i32,
            relationship_reasons: facts
                .as_ref()
                .map(insight::SegmentFacts::relationship_reasons)
                .unwrap_or_default(),
            segment: facts.as_ref().map(convert::facts),
            satisfaction: Some(satisfaction(&current, &previous, now)),
            offers_withheld_reason: withheld.unwrap_or_default(),
            campaign_contacts: contacts
                .iter()
                .map(|(campaign, c)| contact_to(campaign, &id, c))
                .collect(),
        })
    }
}
