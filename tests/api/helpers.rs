//! Spawns the real service on port 0 against a fresh, migrated database of the
//! local test cluster, and builds authenticated clients for it.

use std::{
    collections::HashMap,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use customer_knowledge::{
    config::Settings,
    metrics::Metrics,
    pb::v1::{
        customer_service_client::CustomerServiceClient,
        interaction_service_client::InteractionServiceClient,
        knowledge_service_client::KnowledgeServiceClient,
    },
    startup::Application,
};
use jsonwebtoken::{EncodingKey, Header, encode};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::oneshot,
    task::JoinHandle,
};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, ClientTlsConfig},
};

pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const ISSUER: &str = "https://idp.bank.test";
pub const AUDIENCE: &str = "customer-knowledge";

/// The base URL (`postgres://…/`) of the test cluster: `CK_TEST_DATABASE_URL`
/// when set (scripts/test.sh sets it), else the cluster scripts/postgres.sh
/// provides.
fn cluster_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("CK_TEST_DATABASE_URL") {
            return url;
        }
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
            .arg("test")
            .output()
            .expect("run scripts/postgres.sh test");
        assert!(
            out.status.success(),
            "scripts/postgres.sh test failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("ck_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&format!("{}postgres", cluster_url()))
        .await
        .expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    format!("{}{name}", cluster_url())
}

pub struct TestApp {
    pub port: u16,
    pub admin_port: u16,
    pub metrics: Metrics,
    pub database_url: String,
    pub db: PgPool,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The environment a test app starts with; tests change entries to vary it.
pub fn test_env(database_url: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", database_url),
        ("CK__SERVER__GRPC_ADDR", "127.0.0.1:0"),
        ("CK__SERVER__ADMIN_ADDR", "127.0.0.1:0"),
        ("CK__SERVER__SHUTDOWN_GRACE_SECS", "10"),
        ("CK__DATABASE__HEALTH_CHECK_INTERVAL_MS", "200"),
        ("CK__DATABASE__MAX_CONNECTIONS", "30"),
        ("CK__AUTH__MODE", "jwt"),
        ("CK__AUTH__JWT__HS256_SECRET", JWT_SECRET),
        ("CK__AUTH__JWT__ISSUER", ISSUER),
        ("CK__AUTH__JWT__AUDIENCE", AUDIENCE),
        ("CK__LOG__FORMAT", "pretty"),
        // Calling systems the tests use; a system without an entry may call
        // nothing.
        ("CK__AUTH__SYSTEMS__CORE-BANKING__METHODS", "*"),
        ("CK__AUTH__SYSTEMS__CARDS__METHODS", "InteractionService/*"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn init_test_log() {
    // TEST_LOG=1 shows the service's logs while debugging a test.
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_test_writer()
            .try_init();
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(change: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let database_url = fresh_database().await;
        Self::spawn_on(&database_url, change).await
    }

    /// Another service process (replica) on a database that exists already,
    /// e.g. another app's `database_url`: what several replicas behind one
    /// load balancer share.
    pub async fn spawn_on(
        database_url: &str,
        change: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        init_test_log();
        let database_url = database_url.to_string();
        let mut env = test_env(&database_url);
        change(&mut env);
        let settings = Settings::load_from(None, &env).expect("test settings are valid");
        let app = Application::build(settings)
            .await
            .expect("application builds");
        let port = app.port();
        let admin_port = app.admin_port();
        let metrics = app.metrics();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let db = PgPool::connect(&database_url)
            .await
            .expect("connect test db");
        TestApp {
            port,
            admin_port,
            metrics,
            database_url,
            db,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr())
            .unwrap()
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// A channel over TLS (`https://127.0.0.1:port`) with the client's
    /// trust roots and optional certificate; the error, when the handshake
    /// or the connection fails, is returned rather than unwrapped.
    pub async fn tls_channel(
        &self,
        tls: ClientTlsConfig,
    ) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await
    }

    pub async fn customers(&self, caller: &Caller) -> CustomerClient {
        CustomerServiceClient::with_interceptor(self.channel().await, Bearer::of(caller))
    }

    pub async fn interactions(&self, caller: &Caller) -> InteractionClient {
        InteractionServiceClient::with_interceptor(self.channel().await, Bearer::of(caller))
    }

    pub async fn knowledge(&self, caller: &Caller) -> KnowledgeClient {
        KnowledgeServiceClient::with_interceptor(self.channel().await, Bearer::of(caller))
    }

    pub async fn anonymous_customers(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::new(self.channel().await)
    }

    /// GET on the admin HTTP port: status code and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin_port, path).await
    }

    /// Starts the graceful shutdown (as SIGTERM would).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

pub type CustomerClient = CustomerServiceClient<InterceptedService<Channel, Bearer>>;
pub type KnowledgeClient = KnowledgeServiceClient<InterceptedService<Channel, Bearer>>;
pub type InteractionClient = InteractionServiceClient<InterceptedService<Channel, Bearer>>;

/// Creates a customer of `branch` as an admin and returns its name.
pub async fn new_customer(app: &TestApp, display_name: &str, branch: &str) -> String {
    use customer_knowledge::pb::v1 as pb;
    app.customers(&Caller::admin())
        .await
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: display_name.into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: branch.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create customer")
        .into_inner()
        .name
}

/// Moves `customer` to `branch` (UpdateCustomer of `home_branch`, as an admin).
pub async fn move_to_branch(app: &TestApp, customer: &str, branch: &str) {
    use customer_knowledge::pb::v1 as pb;
    app.customers(&Caller::admin())
        .await
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: customer.into(),
                home_branch: branch.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["home_branch".into()],
            }),
            ..Default::default()
        })
        .await
        .expect("move the customer");
}

