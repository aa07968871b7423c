//! Customer value and what to do about it: the segmentation model (RFM over a
//! window, the customer pyramid's shares), churn risk from explainable
//! signals, relationship types, satisfaction (CSAT and NPS) and next-best
//! actions. The set-based SQL of a segmentation (`store::segments`) applies
//! the churn and relationship rules with the parameters defined here, and
//! records which signals it found; this module explains them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};

use super::customer::Tier;

/// Bumped whenever a rule below changes meaning.
pub const MODEL_VERSION: &str = "ck-rules-2";

/// Next-best actions shown at most.
pub const MAX_ACTIONS: usize = 5;

/// The segmentation's parameters (configuration `[insights]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentModel {
    pub window_months: u32,
    pub reporting_currency: String,
    /// Rates to the reporting currency (1 unit of the key = rate units).
    pub fx_rates: BTreeMap<String, f64>,
    pub shares: TierShares,
    pub rules: Rules,
}

/// The shares of customers in the top three tiers; SMALL takes the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierShares {
    pub vip: f64,
    pub major: f64,
    pub ordinary: f64,
}

impl TierShares {
    pub fn check(&self) -> Result<(), String> {
        let all = [self.vip, self.major, self.ordinary];
        if all.iter().any(|s| !(0.0..=1.0).contains(s)) || all.iter().sum::<f64>() > 1.0 {
            return Err("tier shares must each be between 0 and 1 and sum to at most 1".into());
        }
        Ok(())
    }
}

/// The churn and relationship rules' thresholds and weights. Serialized as
/// is into the segmentation's SQL and stored with each run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// The period churn speaks of, and the "recent" window of its signals.
    pub horizon_days: u32,
    /// `long_inactivity`: days since the last transaction above this many
    /// times the customer's usual interval between transactions…
    pub inactivity_factor: f64,
    /// …and above this many days.
    pub inactivity_min_days: f64,
    /// `declining_frequency`: transactions of the last period below this
    /// share of the period before.
    pub declining_ratio: f64,
    /// `low_satisfaction`: a mean CSAT below this over the last period.
    pub low_csat: f64,
    /// `low_nps`: an NPS below this over the last period.
    pub low_nps: f64,
    pub weight_long_inactivity: f64,
    pub weight_declining_frequency: f64,
    pub weight_unresolved_complaint: f64,
    pub weight_repeated_complaints: f64,
    pub weight_low_satisfaction: f64,
    pub weight_low_nps: f64,
    pub weight_withdrawn_consent: f64,
    /// RELATIONAL: at least this tenure, products and months with contact.
    pub relational_min_tenure_days: u32,
    pub relational_min_products: u32,
    pub relational_min_contact_months: u32,
}

impl Rules {
    pub fn check(&self) -> Result<(), String> {
        let weights = [
            self.weight_long_inactivity,
            self.weight_declining_frequency,
            self.weight_unresolved_complaint,
            self.weight_repeated_complaints,
            self.weight_low_satisfaction,
            self.weight_low_nps,
            self.weight_withdrawn_consent,
        ];
        if weights.iter().any(|w| !(0.0..=100.0).contains(w)) {
            return Err("churn weights must each be between 0 and 100 points".into());
        }
        if self.horizon_days == 0 || self.horizon_days > 3650 {
            return Err("the churn horizon must be 1 to 3650 days".into());
        }
        if !(self.inactivity_factor > 0.0 && self.declining_ratio > 0.0) {
            return Err("inactivity_factor and declining_ratio must be positive".into());
        }
        Ok(())
    }

    fn weight(&self, code: SignalCode) -> f64 {
        match code {
            SignalCode::LongInactivity => self.weight_long_inactivity,
            SignalCode::DecliningFrequency => self.weight_declining_frequency,
            SignalCode::UnresolvedComplaint => self.weight_unresolved_complaint,
            SignalCode::RepeatedComplaints => self.weight_repeated_complaints,
            SignalCode::LowSatisfaction => self.weight_low_satisfaction,
            SignalCode::LowNps => self.weight_low_nps,
            SignalCode::WithdrawnConsent => self.weight_withdrawn_consent,
        }
    }
}

