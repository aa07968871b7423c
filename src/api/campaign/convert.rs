//! Campaign requests read into domain values (every violation at once), and
//! campaigns and results back into proto.

use chrono::{DateTime, Utc};

use crate::{
    api::{
        from_timestamp,
        interaction::convert::{channel_from, channel_to},
        timestamp,
    },
    domain::{
        campaign::{
            self as rules, Activity, Campaign, CampaignState, Counts, ResponseOutcome, Target,
        },
        customer::{CustomerId, Tier, bounded_text, org_code, tag},
        interaction::Money,
    },
    error::Violations,
    pb::v1 as pb,
};

pub(super) fn tier_from(value: i32) -> Option<Tier> {
    use pb::customer::Tier as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Vip => Tier::Vip,
        P::Major => Tier::Major,
        P::Ordinary => Tier::Ordinary,
        P::Small => Tier::Small,
    })
}

pub(super) fn tier_to(tier: Option<Tier>) -> pb::customer::Tier {
    use pb::customer::Tier as P;
    match tier {
        None => P::Unspecified,
        Some(Tier::Vip) => P::Vip,
        Some(Tier::Major) => P::Major,
        Some(Tier::Ordinary) => P::Ordinary,
        Some(Tier::Small) => P::Small,
    }
}

pub(super) fn outcome_from(value: i32) -> Option<ResponseOutcome> {
    use pb::CampaignResponseOutcome as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Interested => ResponseOutcome::Interested,
        P::Accepted => ResponseOutcome::Accepted,
        P::Declined => ResponseOutcome::Declined,
        P::OptedOut => ResponseOutcome::OptedOut,
    })
}

pub(super) fn outcome_to(outcome: Option<ResponseOutcome>) -> pb::CampaignResponseOutcome {
    use pb::CampaignResponseOutcome as P;
    match outcome {
        None => P::Unspecified,
        Some(ResponseOutcome::Interested) => P::Interested,
        Some(ResponseOutcome::Accepted) => P::Accepted,
        Some(ResponseOutcome::Declined) => P::Declined,
        Some(ResponseOutcome::OptedOut) => P::OptedOut,
    }
}

pub(super) fn state_to(state: CampaignState) -> pb::campaign::State {
    match state {
        CampaignState::Planned => pb::campaign::State::Planned,
        CampaignState::Executing => pb::campaign::State::Executing,
    }
}

pub(super) fn money_to(m: &Money) -> pb::Money {
    pb::Money {
        currency_code: m.currency_code.clone(),
        units: m.units,
        nanos: m.nanos,
    }
}

/// A required, non-negative amount.
fn read_money(
    money: Option<&pb::Money>,
    field: &str,
    violations: &mut Violations,
) -> Option<Money> {
    let Some(m) = money else {
        violations.add(field, "is required");
        return None;
    };
    match Money::new(&m.currency_code, m.units, m.nanos) {
        Ok(m) if m.units < 0 || m.nanos < 0 => {
            violations.add(field, "must not be negative");
            None
        }
        Ok(m) => Some(m),
        Err((part, why)) => {
            violations.add(format!("{field}.{part}"), why);
            None
        }
    }
}

fn read_time(
    ts: Option<&prost_types::Timestamp>,
    field: &str,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    match ts {
        None => {
            violations.add(field, "is required");
            None
        }
        Some(ts) => from_timestamp(ts).or_else(|| {
            violations.add(field, "is not a valid time");
            None
        }),
    }
}

