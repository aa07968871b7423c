//! Interactions: every contact between the bank and a customer, with the
//! complaints and follow-up tasks that hang on them.

use chrono::{DateTime, Duration, Utc};

use super::customer::{CustomerId, bounded_text, org_code};

pub const MAX_SUMMARY: usize = 500;
pub const MAX_NOTES: usize = 10_000;
pub const MAX_OUTCOME: usize = 1000;
pub const MAX_CAMPAIGN: usize = 128;
pub const MAX_PRODUCTS: usize = 20;
pub const MAX_EXTERNAL_REF: usize = 128;
pub const MAX_RESOLUTION: usize = 2000;
pub const MAX_PURPOSE: usize = 500;
pub const MAX_ROOT_CAUSE: usize = 1000;
pub const MAX_REOPEN_REASON: usize = 500;
/// How far in the future `occur_time` may lie (clock skew between systems).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// Interactions in one BatchLogInteractions call.
pub const MAX_BATCH: usize = 1000;

string_enum!(
    /// Where the contact happened.
    Channel {
        Branch = "BRANCH",
        Phone = "PHONE",
        MobileApp = "MOBILE_APP",
        OnlineBanking = "ONLINE_BANKING",
        Email = "EMAIL",
        SocialMedia = "SOCIAL_MEDIA",
        Chat = "CHAT",
        Atm = "ATM",
        FieldVisit = "FIELD_VISIT",
    }
);
string_enum!(
    /// What the contact was.
    Kind {
        Inquiry = "INQUIRY",
        Transaction = "TRANSACTION",
        Complaint = "COMPLAINT",
        ServiceRequest = "SERVICE_REQUEST",
        Promotion = "PROMOTION",
        FollowUp = "FOLLOW_UP",
        Survey = "SURVEY",
    }
);
string_enum!(
    /// The customer's mood as recorded.
    Sentiment { Positive = "POSITIVE", Neutral = "NEUTRAL", Negative = "NEGATIVE" }
);
string_enum!(
    /// Where a complaint stands.
    ComplaintState {
        Open = "OPEN",
        InProgress = "IN_PROGRESS",
        Resolved = "RESOLVED",
        Closed = "CLOSED",
    }
);
string_enum!(
    /// How serious a complaint is; sets its SLA.
    Severity { Low = "LOW", Medium = "MEDIUM", High = "HIGH", Critical = "CRITICAL" }
);
string_enum!(
    /// What a complaint is about, for reporting.
    ComplaintCategory {
        Fees = "FEES",
        ServiceQuality = "SERVICE_QUALITY",
        Product = "PRODUCT",
        DigitalChannels = "DIGITAL_CHANNELS",
        StaffConduct = "STAFF_CONDUCT",
        FraudDispute = "FRAUD_DISPUTE",
        Other = "OTHER",
    }
);
string_enum!(
    /// Where a follow-up task stands.
    FollowUpState { Scheduled = "SCHEDULED", Completed = "COMPLETED", Cancelled = "CANCELLED" }
);

impl ComplaintState {
    fn step(self) -> u8 {
        match self {
            ComplaintState::Open => 0,
            ComplaintState::InProgress => 1,
            ComplaintState::Resolved => 2,
            ComplaintState::Closed => 3,
        }
    }

    /// A complaint stays where it is or moves one step along
    /// OPEN → IN_PROGRESS → RESOLVED → CLOSED; a closed one does not change.
    pub fn may_become(self, next: ComplaintState) -> bool {
        self != ComplaintState::Closed
            && (next.step() == self.step() || next.step() == self.step() + 1)
    }

    pub fn is_open(self) -> bool {
        matches!(self, ComplaintState::Open | ComplaintState::InProgress)
    }
}

/// An amount in a currency, as google.type.Money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub currency_code: String,
    pub units: i64,
    pub nanos: i32,
}