impl SegmentModel {
    /// The window of a segmentation at `as_of`: `window_months` back.
    pub fn window_start(&self, as_of: DateTime<Utc>, months: u32) -> DateTime<Utc> {
        as_of
            .checked_sub_months(Months::new(months))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

string_enum!(
    /// A churn signal's stable code.
    SignalCode {
        LongInactivity = "long_inactivity",
        DecliningFrequency = "declining_frequency",
        UnresolvedComplaint = "unresolved_complaint",
        RepeatedComplaints = "repeated_complaints",
        LowSatisfaction = "low_satisfaction",
        LowNps = "low_nps",
        WithdrawnConsent = "withdrawn_consent",
    }
);

string_enum!(
    /// How a customer relates to the bank.
    RelationshipType {
        OneTime = "ONE_TIME",
        Transactional = "TRANSACTIONAL",
        Relational = "RELATIONAL",
        Partner = "PARTNER",
    }
);

/// The coarse level of a churn score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Low,
    Medium,
    High,
}

impl Level {
    pub fn of(score: f64) -> Level {
        if score >= 60.0 {
            Level::High
        } else if score >= 30.0 {
            Level::Medium
        } else {
            Level::Low
        }
    }

    /// The lowest score of the level.
    pub fn floor(self) -> f64 {
        match self {
            Level::Low => 0.0,
            Level::Medium => 30.0,
            Level::High => 60.0,
        }
    }
}

/// CSAT and NPS answers over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Answers {
    pub csat_sum: i64,
    pub csat_count: i64,
    pub promoters: i64,
    pub passives: i64,
    pub detractors: i64,
}

impl Answers {
    pub fn nps_count(&self) -> i64 {
        self.promoters + self.passives + self.detractors
    }

    /// The mean CSAT; None without answers.
    pub fn csat_average(&self) -> Option<f64> {
        (self.csat_count > 0).then(|| self.csat_sum as f64 / self.csat_count as f64)
    }

    /// % promoters (9–10) − % detractors (0–6); None without answers.
    pub fn nps(&self) -> Option<f64> {
        nps(self.promoters, self.detractors, self.nps_count())
    }
}

/// The Net Promoter Score of `count` answers.
pub fn nps(promoters: i64, detractors: i64, count: i64) -> Option<f64> {
    (count > 0).then(|| 100.0 * (promoters - detractors) as f64 / count as f64)
}

/// What a segmentation recorded of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFacts {
    pub as_of: DateTime<Utc>,
    pub compute_time: DateTime<Utc>,
    pub window_months: u32,
    pub last_transaction: Option<DateTime<Utc>>,
    pub transaction_count: i64,
    /// In the reporting currency.
    pub monetary: f64,
    pub scores: Option<(i16, i16, i16)>,
    pub tier: Tier,
    pub value_rank: i64,
    pub lifetime_transactions: i64,
    pub first_ever_transaction: Option<DateTime<Utc>>,
    pub last_ever_transaction: Option<DateTime<Utc>>,
    pub product_count: i32,
    pub contact_months: i32,
    pub linked: bool,
    pub relationship: Option<RelationshipType>,
    pub recent_count: i64,
    pub previous_count: i64,
    pub open_complaints: i64,
    pub recent_complaints: i64,
    pub answers: Answers,
    pub withdrawn_consents: i64,
    pub churn_score: f64,
    pub churn_signals: Vec<SignalCode>,
    /// The rules the run used.
    pub rules: Rules,
    pub reporting_currency: String,
}

/// One explained churn signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub code: SignalCode,
    pub description: String,
    pub weight: f64,
    pub value: f64,
    pub threshold: f64,
}

/// A churn risk with the signals behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnRisk {
    pub score: f64,
    pub level: Level,
    pub signals: Vec<Signal>,
    pub horizon_days: u32,
    pub assess_time: DateTime<Utc>,
}

fn days(d: Duration) -> f64 {
    d.num_seconds() as f64 / 86_400.0
}

impl SegmentFacts {
    /// The customer's usual days between transactions, from every
    /// transaction before `as_of`; None with fewer than two.
    pub fn usual_interval_days(&self) -> Option<f64> {
        match (self.first_ever_transaction, self.last_ever_transaction) {
            (Some(first), Some(last)) if self.lifetime_transactions >= 2 => {
                Some(days(last - first) / (self.lifetime_transactions - 1) as f64)
            }
            _ => None,
        }
    }

    pub fn days_since_last_transaction(&self) -> Option<f64> {
        self.last_ever_transaction.map(|t| days(self.as_of - t))
    }

