//! Near-valid request messages of any type of the contract, shaped by a
//! "tape" of choice bytes: the property tests draw the tape from proptest
//! (so shrinking the tape simplifies the message), the fuzz targets take it
//! from the fuzz input (so libFuzzer's mutations land on meaningful fields).
//!
//! The message is built field by field from the descriptor set with
//! prost-reflect, so a new field or request type is covered without editing
//! this file. Byte 0 always picks the plain choice (field present, a valid
//! value), so the smallest tape is a well-formed request; other bytes pick
//! values of the field's domain (resource names, org codes, filters, tokens,
//! times) or extremes: empty and huge strings, NUL and other control
//! characters, bidi overrides, i64/i32 limits, nanos out of range, enum
//! numbers that do not exist, and thousands of repeated elements.

#![allow(dead_code)]

use customer_knowledge::{api::resume_token, pb::FILE_DESCRIPTOR_SET};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};

/// Reads choices from the tape; past its end every choice is 0.
pub struct Tape<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Tape<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Tape { bytes, at: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// One of `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            (usize::from(self.byte()) << 8 | usize::from(self.byte())) % n
        }
    }

    pub fn pick<T: Clone>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())].clone()
    }

    /// True with probability `percent`%, and for a zero byte.
    pub fn chance(&mut self, percent: u32) -> bool {
        u32::from(self.byte()) * 100 < percent * 256
    }
}

/// The descriptor set, decoded once per generator.
pub struct Shapes {
    pool: DescriptorPool,
}

impl Default for Shapes {
    fn default() -> Self {
        Shapes::new()
    }
}

impl Shapes {
    pub fn new() -> Shapes {
        Shapes {
            pool: DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the contract's descriptors"),
        }
    }

    pub fn message(&self, full_name: &str) -> MessageDescriptor {
        self.pool
            .get_message_by_name(full_name)
            .unwrap_or_else(|| panic!("no message {full_name} in the contract"))
    }

    /// The encoded request of type `full_name` that `tape` describes.
    pub fn near_valid(&self, full_name: &str, tape: &[u8]) -> Vec<u8> {
        let mut tape = Tape::new(tape);
        // The first choice: one field in six may be out of its domain, or
        // (choice 0, where shrinking heads) every value is valid.
        let valid_only = tape.byte() < 96;
        let request = self.message(full_name);
        let mut generator = Generator {
            tape,
            valid_only,
            now: chrono::Utc::now().timestamp(),
            depth: 0,
            request: request.name().to_string(),
            nth: 0,
            budget: MAX_REQUEST_BYTES,
        };
        generator.message(&request).encode_to_vec()
    }
}

/// How many of each repeated field: mostly a few, sometimes just past a
/// limit of the contract (20 products or external ids, 50 tags, subjects or
/// sources, 1000 batch entries, 5000 import rows).
const FEW: [usize; 4] = [2, 0, 1, 3];
const MANY: [usize; 8] = [20, 21, 50, 51, 101, 1000, 1001, 5001];

/// The most a generated request holds, about: the server's default
/// `server.max_message_bytes` (a larger request never reaches a handler).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// About the most a repeated field's copies may add up to.
const MAX_LIST_BYTES: usize = 4 << 20;

fn approximate_len(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Bytes(b) => b.len() + 2,
        Value::Message(m) => m.encoded_len() + 2,
        _ => 8,
    }
}

struct Generator<'a> {
    tape: Tape<'a>,
    valid_only: bool,
    now: i64,
    depth: usize,
    /// The request message's name, for values that depend on the method.
    request: String,
    /// Which element of a repeated field is drawn: the plain choice of the
    /// n-th element is the n-th valid value (in the element's fields too),
    /// so that lists hold distinct values.
    nth: usize,
    /// Bytes the request may still grow by: long strings and long lists
    /// are cut to it.
    budget: usize,
}

/// Fields of which a valid request sets one only.
const EXCLUSIVE: &[(&str, &[&str])] = &[
    ("WatchInteractionsRequest", &["customer", "branch"]),
    ("ShareKnowledgeItemRequest", &["visibility", "grantee"]),
];

