//! Who is calling, and what DESIGN §3 lets them do with customers.

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    RelationshipManager,
    Teller,
    Analyst,
    Compliance,
    Admin,
    Service,
}

impl Role {
    /// Every role, in the order messages list them.
    pub const ALL: [Role; 6] = [
        Role::RelationshipManager,
        Role::Teller,
        Role::Analyst,
        Role::Compliance,
        Role::Admin,
        Role::Service,
    ];

    /// Parses one role claim; `None` for a spelling this service does not
    /// know.
    pub fn parse(claim: &str) -> Option<Role> {
        Some(match claim.trim() {
            "relationship_manager" => Role::RelationshipManager,
            "teller" => Role::Teller,
            "analyst" => Role::Analyst,
            "compliance" => Role::Compliance,
            "admin" => Role::Admin,
            "service" => Role::Service,
            _ => return None,
        })
    }

    /// The claim spelling, as recorded in access events.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::RelationshipManager => "relationship_manager",
            Role::Teller => "teller",
            Role::Analyst => "analyst",
            Role::Compliance => "compliance",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

/// The roles of a caller from its `roles` claim (or the `x-roles` header):
/// blank entries are skipped, and a role this service does not know refuses
/// the call with PERMISSION_DENIED naming it and the known roles. Ignoring it
/// instead would leave a misspelt role (`tellr`) to surface later as an
/// unexplained denial of whatever the caller tried.
pub fn roles_from_claims<S: AsRef<str>>(claims: &[S]) -> Result<Vec<Role>, Error> {
    let mut roles = Vec::new();
    let mut unknown = Vec::new();
    for claim in claims.iter().map(|c| c.as_ref().trim()) {
        if claim.is_empty() {
            continue;
        }
        match Role::parse(claim) {
            Some(role) => {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            // Quoted with escapes and cut short: the claim came from a
            // verified token or a sidecar, but it is still caller text.
            None => unknown.push(format!("{:?}", claim.chars().take(64).collect::<String>())),
        }
    }
    if unknown.is_empty() {
        return Ok(roles);
    }
    let known = Role::ALL.map(Role::as_str).join(", ");
    let named = match unknown.as_slice() {
        [one] => format!("role {one} is unknown"),
        many => format!("roles {} are unknown", many.join(", ")),
    };
    Err(Error::denied(format!(
        "act with the roles it claims: {named}; known roles: {known}"
    )))
}

/// An authenticated caller: an employee or a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Employee id (`E1001`) or system name (`core-banking`).
    pub subject: String,
    pub branch: Option<String>,
    pub team: Option<String>,
    pub roles: Vec<Role>,
    /// The end customer a calling system acts for (the verified
    /// `on_behalf_of` claim of the mobile banking backend); recorded in the
    /// access audit as a pseudonym.
    pub on_behalf_of: Option<String>,
}

/// Which customers a caller reaches: every one, or those of one home branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchScope {
    All,
    Branch(String),
}

impl BranchScope {
    /// The branch to bind in SQL (`$n IS NULL OR home_branch = $n`).
    pub fn branch(&self) -> Option<&str> {
        match self {
            BranchScope::All => None,
            BranchScope::Branch(b) => Some(b),
        }
    }

    pub fn admits(&self, home_branch: &str) -> bool {
        match self {
            BranchScope::All => true,
            BranchScope::Branch(b) => b == home_branch,
        }
    }
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    fn own_branch(&self) -> Result<BranchScope, Error> {
        match &self.branch {
            Some(b) if !b.is_empty() => Ok(BranchScope::Branch(b.clone())),
            _ => Err(Error::denied(
                "reach customers without a branch claim for a branch-bound role",
            )),
        }
    }

    /// Customers the caller may read.
    pub fn customer_read_scope(&self) -> Result<BranchScope, Error> {
        if self.has_any(&[Role::Analyst, Role::Compliance, Role::Admin, Role::Service]) {
            Ok(BranchScope::All)
        } else if self.has_any(&[Role::RelationshipManager, Role::Teller]) {
            self.own_branch()
        } else {
            Err(Error::denied("read customers"))
        }
    }

    /// Customers the caller may change.
    pub fn customer_write_scope(&self) -> Result<BranchScope, Error> {
        if self.has_any(&[Role::Admin, Role::Service]) {
            Ok(BranchScope::All)
        } else if self.has_any(&[Role::RelationshipManager, Role::Teller]) {
            self.own_branch()
        } else {
            Err(Error::denied("change customers"))
        }
    }

    /// Whether the caller may read the access audit (DESIGN §3: compliance
    /// and admin).
    pub fn reads_audit(&self) -> bool {
        self.has_any(&[Role::Compliance, Role::Admin])
    }

    /// The calling system, recorded with every access: a `service` caller's
    /// `sub`; employees call through no system of their own.
    pub fn calling_system(&self) -> Option<&str> {
        self.has(Role::Service).then_some(self.subject.as_str())
    }

    /// Whether the caller sees PII of a customer of `home_branch` unmasked:
    /// analysts see it masked unless another role of theirs shows it.
    pub fn sees_pii_of(&self, home_branch: &str) -> bool {
        self.has_any(&[Role::Compliance, Role::Admin, Role::Service])
            || (self.has_any(&[Role::RelationshipManager, Role::Teller])
                && self.branch.as_deref() == Some(home_branch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[Role], branch: Option<&str>) -> Principal {
        Principal {
            subject: "E1".into(),
            branch: branch.map(String::from),
            team: None,
            roles: roles.to_vec(),
            on_behalf_of: None,
        }
    }

    #[test]
    fn branch_roles_reach_only_their_branch() {
        let rm = caller(&[Role::RelationshipManager], Some("B01"));
        assert_eq!(
            rm.customer_read_scope().unwrap(),
            BranchScope::Branch("B01".into())
        );
        assert_eq!(
            rm.customer_write_scope().unwrap(),
            BranchScope::Branch("B01".into())
        );
        assert!(rm.sees_pii_of("B01"));
        assert!(!rm.sees_pii_of("B02"));
        assert!(caller(&[Role::Teller], None).customer_read_scope().is_err());
    }

    #[test]
    fn analysts_read_all_masked_and_write_nothing() {
        let analyst = caller(&[Role::Analyst], Some("B01"));
        assert_eq!(analyst.customer_read_scope().unwrap(), BranchScope::All);
        assert!(analyst.customer_write_scope().is_err());
        assert!(!analyst.sees_pii_of("B01"));
        let compliance = caller(&[Role::Compliance], None);
        assert!(compliance.customer_write_scope().is_err());
        assert!(compliance.sees_pii_of("B09"));
    }

    #[test]
    fn unknown_roles_are_named_with_the_known_ones() {
        let err = roles_from_claims(&["teller", "tellr"]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(r#"role "tellr" is unknown; known roles: relationship_manager, teller, analyst, compliance, admin, service"#),
            "{message}"
        );
        let err = roles_from_claims(&["a\"b", "x"]).unwrap_err().to_string();
        assert!(err.contains(r#"roles "a\"b", "x" are unknown"#), "{err}");
        assert_eq!(
            roles_from_claims(&[" teller ", "", "teller", "analyst"]).unwrap(),
            [Role::Teller, Role::Analyst]
        );
        assert_eq!(roles_from_claims::<&str>(&[]).unwrap(), []);
    }

    #[test]
    fn no_known_role_reaches_nothing() {
        let nobody = caller(&[], Some("B01"));
        assert!(nobody.customer_read_scope().is_err());
        assert_eq!(Role::parse("superuser"), None);
        assert_eq!(Role::parse("service"), Some(Role::Service));
    }
}