    /// The risk the run scored, with each signal it found explained by its
    /// value, threshold and weight.
    pub fn churn(&self) -> ChurnRisk {
        let rules = &self.rules;
        let horizon = rules.horizon_days;
        let mut signals: Vec<Signal> = self
            .churn_signals
            .iter()
            .map(|&code| {
                let (value, threshold, description) = match code {
                    SignalCode::LongInactivity => {
                        let since = self.days_since_last_transaction().unwrap_or(0.0);
                        let usual = self.usual_interval_days().unwrap_or(0.0);
                        let threshold = (rules.inactivity_factor * usual).max(rules.inactivity_min_days);
                        (
                            since.floor(),
                            threshold.ceil(),
                            format!(
                                "no transaction for {:.0} days; usually one every {:.0} days",
                                since.floor(),
                                usual.ceil()
                            ),
                        )
                    }
                    SignalCode::DecliningFrequency => (
                        self.recent_count as f64,
                        rules.declining_ratio * self.previous_count as f64,
                        format!(
                            "{} transactions in the last {horizon} days against {} in the {horizon} before",
                            self.recent_count, self.previous_count
                        ),
                    ),
                    SignalCode::UnresolvedComplaint => (
                        self.open_complaints as f64,
                        1.0,
                        format!("{} complaint(s) not yet resolved", self.open_complaints),
                    ),
                    SignalCode::RepeatedComplaints => (
                        self.recent_complaints as f64,
                        2.0,
                        format!(
                            "{} complaints in the last {} days",
                            self.recent_complaints,
                            2 * horizon
                        ),
                    ),
                    SignalCode::LowSatisfaction => {
                        let avg = self.answers.csat_average().unwrap_or(0.0);
                        (
                            avg,
                            rules.low_csat,
                            format!("mean CSAT {avg:.1} over the last {horizon} days"),
                        )
                    }
                    SignalCode::LowNps => {
                        let nps = self.answers.nps().unwrap_or(0.0);
                        (
                            nps,
                            rules.low_nps,
                            format!("NPS {nps:.0} over the last {horizon} days"),
                        )
                    }
                    SignalCode::WithdrawnConsent => (
                        self.withdrawn_consents as f64,
                        1.0,
                        format!("{} consent(s) withdrawn", self.withdrawn_consents),
                    ),
                };
                Signal {
                    code,
                    description,
                    weight: rules.weight(code),
                    value,
                    threshold,
                }
            })
            .collect();
        signals.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        ChurnRisk {
            score: self.churn_score,
            level: Level::of(self.churn_score),
            signals,
            horizon_days: horizon,
            assess_time: self.compute_time,
        }
    }

    /// Why the run chose the relationship type, without PII.
    pub fn relationship_reasons(&self) -> Vec<String> {
        let rules = &self.rules;
        let tenure = self
            .first_ever_transaction
            .map(|t| days(self.as_of - t).floor())
            .unwrap_or(0.0);
        match self.relationship {
            None => vec!["no transaction yet".into()],
            Some(RelationshipType::Partner) => {
                vec!["linked to other customers (household, spouse, guarantor or director)".into()]
            }
            Some(RelationshipType::OneTime) => vec!["a single transaction so far".into()],
            Some(kind) => {
                let mut reasons = vec![
                    format!(
                        "{} transactions since the first, {tenure:.0} days ago (relational from {} days)",
                        self.lifetime_transactions, rules.relational_min_tenure_days
                    ),
                    format!(
                        "{} product(s) in the window (relational from {})",
                        self.product_count, rules.relational_min_products
                    ),
                    format!(
                        "contact in {} month(s) of the window besides transactions (relational from {})",
                        self.contact_months, rules.relational_min_contact_months
                    ),
                ];
                if kind == RelationshipType::Relational {
                    reasons.insert(
                        0,
                        "long tenure, several products and regular contact".into(),
                    );
                }
                reasons
            }
        }
    }
}

/// A product fit for the customer's peers (same tier and RFM cell).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductFit {
    pub product: String,
    /// Peers holding it.
    pub holders: i64,
    pub group_size: i64,
    pub bank_holders: i64,
    pub bank_size: i64,
}

impl ProductFit {
    /// How much more common the product is among peers than in the bank.
    pub fn lift(&self) -> f64 {
        if self.group_size == 0 || self.bank_holders == 0 || self.bank_size == 0 {
            return 0.0;
        }
        (self.holders as f64 / self.group_size as f64)
            / (self.bank_holders as f64 / self.bank_size as f64)
    }
}

