//! Calling systems (DESIGN §3): which methods each `service` principal may
//! call, and the self-service rules for a system that acts for one end
//! customer at a time (the mobile banking backend).

use std::collections::HashMap;

use super::principal::{Principal, Role};
use crate::error::Error;

/// The methods a system acting for an end customer may ever call: reads of
/// that customer's own profile and timeline. Configuration narrows this
/// further; it cannot widen it.
pub const SELF_SERVICE_METHODS: &[&str] = &[
    "CustomerService/GetCustomer",
    "InteractionService/ListInteractions",
    "InteractionService/GetInteraction",
];

/// What one calling system may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemPolicy {
    /// `*`, `Service/*` or `Service/Method` (short service names, e.g.
    /// `CustomerService/LookupCustomer`).
    pub methods: Vec<String>,
    /// Every call carries the end customer it acts for (`on_behalf_of`).
    pub acts_for_customers: bool,
}

/// The policies of every calling system, by its JWT `sub`.
#[derive(Debug, Clone, Default)]
pub struct Systems(HashMap<String, SystemPolicy>);

/// Checks one method pattern of configuration; `services` are the short
/// service names of the contract.
pub fn check_pattern(pattern: &str, services: &[&str]) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let Some((service, method)) = pattern.split_once('/') else {
        return Err(format!("{pattern:?} is not *, Service/* or Service/Method"));
    };
    if !services.contains(&service) {
        return Err(format!(
            "{pattern:?} names no service of the contract ({})",
            services.join(", ")
        ));
    }
    if method != "*" && (method.is_empty() || !method.chars().all(|c| c.is_ascii_alphanumeric())) {
        return Err(format!("{pattern:?} is not *, Service/* or Service/Method"));
    }
    Ok(())
}

/// `/bank.customerknowledge.v1.CustomerService/GetCustomer` →
/// `CustomerService/GetCustomer`.
fn short_method(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some((service, _)) => {
            let start = service.rfind('.').map_or(0, |i| i + 1);
            &path[start..]
        }
        None => path,
    }
}

fn matches(pattern: &str, method: &str) -> bool {
    pattern == "*"
        || pattern == method
        || pattern
            .strip_suffix("/*")
            .is_some_and(|service| method.split_once('/').is_some_and(|(s, _)| s == service))
}

/// The `{customer}` of an `on_behalf_of` claim, which may be a customer id or
/// its resource name.
pub fn acting_for(principal: &Principal) -> Option<&str> {
    principal
        .on_behalf_of
        .as_deref()
        .map(|c| c.strip_prefix("customers/").unwrap_or(c))
}

/// A caller acting for an end customer reaches that customer only.
pub fn check_acting_for(principal: &Principal, customer_id: &str) -> Result<(), Error> {
    match acting_for(principal) {
        Some(own) if own != customer_id => Err(Error::denied(
            "read another customer than the one it acts for",
        )),
        _ => Ok(()),
    }
}

impl Systems {
    pub fn new(policies: HashMap<String, SystemPolicy>) -> Systems {
        Systems(policies)
    }