impl Money {
    /// Checks the code is three ASCII capitals and units/nanos agree in sign.
    /// On failure returns the sub-field at fault and why.
    pub fn new(
        currency_code: &str,
        units: i64,
        nanos: i32,
    ) -> Result<Money, (&'static str, String)> {
        if currency_code.len() != 3 || !currency_code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err((
                "currency_code",
                "must be a three-letter ISO 4217 code such as CNY".into(),
            ));
        }
        if !(-999_999_999..=999_999_999).contains(&nanos) {
            return Err(("nanos", "must be between -999999999 and 999999999".into()));
        }
        if (units > 0 && nanos < 0) || (units < 0 && nanos > 0) {
            return Err(("nanos", "must have the same sign as units".into()));
        }
        Ok(Money {
            currency_code: currency_code.to_string(),
            units,
            nanos,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedBy {
    pub employee: String,
    pub team: String,
    pub branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub state: ComplaintState,
    pub severity: Severity,
    pub due_time: DateTime<Utc>,
    pub resolution: String,
    pub resolve_time: Option<DateTime<Utc>>,
    pub close_time: Option<DateTime<Utc>>,
    pub category: Option<ComplaintCategory>,
    /// A product code; empty when not given.
    pub product: String,
    pub root_cause: String,
    /// The employee handling it; empty when nobody is named.
    pub assignee: String,
    pub reopen_count: i32,
    pub reopen_reason: String,
}

impl Complaint {
    /// A complaint as logged: OPEN, due by the SLA of its severity.
    pub fn opened(severity: Severity, due_time: DateTime<Utc>) -> Complaint {
        Complaint {
            state: ComplaintState::Open,
            severity,
            due_time,
            resolution: String::new(),
            resolve_time: None,
            close_time: None,
            category: None,
            product: String::new(),
            root_cause: String::new(),
            assignee: String::new(),
            reopen_count: 0,
            reopen_reason: String::new(),
        }
    }

    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.state.is_open() && self.due_time < now
    }
}

/// What resolving a complaint sets off: the 回访 follow-up some days later
/// (0: none) and the COMPLAINT_INSIGHT item for a product team (None: none).
#[derive(Debug, Clone, Default)]
pub struct ComplaintPolicy {
    pub follow_up_days: u32,
    pub insight_team: Option<String>,
}

/// How a follow-up recurs: every `days` days or every `months` months
/// (at most one of them non-zero); both 0: a one-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recurrence {
    pub days: u32,
    pub months: u32,
}

/// The most days and months a recurrence may span.
pub const MAX_RECURRENCE_DAYS: u32 = 366;
pub const MAX_RECURRENCE_MONTHS: u32 = 12;

impl Recurrence {
    pub fn is_recurring(self) -> bool {
        self.days > 0 || self.months > 0
    }

    /// The due time of the occurrence after one due at `due`: the same
    /// time of day `days` later, or the same day `months` later (the
    /// month's last day when it is shorter); None for a one-off.
    pub fn next(self, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.months > 0 {
            due.checked_add_months(chrono::Months::new(self.months))
        } else if self.days > 0 {
            due.checked_add_signed(Duration::days(i64::from(self.days)))
        } else {
            None
        }
    }
}

/// The follow-up cadence per customer tier, from configuration: the
/// recurrence in months a follow-up of a customer of that tier gets when
/// it is scheduled without one (0: a one-off).
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowUpCadence {
    pub vip_months: u32,
    pub major_months: u32,
    pub ordinary_months: u32,
    pub small_months: u32,
}

impl FollowUpCadence {
    pub fn for_tier(self, tier: Option<super::customer::Tier>) -> Recurrence {
        use super::customer::Tier;
        let months = match tier {
            Some(Tier::Vip) => self.vip_months,
            Some(Tier::Major) => self.major_months,
            Some(Tier::Ordinary) => self.ordinary_months,
            Some(Tier::Small) => self.small_months,
            None => 0,
        };
        Recurrence { days: 0, months }
    }
}

/// A validated interaction to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInteraction {
    pub id: String,
    pub channel: Channel,
    pub kind: Kind,
    pub occur_time: DateTime<Utc>,
    pub recorded_by: RecordedBy,
    pub summary: String,
    pub notes: String,
    pub products: Vec<String>,
    pub amount: Option<Money>,
    pub campaign: String,
    pub outcome: String,
    pub sentiment: Option<Sentiment>,
    pub satisfaction: Option<i16>,
    pub nps: Option<i16>,
    pub source_system: String,
    pub external_ref: String,
    /// Set for COMPLAINT interactions: the complaint they open.
    pub complaint: Option<Complaint>,
    /// Set for SERVICE_REQUEST interactions: the service request they open.
    pub service_request: Option<super::service::ServiceRequestIntake>,
    /// False when the caller left `occur_time` for the service to fill in:
    /// a re-send then carries another time and is still the same entry.
    pub occur_time_stated: bool,
}