/// A campaign to create, from the request's `campaign` (output-only fields
/// ignored); `id`, `seed`, `created_by` and `now` come from the call.
pub(super) fn read_campaign(
    c: &pb::Campaign,
    id: String,
    seed: i64,
    created_by: String,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Option<Campaign> {
    let pb::Campaign {
        name: _,
        display_name,
        objective,
        products,
        budget,
        start_time,
        end_time,
        target,
        control_group_percent,
        conversion_window_days,
        seed: _,
        state: _,
        activities: _,
        planned_cost: _,
        created_by: _,
        execute_time: _,
        create_time: _,
        update_time: _,
    } = c;
    let display_name = if display_name.trim().is_empty() {
        violations.add("campaign.display_name", "is required");
        None
    } else {
        bounded_text(display_name, rules::MAX_DISPLAY_NAME)
            .inspect_err(|why| violations.add("campaign.display_name", why.clone()))
            .ok()
    };
    let objective = bounded_text(objective, rules::MAX_OBJECTIVE)
        .inspect_err(|why| violations.add("campaign.objective", why.clone()))
        .ok();
    if products.is_empty() || products.len() > rules::MAX_PRODUCTS {
        violations.add(
            "campaign.products",
            format!("must name 1 to {} products", rules::MAX_PRODUCTS),
        );
    }
    let mut codes = Vec::new();
    for (i, p) in products.iter().take(rules::MAX_PRODUCTS).enumerate() {
        match org_code(p, true) {
            Ok(p) if !codes.contains(&p) => codes.push(p),
            Ok(_) => violations.add(format!("campaign.products[{i}]"), "is named twice"),
            Err(why) => violations.add(format!("campaign.products[{i}]"), why),
        }
    }
    let budget = read_money(budget.as_ref(), "campaign.budget", violations);
    let start = read_time(start_time.as_ref(), "campaign.start_time", violations);
    let end = read_time(end_time.as_ref(), "campaign.end_time", violations);
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        violations.add("campaign.end_time", "must be after start_time");
    }
    let target = read_target(target.as_ref(), violations);
    if !(0..=rules::MAX_CONTROL_PERCENT).contains(control_group_percent) {
        violations.add(
            "campaign.control_group_percent",
            format!("must be 0 to {}", rules::MAX_CONTROL_PERCENT),
        );
    }
    let window = match *conversion_window_days {
        0 => rules::DEFAULT_WINDOW_DAYS,
        d => d,
    };
    if !(1..=rules::MAX_WINDOW_DAYS).contains(&window) {
        violations.add(
            "campaign.conversion_window_days",
            format!("must be 1 to {} (0: 30)", rules::MAX_WINDOW_DAYS),
        );
    }
    Some(Campaign {
        id,
        display_name: display_name?,
        objective: objective?,
        products: codes,
        budget: budget?,
        start_time: start?,
        end_time: end?,
        target: target?,
        control_percent: i16::try_from(*control_group_percent).ok()?,
        window_days: window,
        seed,
        state: CampaignState::Planned,
        activities: Vec::new(),
        created_by,
        execute_time: None,
        create_time: now,
        update_time: now,
    })
}

fn score(value: i32, field: &str, violations: &mut Violations) -> i16 {
    if (0..=5).contains(&value) {
        value as i16
    } else {
        violations.add(format!("campaign.target.{field}"), "must be 0 (any) to 5");
        0
    }
}

fn read_target(target: Option<&pb::CampaignTarget>, violations: &mut Violations) -> Option<Target> {
    let Some(pb::CampaignTarget {
        branch,
        tiers,
        min_recency_score,
        min_frequency_score,
        min_monetary_score,
        tags,
    }) = target
    else {
        violations.add("campaign.target", "is required");
        return None;
    };
    let branch = org_code(branch, false)
        .inspect_err(|why| violations.add("campaign.target.branch", why.clone()))
        .unwrap_or_default();
    let mut read_tiers = Vec::new();
    for (i, t) in tiers.iter().take(4).enumerate() {
        match tier_from(*t) {
            Some(t) if !read_tiers.contains(&t) => read_tiers.push(t),
            Some(_) => {}
            None => violations.add(
                format!("campaign.target.tiers[{i}]"),
                "must be VIP, MAJOR, ORDINARY or SMALL",
            ),
        }
    }
    if tiers.len() > 4 {
        violations.add(
            "campaign.target.tiers",
            "names at most the 4 tiers, once each",
        );
    }
    if tags.len() > rules::MAX_TARGET_TAGS {
        violations.add(
            "campaign.target.tags",
            format!("must hold at most {} tags", rules::MAX_TARGET_TAGS),
        );
    }
    let mut read_tags = Vec::new();
    for (i, t) in tags.iter().take(rules::MAX_TARGET_TAGS).enumerate() {
        match tag(t) {
            Ok(t) => read_tags.push(t),
            Err(why) => violations.add(format!("campaign.target.tags[{i}]"), why),
        }
    }
    Some(Target {
        branch,
        tiers: read_tiers,
        min_recency: score(*min_recency_score, "min_recency_score", violations),
        min_frequency: score(*min_frequency_score, "min_frequency_score", violations),
        min_monetary: score(*min_monetary_score, "min_monetary_score", violations),
        tags: read_tags,
    })
}