    /// Whether `principal` may call the method at `path`. Employees are
    /// checked by their roles in each method; a calling system needs the
    /// method in its configured list, and one acting for a customer also a
    /// self-service method and the customer it acts for.
    pub fn permit(&self, principal: &Principal, path: &str) -> Result<(), Error> {
        let method = short_method(path);
        if !principal.has(Role::Service) {
            if principal.on_behalf_of.is_some() {
                return Err(Error::denied(
                    "act on behalf of a customer (only a calling system configured to may)",
                ));
            }
            return Ok(());
        }
        let Some(policy) = self.0.get(&principal.subject) else {
            return Err(Error::denied(format!(
                "call {method} (no methods are configured for this calling system)"
            )));
        };
        if !policy.methods.iter().any(|p| matches(p, method)) {
            return Err(Error::denied(format!(
                "call {method} (not among the methods configured for this calling system)"
            )));
        }
        match (policy.acts_for_customers, acting_for(principal)) {
            (true, None) => Err(Error::denied(
                "call without on_behalf_of: this system acts for one signed-in customer at a time",
            )),
            (true, Some(_)) if !SELF_SERVICE_METHODS.contains(&method) => Err(Error::denied(
                format!("call {method} on behalf of a customer"),
            )),
            (false, Some(_)) => Err(Error::denied(
                "act on behalf of a customer (this system is not configured to)",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(sub: &str, on_behalf_of: Option<&str>) -> Principal {
        Principal {
            subject: sub.into(),
            branch: None,
            team: None,
            roles: vec![Role::Service],
            on_behalf_of: on_behalf_of.map(String::from),
        }
    }

    fn systems() -> Systems {
        Systems::new(HashMap::from([
            (
                "core-banking".to_string(),
                SystemPolicy {
                    methods: vec![
                        "CustomerService/LookupCustomer".into(),
                        "InteractionService/*".into(),
                    ],
                    acts_for_customers: false,
                },
            ),
            (
                "mobile-backend".to_string(),
                SystemPolicy {
                    methods: vec!["*".into()],
                    acts_for_customers: true,
                },
            ),
        ]))
    }

    const P: &str = "/bank.customerknowledge.v1.";

    #[test]
    fn systems_call_only_their_configured_methods() {
        let core = system("core-banking", None);
        let s = systems();
        assert!(
            s.permit(&core, &format!("{P}CustomerService/LookupCustomer"))
                .is_ok()
        );
        assert!(
            s.permit(&core, &format!("{P}InteractionService/LogInteraction"))
                .is_ok()
        );
        assert!(
            s.permit(&core, &format!("{P}CustomerService/DeleteCustomer"))
                .is_err()
        );
        assert!(
            s.permit(
                &system("unknown", None),
                &format!("{P}CustomerService/GetCustomer")
            )
            .is_err()
        );
        assert!(
            s.permit(
                &system("core-banking", Some("c1")),
                &format!("{P}InteractionService/ListInteractions")
            )
            .is_err()
        );
    }

    #[test]
    fn a_system_acting_for_a_customer_reads_only_self_service_methods() {
        let s = systems();
        let mobile = system("mobile-backend", Some("customers/c1"));
        assert_eq!(acting_for(&mobile), Some("c1"));
        assert!(
            s.permit(&mobile, &format!("{P}CustomerService/GetCustomer"))
                .is_ok()
        );
        assert!(
            s.permit(&mobile, &format!("{P}CustomerService/ListCustomers"))
                .is_err()
        );
        assert!(
            s.permit(&mobile, &format!("{P}KnowledgeService/ListKnowledgeItems"))
                .is_err()
        );
        assert!(
            s.permit(
                &system("mobile-backend", None),
                &format!("{P}CustomerService/GetCustomer")
            )
            .is_err()
        );
    }

    #[test]
    fn staff_cannot_claim_to_act_for_a_customer() {
        let mut rm = system("E1", Some("c1"));
        rm.roles = vec![Role::RelationshipManager];
        assert!(
            systems()
                .permit(&rm, &format!("{P}CustomerService/GetCustomer"))
                .is_err()
        );
        rm.on_behalf_of = None;
        assert!(
            systems()
                .permit(&rm, &format!("{P}CustomerService/GetCustomer"))
                .is_ok()
        );
    }

    #[test]
    fn patterns_are_checked() {
        let services = ["CustomerService", "InteractionService"];
        assert!(check_pattern("*", &services).is_ok());
        assert!(check_pattern("CustomerService/*", &services).is_ok());
        assert!(check_pattern("InteractionService/LogInteraction", &services).is_ok());
        assert!(check_pattern("Nope/*", &services).is_err());
        assert!(check_pattern("CustomerService", &services).is_err());
        assert!(check_pattern("CustomerService/Get Customer", &services).is_err());
    }
}