/// Who a test calls as: the claims of its JWT.
#[derive(Clone, Debug)]
pub struct Caller {
    pub sub: String,
    pub branch: Option<String>,
    pub team: Option<String>,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn new(sub: &str, branch: Option<&str>, roles: &[&str]) -> Caller {
        Caller {
            sub: sub.into(),
            branch: branch.map(Into::into),
            team: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
    pub fn rm(branch: &str) -> Caller {
        Caller::new(
            &format!("E-rm-{branch}"),
            Some(branch),
            &["relationship_manager"],
        )
    }
    pub fn teller(branch: &str) -> Caller {
        Caller::new(&format!("E-teller-{branch}"), Some(branch), &["teller"])
    }
    pub fn analyst() -> Caller {
        Caller::new("E-analyst", Some("HQ"), &["analyst"])
    }
    pub fn compliance() -> Caller {
        Caller::new("E-compliance", Some("HQ"), &["compliance"])
    }
    pub fn admin() -> Caller {
        Caller::new("E-admin", None, &["admin"])
    }
    pub fn service() -> Caller {
        Caller::new("core-banking", None, &["service"])
    }

    pub fn claims(&self) -> serde_json::Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        serde_json::json!({
            "sub": self.sub,
            "branch": self.branch,
            "team": self.team,
            "roles": self.roles,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
        })
    }

    pub fn token(&self) -> String {
        sign(&self.claims())
    }
}

pub fn sign(claims: &serde_json::Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn of(caller: &Caller) -> Bearer {
        Bearer::token(&caller.token())
    }
    pub fn token(token: &str) -> Bearer {
        Bearer(format!("Bearer {token}").parse().unwrap())
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The `ErrorInfo.reason` of a status, checked to be a value the contract
/// declares (`ErrorReason`): every reason a test meets is one a caller can
/// look up.
pub fn reason(status: &Status) -> String {
    use customer_knowledge::pb::v1::ErrorReason;
    use tonic_types::StatusExt;
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    assert!(
        ErrorReason::from_str_name(&reason).is_some_and(|r| r != ErrorReason::Unspecified),
        "ErrorInfo.reason {reason:?} is not declared in the contract's ErrorReason"
    );
    reason
}

/// The fields named by a status's `BadRequest` violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// A plain HTTP/1.1 GET on 127.0.0.1: status code and body. A few lines of
/// HTTP keep the tests free of an HTTP client dependency.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the admin port");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

/// The value of one sample (`name{labels}` exactly as rendered) in the
/// Prometheus text format; 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a sample value"))
        .unwrap_or(0.0)
}
