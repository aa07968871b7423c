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
    /// Parses a role claim; unknown roles grant nothing and are ignored.
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
    fn no_known_role_reaches_nothing() {
        let nobody = caller(&[], Some("B01"));
        assert!(nobody.customer_read_scope().is_err());
        assert_eq!(Role::parse("superuser"), None);
        assert_eq!(Role::parse("service"), Some(Role::Service));
    }
}