/// The source systems each calling system writes under: its own name (its
/// JWT `sub`) and the aliases configuration gives it. Nobody else may write
/// under them, so one system's references cannot be pre-empted by another.
#[derive(Debug, Clone, Default)]
pub struct SourceSystems(std::collections::HashMap<String, Vec<String>>);

impl SourceSystems {
    pub fn new(aliases: std::collections::HashMap<String, Vec<String>>) -> SourceSystems {
        SourceSystems(aliases)
    }

    /// Whether the calling system `system` may write under `source`.
    pub fn owns(&self, system: &str, source: &str) -> bool {
        system == source
            || self
                .0
                .get(system)
                .is_some_and(|a| a.iter().any(|s| s == source))
    }
}

/// The source system of entries staff make by hand: their own, which no
/// calling system can take (`:` is not allowed in a system name).
pub fn staff_source(employee: &str) -> String {
    format!("staff:{employee}")
}

impl NewInteraction {
    /// SHA-256 over what the caller said happened (every field but the id,
    /// which a retry may leave for the service to draw): two writes under one
    /// external reference are the same transaction exactly when these match.
    pub fn fingerprint(&self) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let mut field = |value: &str| {
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(value.as_bytes());
        };
        field(self.channel.as_str());
        field(self.kind.as_str());
        if self.occur_time_stated {
            field(&self.occur_time.timestamp_micros().to_string());
        } else {
            field("");
        }
        field(&self.recorded_by.employee);
        field(&self.recorded_by.team);
        field(&self.recorded_by.branch);
        field(&self.summary);
        field(&self.notes);
        field(&self.products.len().to_string());
        self.products.iter().for_each(|p| field(p));
        match &self.amount {
            Some(m) => field(&format!("{} {} {}", m.currency_code, m.units, m.nanos)),
            None => field(""),
        }
        field(&self.campaign);
        field(&self.outcome);
        field(self.sentiment.map(Sentiment::as_str).unwrap_or_default());
        field(&format!("{:?} {:?}", self.satisfaction, self.nps));
        field(&self.source_system);
        field(&self.external_ref);
        field(
            self.complaint
                .as_ref()
                .map(|c| c.severity.as_str())
                .unwrap_or_default(),
        );
        // Only when given, so that what was logged before these fields
        // existed keeps its fingerprint.
        if let Some(c) = &self.complaint
            && (c.category.is_some() || !c.product.is_empty() || !c.assignee.is_empty())
        {
            field(
                c.category
                    .map(ComplaintCategory::as_str)
                    .unwrap_or_default(),
            );
            field(&c.product);
            field(&c.assignee);
        }
        hash.finalize().to_vec()
    }
}

/// A stored interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub customer: CustomerId,
    pub fields: NewInteraction,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// Set once the interaction is voided or superseded: it stays for the
    /// record, hidden from every ordinary read.
    pub void: Option<Voiding>,
    /// The id (same customer) of the interaction this one corrects; empty
    /// unless CorrectInteraction logged it.
    pub corrects: String,
}

/// Who took an interaction out of the record, when and why; with the id of
/// its correction when a correction superseded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voiding {
    pub time: DateTime<Utc>,
    pub reason: String,
    pub by: String,
    /// The id (same customer) of the correction; empty for a plain void.
    pub superseded_by: String,
}

impl Voiding {
    /// VOIDED or SUPERSEDED, as errors and the watch name it.
    pub fn state(&self) -> &'static str {
        if self.superseded_by.is_empty() {
            "VOIDED"
        } else {
            "SUPERSEDED"
        }
    }
}