impl Generator<'_> {
    /// Whether this value stays inside its field's domain.
    fn in_domain(&mut self) -> bool {
        let b = self.tape.byte();
        self.valid_only || b < 214
    }

    fn message(&mut self, desc: &MessageDescriptor) -> DynamicMessage {
        match desc.full_name() {
            "google.protobuf.Timestamp" => return self.timestamp(desc, ""),
            "google.protobuf.Duration" => return self.duration(desc),
            _ => {}
        }
        let mut message = DynamicMessage::new(desc.clone());
        if self.depth > 5 {
            return message;
        }
        self.depth += 1;
        let exclusive = EXCLUSIVE
            .iter()
            .find(|(name, _)| *name == desc.name())
            .map(|(_, fields)| *fields)
            .unwrap_or_default();
        let chosen = if exclusive.is_empty() {
            None
        } else {
            Some(exclusive[self.tape.below(exclusive.len())])
        };
        for field in desc.fields() {
            // Fields are mostly set; output-only ones (etag, times, names of
            // created resources) get values like the rest.
            if !self.tape.chance(75) {
                continue;
            }
            if exclusive.contains(&field.name())
                && chosen != Some(field.name())
                && (self.valid_only || self.tape.chance(80))
            {
                continue;
            }
            let value = if field.is_map() {
                self.map(desc, &field)
            } else if field.is_list() {
                self.list(desc, &field)
            } else {
                self.single(desc, &field)
            };
            message.set_field(&field, value);
        }
        self.depth -= 1;
        message
    }

    fn spend(&mut self, bytes: usize) {
        self.budget = self.budget.saturating_sub(bytes);
    }

    /// `times` copies of `unit`, within the budget.
    fn repeat(&mut self, unit: &str, times: usize) -> String {
        let times = times.min(self.budget / unit.len().max(1)).max(1);
        self.spend(unit.len() * times);
        unit.repeat(times)
    }

    fn count(&mut self) -> usize {
        if self.valid_only || self.tape.chance(80) {
            self.tape.pick(&FEW)
        } else {
            self.tape.pick(&MANY)
        }
    }

    fn list(&mut self, parent: &MessageDescriptor, field: &FieldDescriptor) -> Value {
        let n = self.count();
        // Up to four drawn elements, then copies of them: thousands of
        // elements cost no more tape than a few. The copies stop at
        // `MAX_LIST_BYTES`, so a huge element is not repeated thousands of
        // times.
        let mut values = Vec::with_capacity(n.min(4));
        let outer = self.nth;
        for i in 0..n.min(4) {
            self.nth = outer + i;
            values.push(self.single(parent, field));
        }
        self.nth = outer;
        let drawn: usize = values.iter().map(approximate_len).sum();
        let n = match MAX_LIST_BYTES.min(self.budget).checked_div(drawn) {
            Some(per_drawn) => n.min((per_drawn * values.len()).max(values.len())),
            None => n,
        };
        self.spend(drawn / values.len().max(1) * n.saturating_sub(values.len()));
        for i in values.len()..n {
            // Strings get their index appended, so that the copies are
            // distinct (a list of distinct values is where a handler's
            // duplicate check does its most work).
            values.push(match &values[i % 4] {
                Value::String(s) if s.len() < 256 => Value::String(format!("{s}{i}")),
                other => other.clone(),
            });
        }
        Value::List(values)
    }

    fn map(&mut self, parent: &MessageDescriptor, field: &FieldDescriptor) -> Value {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message")
        };
        let value_field = entry.map_entry_value_field();
        let n = self.count();
        let mut map = std::collections::HashMap::new();
        for i in 0..n {
            let key = self.string(parent, "map_key");
            let key = if i < 4 { key } else { format!("k{i}") };
            let value = if i < 4 {
                self.single(&entry, &value_field)
            } else {
                Value::String("v".into())
            };
            map.insert(MapKey::String(key), value);
        }
        Value::Map(map)
    }

    fn single(&mut self, parent: &MessageDescriptor, field: &FieldDescriptor) -> Value {
        let name = field.name();
        match field.kind() {
            Kind::Message(desc) if desc.full_name() == "google.protobuf.Timestamp" => {
                Value::Message(self.timestamp(&desc, name))
            }
            Kind::Message(desc) => Value::Message(self.message(&desc)),
            Kind::Enum(desc) => {
                let numbers: Vec<i32> = desc.values().map(|v| v.number()).collect();
                if self.in_domain() {
                    // A named value, mostly not the UNSPECIFIED zero; the
                    // plain choice is one the method accepts.
                    let mut named: Vec<i32> = numbers.iter().copied().filter(|n| *n != 0).collect();
                    if let Some(first) = plain_enum(&self.request, parent.name(), name) {
                        named.retain(|n| *n != first);
                        named.insert(0, first);
                    }
                    if named.is_empty() || !self.tape.chance(95) {
                        Value::EnumNumber(0)
                    } else {
                        Value::EnumNumber(self.tape.pick(&named))
                    }
                } else {
                    let past = numbers.iter().max().copied().unwrap_or(0).saturating_add(1);
                    Value::EnumNumber(self.tape.pick(&[99, -1, past, i32::MAX, i32::MIN, 0]))
                }
            }
            Kind::String => Value::String(self.string(parent, name)),
            Kind::Bytes => Value::Bytes(self.string(parent, name).into_bytes().into()),
            Kind::Bool => Value::Bool(self.tape.chance(50)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.int32(name)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.int64(name)),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(self.tape.pick(&[0, 1, u32::MAX])),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(self.tape.pick(&[0, 1, u64::MAX])),
            Kind::Float => Value::F32(self.tape.pick(&[0.0, 1.5, f32::NAN, f32::INFINITY])),
            Kind::Double => Value::F64(self.tape.pick(&[0.0, 1.5, f64::NAN, -f64::INFINITY])),
        }
    }

    fn int32(&mut self, field: &str) -> i32 {
        let valid: &[i32] = match field {
            "page_size" => &[0, 1, 50, 1000, 1001],
            "depth" => &[0, 1, 3, 10, 11],
            "satisfaction" => &[1, 3, 5],
            "nps" => &[0, 7, 10],
            "nanos" => &[0, 500_000_000, 999_999_999],
            _ => &[0, 1, 5],
        };
        if self.in_domain() {
            self.tape.pick(valid)
        } else {
            self.tape.pick(&[
                -1,
                i32::MIN,
                i32::MAX,
                1_000_000_000,
                -999_999_999,
                101,
                11,
                6,
            ])
        }
    }

    fn int64(&mut self, field: &str) -> i64 {
        let valid: &[i64] = match field {
            "units" => &[100, 0, 5_000_000, -100],
            "start_sequence" | "end_sequence" => &[0, 1, 1000],
            _ => &[0, 1, 42],
        };
        if self.in_domain() {
            self.tape.pick(valid)
        } else {
            self.tape.pick(&[
                -1,
                i64::MIN,
                i64::MAX,
                i64::MAX - 1,
                i64::MIN + 1,
                1 << 53,
                -(1 << 53),
            ])
        }
    }

    /// A time; the plain choice suits the field: past for what happened,
    /// future for what is due or expires.
    fn timestamp(&mut self, desc: &MessageDescriptor, field: &str) -> DynamicMessage {
        const DAY: i64 = 86_400;
        // What `google.protobuf.Timestamp` allows: years 1 to 9999.
        const FIRST: i64 = -62_135_596_800;
        const LAST: i64 = 253_402_300_799;
        let (seconds, nanos) = if self.in_domain() {
            let plain = match field {
                "due_time" | "expire_time" | "next_review_time" => DAY * 7,
                "start_time" => -DAY * 30,
                "end_time" => 0,
                _ => -DAY,
            };
            let offset = self.tape.pick(&[
                plain,
                0,
                -DAY,
                -60,
                3600,
                DAY * 7,
                DAY * 30,
                DAY * 364,
                -DAY * 365 * 40,
            ]);
            (
                self.now + offset,
                self.tape.pick(&[0, 500_000_000, 999_999_999]),
            )
        } else {
            (
                self.tape.pick(&[
                    i64::MIN,
                    i64::MAX,
                    FIRST - 1,
                    FIRST,
                    LAST,
                    LAST + 1,
                    0,
                    -1,
                    -2_208_988_801, // just before 1900
                    self.now + 301, // past the 5 minutes of clock skew allowed
                    self.now + DAY * 366,
                    self.now + DAY * 365 * 4,
                ]),
                self.tape
                    .pick(&[0, -1, 1_000_000_000, i32::MAX, i32::MIN, 999_999_999]),
            )
        };
        let mut message = DynamicMessage::new(desc.clone());
        message.set_field_by_name("seconds", Value::I64(seconds));
        message.set_field_by_name("nanos", Value::I32(nanos));
        message
    }

    fn duration(&mut self, desc: &MessageDescriptor) -> DynamicMessage {
        const YEAR: i64 = 365 * 86_400;
        let (seconds, nanos) = if self.in_domain() {
            (
                self.tape.pick(&[30 * 86_400, 3600, 3 * YEAR, 180 * 86_400]),
                0,
            )
        } else {
            (
                self.tape.pick(&[
                    i64::MIN,
                    i64::MAX,
                    -1,
                    0,
                    3599,
                    3 * YEAR + 1,
                    315_576_000_000, // the proto's bound: 10,000 years
                    315_576_000_001,
                    -315_576_000_001,
                ]),
                self.tape.pick(&[
                    0,
                    999_999_999,
                    -999_999_999,
                    1_000_000_000,
                    i32::MAX,
                    i32::MIN,
                ]),
            )
        };
        let mut message = DynamicMessage::new(desc.clone());
        message.set_field_by_name("seconds", Value::I64(seconds));
        message.set_field_by_name("nanos", Value::I32(nanos));
        message
    }

    fn string(&mut self, parent: &MessageDescriptor, field: &str) -> String {
        let valid = domain(&self.request, parent.name(), field, self.now);
        if self.in_domain() {
            let i = self.tape.below(valid.len());
            return valid[(i + self.nth) % valid.len()].clone();
        }
        let base = self.tape.pick(&valid);
        match self.tape.below(4) {
            0 => self.extreme(),
            1 => self.pick_name(),
            2 => {
                // The valid value bent: a character added or a case changed.
                let twist = self.tape.pick(&[
                    "\0", " ", "\u{202e}", "\n", "/", "\"", "\\", "-", "%", "\u{0301}",
                ]);
                match self.tape.below(3) {
                    0 => format!("{base}{twist}"),
                    1 => format!("{twist}{base}"),
                    _ => base.to_uppercase(),
                }
            }
            _ => {
                // The valid value repeated past any bound.
                let times = self.tape.pick(&[2, 17, 65, 1000]);
                self.repeat(&base, times)
            }
        }
    }

    /// A resource name of any kind, well formed or not.
    fn pick_name(&mut self) -> String {
        self.tape
            .pick(&[
                "customers/c-1",
                "customers/c-1/interactions/i-1",
                "customers/c-1/followUps/f-1",
                "knowledgeItems/k-1",
                "customers/-",
                "customers/",
                "customers//interactions/i-1",
                "customers/c-1/interactions/",
                "customers/c-1/interactions/i-1/x",
                "customers/C-1",
                "customers/-c",
                "knowledgeItems/",
                "knowledgeItems/K_1",
                "/customers/c-1",
                "customers/c-1/../c-2",
            ])
            .to_string()
    }

    fn extreme(&mut self) -> String {
        const LENGTHS: [usize; 16] = [
            63,
            64,
            65,
            128,
            129,
            200,
            201,
            500,
            501,
            1001,
            1025,
            2001,
            10_001,
            20_001,
            70_000,
            1 << 20,
        ];
        match self.tape.below(5) {
            0 => {
                let unit = self
                    .tape
                    .pick(&["a", "张", "\u{202e}", "😀", "\0", " ", "\u{85}"]);
                let times = self.tape.pick(&LENGTHS);
                self.repeat(unit, times)
            }
            _ => self
                .tape
                .pick(&[
                    "",
                    " ",
                    "\t\n",
                    "\0",
                    "a\0b",
                    "\u{7f}",
                    "\u{85}",
                    "\u{2028}",
                    "\u{202e}gnp.exe",
                    "\u{2066}B01\u{2069}",
                    "\u{200f}",
                    "\u{feff}",
                    "\u{200b}",
                    "e\u{301}",
                    "👩‍👩‍👧",
                    "张伟",
                    "تجربة",
                    "'; DROP TABLE customers; --",
                    "%s%n%x",
                    "\\",
                    "\"",
                    "${jndi:ldap://x}",
                    "../../etc/passwd",
                    "\u{10ffff}",
                    "\u{fffd}",
                    "NaN",
                    "-0",
                    "9223372036854775808",
                ])
                .to_string(),
        }
    }
}