string_enum!(
    /// The kinds of next-best action.
    ActionKind {
        RetentionContact = "RETENTION_CONTACT",
        ServiceRecovery = "SERVICE_RECOVERY",
        OfferProduct = "OFFER_PRODUCT",
        ScheduleFollowUp = "SCHEDULE_FOLLOW_UP",
        UpdateProfile = "UPDATE_PROFILE",
        ReviewKnowledge = "REVIEW_KNOWLEDGE",
    }
);

/// Which consent an offer rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferConsent {
    CrossSell,
    Marketing,
}

/// A suggested next step.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: String,
    pub kind: ActionKind,
    pub title: String,
    pub product: String,
    pub reasons: Vec<String>,
    pub score: f64,
    pub consent: Option<OfferConsent>,
    pub lift: f64,
    pub support: i64,
    pub expire_time: DateTime<Utc>,
    pub knowledge_items: Vec<String>,
}

/// What the actions are chosen from, as of one call.
#[derive(Debug, Clone)]
pub struct ActionInputs<'a> {
    pub customer_id: &'a str,
    pub now: DateTime<Utc>,
    pub churn: Option<&'a ChurnRisk>,
    /// Open complaints: (interaction id, hours overdue, if overdue).
    pub open_complaints: Vec<(String, Option<i64>)>,
    pub scheduled_follow_ups: usize,
    pub profile_update_time: DateTime<Utc>,
    pub profile_incomplete: bool,
    pub stale_knowledge: Vec<String>,
    /// Product fits of the peer group, best first, without the customer's
    /// own products and those declined within the quiet period.
    pub fits: Vec<ProductFit>,
    /// The consent offers may rest on; None: none granted.
    pub offer_consent: Option<OfferConsent>,
    pub profile_stale_days: i64,
    pub action_ttl: Duration,
}

/// A stable id of a suggestion: the same customer, kind and subject give the
/// same id for the rest of the suggestion's day.
fn action_id(customer: &str, kind: ActionKind, subject: &str, now: DateTime<Utc>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "{customer}|{}|{subject}|{}",
        kind.as_str(),
        now.date_naive()
    ));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The actions for a customer, best first, at most `MAX_ACTIONS`, and why
