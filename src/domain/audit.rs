//! The access audit's rules: what an access event holds, its canonical
//! encoding and hash chain (README "Access audit" is the specification an
//! outside auditor reads), customer pseudonyms, and the ListAccessEvents
//! filter.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::filter::{Op, parse_terms, set_once, unsupported};

/// Tags the encoding, so a later format can never hash like this one.
pub const FORMAT: &str = "ck-audit-v1";

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Purpose values longer than this are cut (they come from a header).
pub const MAX_PURPOSE_CHARS: usize = 200;

string_enum!(
    /// Whether a call read or changed customer data (or would have).
    Action {
        Read = "READ",
        Write = "WRITE",
    }
);

impl Action {
    /// The action of a method, by its name: reads are Get, List, Search,
    /// Lookup, Watch and VerifyAuditChain; everything else changes data.
    pub fn of_method(method: &str) -> Action {
        let name = method.rsplit('/').next().unwrap_or(method);
        let reads = ["Get", "List", "Search", "Lookup", "Watch"];
        if reads.iter().any(|p| name.starts_with(p)) || name == "VerifyAuditChain" {
            Action::Read
        } else {
            Action::Write
        }
    }
}

/// One access event as chained: every field is hashed, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    pub sequence: i64,
    /// Microseconds since the Unix epoch (UTC), the precision Postgres keeps.
    pub event_time_us: i64,
    pub principal: String,
    pub roles: Vec<String>,
    pub calling_system: String,
    /// Pseudonym of the end customer a calling system acted for, or empty.
    pub on_behalf_of: String,
    /// `/package.Service/Method`.
    pub method: String,
    pub action: Action,
    /// gRPC status code name.
    pub outcome: String,
    /// Customer pseudonyms, sorted, without duplicates.
    pub customers: Vec<String>,
    pub purpose: String,
    pub trace_id: String,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Fields are bounded by the message size, far below 4 GiB.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for item in items {
        put_str(out, item);
    }
}

impl AccessEvent {
    /// The canonical encoding: `str(FORMAT)`, `i64(sequence)`,
    /// `i64(event_time_us)`, then `str` or `list` of each remaining field in
    /// declaration order. `i64` is 8 bytes big-endian two's complement; `str`
    /// is a 4-byte big-endian byte length and the UTF-8 bytes; `list` is a
    /// 4-byte big-endian count and each item as `str`.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put_str(&mut out, FORMAT);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.event_time_us.to_be_bytes());
        put_str(&mut out, &self.principal);
        put_list(&mut out, &self.roles);
        put_str(&mut out, &self.calling_system);
        put_str(&mut out, &self.on_behalf_of);
        put_str(&mut out, &self.method);
        put_str(&mut out, self.action.as_str());
        put_str(&mut out, &self.outcome);
        put_list(&mut out, &self.customers);
        put_str(&mut out, &self.purpose);
        put_str(&mut out, &self.trace_id);
        out
    }

    /// `SHA-256(previous || canonical(self))`.
    pub fn chain_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(self.canonical());
        hasher.finalize().into()
    }

    pub fn event_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.event_time_us).unwrap_or_default()
    }
}

/// Text as stored: Postgres `text` cannot hold NUL, and an event that cannot
/// be stored would stall the queue behind it, so NUL becomes U+FFFD.
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A purpose as recorded: trimmed, cut to `MAX_PURPOSE_CHARS`, storable.
pub fn purpose(raw: &str) -> String {
    storable(
        &raw.trim()
            .chars()
            .take(MAX_PURPOSE_CHARS)
            .collect::<String>(),
    )
}

/// The customer id in a resource name that starts with `customers/{id}`
/// (`customers/7`, `customers/7/interactions/9`) or a bare id; `None` for
/// anything else, including the wildcard `customers/-`.
pub fn customer_id_of(name_or_id: &str) -> Option<&str> {
    let id = match name_or_id.strip_prefix("customers/") {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None if !name_or_id.contains('/') => name_or_id,
        None => return None,
    };
    super::customer::CustomerId::parse(id).ok().map(|_| id)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Keyed pseudonyms: lowercase hex HMAC-SHA256(key, value). Without the key
/// a pseudonym cannot be linked to a customer; with it, compliance can find
/// every event about one.
#[derive(Clone)]
pub struct Pseudonyms {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(<key>)")
    }
}