const CUSTOMER_NAMES: &[&str] = &[
    "customers/c-1",
    "customers/0",
    "customers/cif-000123",
    "customers/0190f5a4-7b2c-7def-8123-456789abcdef",
    "customers/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const INTERACTION_NAMES: &[&str] = &[
    "customers/c-1/interactions/i-1",
    "customers/c-2/interactions/0190f5a4-7b2c-7def-8123-456789abcdef",
];
const FOLLOW_UP_NAMES: &[&str] = &["customers/c-1/followUps/f-1", "customers/c-2/followUps/x9"];
const SERVICE_REQUEST_NAMES: &[&str] = &[
    "customers/c-1/serviceRequests/i-1",
    "customers/c-2/serviceRequests/0190f5a4-7b2c-7def-8123-456789abcdef",
];
const ITEM_NAMES: &[&str] = &[
    "knowledgeItems/k-1",
    "knowledgeItems/k-2",
    "knowledgeItems/0190f5a4-7b2c-7def-8123-456789abcdef",
];
const ORG_CODES: &[&str] = &["B01", "E1001", "T-RISK", "core-banking", "B02", "cbs"];
const TEXT: &[&str] = &[
    "Asked about the fixed-term deposit",
    "张伟 prefers calls after 18:00",
    "line one\nline two",
    "",
    "a",
];