/// An activity to add.
pub(super) fn read_activity(
    a: Option<&pb::CampaignActivity>,
    violations: &mut Violations,
) -> Option<Activity> {
    let Some(pb::CampaignActivity {
        title,
        channel,
        cost,
        schedule_time,
    }) = a
    else {
        violations.add("activity", "is required");
        return None;
    };
    let title = if title.trim().is_empty() {
        violations.add("activity.title", "is required");
        None
    } else {
        bounded_text(title, rules::MAX_ACTIVITY_TITLE)
            .inspect_err(|why| violations.add("activity.title", why.clone()))
            .ok()
    };
    let channel = channel_from(*channel).or_else(|| {
        violations.add(
            "activity.channel",
            "must be a channel such as PHONE or EMAIL",
        );
        None
    });
    let cost = read_money(cost.as_ref(), "activity.cost", violations);
    let schedule_time = read_time(schedule_time.as_ref(), "activity.schedule_time", violations);
    Some(Activity {
        title: title?,
        channel: channel?,
        cost: cost?,
        schedule_time: schedule_time?,
    })
}

/// The customer id of a `customers/{id}` field.
pub(super) fn read_customer(
    name: &str,
    field: &str,
    violations: &mut Violations,
) -> Option<CustomerId> {
    CustomerId::from_name(name)
        .inspect_err(|why| violations.add(field, why.clone()))
        .ok()
}

pub(super) fn campaign_to(c: &Campaign) -> pb::Campaign {
    let planned = rules::money(&c.budget.currency_code, c.planned_nanos());
    pb::Campaign {
        name: c.name(),
        display_name: c.display_name.clone(),
        objective: c.objective.clone(),
        products: c.products.clone(),
        budget: Some(money_to(&c.budget)),
        start_time: Some(timestamp(c.start_time)),
        end_time: Some(timestamp(c.end_time)),
        target: Some(pb::CampaignTarget {
            branch: c.target.branch.clone(),
            tiers: c
                .target
                .tiers
                .iter()
                .map(|t| tier_to(Some(*t)) as i32)
                .collect(),
            min_recency_score: c.target.min_recency.into(),
            min_frequency_score: c.target.min_frequency.into(),
            min_monetary_score: c.target.min_monetary.into(),
            tags: c.target.tags.clone(),
        }),
        control_group_percent: c.control_percent.into(),
        conversion_window_days: c.window_days,
        seed: c.seed,
        state: state_to(c.state) as i32,
        activities: c
            .activities
            .iter()
            .map(|a| pb::CampaignActivity {
                title: a.title.clone(),
                channel: channel_to(a.channel) as i32,
                cost: Some(money_to(&a.cost)),
                schedule_time: Some(timestamp(a.schedule_time)),
            })
            .collect(),
        planned_cost: planned.as_ref().map(money_to),
        created_by: c.created_by.clone(),
        execute_time: c.execute_time.map(timestamp),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
    }
}

/// A contact as the contract shows it.
pub(crate) fn contact_to(
    campaign_id: &str,
    customer: &CustomerId,
    c: &crate::store::campaigns::Contact,
) -> pb::CampaignContact {
    pb::CampaignContact {
        campaign: rules::campaign_name(campaign_id),
        customer: customer.name(),
        interaction: c
            .interaction_id
            .as_deref()
            .map(|i| crate::domain::interaction::interaction_name(customer, i))
            .unwrap_or_default(),
        contact_time: Some(timestamp(c.contact_time)),
        outcome: outcome_to(c.outcome()) as i32,
        response_time: c.response_time.map(timestamp),
    }
}

pub(super) fn figures_to(counts: &Counts) -> pb::CampaignFigures {
    let rates = counts.rates();
    pb::CampaignFigures {
        contacted_count: counts.contacted,
        responded_count: counts.responded,
        converted_count: counts.converted,
        control_count: counts.control,
        control_converted_count: counts.control_converted,
        response_rate: rates.response,
        conversion_rate: rates.conversion,
        control_conversion_rate: rates.control_conversion,
        uplift: rates.uplift,
    }
}
