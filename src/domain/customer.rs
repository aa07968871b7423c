//! The customer profile: its parts, their bounds, and how an update applies.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_EXTERNAL_IDS: usize = 20;
pub const MAX_TAGS: usize = 50;
pub const MAX_PREFERENCES: usize = 50;
pub const MAX_ADDRESS: usize = 500;
pub const MAX_PREFERENCE_VALUE: usize = 500;

string_enum!(
    /// Person or company.
    CustomerKind { Individual = "INDIVIDUAL", Corporate = "CORPORATE" }
);
string_enum!(
    /// The customer pyramid tier.
    Tier { Vip = "VIP", Major = "MAJOR", Ordinary = "ORDINARY", Small = "SMALL" }
);
string_enum!(
    /// How a linked customer relates to a customer.
    Relationship {
        Household = "HOUSEHOLD",
        Spouse = "SPOUSE",
        Guarantor = "GUARANTOR",
        Director = "DIRECTOR",
    }
);
string_enum!(
    /// What a customer consents to.
    ConsentPurpose {
        Marketing = "MARKETING",
        CrossSell = "CROSS_SELL",
        Analytics = "ANALYTICS",
        KnowledgeSharing = "KNOWLEDGE_SHARING",
    }
);

impl Relationship {
    /// Symmetric relationships read the same from both sides, so a link is
    /// stored once with the smaller id first.
    pub fn is_symmetric(self) -> bool {
        matches!(self, Relationship::Household | Relationship::Spouse)
    }
}

/// A customer id: the `{customer}` of `customers/{customer}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(String);

impl CustomerId {
    /// A new time-ordered id (UUIDv7).
    pub fn generate() -> Self {
        CustomerId(uuid::Uuid::now_v7().to_string())
    }

    /// AIP-122 style: 1–63 of `a-z`, `0-9`, `-`, starting with a letter or digit.
    pub fn parse(id: &str) -> Result<Self, String> {
        let valid = !id.is_empty()
            && id.len() <= 63
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-');
        if valid {
            Ok(CustomerId(id.to_string()))
        } else {
            Err("must be 1 to 63 characters of a-z, 0-9 and '-', not starting with '-'".into())
        }
    }

    /// Parses a resource name `customers/{customer}`.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name.strip_prefix("customers/") {
            Some(id) => CustomerId::parse(id)
                .map_err(|e| format!("must be customers/{{customer}} where the id {e}")),
            None => Err("must be a customer resource name, customers/{customer}".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn name(&self) -> String {
        format!("customers/{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExternalId {
    pub system: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub update_time: DateTime<Utc>,
}

/// One grant or withdrawal of consent, with what proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    pub purpose: ConsentPurpose,
    pub granted: bool,
    /// How the customer expressed it (`MOBILE_APP`, `BRANCH_FORM`).
    pub channel: String,
    pub evidence_ref: String,
    pub policy_version: String,
}

/// A recorded consent change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub change: ConsentChange,
    pub recorded_by: String,
    pub event_time: DateTime<Utc>,
    /// Keyset position (newest first).
    pub id: i64,
}

pub const MAX_EVIDENCE_REF: usize = 200;
pub const MAX_POLICY_VERSION: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerLink {
    pub customer: CustomerId,
    pub relationship: Relationship,
    pub inverse: bool,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfm {
    pub recency: i16,
    pub frequency: i16,
    pub monetary: i16,
}

/// Personally identifying fields: masked for analysts, erased on delete, never
/// logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pii {
    pub national_id: String,
    pub phone: String,
    pub email: String,
    pub birth_date: Option<NaiveDate>,
    pub address: String,
}

/// The fields a caller writes; every value here has been validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub kind: CustomerKind,
    pub external_ids: Vec<ExternalId>,
    pub home_branch: String,
    pub relationship_manager: String,
    pub pii: Pii,
    pub tags: Vec<String>,
    pub preferences: BTreeMap<String, String>,
}

/// A stored customer as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: CustomerId,
    pub profile: Profile,
    pub consents: Vec<Consent>,
    pub tier: Option<Tier>,
    pub rfm: Option<Rfm>,
    pub links: Vec<CustomerLink>,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Customer {
    pub fn etag(&self) -> String {
        etag(self.version)
    }
}

pub fn etag(version: i64) -> String {
    format!("v{version}")
}

/// The profile fields an update may name in its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileField {
    DisplayName,
    Kind,
    ExternalIds,
    HomeBranch,
    RelationshipManager,
    NationalId,
    Phone,
    Email,
    BirthDate,
    Address,
    Tags,
    Preferences,
}

