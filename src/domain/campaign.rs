//! Campaigns: the plan, its budget and activities, the target segment, the
//! control group draw and the figures the results are made of.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{customer::Tier, interaction::Channel, interaction::Money};

pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_OBJECTIVE: usize = 2000;
pub const MAX_PRODUCTS: usize = 20;
pub const MAX_TARGET_TAGS: usize = 10;
pub const MAX_ACTIVITIES: usize = 100;
pub const MAX_ACTIVITY_TITLE: usize = 200;
pub const MAX_CONTROL_PERCENT: i32 = 50;
pub const DEFAULT_WINDOW_DAYS: i32 = 30;
pub const MAX_WINDOW_DAYS: i32 = 365;
/// Consenting target customers one execution records at most, in one
/// transaction; a larger target is refused (narrow it, or split the
/// campaign by branch or tier).
pub const MAX_CONTACTS: i64 = 100_000;

string_enum!(
    /// Where a campaign stands in its cycle.
    CampaignState { Planned = "PLANNED", Executing = "EXECUTING" }
);
string_enum!(
    /// How a contacted customer answered.
    ResponseOutcome {
        Interested = "INTERESTED",
        Accepted = "ACCEPTED",
        Declined = "DECLINED",
        OptedOut = "OPTED_OUT",
    }
);

/// The customers a campaign is for; empty parts do not narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// '' for a bank-wide campaign.
    pub branch: String,
    pub tiers: Vec<Tier>,
    pub min_recency: i16,
    pub min_frequency: i16,
    pub min_monetary: i16,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub title: String,
    pub channel: Channel,
    pub cost: Money,
    pub schedule_time: DateTime<Utc>,
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: String,
    pub display_name: String,
    pub objective: String,
    pub products: Vec<String>,
    pub budget: Money,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub target: Target,
    pub control_percent: i16,
    pub window_days: i32,
    pub seed: i64,
    pub state: CampaignState,
    pub activities: Vec<Activity>,
    pub created_by: String,
    pub execute_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
    /// When it last changed: created, given an activity, executed.
    pub update_time: DateTime<Utc>,
}

impl Campaign {
    pub fn name(&self) -> String {
        campaign_name(&self.id)
    }

    /// The activities' total cost in nanos of the budget's currency.
    pub fn planned_nanos(&self) -> i128 {
        self.activities.iter().map(|a| nanos(&a.cost)).sum()
    }
}

pub fn campaign_name(id: &str) -> String {
    format!("campaigns/{id}")
}

/// The id of `campaigns/{id}`.
pub fn parse_campaign_name(name: &str) -> Result<String, String> {
    let id = name
        .strip_prefix("campaigns/")
        .ok_or_else(|| "must be campaigns/{id}".to_string())?;
    super::customer::CustomerId::parse(id)
        .map(|id| id.as_str().to_string())
        .map_err(|e| format!("must be campaigns/{{id}}: the id {e}"))
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// An amount in nanos (exact: i128 holds any Money).
pub fn nanos(money: &Money) -> i128 {
    i128::from(money.units) * NANOS_PER_UNIT + i128::from(money.nanos)
}

/// The Money of `nanos` in `currency`, or None when it does not fit.
pub fn money(currency: &str, nanos: i128) -> Option<Money> {
    let units = i64::try_from(nanos / NANOS_PER_UNIT).ok()?;
    let rest = i32::try_from(nanos % NANOS_PER_UNIT).ok()?;
    Some(Money {
        currency_code: currency.to_string(),
        units,
        nanos: rest,
    })
}

/// Splits the consenting target into (control, contacted): the customers
/// are ordered by SHA-256 of the seed and their id, and the first
/// `percent`% of them (rounded down) are the control group. The order
/// depends on nothing but the seed and the ids, so the same seed over the
/// same customers draws the same group, whatever order they came in.
pub fn draw_control<T>(
    seed: i64,
    percent: i16,
    customers: Vec<T>,
    id: impl Fn(&T) -> &str,
) -> (Vec<T>, Vec<T>) {
    let mut keyed: Vec<([u8; 32], T)> = customers
        .into_iter()
        .map(|c| {
            let mut hash = Sha256::new();
            hash.update(seed.to_be_bytes());
            hash.update(id(&c).as_bytes());
            (hash.finalize().into(), c)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| id(&a.1).cmp(id(&b.1))));
    let control = control_count(keyed.len(), percent);
    let mut contacted: Vec<T> = keyed.into_iter().map(|(_, c)| c).collect();
    let rest = contacted.split_off(control);
    (contacted, rest)
}

/// How many of `consenting` customers the control group holds.
pub fn control_count(consenting: usize, percent: i16) -> usize {
    consenting * usize::try_from(percent.clamp(0, 100)).unwrap_or(0) / 100
}

/// The counts of one group of a campaign's customers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub contacted: i64,
    pub responded: i64,
    pub converted: i64,
    pub control: i64,
    pub control_converted: i64,
}

/// The rates made of `Counts`; 0 where the denominator is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub response: f64,
    pub conversion: f64,
    pub control_conversion: f64,
    /// conversion − control_conversion.
    pub uplift: f64,
}

fn rate(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl Counts {
    pub fn rates(&self) -> Rates {
        let conversion = rate(self.converted, self.contacted);
        let control_conversion = rate(self.control_converted, self.control);
        Rates {
            response: rate(self.responded, self.contacted),
            conversion,
            control_conversion,
            uplift: conversion - control_conversion,
        }
    }
}

/// The cost of one conversion, truncated to nanos; None without one.
pub fn cost_per_conversion(cost: &Money, converted: i64) -> Option<Money> {
    if converted <= 0 {
        return None;
    }
    money(&cost.currency_code, nanos(cost) / i128::from(converted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_control_group_in_any_order() {
        let ids: Vec<String> = (0..40).map(|i| format!("c-{i}")).collect();
        let (control, contacted) = draw_control(7, 25, ids.clone(), |s| s.as_str());
        assert_eq!((control.len(), contacted.len()), (10, 30));
        let mut reversed = ids.clone();
        reversed.reverse();
        let (again, _) = draw_control(7, 25, reversed, |s| s.as_str());
        assert_eq!(control, again);
        let (other, _) = draw_control(8, 25, ids, |s| s.as_str());
        assert_ne!(control, other);
    }

    #[test]
    fn control_count_rounds_down() {
        assert_eq!(control_count(20, 25), 5);
        assert_eq!(control_count(9, 10), 0);
        assert_eq!(control_count(0, 50), 0);
    }

    #[test]
    fn uplift_and_cost_per_conversion() {
        let counts = Counts {
            contacted: 15,
            responded: 5,
            converted: 6,
            control: 5,
            control_converted: 1,
        };
        let rates = counts.rates();
        assert!((rates.conversion - 0.4).abs() < 1e-12);
        assert!((rates.control_conversion - 0.2).abs() < 1e-12);
        assert!((rates.uplift - 0.2).abs() < 1e-12);
        let cost = Money::new("CNY", 3000, 0).unwrap();
        assert_eq!(
            cost_per_conversion(&cost, 6),
            Some(Money::new("CNY", 500, 0).unwrap())
        );
        assert_eq!(
            cost_per_conversion(&Money::new("CNY", 10, 0).unwrap(), 3),
            Some(Money::new("CNY", 3, 333_333_333).unwrap())
        );
        assert_eq!(cost_per_conversion(&cost, 0), None);
        assert_eq!(Counts::default().rates(), Rates::default());
    }
}
