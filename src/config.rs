//! Typed settings: built-in defaults → optional TOML file → `CK__SECTION__KEY`
//! environment variables, plus `DATABASE_URL` and the standard `OTEL_*`
//! variables.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use config::{Config, Environment, File, FileFormat};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;

/// Built-in defaults; every key the service reads is listed here, so this is
/// also the reference of the configuration file format.
const DEFAULTS: &str = r#"
[server]
grpc_addr = "127.0.0.1:50051"
admin_addr = "127.0.0.1:9464"
shutdown_grace_secs = 25
max_message_bytes = 4194304
request_timeout_secs = 30
concurrency_limit_per_connection = 256
# Calls of the contract's services served at once; more are answered
# RESOURCE_EXHAUSTED at once. 0 (the default): twice database.max_connections.
max_concurrent_calls = 0

[server.tls]
# TLS on the gRPC port is off while cert_file is unset (inside a mesh the
# sidecar does it). cert_file: PEM chain, leaf first; key_file: its PEM
# private key; client_ca_file: PEM CA certificates that client certificates
# must chain to (mutual TLS); client_auth_optional: with client_ca_file, also
# let clients in that present no certificate.
client_auth_optional = false

[database]
migrate = true
max_connections = 16
acquire_timeout_ms = 1000
statement_timeout_ms = 10000
health_check_interval_ms = 2000
# read_url: a hot standby (streaming replica) of the database; while set,
# reads that tolerate staleness (lists, search, GetCustomer360, reports) go
# to it. Unset (the default): everything reads the primary.
# A caller's read after its own write waits up to read_your_writes_wait_ms
# for the standby to replay that write, else reads the primary. The last
# write of at most read_your_writes_callers callers is remembered, each for
# read_your_writes_ttl_secs.
read_your_writes_wait_ms = 100
read_your_writes_callers = 10000
read_your_writes_ttl_secs = 60

[auth]
mode = "jwt"
trusted_headers_allow_non_loopback = false
jwt.leeway_secs = 30

[api]
# How long a request_id answers retries of its request; older keys are purged.
idempotency_retention_secs = 86400
# Field violations an INVALID_ARGUMENT answer lists at most (the total is
# always given), so that its trailers stay small enough for any client.
max_field_violations = 20
# A watch stream quiet this long gets a heartbeat message carrying its
# current resume token.
stream_heartbeat_secs = 30
# An import stream that sends no message for this long is ended
# (DEADLINE_EXCEEDED); the batches it completed stay committed.
stream_idle_timeout_secs = 300

[interactions]
import_batch_size = 5000
# Group commit of LogInteraction: concurrent calls are written in one
# transaction (one INSERT, one NOTIFY, one fsync) by a batcher that takes
# whatever is queued when it becomes free, at most group_commit_max_batch
# calls, without waiting for more; each caller is answered after its row is
# committed. group_commit_workers batches may be in flight at once.
group_commit = true
group_commit_max_batch = 64
group_commit_workers = 2
complaint_sla_hours_low = 120
complaint_sla_hours_medium = 72
complaint_sla_hours_high = 24
complaint_sla_hours_critical = 4
# A resolved complaint schedules a 回访 follow-up this many days later for
# its assignee (or whoever resolved it); 0 schedules none.
complaint_follow_up_days = 3
# The product team (a team id, e.g. "T-PRODUCT") that gets a
# COMPLAINT_INSIGHT knowledge item when a complaint is resolved with a root
# cause; unset: no item is written.
# complaint_insight_team = "T-PRODUCT"
# Follow-ups (回访) scheduled without a recurrence recur every this many
# months for customers of each tier (0: a one-off): key customers monthly.
follow_up_cadence_months_vip = 1
follow_up_cadence_months_major = 3
follow_up_cadence_months_ordinary = 0
follow_up_cadence_months_small = 0
# Service requests (SERVICE_REQUEST interactions): hours from receipt to the
# first response (ConfirmServiceRequest) and to the resolution, by priority.
service_response_hours_low = 24
service_response_hours_medium = 8
service_response_hours_high = 4
service_response_hours_urgent = 1
service_resolution_hours_low = 240
service_resolution_hours_medium = 72
service_resolution_hours_high = 24
service_resolution_hours_urgent = 8
# Key customers (tier VIP or MAJOR when the request is received) get this
# percentage of each of those times: 50 halves them.
service_key_customer_sla_percent = 50

[insights]
# Values (M of RFM, tiers, summaries) are in this currency; amounts in
# another count at fx_rates (e.g. fx_rates = { USD = 7.1 }) and, without a
# rate, count for F but not for M.
reporting_currency = "CNY"
window_months = 12
# The customer pyramid: the top vip_share of customers by value are VIP, the
# next major_share MAJOR, the next ordinary_share ORDINARY, the rest SMALL
# (each count rounded down).
vip_share = 0.01
major_share = 0.04
ordinary_share = 0.15
# Next-best actions: a profile older than this asks for an update; a
# declined offer is not made again for offer_quiet_days; suggestions lapse
# after action_ttl_days.
profile_stale_days = 365
offer_quiet_days = 90
action_ttl_days = 7
# A segmentation may run this long (the recompute-segments job, or a
# RecomputeSegments operation).
recompute_timeout_secs = 900

[insights.rules]
# Churn risk, 0 to 100: the sum of the weights (points) of the signals
# found, at most 100.
horizon_days = 90
inactivity_factor = 3.0
inactivity_min_days = 30.0
declining_ratio = 0.5
low_csat = 3.0
low_nps = 0.0
weight_long_inactivity = 30
weight_declining_frequency = 20
weight_unresolved_complaint = 20
weight_repeated_complaints = 10
weight_low_satisfaction = 10
weight_low_nps = 10
weight_withdrawn_consent = 10
# Relationship types: RELATIONAL from this tenure, products and months with
# contact besides transactions.
relational_min_tenure_days = 365
relational_min_products = 2
relational_min_contact_months = 3

[log]
format = "json"
level = "info"

[telemetry]
# Unset (the default): spans keep their ids for logs and x-trace-id, but
# nothing is exported. Set to the collector's OTLP/gRPC address, e.g.
# "http://otel-collector:4317".
otlp_endpoint = ""
service_name = "customer-knowledge"
sampling_ratio = 1.0

[audit]
enabled = true
# Access events waiting for the background writer. A call takes a slot when
# it arrives; with none free it is refused (UNAVAILABLE) rather than served
# unaudited.
queue_capacity = 10000
# pseudonym_key: the secret (>= 32 bytes) of customer pseudonyms; see
# Settings::audit_pseudonym_key for what happens when it is unset.
"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub api: ApiSettings,
    pub interactions: InteractionSettings,
    pub insights: InsightSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub audit: AuditSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shutdown_grace_secs: u64,
    pub max_message_bytes: usize,
    pub request_timeout_secs: u64,
    pub concurrency_limit_per_connection: usize,
    pub max_concurrent_calls: usize,
    pub tls: TlsSettings,
}