impl ProfileField {
    pub const ALL: &'static [ProfileField] = &[
        ProfileField::DisplayName,
        ProfileField::Kind,
        ProfileField::ExternalIds,
        ProfileField::HomeBranch,
        ProfileField::RelationshipManager,
        ProfileField::NationalId,
        ProfileField::Phone,
        ProfileField::Email,
        ProfileField::BirthDate,
        ProfileField::Address,
        ProfileField::Tags,
        ProfileField::Preferences,
    ];

    pub fn path(self) -> &'static str {
        match self {
            ProfileField::DisplayName => "display_name",
            ProfileField::Kind => "kind",
            ProfileField::ExternalIds => "external_ids",
            ProfileField::HomeBranch => "home_branch",
            ProfileField::RelationshipManager => "relationship_manager",
            ProfileField::NationalId => "national_id",
            ProfileField::Phone => "phone",
            ProfileField::Email => "email",
            ProfileField::BirthDate => "birth_date",
            ProfileField::Address => "address",
            ProfileField::Tags => "tags",
            ProfileField::Preferences => "preferences",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        // `date_of_birth` (google.type.Date) is the same date as the
        // deprecated string `birth_date`.
        if path == "date_of_birth" {
            return Some(ProfileField::BirthDate);
        }
        ProfileField::ALL.iter().copied().find(|f| f.path() == path)
    }
}

/// New values for some profile fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePatch {
    pub fields: Vec<ProfileField>,
    /// Holds the new value of every field in `fields`; others are ignored.
    pub values: Profile,
}

impl ProfilePatch {
    pub fn apply(&self, profile: &mut Profile) {
        let new = &self.values;
        for field in &self.fields {
            match field {
                ProfileField::DisplayName => profile.display_name = new.display_name.clone(),
                ProfileField::Kind => profile.kind = new.kind,
                ProfileField::ExternalIds => profile.external_ids = new.external_ids.clone(),
                ProfileField::HomeBranch => profile.home_branch = new.home_branch.clone(),
                ProfileField::RelationshipManager => {
                    profile.relationship_manager = new.relationship_manager.clone()
                }
                ProfileField::NationalId => profile.pii.national_id = new.pii.national_id.clone(),
                ProfileField::Phone => profile.pii.phone = new.pii.phone.clone(),
                ProfileField::Email => profile.pii.email = new.pii.email.clone(),
                ProfileField::BirthDate => profile.pii.birth_date = new.pii.birth_date,
                ProfileField::Address => profile.pii.address = new.pii.address.clone(),
                ProfileField::Tags => profile.tags = new.tags.clone(),
                ProfileField::Preferences => profile.preferences = new.preferences.clone(),
            }
        }
    }
}

// Field rules. Each returns the normalised value or why it is refused.

fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

pub fn display_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("is required".into());
    }
    bounded_text(trimmed, MAX_DISPLAY_NAME)
}

/// Free text up to `max` characters without control characters.
pub fn bounded_text(value: &str, max: usize) -> Result<String, String> {
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err("must not contain control characters".into());
    }
    if value.chars().any(is_bidi_control) {
        return Err(
            "must not contain bidirectional embedding, override or isolate characters".into(),
        );
    }
    Ok(value.to_string())
}

/// Characters that reorder how the text around them is displayed (U+202A to
/// U+202E, U+2066 to U+2069): in a name or a note they can make what a
/// reviewer sees differ from what is stored. The plain direction marks
/// (U+200E, U+200F) that right-to-left names need stay allowed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Branch, team and employee ids as they appear in JWT claims (`B01`, `E1001`).
pub fn org_code(value: &str, required: bool) -> Result<String, String> {
    if value.is_empty() {
        return if required {
            Err("is required".into())
        } else {
            Ok(String::new())
        };
    }
    if value.len() > 64 || !value.chars().all(is_code_char) {
        return Err("must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'".into());
    }
    Ok(value.to_string())
}

pub fn external_id(system: &str, value: &str) -> Result<ExternalId, (&'static str, String)> {
    if system.is_empty() || system.len() > 32 || !system.chars().all(is_code_char) {
        return Err((
            "system",
            "must be 1 to 32 characters of A-Z, a-z, 0-9, '-' and '_'".into(),
        ));
    }
    if value.is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control) {
        return Err((
            "value",
            "must be 1 to 128 characters without control characters".into(),
        ));
    }
    Ok(ExternalId {
        system: system.to_string(),
        value: value.to_string(),
    })
}

pub fn tag(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(value.to_string())
    } else {
        Err("must be 1 to 64 characters of a-z, 0-9, '-' and '_'".into())
    }
}

pub fn preference_key(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if valid {
        Ok(value.to_string())
    } else {
        Err("keys must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.'".into())
    }
}