impl Interaction {
    pub fn name(&self) -> String {
        interaction_name(&self.customer, &self.fields.id)
    }

    pub fn etag(&self) -> String {
        super::customer::etag(self.version)
    }
}

pub fn interaction_name(customer: &CustomerId, id: &str) -> String {
    format!("customers/{}/interactions/{id}", customer.as_str())
}

/// Parses `customers/{customer}/{collection}/{id}`.
pub fn parse_child_name(name: &str, collection: &str) -> Result<(CustomerId, String), String> {
    let shape = || format!("must be customers/{{customer}}/{collection}/{{id}}");
    let rest = name.strip_prefix("customers/").ok_or_else(shape)?;
    let (customer, rest) = rest.split_once('/').ok_or_else(shape)?;
    let id = rest
        .strip_prefix(collection)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(shape)?;
    let customer =
        CustomerId::parse(customer).map_err(|e| format!("{}: the customer id {e}", shape()))?;
    let id = CustomerId::parse(id).map_err(|e| format!("{}: the id {e}", shape()))?;
    Ok((customer, id.as_str().to_string()))
}

/// Free text fields of an interaction, bounded.
pub fn text(value: &str, max: usize) -> Result<String, String> {
    bounded_text(value, max)
}

pub fn product(value: &str) -> Result<String, String> {
    org_code(value, true)
}

pub fn external_ref(value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_EXTERNAL_REF || value.chars().any(char::is_control) {
        return Err(format!(
            "must be at most {MAX_EXTERNAL_REF} characters without control characters"
        ));
    }
    Ok(value.to_string())
}

/// The SLA of each severity: the time from the complaint to its due time.
#[derive(Debug, Clone, Copy)]
pub struct ComplaintSla {
    pub low: Duration,
    pub medium: Duration,
    pub high: Duration,
    pub critical: Duration,
}

impl ComplaintSla {
    pub fn due(&self, severity: Severity, from: DateTime<Utc>) -> DateTime<Utc> {
        from + match severity {
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Critical => self.critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complaints_move_one_step_forward_only() {
        use ComplaintState::*;
        assert!(Open.may_become(InProgress));
        assert!(Open.may_become(Open));
        assert!(InProgress.may_become(Resolved));
        assert!(Resolved.may_become(Closed));
        assert!(!Open.may_become(Resolved));
        assert!(!Resolved.may_become(InProgress));
        assert!(!Closed.may_become(Closed));
    }

    #[test]
    fn a_monthly_follow_up_keeps_its_day_or_takes_the_last_of_a_short_month() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let monthly = Recurrence { days: 0, months: 1 };
        assert_eq!(
            monthly.next(at("2026-01-31T09:00:00Z")),
            Some(at("2026-02-28T09:00:00Z"))
        );
        let fortnightly = Recurrence {
            days: 14,
            months: 0,
        };
        assert_eq!(
            fortnightly.next(at("2026-01-31T09:00:00Z")),
            Some(at("2026-02-14T09:00:00Z"))
        );
        assert_eq!(Recurrence::default().next(at("2026-01-31T09:00:00Z")), None);
    }

    #[test]
    fn money_follows_google_type_money() {
        assert!(Money::new("CNY", 10, 500_000_000).is_ok());
        assert!(Money::new("CNY", 0, -5).is_ok());
        assert_eq!(Money::new("cny", 1, 0).unwrap_err().0, "currency_code");
        assert_eq!(Money::new("CNY", 1, -1).unwrap_err().0, "nanos");
        assert_eq!(Money::new("CNY", 1, 1_000_000_000).unwrap_err().0, "nanos");
    }

    #[test]
    fn child_names_parse() {
        let (customer, id) =
            parse_child_name("customers/c-1/interactions/i-9", "interactions").unwrap();
        assert_eq!((customer.as_str(), id.as_str()), ("c-1", "i-9"));
        assert!(parse_child_name("customers/c-1/followUps/i-9", "interactions").is_err());
        assert!(parse_child_name("customers/c-1", "interactions").is_err());
    }
}