/// The enum value a method takes where the first named one would not do.
fn plain_enum(request: &str, message: &str, field: &str) -> Option<i32> {
    const EMPLOYEE: i32 = 2;
    const TEAM: i32 = 3;
    const EXPLICIT: i32 = 2;
    const FOLLOW_UP: i32 = 6;
    match (request, message, field) {
        ("ShareKnowledgeItemRequest" | "RevokeKnowledgeGrantRequest", "Carrier", "type") => {
            Some(TEAM)
        }
        ("CompleteFollowUpRequest", "Interaction", "kind") => Some(FOLLOW_UP),
        (_, "Carrier", "type") => Some(EMPLOYEE),
        ("ExternalizeKnowledgeRequest" | "CombineKnowledgeRequest", "KnowledgeItem", "nature") => {
            Some(EXPLICIT)
        }
        _ => None,
    }
}

/// The last segment of the name of the report a scoped report request asks
/// for (see src/domain/report.rs).
fn report_singleton(request: &str) -> Option<&'static str> {
    Some(match request {
        "GetKnowledgeFlowRequest" => "knowledgeFlow",
        "GetKnowledgeSharingMetricsRequest" => "knowledgeSharingMetrics",
        "GetComplaintSummaryRequest" => "complaintSummary",
        "GetServiceMetricsRequest" => "serviceMetrics",
        "GetSegmentSummaryRequest" => "segmentSummary",
        _ => return None,
    })
}