pub fn national_id(value: &str) -> Result<String, String> {
    if value.len() > 64 || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("must be at most 64 characters of A-Z, a-z, 0-9 and '-'".into());
    }
    Ok(value.to_string())
}

pub fn phone(value: &str) -> Result<String, String> {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let valid = value.is_empty()
        || (value.len() <= 32
            && (5..=20).contains(&digits)
            && value
                .chars()
                .all(|c| c.is_ascii_digit() || " +-()".contains(c)));
    if valid {
        Ok(value.to_string())
    } else {
        Err("must be a phone number of 5 to 20 digits (with optional + - ( ) and spaces)".into())
    }
}

pub fn email(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let valid = value.len() <= 254
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(value.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                && !domain.starts_with('.') && !domain.ends_with('.'));
    if valid {
        Ok(value.to_string())
    } else {
        Err("must be an email address such as name@example.com".into())
    }
}

pub fn birth_date(value: &str) -> Result<Option<NaiveDate>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| "must be an ISO 8601 date, YYYY-MM-DD".to_string())?;
    plausible_birth_date(date)
}

/// A birth date given as year, month and day (google.type.Date): all three
/// zero is no date; otherwise a full calendar date under the same bounds as
/// `birth_date`.
pub fn birth_date_ymd(year: i32, month: i32, day: i32) -> Result<Option<NaiveDate>, String> {
    if (year, month, day) == (0, 0, 0) {
        return Ok(None);
    }
    if year == 0 || month == 0 || day == 0 {
        return Err("must be a full date (year, month and day)".into());
    }
    let date = u32::try_from(month)
        .ok()
        .zip(u32::try_from(day).ok())
        .and_then(|(month, day)| NaiveDate::from_ymd_opt(year, month, day))
        .ok_or_else(|| "is not a calendar date".to_string())?;
    plausible_birth_date(date)
}

fn plausible_birth_date(date: NaiveDate) -> Result<Option<NaiveDate>, String> {
    if date > Utc::now().date_naive() || date.year() < 1800 {
        return Err("must not be in the future or before 1800".into());
    }
    Ok(Some(date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_follow_aip_122() {
        assert!(CustomerId::parse("cif-000123").is_ok());
        assert!(CustomerId::parse(&CustomerId::generate().0).is_ok());
        for bad in ["", "-x", "Upper", "a/b", &"x".repeat(64)] {
            assert!(CustomerId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CustomerId::from_name("customers/abc").unwrap().as_str(),
            "abc"
        );
        assert!(CustomerId::from_name("accounts/abc").is_err());
    }

    #[test]
    fn field_rules_normalise_or_refuse() {
        assert_eq!(display_name("  张伟 ").unwrap(), "张伟");
        assert!(display_name("   ").is_err());
        assert!(display_name(&"名".repeat(201)).is_err());
        assert!(email("wei@example.cn").is_ok());
        assert!(email("wei@").is_err());
        assert!(phone("+86 138 0013 8000").is_ok());
        assert!(phone("call me").is_err());
        assert!(birth_date("1985-02-30").is_err());
        assert_eq!(birth_date_ymd(0, 0, 0), Ok(None));
        assert_eq!(
            birth_date_ymd(1985, 2, 28).unwrap(),
            NaiveDate::from_ymd_opt(1985, 2, 28)
        );
        for (y, m, d) in [
            (1985, 2, 30),
            (1985, 0, 0),
            (1985, -1, 3),
            (1799, 12, 31),
            (9999, 1, 1),
        ] {
            assert!(birth_date_ymd(y, m, d).is_err(), "{y}-{m}-{d}");
        }
        assert_eq!(
            birth_date("1985-02-28").unwrap(),
            NaiveDate::from_ymd_opt(1985, 2, 28)
        );
        assert!(tag("Wealth").is_err());
        assert!(org_code("B01", true).is_ok());
        assert!(org_code("", true).is_err());
        assert!(external_id("CIF", "").is_err());
    }

    #[test]
    fn a_patch_changes_only_the_named_fields() {
        let base = Profile {
            display_name: "Old".into(),
            kind: CustomerKind::Individual,
            external_ids: vec![],
            home_branch: "B01".into(),
            relationship_manager: "E1".into(),
            pii: Pii::default(),
            tags: vec!["a".into()],
            preferences: BTreeMap::new(),
        };
        let mut values = base.clone();
        values.display_name = "New".into();
        values.tags = vec![];
        let patch = ProfilePatch {
            fields: vec![ProfileField::DisplayName],
            values,
        };
        let mut profile = base.clone();
        patch.apply(&mut profile);
        assert_eq!(profile.display_name, "New");
        assert_eq!(profile.tags, vec!["a".to_string()]);
    }
}
