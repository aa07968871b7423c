//! Customer knowledge (DESIGN §1): items that are tacit or explicit, the
//! carrier that holds them, the four SECI conversions and sharing between
//! carriers, and who may see what (DESIGN §3).

use chrono::{DateTime, Duration, Utc};

use super::principal::{Principal, Role};
use crate::error::Error;

pub const MAX_TITLE: usize = 200;
pub const MAX_BODY: usize = 20_000;
pub const MAX_SUBJECTS: usize = 50;
/// Customers one WatchKnowledge stream may follow.
pub const MAX_WATCH_SUBJECTS: usize = 100;
pub const MAX_SOURCES: usize = 50;
/// Interactions an item may name as its sources.
pub const MAX_INTERACTION_SOURCES: usize = 100;
pub const MAX_RECIPIENTS: usize = 50;
pub const MAX_LINEAGE_DEPTH: i32 = 10;
pub const DEFAULT_REVIEW_INTERVAL: Duration = Duration::days(180);

string_enum!(
    /// Tacit (in someone's head) or explicit (written down).
    Nature { Tacit = "TACIT", Explicit = "EXPLICIT" }
);
string_enum!(
    /// What the knowledge is about.
    KnowledgeKind {
        Preference = "PREFERENCE",
        Need = "NEED",
        Risk = "RISK",
        Relationship = "RELATIONSHIP",
        ProductFit = "PRODUCT_FIT",
        ServiceExperience = "SERVICE_EXPERIENCE",
        ComplaintInsight = "COMPLAINT_INSIGHT",
        Playbook = "PLAYBOOK",
        Other = "OTHER",
    }
);
string_enum!(
    /// Who may see an item, widest last.
    Visibility { Private = "PRIVATE", Team = "TEAM", Branch = "BRANCH", Bank = "BANK" }
);
string_enum!(
    /// How carefully an item must be handled.
    Sensitivity { Internal = "INTERNAL", Confidential = "CONFIDENTIAL", Restricted = "RESTRICTED" }
);
string_enum!(
    /// Who holds the knowledge.
    CarrierType {
        Customer = "CUSTOMER",
        Employee = "EMPLOYEE",
        Team = "TEAM",
        Branch = "BRANCH",
        Bank = "BANK",
    }
);
string_enum!(
    /// The SECI conversions.
    Conversion {
        Socialization = "SOCIALIZATION",
        Externalization = "EXTERNALIZATION",
        Combination = "COMBINATION",
        Internalization = "INTERNALIZATION",
    }
);
string_enum!(
    /// Stored verification state; STALE is derived when reading.
    VerificationState { Unverified = "UNVERIFIED", Verified = "VERIFIED", Stale = "STALE" }
);
string_enum!(
    /// What WatchKnowledge reports.
    Change {
        Created = "CREATED",
        Shared = "SHARED",
        Verified = "VERIFIED",
        Retracted = "RETRACTED",
        Updated = "UPDATED",
        Erased = "ERASED",
    }
);

impl Visibility {
    fn rank(self) -> u8 {
        match self {
            Visibility::Private => 0,
            Visibility::Team => 1,
            Visibility::Branch => 2,
            Visibility::Bank => 3,
        }
    }

    /// Sharing only widens.
    pub fn is_wider_than(self, other: Visibility) -> bool {
        self.rank() > other.rank()
    }

