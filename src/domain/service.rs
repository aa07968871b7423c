//! Service requests: the life cycle a SERVICE_REQUEST interaction opens, and
//! the SLA that sets its due times.

use chrono::{DateTime, Duration, Utc};

use super::customer::CustomerId;

pub const MAX_NEED: usize = 2000;
pub const MAX_SOLUTION: usize = 2000;
pub const MAX_FEEDBACK: usize = 2000;
pub const MAX_CANCEL_REASON: usize = 500;

string_enum!(
    /// Where a service request stands.
    ServiceRequestState {
        Received = "RECEIVED",
        Confirmed = "CONFIRMED",
        SolutionProposed = "SOLUTION_PROPOSED",
        InProgress = "IN_PROGRESS",
        Resolved = "RESOLVED",
        SatisfactionChecked = "SATISFACTION_CHECKED",
        Cancelled = "CANCELLED",
    }
);
string_enum!(
    /// How urgent a service request is; with the tier, sets its SLA.
    Priority { Low = "LOW", Medium = "MEDIUM", High = "HIGH", Urgent = "URGENT" }
);

impl ServiceRequestState {
    /// The states in which the bank still owes the customer a resolution.
    pub const OPEN: &'static [ServiceRequestState] = &[
        ServiceRequestState::Received,
        ServiceRequestState::Confirmed,
        ServiceRequestState::SolutionProposed,
        ServiceRequestState::InProgress,
    ];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

/// How a SERVICE_REQUEST interaction opens its request: read when logging,
/// with the due times of both SLA classes so the store picks by the tier
/// it reads under the customer's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequestIntake {
    pub priority: Priority,
    pub assignee: String,
    /// (response, resolution) for ordinary customers.
    pub standard: SlaTimes,
    /// (response, resolution) for key customers (VIP, MAJOR).
    pub key: SlaTimes,
}

/// The time to the first response and to the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaTimes {
    pub response: Duration,
    pub resolution: Duration,
}

/// The service-request SLA from configuration: per priority, for ordinary
/// and for key customers.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSla {
    /// Indexed by `Priority` in declaration order.
    pub standard: [SlaTimes; 4],
    pub key: [SlaTimes; 4],
}

impl ServiceSla {
    fn index(priority: Priority) -> usize {
        match priority {
            Priority::Low => 0,
            Priority::Medium => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }

    pub fn intake(&self, priority: Priority, assignee: String) -> ServiceRequestIntake {
        let i = Self::index(priority);
        ServiceRequestIntake {
            priority,
            assignee,
            standard: self.standard[i],
            key: self.key[i],
        }
    }
}

/// A customer's service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    pub customer: CustomerId,
    pub id: String,
    pub state: ServiceRequestState,
    pub priority: Priority,
    pub key_customer: bool,
    pub assignee: String,
    /// The channel of the opening interaction (its stored spelling).
    pub channel: String,
    pub receive_time: DateTime<Utc>,
    pub response_due_time: DateTime<Utc>,
    pub resolution_due_time: DateTime<Utc>,
    pub first_response_time: Option<DateTime<Utc>>,
    pub resolve_time: Option<DateTime<Utc>>,
    pub satisfaction_check_time: Option<DateTime<Utc>>,
    pub cancel_time: Option<DateTime<Utc>>,
    pub satisfaction: Option<i16>,
    pub need: String,
    pub solution: String,
    pub resolution: String,
    pub feedback: String,
    pub cancel_reason: String,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// Oldest first.
    pub history: Vec<StateChange>,
}

/// One state change of a service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub from: Option<ServiceRequestState>,
    pub to: ServiceRequestState,
    pub actor: String,
    pub time: DateTime<Utc>,
}

impl ServiceRequest {
    pub fn name(&self) -> String {
        format!(
            "customers/{}/serviceRequests/{}",
            self.customer.as_str(),
            self.id
        )
    }

    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Nobody has responded and the response due time has passed.
    pub fn response_overdue(&self, now: DateTime<Utc>) -> bool {
        self.first_response_time.is_none() && self.state.is_open() && self.response_due_time < now
    }

    /// Still open after the resolution due time.
    pub fn resolution_overdue(&self, now: DateTime<Utc>) -> bool {
        self.state.is_open() && self.resolution_due_time < now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_customers_get_their_own_sla_by_priority() {
        let t = |h| SlaTimes {
            response: Duration::hours(h),
            resolution: Duration::hours(h * 10),
        };
        let sla = ServiceSla {
            standard: [t(8), t(4), t(2), t(1)],
            key: [t(4), t(2), t(1), t(1)],
        };
        let intake = sla.intake(Priority::High, String::new());
        assert_eq!(intake.standard.response, Duration::hours(2));
        assert_eq!(intake.key.resolution, Duration::hours(10));
        assert!(ServiceRequestState::InProgress.is_open());
        assert!(!ServiceRequestState::Resolved.is_open());
    }
}
