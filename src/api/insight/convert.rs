//! Insight values to their wire form.

use chrono::{DateTime, Utc};

use crate::{
    api::{interval, timestamp},
    domain::{
        customer::Tier,
        insight::{
            Action, ActionKind, Answers, ChurnRisk, Level, OfferConsent, RelationshipType,
            SegmentFacts,
        },
    },
    pb::v1 as pb,
    store::segments::Run,
};

/// An amount in the reporting currency, to the cent.
pub fn money(currency: &str, value: f64) -> pb::Money {
    let cents = (value * 100.0).round() as i64;
    pb::Money {
        currency_code: currency.to_string(),
        units: cents / 100,
        nanos: ((cents % 100) * 10_000_000) as i32,
    }
}

pub use crate::api::customer::convert::tier_to_proto as tier;

pub fn tier_from(value: i32) -> Result<Option<Tier>, ()> {
    Ok(match pb::customer::Tier::try_from(value).map_err(|_| ())? {
        pb::customer::Tier::Unspecified => None,
        pb::customer::Tier::Vip => Some(Tier::Vip),
        pb::customer::Tier::Major => Some(Tier::Major),
        pb::customer::Tier::Ordinary => Some(Tier::Ordinary),
        pb::customer::Tier::Small => Some(Tier::Small),
    })
}

pub fn level_from(value: i32) -> Result<Option<Level>, ()> {
    use pb::churn_risk::Level as P;
    Ok(match P::try_from(value).map_err(|_| ())? {
        P::Unspecified => None,
        P::Low => Some(Level::Low),
        P::Medium => Some(Level::Medium),
        P::High => Some(Level::High),
    })
}

pub fn relationship(kind: Option<RelationshipType>) -> pb::RelationshipType {
    match kind {
        None => pb::RelationshipType::Unspecified,
        Some(RelationshipType::OneTime) => pb::RelationshipType::OneTime,
        Some(RelationshipType::Transactional) => pb::RelationshipType::Transactional,
        Some(RelationshipType::Relational) => pb::RelationshipType::Relational,
        Some(RelationshipType::Partner) => pb::RelationshipType::Partner,
    }
}

pub fn parameters(run: &Run) -> pb::SegmentParameters {
    pb::SegmentParameters {
        window_months: run.window_months,
        window_start_time: Some(timestamp(run.window_start)),
        window_end_time: Some(timestamp(run.as_of)),
        reporting_currency: run.reporting_currency.clone(),
        vip_share: run.vip_share,
        major_share: run.major_share,
        ordinary_share: run.ordinary_share,
    }
}

pub fn rfm(scores: Option<(i16, i16, i16)>) -> Option<pb::RfmScore> {
    scores.map(|(r, f, m)| pb::RfmScore {
        recency_score: r.into(),
        frequency_score: f.into(),
        monetary_score: m.into(),
    })
}

pub fn facts(facts: &SegmentFacts) -> pb::SegmentFacts {
    let currency = &facts.reporting_currency;
    let average = if facts.transaction_count > 0 {
        facts.monetary / facts.transaction_count as f64
    } else {
        0.0
    };
    pb::SegmentFacts {
        as_of: Some(timestamp(facts.as_of)),
        window_months: facts.window_months as i32,
        last_transaction_time: facts.last_transaction.map(timestamp),
        days_since_last_transaction: facts
            .last_transaction
            .map_or(-1, |t| (facts.as_of - t).num_days() as i32),
        transaction_count: facts.transaction_count,
        monetary_value: Some(money(currency, facts.monetary)),
        average_value: Some(money(currency, average)),
        rfm: rfm(facts.scores),
        tier: tier(Some(facts.tier)) as i32,
        value_rank: facts.value_rank,
        compute_time: Some(timestamp(facts.compute_time)),
    }
}

pub fn churn(risk: &ChurnRisk, model_version: &str) -> pb::ChurnRisk {
    pb::ChurnRisk {
        score: risk.score,
        level: match risk.level {
            Level::Low => pb::churn_risk::Level::Low,
            Level::Medium => pb::churn_risk::Level::Medium,
            Level::High => pb::churn_risk::Level::High,
        } as i32,
        signals: risk
            .signals
            .iter()
            .map(|s| pb::churn_risk::Signal {
                code: s.code.as_str().to_string(),
                description: s.description.clone(),
                weight: s.weight,
                value: s.value,
                threshold: s.threshold,
            })
            .collect(),
        horizon_days: risk.horizon_days as i32,
        model_version: model_version.to_string(),
        assess_time: Some(timestamp(risk.assess_time)),
    }
}

pub fn window(
    answers: &Answers,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> pb::SatisfactionWindow {
    pb::SatisfactionWindow {
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        interval: Some(interval(start, end)),
        csat_average: answers.csat_average().unwrap_or(0.0),
        csat_count: answers.csat_count as i32,
        nps: answers.nps().unwrap_or(0.0),
        nps_count: answers.nps_count() as i32,
        promoters: answers.promoters as i32,
        passives: answers.passives as i32,
        detractors: answers.detractors as i32,
    }
}

pub fn action(action: &Action) -> pb::NextBestAction {
    use pb::next_best_action::Kind as K;
    pb::NextBestAction {
        kind: match action.kind {
            ActionKind::RetentionContact => K::RetentionContact,
            ActionKind::ServiceRecovery => K::ServiceRecovery,
            ActionKind::OfferProduct => K::OfferProduct,
            ActionKind::ScheduleFollowUp => K::ScheduleFollowUp,
            ActionKind::UpdateProfile => K::UpdateProfile,
            ActionKind::ReviewKnowledge => K::ReviewKnowledge,
        } as i32,
        title: action.title.clone(),
        product: action.product.clone(),
        channel: 0,
        reasons: action.reasons.clone(),
        score: action.score,
        consent_purpose: match action.consent {
            None => pb::ConsentPurpose::Unspecified,
            Some(OfferConsent::CrossSell) => pb::ConsentPurpose::CrossSell,
            Some(OfferConsent::Marketing) => pb::ConsentPurpose::Marketing,
        } as i32,
        knowledge_items: action.knowledge_items.clone(),
        id: action.id.clone(),
        expire_time: Some(timestamp(action.expire_time)),
        lift: action.lift,
        support: action.support,
    }
}