/// Valid values of a string field, by its name, its message's name and the
/// request's name.
fn domain(request: &str, message: &str, field: &str, now: i64) -> Vec<String> {
    let owned = |values: &[&str]| values.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let day = |offset: i64| {
        chrono::DateTime::from_timestamp(now + offset * 86_400, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    match field {
        // ListOperations' collection is the empty name or "operations".
        "name" if request == "ListOperationsRequest" => owned(&["", "operations"]),
        "name" if message.contains("Operation") => owned(&[
            "operations/0190f5a4-7b2c-7def-8123-456789abcdef",
            "operations/00000000-0000-0000-0000-000000000000",
        ]),
        // A report's singleton name (AIP-156): empty (the scope fields name
        // the report), the name agreeing with the plain scope fields, a
        // narrower or wider one (which disagrees), and the bank-wide one.
        "name" if message.starts_with("Get") && report_singleton(message).is_some() => {
            let singleton = report_singleton(message).unwrap_or_default();
            let scoped = match message {
                "GetComplaintSummaryRequest" => "branches/B01/",
                "GetServiceMetricsRequest" => "branches/B01/teams/E1002/employees/E1002/",
                "GetSegmentSummaryRequest" => "branches/B01/employees/E1002/",
                _ => "branches/B01/teams/E1002/",
            };
            vec![
                String::new(),
                format!("{scoped}{singleton}"),
                format!("branches/B02/{singleton}"),
                singleton.to_string(),
                format!("{scoped}{singleton}/x"),
            ]
        }
        "name" if message == "GetCampaignResultsRequest" => owned(&[
            "campaigns/c-1",
            "campaigns/c-1/results",
            "campaigns/0190f5a4-7b2c-7def-8123-456789abcdef/results",
            "campaigns/c-1/result",
        ]),
        "name" if message == "GetCustomer360Request" => owned(&[
            "customers/c-1",
            "customers/c-1/view360",
            "customers/cif-000123/view360",
            "customers/c-1/view360/view360",
        ]),
        "name" if message.contains("Campaign") => owned(&[
            "campaigns/c-1",
            "campaigns/0190f5a4-7b2c-7def-8123-456789abcdef",
        ]),
        "name" if message.contains("FollowUp") => owned(FOLLOW_UP_NAMES),
        "name" if message.contains("ServiceRequest") => owned(SERVICE_REQUEST_NAMES),
        "name" if message.contains("Interaction") || message.contains("Complaint") => {
            owned(INTERACTION_NAMES)
        }
        "name" if message.contains("Knowledge") || message == "VerifyKnowledgeItemRequest" => {
            owned(ITEM_NAMES)
        }
        "linked_customer" | "duplicate" => owned(&CUSTOMER_NAMES[1..]),
        "name" | "parent" | "customer" | "subjects" => {
            let mut names = owned(CUSTOMER_NAMES);
            if field == "parent" {
                names.push("customers/-".into());
            }
            names
        }
        "source_items" => {
            let mut names = owned(ITEM_NAMES);
            names.extend(owned(INTERACTION_NAMES));
            names
        }
        "sources" | "source_interaction" | "completion_interaction" => owned(INTERACTION_NAMES),
        "item" | "tacit_item" | "root" => owned(ITEM_NAMES),
        "recipients" => owned(&["E1002", "E1003", "E1004"]),
        "employee"
        | "assignee"
        | "verifier"
        | "author"
        | "created_by"
        | "shared_by"
        | "relationship_manager"
        | "team" => owned(&["E1002", "E1001", "T1"]),
        "home_branch" | "branch" => owned(&["B01", "B02"]),
        "id" => owned(&["B01", "T-RISK", "E1002", "bank", "c-1"]),
        "system" => owned(&["CIF", "core-banking", "cbs"]),
        "source_system" => owned(&["", "E1001", "core-banking", "cbs"]),
        "products" | "product" => owned(&["DEPOSIT-1Y", "CARD_GOLD"]),
        "channel" => owned(&["BRANCH_FORM", "MOBILE_APP", "PHONE_RECORDED"]),
        "request_id" => owned(&[
            "0190f5a4-7b2c-7def-8123-456789abcdef",
            "",
            "00000000-0000-0000-0000-000000000000",
            "0190F5A4-7B2C-7DEF-8123-456789ABCDEF",
        ]),
        "etag" | "duplicate_etag" => owned(&["", "v1", "v9223372036854775807"]),
        "page_token" => owned(&["", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]),
        "resume_token" => vec![
            String::new(),
            resume_token("v1", (1, 2)),
            resume_token("k1", (1, 2)),
            resume_token("v1", (i64::MAX, i64::MIN)),
            resume_token("k1", (-1, 0)),
        ],
        "filter" => match message {
            "ListOperationsRequest" => owned(&["", "done = true", "done=false"]),
            "ListCustomersRequest" => owned(&[
                "",
                r#"home_branch = "B01""#,
                r#"tier = VIP AND kind = INDIVIDUAL AND tags:"wealth""#,
                "relationship_manager = E1001",
            ]),
            "ListInteractionsRequest" => vec![
                String::new(),
                "channel = BRANCH AND kind = COMPLAINT".into(),
                format!(
                    r#"occur_time >= "{}" AND occur_time < "{}""#,
                    day(-30),
                    day(0)
                ),
                r#"occur_time > "9999-12-31T23:59:59.999999999-23:59""#.into(),
                r#"occur_time <= "0000-01-01T00:00:00+23:59""#.into(),
                format!(r#"update_time > "{}""#, day(-1)),
                r#"update_time >= "9999-12-31T23:59:59.999999999-23:59""#.into(),
            ],
            "ListComplaintsRequest" => vec![
                String::new(),
                "state = OPEN AND severity = HIGH AND overdue = true".into(),
                r#"home_branch = "B01""#.into(),
                format!(r#"update_time > "{}" AND state = OPEN"#, day(-1)),
                r#"update_time <= "0000-01-01T00:00:00+23:59""#.into(),
            ],
            "ListServiceRequestsRequest" => vec![
                String::new(),
                "state = RECEIVED AND priority = HIGH AND overdue = true".into(),
                r#"assignee = "E1002" AND home_branch = "B01""#.into(),
                format!(r#"update_time >= "{}""#, day(-1)),
                r#"update_time > "9999-12-31T23:59:59.999999999-23:59""#.into(),
            ],
            "ListFollowUpsRequest" => vec![
                String::new(),
                "state = SCHEDULED AND overdue = false".into(),
                format!(r#"assignee = "E1002" AND due_time <= "{}""#, day(7)),
                r#"due_time > "9999-12-31T23:59:59.999999999-23:59""#.into(),
                format!(r#"update_time > "{}" AND state = SCHEDULED"#, day(-1)),
                r#"update_time < "0000-01-01T00:00:00+23:59""#.into(),
            ],
            "ListCampaignsRequest" => vec![
                String::new(),
                format!(r#"update_time > "{}""#, day(-1)),
                r#"update_time >= "9999-12-31T23:59:59.999999999-23:59""#.into(),
            ],
            "ListKnowledgeItemsRequest" => owned(&[
                "",
                r#"subjects:"customers/c-1" AND nature = TACIT"#,
                "carrier.type = EMPLOYEE AND verification.state = STALE",
                r#"tags:"wealth" AND kind = NEED"#,
                r#"update_time > "2026-12-01T00:00:00Z" AND nature = EXPLICIT"#,
                r#"update_time < "0000-01-01T00:00:00+23:59""#,
            ]),
            "ListAccessEventsRequest" => vec![
                String::new(),
                r#"customers:"customers/c-1" AND action = READ"#.into(),
                format!(r#"event_time >= "{}" AND principal = "E1001""#, day(-1)),
                r#"event_time <= "9999-12-31T23:59:59.999999999-23:59""#.into(),
                r#"event_time > "0000-01-01T00:00:00+23:59""#.into(),
            ],
            _ => owned(&[""]),
        },
        "query" => owned(&["张伟", "Zhang Wei", "deposit", "理财 基金", "a"]),
        "customer_id" | "knowledge_item_id" | "interaction_id" | "follow_up_id" | "campaign_id" => {
            owned(&[
                "c-1",
                "",
                "0190f5a4-7b2c-7def-8123-456789abcdef",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ])
        }
        "order_by" => owned(&["", "update_time"]),
        "tags" => owned(&["wealth", "vip-2026", "a_b"]),
        "national_id" => owned(&["65010219770731004X", ""]),
        "phone" => owned(&["+86 139 7731 0042", "(010) 5555-0100", ""]),
        "email" => owned(&["ouyang.feng@example.com", ""]),
        "birth_date" => owned(&["1977-07-31", "1800-01-01", ""]),
        "value" => owned(&["CIF-000123", "12345"]),
        "external_ref" => owned(&["EXT-1", "core-banking:42", ""]),
        "currency_code" => owned(&["CNY", "USD"]),
        "policy_version" => owned(&["2026.1", ""]),
        // read_mask of interaction reads: Interaction's fields.
        "paths" if request.contains("Interaction") => owned(&[
            "name",
            "summary",
            "notes",
            "occur_time",
            "channel",
            "complaint",
            "*",
        ]),
        "paths" if request.contains("Knowledge") => owned(&[
            "title",
            "body",
            "tags",
            "subjects",
            "visibility",
            "sensitivity",
            "kind",
            "*",
        ]),
        "paths" => owned(&[
            "display_name",
            "tags",
            "preferences",
            "home_branch",
            "email",
            "*",
        ]),
        "map_key" => owned(&["lang", "contact.time", "a-b_c"]),
        "display_name" | "title" => owned(&["Ouyang Feng", "欧阳锋", "Probe"]),
        _ => owned(TEXT),
    }
}
