//! What the complaint and service-request life cycles share: an explicit
//! state method (AIP-136) and the FAILED_PRECONDITION that names the state
//! a resource is in when the method does not take it.

use super::*;

/// The stored spelling of a life-cycle state, for messages and metadata.
pub(super) trait StateName: Copy + PartialEq + 'static {
    fn name(self) -> &'static str;
}

impl StateName for ComplaintState {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl StateName for ServiceRequestState {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// One explicit state method: the states it takes a resource from, the
/// outbox event it is recorded as, and the reason its refusal carries.
pub(super) struct Transition<S: 'static> {
    /// The method, for the error message.
    pub(super) method: &'static str,
    /// The states the method takes a resource from.
    pub(super) from: &'static [S],
    /// The outbox event it is recorded as.
    pub(super) event_type: &'static str,
    /// The ErrorInfo reason of a refusal.
    pub(super) reason: ErrorReason,
    /// What the resource is called in messages ("complaint").
    pub(super) noun: &'static str,
}

impl<S: StateName> Transition<S> {
    /// Ok when `state` is one the method takes; else FAILED_PRECONDITION
    /// naming the current state (message and `metadata["state"]`) and the
    /// states the method would take.
    pub(super) fn admit(&self, resource: &str, state: S) -> Result<(), Error> {
        if self.from.contains(&state) {
            return Ok(());
        }
        let allowed: Vec<&str> = self.from.iter().map(|s| s.name()).collect();
        Err(Error::WrongState {
            reason: self.reason,
            state: state.name().to_string(),
            message: format!(
                "{resource} is {}; {} takes a {} that is {}",
                state.name(),
                self.method,
                self.noun,
                allowed.join(" or ")
            ),
        })
    }
}