/// `[server.tls]`: TLS (and optionally mutual TLS) on the gRPC port. The
/// admin port stays plain HTTP.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first. TLS is off while unset (or empty).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s). When set, clients must present a certificate
    /// that chains to one of them (mutual TLS). The certificate only opens
    /// the connection: the caller's identity still comes from the JWT.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: clients without a certificate are let in too
    /// (a certificate that is presented must still chain to the CA).
    pub client_auth_optional: bool,
}

const TLS_CERT_KEY: &str = "server.tls.cert_file (CK__SERVER__TLS__CERT_FILE)";
const TLS_KEY_KEY: &str = "server.tls.key_file (CK__SERVER__TLS__KEY_FILE)";
const TLS_CA_KEY: &str = "server.tls.client_ca_file (CK__SERVER__TLS__CLIENT_CA_FILE)";
const TLS_OPTIONAL_KEY: &str =
    "server.tls.client_auth_optional (CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL)";

/// The files of `[server.tls]`, read and checked: what the gRPC listener
/// serves with. Its Debug output shows no key material.
#[derive(Debug)]
pub struct TlsFiles {
    /// The PEM certificate chain as read.
    pub cert_chain_pem: Vec<u8>,
    /// The PEM private key as read (zeroed when dropped).
    pub key_pem: SecretSlice<u8>,
    /// The PEM client CA certificates, when mutual TLS is on.
    pub client_ca_pem: Option<Vec<u8>>,
    pub client_auth_optional: bool,
}

impl TlsSettings {
    fn path(path: &Option<PathBuf>) -> Option<&Path> {
        path.as_deref().filter(|p| !p.as_os_str().is_empty())
    }

    /// Whether the gRPC port serves TLS.
    pub fn enabled(&self) -> bool {
        Self::path(&self.cert_file).is_some()
    }

    /// Reads and checks the files: `None` when TLS is off. Errors name the
    /// key and the path, never the files' contents.
    pub fn load(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        let client_ca = Self::path(&self.client_ca_file);
        let (cert_path, key_path) = match (Self::path(&self.cert_file), Self::path(&self.key_file))
        {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return fail(format!(
                    "{TLS_CERT_KEY} is set but {TLS_KEY_KEY} is not: TLS needs both the \
                     certificate chain and its private key"
                ));
            }
            (None, Some(_)) => {
                return fail(format!(
                    "{TLS_KEY_KEY} is set but {TLS_CERT_KEY} is not: TLS needs both the \
                     certificate chain and its private key"
                ));
            }
            (None, None) if client_ca.is_some() => {
                return fail(format!(
                    "{TLS_CA_KEY} is set but TLS is off: mutual TLS also needs {TLS_CERT_KEY} \
                     and {TLS_KEY_KEY}"
                ));
            }
            (None, None) if self.client_auth_optional => {
                return fail(format!(
                    "{TLS_OPTIONAL_KEY} is true but TLS is off: it applies to mutual TLS \
                     ({TLS_CERT_KEY}, {TLS_KEY_KEY} and {TLS_CA_KEY})"
                ));
            }
            (None, None) => return Ok(None),
        };
        if self.client_auth_optional && client_ca.is_none() {
            return fail(format!(
                "{TLS_OPTIONAL_KEY} is true but {TLS_CA_KEY} is not set: it applies to mutual TLS"
            ));
        }

        let cert_chain_pem = read_pem_file(TLS_CERT_KEY, cert_path)?;
        let chain = pem_certificates(TLS_CERT_KEY, cert_path, &cert_chain_pem)?;
        let key_pem = SecretSlice::from(read_pem_file(TLS_KEY_KEY, key_path)?);
        let key = PrivateKeyDer::from_pem_slice(key_pem.expose_secret()).map_err(|_| {
            ConfigError(format!(
                "{TLS_KEY_KEY} {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key_path.display()
            ))
        })?;
        // What the listener will do at start: the key must be one the TLS
        // stack can sign with, and belong to the first certificate.
        rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
            .map_err(|e| {
                let (key, cert) = (key_path.display(), cert_path.display());
                ConfigError(match e {
                    rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                        format!(
                            "{TLS_KEY_KEY} {key} is not the private key of the first \
                             certificate of {TLS_CERT_KEY} {cert}"
                        )
                    }
                    e => format!(
                        "{TLS_KEY_KEY} {key} cannot serve the first certificate of \
                         {TLS_CERT_KEY} {cert}: {e}"
                    ),
                })
            })?;

        let client_ca_pem = match client_ca {
            None => None,
            Some(path) => {
                let pem = read_pem_file(TLS_CA_KEY, path)?;
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) =
                    roots.add_parsable_certificates(pem_certificates(TLS_CA_KEY, path, &pem)?);
                if added == 0 {
                    return fail(format!(
                        "{TLS_CA_KEY} {} holds no usable CA certificate",
                        path.display()
                    ));
                }
                Some(pem)
            }
        };
        Ok(Some(TlsFiles {
            cert_chain_pem,
            key_pem,
            client_ca_pem,
            client_auth_optional: self.client_auth_optional,
        }))
    }
}

fn read_pem_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError(format!("{key} {} cannot be read: {e}", path.display())))
}

/// Every certificate of a PEM file; at least one.
fn pem_certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let no_certificate = || {
        ConfigError(format!(
            "{key} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))
    };
    // The parser's own errors may quote a line of the file: not shown.
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| no_certificate())?;
    if certificates.is_empty() {
        return Err(no_certificate());
    }
    Ok(certificates)
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    pub migrate: bool,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub health_check_interval_ms: u64,
    /// A hot standby for reads that tolerate staleness (`CK__DATABASE__READ_URL`).
    pub read_url: Option<SecretString>,
    pub read_your_writes_wait_ms: u64,
    pub read_your_writes_callers: usize,
    pub read_your_writes_ttl_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Jwt,
    TrustedHeaders,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// `trusted_headers` trusts whoever can reach the port, so it is only
    /// allowed on a loopback address unless this is set (a mesh sidecar that
    /// validates the JWT is then the only way in).
    pub trusted_headers_allow_non_loopback: bool,
    pub jwt: JwtSettings,
    /// Calling systems by their `sub`: the methods each may call.
    #[serde(default)]
    pub systems: std::collections::HashMap<String, SystemSettings>,
}