    /// The carrier a share to this visibility moves the item to.
    pub fn carrier(self) -> CarrierType {
        match self {
            Visibility::Private => CarrierType::Employee,
            Visibility::Team => CarrierType::Team,
            Visibility::Branch => CarrierType::Branch,
            Visibility::Bank => CarrierType::Bank,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    pub kind: CarrierType,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub state: VerificationState,
    pub verifier: String,
    pub verify_time: Option<DateTime<Utc>>,
    pub next_review_time: Option<DateTime<Utc>>,
}

impl Verification {
    /// VERIFIED past its review time reads as STALE.
    pub fn as_of(&self, now: DateTime<Utc>) -> VerificationState {
        match (self.state, self.next_review_time) {
            (VerificationState::Verified, Some(due)) if due < now => VerificationState::Stale,
            (state, _) => state,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    pub item: String,
    pub conversion: Conversion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub item: String,
    pub from: Carrier,
    pub to: Carrier,
    pub grant: bool,
    pub visibility: Option<Visibility>,
    pub purpose: String,
    pub expire_time: Option<DateTime<Utc>>,
    pub shared_by: String,
    pub create_time: DateTime<Utc>,
    /// When and by whom a grant was revoked before it lapsed.
    pub revoked: Option<(DateTime<Utc>, String)>,
}

/// When, why and by whom an item was retracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    pub time: DateTime<Utc>,
    pub reason: String,
    pub by: String,
}

/// The fields a caller writes, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemContent {
    pub title: String,
    pub body: String,
    pub kind: KnowledgeKind,
    /// Customer ids.
    pub subjects: Vec<String>,
    pub visibility: Visibility,
    pub sensitivity: Sensitivity,
    pub tags: Vec<String>,
    /// Interaction names.
    pub sources: Vec<String>,
}

/// A new item: its content plus what the service decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub id: String,
    pub content: ItemContent,
    pub nature: Nature,
    pub carrier: Carrier,
    pub author: String,
    pub scope_team: String,
    pub scope_branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeItem {
    pub item: NewItem,
    pub derived_from: Vec<Derivation>,
    pub verification: Verification,
    pub grants: Vec<Share>,
    /// Set once the item is retracted; only lineage and the watch stream
    /// ever read a retracted item.
    pub retraction: Option<Retraction>,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl KnowledgeItem {
    pub fn name(&self) -> String {
        item_name(&self.item.id)
    }
}

pub fn item_name(id: &str) -> String {
    format!("knowledgeItems/{id}")
}

pub fn parse_item_name(name: &str) -> Result<String, String> {
    let id = name
        .strip_prefix("knowledgeItems/")
        .ok_or_else(|| "must be knowledgeItems/{knowledge_item}".to_string())?;
    super::customer::CustomerId::parse(id)
        .map(|id| id.as_str().to_string())
        .map_err(|e| format!("must be knowledgeItems/{{knowledge_item}} where the id {e}"))
}

/// Which items a caller sees (DESIGN §3), in the shape the SQL predicate
/// binds: compliance and admin see all; analysts and services see BANK items;
/// branch staff see items whose subjects are all in their branch, by scope
/// or live grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeAccess {
    pub all: bool,
    pub bank_only: bool,
    /// Subjects must all have this home branch (None: any customer).
    pub subject_branch: Option<String>,
    pub subject: String,
    pub team: String,
    pub branch: String,
}

impl KnowledgeAccess {
    pub fn of(caller: &Principal) -> Result<KnowledgeAccess, Error> {
        let base = KnowledgeAccess {
            all: false,
            bank_only: false,
            subject_branch: None,
            subject: caller.subject.clone(),
            team: caller.team.clone().unwrap_or_default(),
            branch: caller.branch.clone().unwrap_or_default(),
        };
        if caller.has(Role::Compliance) || caller.has(Role::Admin) {
            Ok(KnowledgeAccess { all: true, ..base })
        } else if caller.has(Role::RelationshipManager) || caller.has(Role::Teller) {
            match caller.branch.as_deref() {
                Some(branch) if !branch.is_empty() => Ok(KnowledgeAccess {
                    subject_branch: Some(branch.to_string()),
                    ..base
                }),
                _ => Err(Error::denied(
                    "read knowledge without a branch claim for a branch-bound role",
                )),
            }
        } else if caller.has(Role::Analyst) || caller.has(Role::Service) {
            Ok(KnowledgeAccess {
                bank_only: true,
                ..base
            })
        } else {
            Err(Error::denied("read customer knowledge"))
        }
    }

    /// Whether the caller may write knowledge at all (compliance only reads).
    pub fn may_write(caller: &Principal) -> bool {
        // Analysts read; they do not write (DESIGN §3).
        [
            Role::RelationshipManager,
            Role::Teller,
            Role::Admin,
            Role::Service,
        ]
        .iter()
        .any(|r| caller.has(*r))
    }
}

/// The longest a knowledge grant to a team or branch may run.
pub const MAX_GRANT_DAYS: i64 = 365;

/// Review interval bounds for VerifyKnowledgeItem.
pub fn review_interval(requested: Option<Duration>) -> Result<Duration, String> {
    match requested {
        None => Ok(DEFAULT_REVIEW_INTERVAL),
        Some(d) if d >= Duration::hours(1) && d <= Duration::days(3 * 365) => Ok(d),
        Some(_) => Err("must be between 1 hour and 3 years".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharing_only_widens() {
        assert!(Visibility::Bank.is_wider_than(Visibility::Branch));
        assert!(Visibility::Team.is_wider_than(Visibility::Private));
        assert!(!Visibility::Team.is_wider_than(Visibility::Team));
        assert!(!Visibility::Private.is_wider_than(Visibility::Bank));
        assert_eq!(Visibility::Branch.carrier(), CarrierType::Branch);
    }

    #[test]
    fn verified_items_go_stale_after_review_time() {
        let now = Utc::now();
        let v = Verification {
            state: VerificationState::Verified,
            verifier: "E2".into(),
            verify_time: Some(now - Duration::days(200)),
            next_review_time: Some(now - Duration::days(20)),
        };
        assert_eq!(v.as_of(now), VerificationState::Stale);
        assert_eq!(
            v.as_of(now - Duration::days(30)),
            VerificationState::Verified
        );
    }

    #[test]
    fn access_follows_roles() {
        let caller = |roles: &[Role]| Principal {
            subject: "E1".into(),
            branch: Some("B01".into()),
            team: Some("T1".into()),
            roles: roles.to_vec(),
            on_behalf_of: None,
        };
        assert!(
            KnowledgeAccess::of(&caller(&[Role::Compliance]))
                .unwrap()
                .all
        );
        let analyst = KnowledgeAccess::of(&caller(&[Role::Analyst])).unwrap();
        assert!(analyst.bank_only && analyst.subject_branch.is_none());
        let rm = KnowledgeAccess::of(&caller(&[Role::RelationshipManager])).unwrap();
        assert_eq!(rm.subject_branch.as_deref(), Some("B01"));
        assert!(KnowledgeAccess::of(&caller(&[])).is_err());
        assert!(!KnowledgeAccess::may_write(&caller(&[Role::Compliance])));
        assert!(!KnowledgeAccess::may_write(&caller(&[Role::Analyst])));
    }
}