/// no product is offered when none is.
pub fn next_best_actions(inputs: &ActionInputs) -> (Vec<Action>, Option<String>) {
    let now = inputs.now;
    let expire_time = now + inputs.action_ttl;
    let action =
        |kind: ActionKind, subject: &str, title: String, reasons: Vec<String>, score: f64| Action {
            id: action_id(inputs.customer_id, kind, subject, now),
            kind,
            title,
            product: String::new(),
            reasons,
            score,
            consent: None,
            lift: 0.0,
            support: 0,
            expire_time,
            knowledge_items: Vec::new(),
        };
    let mut actions = Vec::new();
    if let Some(churn) = inputs.churn.filter(|c| c.level >= Level::Medium) {
        actions.push(action(
            ActionKind::RetentionContact,
            "",
            "Contact the customer to keep them".into(),
            churn
                .signals
                .iter()
                .map(|s| s.description.clone())
                .collect(),
            // Actions rank on 0–1; the churn score is in points.
            churn.score / 100.0,
        ));
    }
    for (id, overdue_hours) in &inputs.open_complaints {
        let (reason, score) = match overdue_hours {
            Some(h) => (format!("complaint overdue by {h} hours"), 0.95),
            None => ("complaint not yet resolved".to_string(), 0.7),
        };
        actions.push(action(
            ActionKind::ServiceRecovery,
            id,
            "Put the open complaint right".into(),
            vec![reason],
            score,
        ));
    }
    let mut withheld = None;
    match inputs.offer_consent {
        Some(consent) => {
            for fit in inputs.fits.iter().filter(|f| f.lift() > 1.0).take(2) {
                let lift = fit.lift();
                let mut offer = action(
                    ActionKind::OfferProduct,
                    &fit.product,
                    format!("Offer {}", fit.product),
                    vec![format!(
                        "held by {} of {} customers of the same tier and RFM cell, {lift:.1}× the bank's rate",
                        fit.holders, fit.group_size
                    )],
                    (0.4 + 0.1 * lift).min(0.8),
                );
                offer.product = fit.product.clone();
                offer.consent = Some(consent);
                offer.lift = lift;
                offer.support = fit.holders;
                actions.push(offer);
            }
        }
        None if !inputs.fits.is_empty() => {
            withheld = Some(
                "no product is offered: the customer has granted neither CROSS_SELL nor MARKETING consent"
                    .to_string(),
            );
        }
        None => {}
    }
    if inputs.scheduled_follow_ups == 0 {
        actions.push(action(
            ActionKind::ScheduleFollowUp,
            "",
            "Schedule a follow-up (回访)".into(),
            vec!["no follow-up is scheduled".into()],
            0.35,
        ));
    }
    let profile_age = (now - inputs.profile_update_time).num_days();
    if inputs.profile_incomplete || profile_age > inputs.profile_stale_days {
        let mut reasons = Vec::new();
        if profile_age > inputs.profile_stale_days {
            reasons.push(format!("profile last updated {profile_age} days ago"));
        }
        if inputs.profile_incomplete {
            reasons.push("no phone or email on file".into());
        }
        actions.push(action(
            ActionKind::UpdateProfile,
            "",
            "Update the customer's profile".into(),
            reasons,
            0.3,
        ));
    }
    if !inputs.stale_knowledge.is_empty() {
        let mut review = action(
            ActionKind::ReviewKnowledge,
            "",
            "Review stale knowledge about the customer".into(),
            vec![format!(
                "{} knowledge item(s) past their review date",
                inputs.stale_knowledge.len()
            )],
            0.25,
        );
        review.knowledge_items = inputs.stale_knowledge.clone();
        actions.push(review);
    }
    actions.sort_by(|a, b| b.score.total_cmp(&a.score));
    actions.truncate(MAX_ACTIONS);
    (actions, withheld)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nps_is_promoters_minus_detractors_in_percent() {
        // 10 answers: 5 promoters (9, 10), 2 passives (7, 8), 3 detractors.
        let scores = [10, 9, 9, 10, 9, 7, 8, 6, 0, 3];
        let answers = Answers {
            promoters: scores.iter().filter(|s| **s >= 9).count() as i64,
            passives: scores.iter().filter(|s| (7..=8).contains(*s)).count() as i64,
            detractors: scores.iter().filter(|s| **s <= 6).count() as i64,
            ..Answers::default()
        };
        assert_eq!(answers.nps(), Some(20.0));
        assert_eq!(Answers::default().nps(), None);
        assert_eq!(nps(0, 4, 4), Some(-100.0));
    }

    #[test]
    fn levels_follow_the_documented_cut_points() {
        assert_eq!(Level::of(0.0), Level::Low);
        assert_eq!(Level::of(29.9), Level::Low);
        assert_eq!(Level::of(30.0), Level::Medium);
        assert_eq!(Level::of(59.9), Level::Medium);
        assert_eq!(Level::of(60.0), Level::High);
        assert_eq!(Level::of(100.0), Level::High);
    }

    #[test]
    fn tier_shares_must_fit_in_the_whole() {
        let ok = TierShares {
            vip: 0.01,
            major: 0.04,
            ordinary: 0.15,
        };
        assert!(ok.check().is_ok());
        assert!(
            TierShares {
                vip: 0.5,
                major: 0.5,
                ordinary: 0.1
            }
            .check()
            .is_err()
        );
        assert!(
            TierShares {
                vip: -0.1,
                major: 0.0,
                ordinary: 0.0
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn lift_compares_peers_with_the_bank() {
        let fit = ProductFit {
            product: "FUND".into(),
            holders: 30,
            group_size: 100,
            bank_holders: 100,
            bank_size: 1000,
        };
        assert!((fit.lift() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn offers_need_consent_and_say_why_when_withheld() {
        let now = Utc::now();
        let fit = ProductFit {
            product: "FUND".into(),
            holders: 30,
            group_size: 100,
            bank_holders: 100,
            bank_size: 1000,
        };
        let mut inputs = ActionInputs {
            customer_id: "c1",
            now,
            churn: None,
            open_complaints: vec![],
            scheduled_follow_ups: 1,
            profile_update_time: now,
            profile_incomplete: false,
            stale_knowledge: vec![],
            fits: vec![fit],
            offer_consent: None,
            profile_stale_days: 365,
            action_ttl: Duration::days(7),
        };
        let (actions, withheld) = next_best_actions(&inputs);
        assert!(actions.is_empty());
        assert!(withheld.unwrap().contains("CROSS_SELL"));
        inputs.offer_consent = Some(OfferConsent::CrossSell);
        let (actions, withheld) = next_best_actions(&inputs);
        assert_eq!(withheld, None);
        assert_eq!(actions[0].kind, ActionKind::OfferProduct);
        assert_eq!(actions[0].product, "FUND");
        assert_eq!(actions[0].support, 30);
        // The same suggestion keeps its id within the day.
        assert_eq!(next_best_actions(&inputs).0[0].id, actions[0].id);
    }
}