/// `[auth.systems.<sub>]`: what one calling system (a `service` principal)
/// may do. A system without an entry may call nothing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SystemSettings {
    /// `*`, `Service/*` or `Service/Method`; in the environment a
    /// comma-separated list (`CK__AUTH__SYSTEMS__CORE-BANKING__METHODS`).
    #[serde(default, deserialize_with = "list_or_commas")]
    pub methods: Vec<String>,
    /// The system acts for one end customer per call (`on_behalf_of`).
    #[serde(default)]
    pub acts_for_customers: bool,
}

/// A list, or one string of comma-separated items (as environment
/// variables give it).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(de)? {
        Either::List(items) => items,
        Either::Text(text) => text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

impl AuthSettings {
    /// The calling-system policies, for the authorization check.
    pub fn systems(&self) -> crate::domain::systems::Systems {
        crate::domain::systems::Systems::new(
            self.systems
                .iter()
                .map(|(sub, s)| {
                    (
                        sub.clone(),
                        crate::domain::systems::SystemPolicy {
                            methods: s.methods.clone(),
                            acts_for_customers: s.acts_for_customers,
                        },
                    )
                })
                .collect(),
        )
    }
}

/// The short names of the contract's services, for `auth.systems` patterns.
const CONTRACT_SERVICES: &[&str] = &[
    "CustomerService",
    "InteractionService",
    "KnowledgeService",
    "InsightService",
    "CampaignService",
    "AuditService",
    // google.longrunning.Operations: polling RecomputeSegments.
    "Operations",
];

#[derive(Debug, Clone, Deserialize)]
pub struct JwtSettings {
    pub hs256_secret: Option<SecretString>,
    pub public_keys_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Key that signs page tokens. Replicas behind one load balancer must
    /// share it; when unset each process draws a random one.
    pub page_token_secret: Option<SecretString>,
    /// How long an idempotency key answers retries before it expires.
    pub idempotency_retention_secs: u64,
    /// Field violations an INVALID_ARGUMENT answer lists at most.
    pub max_field_violations: usize,
    /// Quiet time after which a watch stream gets a heartbeat.
    pub stream_heartbeat_secs: u64,
    /// Time without a message after which an import stream is ended.
    pub stream_idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InteractionSettings {
    /// Rows ImportInteractions writes per transaction.
    pub import_batch_size: usize,
    /// LogInteraction calls coalesce into shared transactions.
    pub group_commit: bool,
    /// Most LogInteraction calls one group commit writes.
    pub group_commit_max_batch: usize,
    /// Group commits in flight at once.
    pub group_commit_workers: usize,
    /// More source system names a calling system (by its JWT `sub`) writes
    /// under, besides its own: `core-banking = ["CBS", "T24"]`.
    #[serde(default)]
    pub source_systems: std::collections::HashMap<String, Vec<String>>,
    /// Time from a complaint to its due time, by severity.
    pub complaint_sla_hours_low: u32,
    pub complaint_sla_hours_medium: u32,
    pub complaint_sla_hours_high: u32,
    pub complaint_sla_hours_critical: u32,
    /// Days from a complaint's resolution to its 回访 follow-up; 0: none.
    pub complaint_follow_up_days: u32,
    /// The team a COMPLAINT_INSIGHT item goes to; None: no item.
    #[serde(default)]
    pub complaint_insight_team: Option<String>,
    /// Hours from a service request's receipt to its first response, by
    /// priority.
    pub service_response_hours_low: u32,
    pub service_response_hours_medium: u32,
    pub service_response_hours_high: u32,
    pub service_response_hours_urgent: u32,
    /// Hours from a service request's receipt to its resolution, by priority.
    pub service_resolution_hours_low: u32,
    pub service_resolution_hours_medium: u32,
    pub service_resolution_hours_high: u32,
    pub service_resolution_hours_urgent: u32,
    /// The share (1-100 %) of those times key customers (VIP, MAJOR) get.
    pub service_key_customer_sla_percent: u32,
    /// Months between follow-ups of a customer of each tier when none is
    /// given (0: a one-off).
    pub follow_up_cadence_months_vip: u32,
    pub follow_up_cadence_months_major: u32,
    pub follow_up_cadence_months_ordinary: u32,
    pub follow_up_cadence_months_small: u32,
}

impl InteractionSettings {
    /// LogInteraction's group commit, when it is on.
    pub fn group_commit(&self) -> Option<crate::api::interaction::GroupCommitSettings> {
        self.group_commit
            .then_some(crate::api::interaction::GroupCommitSettings {
                max_batch: self.group_commit_max_batch,
                workers: self.group_commit_workers,
            })
    }

    pub fn complaint_sla(&self) -> crate::domain::interaction::ComplaintSla {
        let hours = |h: u32| chrono::Duration::hours(i64::from(h));
        crate::domain::interaction::ComplaintSla {
            low: hours(self.complaint_sla_hours_low),
            medium: hours(self.complaint_sla_hours_medium),
            high: hours(self.complaint_sla_hours_high),
            critical: hours(self.complaint_sla_hours_critical),
        }
    }

    pub fn follow_up_cadence(&self) -> crate::domain::interaction::FollowUpCadence {
        crate::domain::interaction::FollowUpCadence {
            vip_months: self.follow_up_cadence_months_vip,
            major_months: self.follow_up_cadence_months_major,
            ordinary_months: self.follow_up_cadence_months_ordinary,
            small_months: self.follow_up_cadence_months_small,
        }
    }

    pub fn service_sla(&self) -> crate::domain::service::ServiceSla {
        use crate::domain::service::{ServiceSla, SlaTimes};
        let pairs = [
            (
                self.service_response_hours_low,
                self.service_resolution_hours_low,
            ),
            (
                self.service_response_hours_medium,
                self.service_resolution_hours_medium,
            ),
            (
                self.service_response_hours_high,
                self.service_resolution_hours_high,
            ),
            (
                self.service_response_hours_urgent,
                self.service_resolution_hours_urgent,
            ),
        ];
        let minutes = |hours: u32, percent: u32| {
            chrono::Duration::minutes(i64::from(hours) * 60 * i64::from(percent) / 100)
        };
        let times = |percent: u32| {
            pairs.map(|(response, resolution)| SlaTimes {
                response: minutes(response, percent),
                resolution: minutes(resolution, percent),
            })
        };
        ServiceSla {
            standard: times(100),
            key: times(self.service_key_customer_sla_percent),
        }
    }