impl Pseudonyms {
    /// Keys the HMAC once, at start-up; each pseudonym clones the keyed state.
    pub fn new(key: &[u8]) -> Self {
        Pseudonyms {
            keyed: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    pub fn of(&self, value: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The pseudonym of a customer id or `customers/{id}` name; other text
    /// (an `on_behalf_of` that is not a customer name) is pseudonymized as is.
    pub fn of_customer(&self, name_or_id: &str) -> String {
        self.of(customer_id_of(name_or_id).unwrap_or(name_or_id))
    }
}

/// ListAccessEvents' filter, with values bound as SQL parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessEventFilter {
    pub principal: Option<String>,
    pub method: Option<String>,
    pub action: Option<Action>,
    pub outcome: Option<String>,
    pub calling_system: Option<String>,
    /// Customer ids; the store matches their pseudonyms.
    pub customers: Vec<String>,
    pub purpose: Option<String>,
    pub trace_id: Option<String>,
    /// Inclusive lower bound, microseconds.
    pub from_us: Option<i64>,
    /// Exclusive upper bound, microseconds.
    pub before_us: Option<i64>,
}

/// Microseconds of a time, rounded down and up.
fn micros(time: DateTime<Utc>) -> (i64, i64) {
    let floor = time.timestamp_micros();
    let ceil = if time.timestamp_subsec_nanos().is_multiple_of(1000) {
        floor
    } else {
        floor + 1
    };
    (floor, ceil)
}

impl AccessEventFilter {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut f = AccessEventFilter::default();
        for term in parse_terms(input)? {
            let value = term.value.clone();
            match (term.field.as_str(), term.op) {
                ("principal", Op::Eq) => set_once(&mut f.principal, &term, value)?,
                ("method", Op::Eq) => set_once(&mut f.method, &term, value)?,
                ("action", Op::Eq) => {
                    let action = Action::parse(&value)
                        .ok_or_else(|| format!("action must be READ or WRITE, not {value}"))?;
                    set_once(&mut f.action, &term, action)?
                }
                ("outcome", Op::Eq) => set_once(&mut f.outcome, &term, value)?,
                ("calling_system", Op::Eq) => set_once(&mut f.calling_system, &term, value)?,
                ("purpose", Op::Eq) => set_once(&mut f.purpose, &term, value)?,
                ("trace_id", Op::Eq) => set_once(&mut f.trace_id, &term, value)?,
                ("customers", Op::Has) => {
                    let id = super::customer::CustomerId::from_name(&value)
                        .map_err(|e| format!("customers: {e}"))?;
                    f.customers.push(id.as_str().to_string());
                }
                ("event_time", op) => {
                    let time = DateTime::parse_from_rfc3339(&value)
                        .map_err(|_| {
                            format!("event_time takes an RFC 3339 timestamp, not {value}")
                        })?
                        .with_timezone(&Utc);
                    let (floor, ceil) = micros(time);
                    match op {
                        Op::Ge => set_once(&mut f.from_us, &term, ceil)?,
                        Op::Gt => set_once(&mut f.from_us, &term, floor + 1)?,
                        Op::Lt => set_once(&mut f.before_us, &term, ceil)?,
                        Op::Le => set_once(&mut f.before_us, &term, floor + 1)?,
                        _ => return Err(unsupported(&term, "<, <=, > or >=")),
                    }
                }
                (
                    "principal" | "method" | "action" | "outcome" | "calling_system" | "purpose"
                    | "trace_id",
                    _,
                ) => return Err(unsupported(&term, "'='")),
                ("customers", _) => {
                    return Err(unsupported(&term, "':' (customers:\"customers/123\")"));
                }
                (field, _) => {
                    return Err(format!(
                        "unknown field {field}: filter on principal, method, action, outcome, \
                         calling_system, customers, purpose, trace_id or event_time"
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// Where a chain check stopped: the first event that does not follow from
/// its predecessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Intact,
    /// The event's stored hash is not the hash of its content and the
    /// previous hash: the event (or its hash) was altered.
    HashMismatch,
    /// The event's sequence does not follow the previous one: events were
    /// deleted.
    Gap,
}

/// Checks one event against the chain so far: `expected` is the sequence it
/// must have, `previous` the hash it must extend.
pub fn check_link(
    event: &AccessEvent,
    stored_hash: &[u8],
    expected: i64,
    previous: &[u8; 32],
) -> Link {
    if event.sequence != expected {
        Link::Gap
    } else if event.chain_hash(previous).as_slice() != stored_hash {
        Link::HashMismatch
    } else {
        Link::Intact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AccessEvent {
        AccessEvent {
            sequence: 1,
            event_time_us: 1_764_000_000_123_456,
            principal: "E1001".into(),
            roles: vec!["relationship_manager".into()],
            calling_system: String::new(),
            on_behalf_of: String::new(),
            method: "/bank.customerknowledge.v1.CustomerService/GetCustomer".into(),
            action: Action::Read,
            outcome: "OK".into(),
            customers: vec!["ab".into()],
            purpose: "KYC".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        }
    }

    #[test]
    fn canonical_encoding_is_length_prefixed_in_field_order() {
        let bytes = event().canonical();
        let mut expected = Vec::new();
        expected.extend_from_slice(&11u32.to_be_bytes());
        expected.extend_from_slice(b"ck-audit-v1");
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&1_764_000_000_123_456i64.to_be_bytes());
        expected.extend_from_slice(&5u32.to_be_bytes());
        expected.extend_from_slice(b"E1001");
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(&20u32.to_be_bytes());
        expected.extend_from_slice(b"relationship_manager");
        assert_eq!(&bytes[..expected.len()], expected.as_slice());
        // Moving a byte from one field to the next changes the encoding.
        let mut shifted = event();
        shifted.principal = "E100".into();
        shifted.calling_system = "1".into();
        assert_ne!(shifted.canonical(), event().canonical());
    }

    #[test]
    fn the_chain_depends_on_the_previous_hash_and_every_field() {
        let e = event();
        let first = e.chain_hash(&GENESIS);
        assert_ne!(e.chain_hash(&first), first);
        let mut altered = e.clone();
        altered.outcome = "PERMISSION_DENIED".into();
        assert_ne!(altered.chain_hash(&GENESIS), first);
        assert_eq!(check_link(&e, &first, 1, &GENESIS), Link::Intact);
        assert_eq!(
            check_link(&altered, &first, 1, &GENESIS),
            Link::HashMismatch
        );
        assert_eq!(check_link(&e, &first, 2, &GENESIS), Link::Gap);
    }

    #[test]
    fn pseudonyms_are_keyed_hmacs_of_the_customer_id() {
        let p = Pseudonyms::new(b"0123456789abcdef0123456789abcdef");
        let q = Pseudonyms::new(b"another key of thirty-two bytes!");
        assert_eq!(p.of_customer("customers/cif-1"), p.of("cif-1"));
        assert_eq!(
            p.of_customer("customers/cif-1/interactions/9"),
            p.of("cif-1")
        );
        assert_ne!(p.of("cif-1"), q.of("cif-1"));
        assert_eq!(p.of("cif-1").len(), 64);
        // RFC 4231 test case 2.
        assert_eq!(
            Pseudonyms::new(b"Jefe").of("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn customer_ids_come_from_names_or_bare_ids() {
        assert_eq!(customer_id_of("customers/cif-1"), Some("cif-1"));
        assert_eq!(customer_id_of("customers/cif-1/followUps/x"), Some("cif-1"));
        assert_eq!(customer_id_of("cif-1"), Some("cif-1"));
        assert_eq!(customer_id_of("customers/-"), None);
        assert_eq!(customer_id_of("knowledgeItems/k1"), None);
        assert_eq!(customer_id_of(""), None);
    }

    #[test]
    fn actions_follow_the_method_name() {
        let m = |name: &str| Action::of_method(&format!("/bank.customerknowledge.v1.X/{name}"));
        assert_eq!(m("GetCustomer"), Action::Read);
        assert_eq!(m("LookupCustomer"), Action::Read);
        assert_eq!(m("WatchInteractions"), Action::Read);
        assert_eq!(m("VerifyAuditChain"), Action::Read);
        assert_eq!(m("VerifyKnowledgeItem"), Action::Write);
        assert_eq!(m("DeleteCustomer"), Action::Write);
    }

    #[test]
    fn stored_text_has_no_nul_and_purposes_are_bounded() {
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
        assert_eq!(purpose("  KYC "), "KYC");
        assert_eq!(purpose(&"x".repeat(500)).chars().count(), MAX_PURPOSE_CHARS);
    }

    #[test]
    fn filters_parse_and_time_bounds_are_in_microseconds() {
        let f = AccessEventFilter::parse(
            r#"principal = "E1" AND customers:"customers/c1" AND action = READ AND outcome = OK AND event_time > "2026-01-01T00:00:00.0000005Z" AND event_time <= "2026-01-02T00:00:00Z""#,
        )
        .unwrap();
        assert_eq!(f.principal.as_deref(), Some("E1"));
        assert_eq!(f.customers, vec!["c1".to_string()]);
        assert_eq!(f.action, Some(Action::Read));
        let day = 1_767_225_600_000_000i64;
        assert_eq!(f.from_us, Some(day + 1));
        assert_eq!(f.before_us, Some(day + 86_400_000_000 + 1));
        for bad in [
            "customers = \"customers/c1\"",
            "customers:\"c1\"",
            "action = PEEK",
            "event_time = \"2026-01-01T00:00:00Z\"",
            "event_time > yesterday",
            "principal > \"E1\"",
            "hash = \"00\"",
        ] {
            assert!(AccessEventFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