    pub fn complaint_policy(&self) -> crate::domain::interaction::ComplaintPolicy {
        crate::domain::interaction::ComplaintPolicy {
            follow_up_days: self.complaint_follow_up_days,
            insight_team: self
                .complaint_insight_team
                .clone()
                .filter(|t| !t.is_empty()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InsightSettings {
    pub reporting_currency: String,
    #[serde(default)]
    pub fx_rates: std::collections::BTreeMap<String, f64>,
    pub window_months: u32,
    pub vip_share: f64,
    pub major_share: f64,
    pub ordinary_share: f64,
    pub profile_stale_days: i64,
    pub offer_quiet_days: i64,
    pub action_ttl_days: i64,
    pub recompute_timeout_secs: u64,
    pub rules: crate::domain::insight::Rules,
}

impl InsightSettings {
    pub fn model(&self) -> crate::domain::insight::SegmentModel {
        crate::domain::insight::SegmentModel {
            window_months: self.window_months,
            reporting_currency: self.reporting_currency.clone(),
            fx_rates: self.fx_rates.clone(),
            shares: crate::domain::insight::TierShares {
                vip: self.vip_share,
                major: self.major_share,
                ordinary: self.ordinary_share,
            },
            rules: self.rules.clone(),
        }
    }

    fn check(&self) -> Result<(), String> {
        let model = self.model();
        model.shares.check()?;
        model.rules.check()?;
        if !(1..=60).contains(&self.window_months) {
            return Err("window_months must be 1 to 60".into());
        }
        let code = |c: &str| c.len() == 3 && c.chars().all(|c| c.is_ascii_uppercase());
        if !code(&self.reporting_currency) {
            return Err("reporting_currency must be an ISO 4217 code such as CNY".into());
        }
        if let Some((c, r)) = self
            .fx_rates
            .iter()
            .find(|(c, r)| !(code(c) && r.is_finite() && **r > 0.0))
        {
            return Err(format!(
                "fx_rates.{c} = {r}: codes are ISO 4217, rates positive"
            ));
        }
        if self.profile_stale_days < 1 || self.offer_quiet_days < 0 || self.action_ttl_days < 1 {
            return Err("profile_stale_days and action_ttl_days must be positive, offer_quiet_days not negative".into());
        }
        if self.recompute_timeout_secs == 0 {
            return Err("recompute_timeout_secs must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// OTLP/gRPC collector address; empty turns exporting off.
    pub otlp_endpoint: String,
    /// Extra gRPC metadata for the collector (`key=value,key2=value2`), e.g.
    /// an API key; added to `OTEL_EXPORTER_OTLP_HEADERS`, which the exporter
    /// reads itself.
    pub otlp_headers: Option<SecretString>,
    pub service_name: String,
    /// Share of new traces recorded (0.0–1.0). A caller's sampling decision
    /// in `traceparent` is always followed (parent-based sampling).
    pub sampling_ratio: f64,
}

impl TelemetrySettings {
    /// The collector address, when exporting is on.
    pub fn endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.trim()).filter(|e| !e.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// Record every call of the customer-facing services (DESIGN §4).
    pub enabled: bool,
    /// HMAC key of customer pseudonyms in access events. It must never
    /// change: events are found by customer through it.
    pub pseudonym_key: Option<SecretString>,
    pub queue_capacity: usize,
}

/// Where the pseudonym key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudonymKeySource {
    Configured,
    DerivedFromPageTokenSecret,
    /// A published key for local development on a loopback address.
    Development,
}

/// The standard OpenTelemetry variables that map onto `[telemetry]` keys.
/// `CK__TELEMETRY__*` wins over them, as `CK__DATABASE__URL` wins over
/// `DATABASE_URL`.
fn otel_overrides(
    env: &std::collections::HashMap<String, String>,
) -> Result<Vec<(&'static str, config::Value)>, ConfigError> {
    let set = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut overrides = Vec::new();
    if !env.contains_key("CK__TELEMETRY__OTLP_ENDPOINT")
        && let Some(endpoint) =
            set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
    {
        overrides.push(("telemetry.otlp_endpoint", endpoint.into()));
    }
    if !env.contains_key("CK__TELEMETRY__SERVICE_NAME")
        && let Some(name) = set("OTEL_SERVICE_NAME")
    {
        overrides.push(("telemetry.service_name", name.into()));
    }
    if !env.contains_key("CK__TELEMETRY__SAMPLING_RATIO")
        && let Some(sampler) = set("OTEL_TRACES_SAMPLER")
    {
        // Only the ratio is taken: the sampler is always parent-based, so a
        // caller that sampled a trace gets the whole of it.
        let ratio = match sampler {
            "always_on" | "parentbased_always_on" => 1.0,
            "always_off" | "parentbased_always_off" => 0.0,
            "traceidratio" | "parentbased_traceidratio" => match set("OTEL_TRACES_SAMPLER_ARG") {
                None => 1.0,
                Some(arg) => arg.parse::<f64>().map_err(|_| {
                    ConfigError(
                        "OTEL_TRACES_SAMPLER_ARG must be a number between 0 and 1".to_string(),
                    )
                })?,
            },
            _ => {
                return Err(ConfigError(
                    "OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio or their \
                     parentbased_ forms"
                        .to_string(),
                ));
            }
        };
        overrides.push(("telemetry.sampling_ratio", ratio.into()));
    }
    Ok(overrides)
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads settings from the defaults, the optional file and the process
    /// environment.
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Settings for `migrate`, which needs only the database: the server and
    /// auth keys are not checked, so a migration Job needs no JWT keys.
    pub fn load_for_migrate(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = std::env::vars().collect();
        let settings = Self::build(file, &env)?;
        settings.validate_database()?;
        settings.validate_insights()?;
        Ok(settings)
    }

    fn validate_insights(&self) -> Result<(), ConfigError> {
        self.insights
            .check()
            .map_err(|why| ConfigError(format!("insights (CK__INSIGHTS__*): {why}")))
    }

    /// Loads settings with an explicit environment (tests use this).
    pub fn load_from(
        file: Option<PathBuf>,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let settings = Self::build(file, env)?;
        settings.validate()?;
        Ok(settings)
    }

    fn build(
        file: Option<PathBuf>,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = file.or_else(|| env.get("CK_CONFIG").map(PathBuf::from));
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = &file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "configuration file {} (--config / CK_CONFIG) does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        let ck_vars: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("CK__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("CK")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(ck_vars)),
        );
        if let Some(url) = env.get("DATABASE_URL")
            && !env.contains_key("CK__DATABASE__URL")
        {
            builder = builder
                .set_override("database.url", url.as_str())
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        for (key, value) in otel_overrides(env)? {
            builder = builder
                .set_override(key, value)
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        let settings: Settings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| ConfigError(e.to_string()))?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_string()));
        if self.server.max_message_bytes < 1024 || self.server.max_message_bytes > 64 << 20 {
            return fail(
                "server.max_message_bytes (CK__SERVER__MAX_MESSAGE_BYTES) must be between 1 KiB and 64 MiB",
            );
        }
        if self.server.request_timeout_secs == 0 {
            return fail(
                "server.request_timeout_secs (CK__SERVER__REQUEST_TIMEOUT_SECS) must be positive",
            );
        }
        if self.server.concurrency_limit_per_connection == 0 {
            return fail(
                "server.concurrency_limit_per_connection (CK__SERVER__CONCURRENCY_LIMIT_PER_CONNECTION) must be positive",
            );
        }
        if self.database.max_connections == 0 {
            return fail(
                "database.max_connections (CK__DATABASE__MAX_CONNECTIONS) must be positive",
            );
        }
        if self.api.stream_heartbeat_secs == 0 || self.api.stream_idle_timeout_secs == 0 {
            return fail(
                "api.stream_heartbeat_secs (CK__API__STREAM_HEARTBEAT_SECS) and \
                 api.stream_idle_timeout_secs (CK__API__STREAM_IDLE_TIMEOUT_SECS) must be positive",
            );
        }
        if self.database.acquire_timeout_ms == 0 || self.database.statement_timeout_ms == 0 {
            return fail(
                "database.acquire_timeout_ms and database.statement_timeout_ms must be positive",
            );
        }
        if !(1..=50_000).contains(&self.interactions.import_batch_size) {
            return fail(
                "interactions.import_batch_size (CK__INTERACTIONS__IMPORT_BATCH_SIZE) must be between 1 and 50000",
            );
        }
        if !(1..=1000).contains(&self.interactions.group_commit_max_batch) {
            return fail(
                "interactions.group_commit_max_batch (CK__INTERACTIONS__GROUP_COMMIT_MAX_BATCH) must be between 1 and 1000",
            );
        }
        if !(1..=16).contains(&self.interactions.group_commit_workers) {
            return fail(
                "interactions.group_commit_workers (CK__INTERACTIONS__GROUP_COMMIT_WORKERS) must be between 1 and 16",
            );
        }
        if self.interactions.complaint_follow_up_days > 366 {
            return fail(
                "interactions.complaint_follow_up_days (CK__INTERACTIONS__COMPLAINT_FOLLOW_UP_DAYS) must be at most 366",
            );
        }
        if [
            self.interactions.follow_up_cadence_months_vip,
            self.interactions.follow_up_cadence_months_major,
            self.interactions.follow_up_cadence_months_ordinary,
            self.interactions.follow_up_cadence_months_small,
        ]
        .iter()
        .any(|m| *m > crate::domain::interaction::MAX_RECURRENCE_MONTHS)
        {
            return fail(
                "interactions.follow_up_cadence_months_* (CK__INTERACTIONS__FOLLOW_UP_CADENCE_MONTHS_*) must be at most 12",
            );
        }
        if !(1..=100).contains(&self.interactions.service_key_customer_sla_percent) {
            return fail(
                "interactions.service_key_customer_sla_percent (CK__INTERACTIONS__SERVICE_KEY_CUSTOMER_SLA_PERCENT) must be between 1 and 100",
            );
        }
        if [
            self.interactions.service_response_hours_low,
            self.interactions.service_response_hours_medium,
            self.interactions.service_response_hours_high,
            self.interactions.service_response_hours_urgent,
            self.interactions.service_resolution_hours_low,
            self.interactions.service_resolution_hours_medium,
            self.interactions.service_resolution_hours_high,
            self.interactions.service_resolution_hours_urgent,
        ]
        .iter()
        .any(|h| !(1..=8784).contains(h))
        {
            return fail(
                "interactions.service_response_hours_* and service_resolution_hours_* (CK__INTERACTIONS__SERVICE_*_HOURS_*) must be between 1 and 8784 (a year)",
            );
        }
        if let Some(team) = &self.interactions.complaint_insight_team
            && let Err(why) = crate::domain::customer::org_code(team, false)
        {
            return fail(&format!(
                "interactions.complaint_insight_team (CK__INTERACTIONS__COMPLAINT_INSIGHT_TEAM) {why}"
            ));
        }
        self.validate_insights()?;
        self.validate_database()?;
        self.server.tls.load()?;
        match self.auth.mode {
            AuthMode::Jwt => {
                let jwt = &self.auth.jwt;
                let has_secret = jwt
                    .hs256_secret
                    .as_ref()
                    .is_some_and(|s| !s.expose_secret().is_empty());
                if !has_secret && jwt.public_keys_file.is_none() {
                    return fail(
                        "auth.jwt.hs256_secret (CK__AUTH__JWT__HS256_SECRET) or \
                         auth.jwt.public_keys_file (CK__AUTH__JWT__PUBLIC_KEYS_FILE) must be set \
                         when auth.mode = jwt",
                    );
                }
                if has_secret
                    && jwt
                        .hs256_secret
                        .as_ref()
                        .is_some_and(|s| s.expose_secret().len() < 32)
                {
                    return fail(
                        "auth.jwt.hs256_secret (CK__AUTH__JWT__HS256_SECRET) must be at least 32 bytes",
                    );
                }
                if jwt.issuer.as_deref().unwrap_or("").is_empty() {
                    return fail(
                        "auth.jwt.issuer (CK__AUTH__JWT__ISSUER) must be set when auth.mode = jwt",
                    );
                }
                if jwt.audience.as_deref().unwrap_or("").is_empty() {
                    return fail(
                        "auth.jwt.audience (CK__AUTH__JWT__AUDIENCE) must be set when auth.mode = jwt",
                    );
                }
            }
            AuthMode::TrustedHeaders => {
                if !self.server.grpc_addr.ip().is_loopback()
                    && !self.auth.trusted_headers_allow_non_loopback
                {
                    return fail(
                        "auth.mode = trusted_headers refuses the non-loopback server.grpc_addr \
                         (CK__SERVER__GRPC_ADDR) unless auth.trusted_headers_allow_non_loopback \
                         (CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK) is true",
                    );
                }
            }
        }
        for (sub, system) in &self.auth.systems {
            for pattern in &system.methods {
                crate::domain::systems::check_pattern(pattern, CONTRACT_SERVICES)
                    .map_err(|why| ConfigError(format!("auth.systems.{sub}.methods: {why}")))?;
            }
        }
        if let Some(secret) = &self.api.page_token_secret
            && secret.expose_secret().len() < 32
        {
            return fail(
                "api.page_token_secret (CK__API__PAGE_TOKEN_SECRET) must be at least 32 bytes",
            );
        }
        let telemetry = &self.telemetry;
        if let Some(endpoint) = telemetry.endpoint()
            && !endpoint.starts_with("http://")
        {
            return fail(
                "telemetry.otlp_endpoint (CK__TELEMETRY__OTLP_ENDPOINT / \
                 OTEL_EXPORTER_OTLP_ENDPOINT) must be an http:// address of an OTLP/gRPC \
                 collector, e.g. http://otel-collector:4317 (TLS to the collector is the mesh's job)",
            );
        }
        if !(0.0..=1.0).contains(&telemetry.sampling_ratio) {
            return fail(
                "telemetry.sampling_ratio (CK__TELEMETRY__SAMPLING_RATIO / OTEL_TRACES_SAMPLER_ARG) \
                 must be between 0 and 1",
            );
        }
        if telemetry.service_name.trim().is_empty() {
            return fail(
                "telemetry.service_name (CK__TELEMETRY__SERVICE_NAME / OTEL_SERVICE_NAME) must not \
                 be empty",
            );
        }
        if let Some(headers) = &telemetry.otlp_headers
            && headers
                .expose_secret()
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .any(|pair| !pair.contains('='))
        {
            return fail(
                "telemetry.otlp_headers (CK__TELEMETRY__OTLP_HEADERS) must be key=value pairs \
                 separated by commas",
            );
        }
        self.validate_audit()
    }

    fn validate_audit(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.audit.queue_capacity) {
            return Err(ConfigError(
                "audit.queue_capacity (CK__AUDIT__QUEUE_CAPACITY) must be between 1 and 1000000"
                    .to_string(),
            ));
        }
        if self.audit.enabled {
            self.audit_pseudonym_key()?;
        }
        Ok(())
    }

    /// The key of customer pseudonyms: `audit.pseudonym_key` (at least 32
    /// bytes); else one derived from `api.page_token_secret` (so deployments
    /// that share that secret across replicas already agree); else, only on a
    /// loopback address (a developer's machine, tests), a fixed development
    /// key. A non-loopback listener without either secret refuses to start:
    /// pseudonyms made with a published key protect nobody.
    pub fn audit_pseudonym_key(&self) -> Result<(Vec<u8>, PseudonymKeySource), ConfigError> {
        use hmac::{Hmac, Mac};
        if let Some(key) = &self.audit.pseudonym_key {
            let key = key.expose_secret().as_bytes();
            if key.len() < 32 {
                return Err(ConfigError(
                    "audit.pseudonym_key (CK__AUDIT__PSEUDONYM_KEY) must be at least 32 bytes"
                        .to_string(),
                ));
            }
            return Ok((key.to_vec(), PseudonymKeySource::Configured));
        }
        if let Some(secret) = &self.api.page_token_secret {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC takes any key length");
            mac.update(b"customer-knowledge audit pseudonym key v1");
            return Ok((
                mac.finalize().into_bytes().to_vec(),
                PseudonymKeySource::DerivedFromPageTokenSecret,
            ));
        }
        if self.server.grpc_addr.ip().is_loopback() {
            use sha2::Digest;
            return Ok((
                sha2::Sha256::digest(b"customer-knowledge development pseudonym key").to_vec(),
                PseudonymKeySource::Development,
            ));
        }
        Err(ConfigError(
            "audit.pseudonym_key (CK__AUDIT__PSEUDONYM_KEY, at least 32 bytes) must be set when \
             server.grpc_addr is not a loopback address and api.page_token_secret is unset \
             (or set audit.enabled = false)"
                .to_string(),
        ))
    }

    fn validate_database(&self) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_string()));
        match &self.database.url {
            None => {
                return fail(
                    "database.url is not set: set DATABASE_URL or CK__DATABASE__URL \
                     (scripts/run.sh provides a local Postgres when neither is set)",
                );
            }
            Some(url)
                if !(url.expose_secret().starts_with("postgres://")
                    || url.expose_secret().starts_with("postgresql://")) =>
            {
                return fail(
                    "database.url (DATABASE_URL / CK__DATABASE__URL) must start with postgres://",
                );
            }
            Some(_) => {}
        }
        if let Some(url) = &self.database.read_url
            && !url.expose_secret().is_empty()
            && !(url.expose_secret().starts_with("postgres://")
                || url.expose_secret().starts_with("postgresql://"))
        {
            return fail("database.read_url (CK__DATABASE__READ_URL) must start with postgres://");
        }
        if self.database.read_your_writes_callers == 0 {
            return fail(
                "database.read_your_writes_callers (CK__DATABASE__READ_YOUR_WRITES_CALLERS) \
                 must be at least 1",
            );
        }
        Ok(())
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }

    /// The part of the grace period kept for flushing telemetry once the
    /// drain is over, so drain and flush together end within the grace
    /// period.
    pub fn telemetry_flush_budget(&self) -> Duration {
        (self.shutdown_grace() / 5).min(Duration::from_secs(5))
    }

    /// The part of the grace period kept for writing the access events
    /// still queued once the drain is over: half the telemetry flush budget,
    /// none when auditing is off.
    pub fn audit_flush_budget(&self) -> Duration {
        if self.audit.enabled {
            self.telemetry_flush_budget() / 2
        } else {
            Duration::ZERO
        }
    }

    /// Calls of the contract's services served at once
    /// (`server.max_concurrent_calls`, or twice the pool when it is 0):
    /// beyond the pool, a short queue for the next free connection.
    pub fn max_concurrent_calls(&self) -> usize {
        match self.server.max_concurrent_calls {
            0 => usize::try_from(self.database.max_connections)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .max(1),
            n => n,
        }
    }

    /// How long in-flight calls may drain before they are cut off, so that
    /// drain, audit flush and telemetry flush end within the grace period.
    pub fn drain_limit(&self) -> Duration {
        self.shutdown_grace()
            .saturating_sub(self.telemetry_flush_budget())
            .saturating_sub(self.audit_flush_budget())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://localhost/ck"),
            (
                "CK__AUTH__JWT__HS256_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("CK__AUTH__JWT__ISSUER", "https://idp"),
            ("CK__AUTH__JWT__AUDIENCE", "ck"),
            (
                "CK__AUDIT__PSEUDONYM_KEY",
                "audit-pseudonym-key-of-32-bytes!",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        env
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        Settings::load_from(None, &env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_match_the_operating_contract() {
        let settings = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(settings.server.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(settings.server.admin_addr.to_string(), "127.0.0.1:9464");
        assert!(settings.database.migrate);
        assert_eq!(settings.auth.mode, AuthMode::Jwt);
        assert_eq!(
            settings.telemetry.endpoint(),
            None,
            "exporting is off by default"
        );
        assert_eq!(settings.telemetry.service_name, "customer-knowledge");
        assert_eq!(settings.telemetry.sampling_ratio, 1.0);
        assert_eq!(settings.drain_limit(), Duration::from_millis(17_500));
        assert_eq!(settings.telemetry_flush_budget(), Duration::from_secs(5));
        assert_eq!(settings.audit_flush_budget(), Duration::from_millis(2_500));
    }

    #[test]
    fn standard_otel_variables_configure_tracing_and_ck_keys_win() {
        let settings = Settings::load_from(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_SERVICE_NAME", "ck-blue"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.telemetry.endpoint(), Some("http://collector:4317"));
        assert_eq!(settings.telemetry.service_name, "ck-blue");
        assert_eq!(settings.telemetry.sampling_ratio, 0.25);

        let settings = Settings::load_from(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
                ("CK__TELEMETRY__SERVICE_NAME", "ck-green"),
                ("OTEL_SERVICE_NAME", "ck-blue"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.telemetry.endpoint(), Some("http://traces:4317"));
        assert_eq!(settings.telemetry.service_name, "ck-green");
        assert_eq!(settings.telemetry.sampling_ratio, 0.0);

        let settings = Settings::load_from(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("CK__TELEMETRY__OTLP_ENDPOINT", "http://sidecar:4317"),
                ("CK__TELEMETRY__SAMPLING_RATIO", "0.5"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.telemetry.endpoint(), Some("http://sidecar:4317"));
        assert_eq!(settings.telemetry.sampling_ratio, 0.5);
    }

    #[test]
    fn invalid_telemetry_configuration_names_the_key() {
        assert!(
            error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")])
                .contains("telemetry.otlp_endpoint")
        );
        assert!(
            error(&[("CK__TELEMETRY__OTLP_ENDPOINT", "https://collector:4317")])
                .contains("CK__TELEMETRY__OTLP_ENDPOINT")
        );
        assert!(error(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).contains("OTEL_TRACES_SAMPLER"));
        assert!(
            error(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "half")
            ])
            .contains("OTEL_TRACES_SAMPLER_ARG")
        );
        assert!(
            error(&[("CK__TELEMETRY__SAMPLING_RATIO", "1.5")]).contains("telemetry.sampling_ratio")
        );
        assert!(
            error(&[("CK__TELEMETRY__OTLP_HEADERS", "api-key")])
                .contains("CK__TELEMETRY__OTLP_HEADERS")
        );
        assert!(
            Settings::load_from(
                None,
                &env(&[("CK__TELEMETRY__OTLP_HEADERS", "api-key=s3cret,tenant=bank")])
            )
            .is_ok()
        );
    }

    #[test]
    fn environment_overrides_and_database_url_precedence() {
        let settings = Settings::load_from(
            None,
            &env(&[
                ("CK__SERVER__GRPC_ADDR", "0.0.0.0:6000"),
                ("CK__DATABASE__MIGRATE", "false"),
                ("CK__DATABASE__URL", "postgres://primary/ck"),
                ("CK__SERVER__SHUTDOWN_GRACE_SECS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.grpc_addr.port(), 6000);
        assert!(!settings.database.migrate);
        assert_eq!(settings.server.shutdown_grace_secs, 5);
        assert_eq!(
            settings.database.url.unwrap().expose_secret(),
            "postgres://primary/ck"
        );
    }

    #[test]
    fn invalid_configuration_names_the_key() {
        assert!(error(&[("CK__SERVER__GRPC_ADDR", "nowhere")]).contains("server.grpc_addr"));
        assert!(
            error(&[("CK__SERVER__SHUTDOWN_GRACE_SECS", "soon")])
                .contains("server.shutdown_grace_secs")
        );
        assert!(error(&[("CK__AUTH__MODE", "basic")]).contains("auth.mode"));
        assert!(error(&[("DATABASE_URL", "")]).contains("DATABASE_URL"));
        assert!(error(&[("DATABASE_URL", "mysql://x")]).contains("database.url"));
        assert!(
            error(&[("CK__AUTH__JWT__HS256_SECRET", "")]).contains("CK__AUTH__JWT__HS256_SECRET")
        );
        assert!(error(&[("CK__AUTH__JWT__HS256_SECRET", "short")]).contains("32 bytes"));
        assert!(error(&[("CK__AUTH__JWT__ISSUER", "")]).contains("auth.jwt.issuer"));
        assert!(
            error(&[
                ("CK__AUTH__MODE", "trusted_headers"),
                ("CK__SERVER__GRPC_ADDR", "0.0.0.0:50051"),
            ])
            .contains("CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK")
        );
        assert!(
            Settings::load_from(
                None,
                &env(&[
                    ("CK__AUTH__MODE", "trusted_headers"),
                    ("CK__SERVER__GRPC_ADDR", "0.0.0.0:50051"),
                    ("CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK", "true"),
                ])
            )
            .is_ok()
        );
        let migrate_only = Settings::build(None, &env(&[("CK__AUTH__JWT__HS256_SECRET", "")]))
            .and_then(|s| s.validate_database());
        assert!(migrate_only.is_ok(), "migrate needs no auth keys");
        let missing = Settings::load_from(Some("/nonexistent/ck.toml".into()), &env(&[]));
        assert!(missing.unwrap_err().to_string().contains("CK_CONFIG"));
    }

    /// A self-signed certificate and its key, as PEM files in `dir`.
    fn self_signed(dir: &Path, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.to_str().unwrap().to_string(),
            key_path.to_str().unwrap().to_string(),
        )
    }

    #[test]
    fn tls_is_off_by_default_and_on_with_a_certificate_and_its_key() {
        let settings = Settings::load_from(None, &env(&[])).unwrap();
        assert!(!settings.server.tls.enabled());
        assert!(settings.server.tls.load().unwrap().is_none());
        // Empty values (e.g. `CK__SERVER__TLS__CERT_FILE=`) mean unset.
        let empty = TlsSettings {
            cert_file: Some(PathBuf::new()),
            key_file: Some(PathBuf::new()),
            client_ca_file: Some(PathBuf::new()),
            client_auth_optional: false,
        };
        assert!(!empty.enabled() && empty.load().unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "server");
        let (ca, _) = self_signed(dir.path(), "ca");
        let settings = Settings::load_from(
            None,
            &env(&[
                ("CK__SERVER__TLS__CERT_FILE", &cert),
                ("CK__SERVER__TLS__KEY_FILE", &key),
                ("CK__SERVER__TLS__CLIENT_CA_FILE", &ca),
                ("CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL", "true"),
            ]),
        )
        .unwrap();
        assert!(settings.server.tls.enabled());
        let files = settings.server.tls.load().unwrap().unwrap();
        assert!(files.client_ca_pem.is_some() && files.client_auth_optional);
        assert!(
            !format!("{files:?}").contains("PRIVATE KEY"),
            "Debug shows no key"
        );
    }

    #[test]
    fn tls_needs_both_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "server");
        let e = error(&[("CK__SERVER__TLS__CERT_FILE", &cert)]);
        assert!(
            e.contains("CK__SERVER__TLS__CERT_FILE") && e.contains("CK__SERVER__TLS__KEY_FILE"),
            "{e}"
        );
        assert!(e.contains("server.tls.key_file"), "{e}");
        let e = error(&[("CK__SERVER__TLS__KEY_FILE", &key)]);
        assert!(
            e.contains("(CK__SERVER__TLS__KEY_FILE) is set but")
                && e.contains("CK__SERVER__TLS__CERT_FILE"),
            "{e}"
        );
        let e = error(&[("CK__SERVER__TLS__CLIENT_CA_FILE", &cert)]);
        assert!(e.contains("CK__SERVER__TLS__CLIENT_CA_FILE"), "{e}");
        let e = error(&[
            ("CK__SERVER__TLS__CERT_FILE", &cert),
            ("CK__SERVER__TLS__KEY_FILE", &key),
            ("CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL", "true"),
        ]);
        assert!(
            e.contains("CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL")
                && e.contains("CK__SERVER__TLS__CLIENT_CA_FILE"),
            "{e}"
        );
    }

    #[test]
    fn bad_tls_files_name_the_key_and_path_but_not_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "server");
        let (_, other_key) = self_signed(dir.path(), "other");
        let missing = dir.path().join("missing.pem");
        let missing = missing.to_str().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not-a-pem TOP-SECRET-CONTENT\n").unwrap();
        let garbage = garbage.to_str().unwrap();
        // A PEM block whose base64 is broken: the parser's error would
        // quote it.
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-CONTENT!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let broken = broken.to_str().unwrap();

        let tls = |cert: &str, key: &str, ca: &str| {
            error(&[
                ("CK__SERVER__TLS__CERT_FILE", cert),
                ("CK__SERVER__TLS__KEY_FILE", key),
                ("CK__SERVER__TLS__CLIENT_CA_FILE", ca),
            ])
        };
        for (e, key_name, path) in [
            (
                tls(missing, &key, ""),
                "CK__SERVER__TLS__CERT_FILE",
                missing,
            ),
            (
                tls(&cert, missing, ""),
                "CK__SERVER__TLS__KEY_FILE",
                missing,
            ),
            (
                tls(&cert, &key, missing),
                "CK__SERVER__TLS__CLIENT_CA_FILE",
                missing,
            ),
            (
                tls(garbage, &key, ""),
                "CK__SERVER__TLS__CERT_FILE",
                garbage,
            ),
            (
                tls(&cert, garbage, ""),
                "CK__SERVER__TLS__KEY_FILE",
                garbage,
            ),
            (tls(&cert, broken, ""), "CK__SERVER__TLS__KEY_FILE", broken),
            (
                tls(&cert, &key, garbage),
                "CK__SERVER__TLS__CLIENT_CA_FILE",
                garbage,
            ),
            // The key file is a certificate: no private key in it.
            (tls(&cert, &cert, ""), "CK__SERVER__TLS__KEY_FILE", &cert),
            // A key, but of another certificate.
            (
                tls(&cert, &other_key, ""),
                "CK__SERVER__TLS__KEY_FILE",
                &other_key,
            ),
        ] {
            assert!(e.contains(key_name) && e.contains(path), "{e}");
            assert!(!e.contains("TOP-SECRET"), "{e}");
            assert!(!e.contains("PRIVATE KEY-----"), "{e}");
        }
        assert!(
            tls(&cert, &other_key, "").contains("is not the private key of the first certificate"),
            "a key of another certificate is named as such"
        );
    }

    #[test]
    fn migrate_does_not_read_the_tls_files() {
        let migrate_only = Settings::build(
            None,
            &env(&[("CK__SERVER__TLS__CERT_FILE", "/nonexistent/tls.crt")]),
        )
        .and_then(|s| s.validate_database());
        assert!(migrate_only.is_ok());
    }

    #[test]
    fn the_pseudonym_key_is_configured_derived_or_refused() {
        let no_key = ("CK__AUDIT__PSEUDONYM_KEY", "");
        let pod = ("CK__SERVER__GRPC_ADDR", "0.0.0.0:50051");
        let settings = Settings::load_from(None, &env(&[no_key])).unwrap();
        assert!(settings.audit.enabled);
        assert_eq!(settings.audit.queue_capacity, 10000);
        assert_eq!(
            settings.audit_pseudonym_key().unwrap().1,
            PseudonymKeySource::Development,
            "loopback without secrets: the development key"
        );
        let key = "k".repeat(32);
        let settings =
            Settings::load_from(None, &env(&[("CK__AUDIT__PSEUDONYM_KEY", &key), pod])).unwrap();
        assert_eq!(
            settings.audit_pseudonym_key().unwrap(),
            (key.as_bytes().to_vec(), PseudonymKeySource::Configured)
        );
        let secret = "p".repeat(32);
        let derived = Settings::load_from(
            None,
            &env(&[no_key, pod, ("CK__API__PAGE_TOKEN_SECRET", &secret)]),
        )
        .unwrap();
        let (derived_key, source) = derived.audit_pseudonym_key().unwrap();
        assert_eq!(source, PseudonymKeySource::DerivedFromPageTokenSecret);
        assert_ne!(derived_key, secret.into_bytes());
        assert!(error(&[no_key, pod]).contains("CK__AUDIT__PSEUDONYM_KEY"));
        let off = Settings::load_from(None, &env(&[no_key, pod, ("CK__AUDIT__ENABLED", "false")]));
        assert!(off.is_ok(), "no key is needed with auditing off");
        assert!(error(&[("CK__AUDIT__PSEUDONYM_KEY", "short")]).contains("32 bytes"));
        assert!(error(&[("CK__AUDIT__QUEUE_CAPACITY", "0")]).contains("CK__AUDIT__QUEUE_CAPACITY"));
    }

    #[test]
    fn a_config_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.toml");
        std::fs::write(
            &path,
            "[server]\ngrpc_addr = \"127.0.0.1:7000\"\nshutdown_grace_secs = 9\n",
        )
        .unwrap();
        let settings = Settings::load_from(
            Some(path),
            &env(&[("CK__SERVER__SHUTDOWN_GRACE_SECS", "3")]),
        )
        .unwrap();
        assert_eq!(settings.server.grpc_addr.port(), 7000);
        assert_eq!(settings.server.shutdown_grace_secs, 3);
    }
}
