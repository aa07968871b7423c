//! What every scenario stands on: the Postgres cluster the suite may restart,
//! the service as a child process in its own process group, clients, and the
//! figures a scenario reports.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::{self, Display},
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use customer_knowledge::pb::v1::{
    self as pb, customer_service_client::CustomerServiceClient,
    interaction_service_client::InteractionServiceClient,
};
use sqlx::{
    ConnectOptions, PgConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
};
use tonic::{
    Code, Request,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{AUDIENCE, Bearer, Caller, ISSUER, InteractionClient, JWT_SECRET};

pub type CustomerClient =
    CustomerServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

// ---------------------------------------------------------------------------
// Processes the suite started, so that they are stopped on every way out.

/// Process groups of running service processes, killed on every way out
/// (guards' Drop, Ctrl-C, the end of the run).
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// The cluster to stop at the end: the suite's own `fault` cluster.
static STARTED_CLUSTER: OnceLock<ClusterHandle> = OnceLock::new();

fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is touched.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Kills every service process still running and stops the cluster when this
/// cluster is the suite's own. Safe to call more than once.
pub fn stop_everything() {
    let groups: Vec<i32> = LIVE_GROUPS.lock().unwrap().iter().copied().collect();
    for pgid in groups {
        kill_group(pgid, libc::SIGKILL);
    }
    if let Some(cluster) = STARTED_CLUSTER.get() {
        cluster.stop_blocking();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Postgres

/// What is needed to run `pg_ctl` on the cluster.
#[derive(Clone, Debug)]
struct ClusterHandle {
    data_dir: PathBuf,
    bin: PathBuf,
}

impl ClusterHandle {
    fn pg_ctl_command(&self, args: &[&str]) -> std::process::Command {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            // initdb refuses root: the cluster runs as postgres.
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
            cmd
        } else {
            std::process::Command::new(pg_ctl)
        };
        cmd.arg("-D").arg(&self.data_dir).args(args);
        cmd.stdin(Stdio::null());
        // Its own process group: a Ctrl-C in the terminal is handled by the
        // suite, which stops the cluster itself.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd
    }

    fn stop_blocking(&self) {
        let _ = self
            .pg_ctl_command(&["-m", "fast", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/`
    pub base: String,
    handle: ClusterHandle,
    pub stop_at_end: bool,
}

impl Cluster {
    /// The cluster named by `CK_FAULT_DATABASE_URL` (scripts/fault.sh sets
    /// it, and stops it), else the suite's private cluster `fault` of
    /// scripts/postgres.sh, started when needed and stopped at the end of the
    /// run. Never the shared test cluster: scenarios restart this one.
    pub async fn prepare() -> anyhow::Result<Cluster> {
        let (base, stop_at_end) = match std::env::var("CK_FAULT_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let url = url.trim().to_string();
                (
                    if url.ends_with('/') {
                        url
                    } else {
                        format!("{url}/")
                    },
                    false,
                )
            }
            _ => {
                let out = Command::new("bash")
                    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
                    .arg("fault")
                    .stdin(Stdio::null())
                    .output()
                    .await
                    .context("run scripts/postgres.sh fault")?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !out.status.success() {
                    bail!("scripts/postgres.sh fault failed: {stderr}");
                }
                // The `fault` cluster is the suite's own: stopped at the end
                // even when an earlier, interrupted run left it running.
                (String::from_utf8(out.stdout)?.trim().to_string(), true)
            }
        };
        let mut admin = admin_connect(&base).await?;
        let data_dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
            .fetch_one(&mut admin)
            .await
            .context("read data_directory (the suite connects as a superuser)")?;
        let version: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
            .fetch_one(&mut admin)
            .await?;
        let major = version.parse::<u32>().unwrap_or(0) / 10000;
        let mut bin = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
        if !bin.join("pg_ctl").exists() {
            bin = newest_pg_bin().ok_or_else(|| anyhow!("no pg_ctl under /usr/lib/postgresql"))?;
        }
        let handle = ClusterHandle {
            data_dir: PathBuf::from(data_dir),
            bin,
        };
        if stop_at_end {
            let _ = STARTED_CLUSTER.set(handle.clone());
        }
        // Databases of earlier runs, so the cluster stays small.
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'ck\\_fault\\_%'",
        )
        .fetch_all(&mut admin)
        .await?;
        for db in old {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
        Ok(Cluster {
            base,
            handle,
            stop_at_end,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.handle.data_dir
    }

    /// `pg_ctl restart -m <mode>`, waiting until Postgres accepts
    /// connections again. The options of the running server are reused
    /// (postmaster.opts), so the port stays.
    pub async fn restart(&self, mode: &str) -> anyhow::Result<()> {
        let log = self.handle.data_dir.join("server.log");
        let log = log.to_str().unwrap_or("server.log").to_string();
        let cmd = self
            .handle
            .pg_ctl_command(&["-m", mode, "-w", "-t", "120", "-l", &log, "restart"]);
        let out = Command::from(cmd)
            .output()
            .await
            .context("run pg_ctl restart")?;
        if !out.status.success() {
            bail!(
                "pg_ctl restart -m {mode} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts the cluster again when an earlier scenario left it down.
    pub async fn ensure_up(&self) -> anyhow::Result<()> {
        if tokio::time::timeout(Duration::from_secs(5), admin_connect(&self.base))
            .await
            .is_ok_and(|c| c.is_ok())
        {
            return Ok(());
        }
        eprintln!("fault: the cluster is down; starting it again");
        self.restart("fast").await
    }

    /// A new empty database; the service migrates it at start.
    pub async fn create_database(&self) -> anyhow::Result<Database> {
        let name = format!("ck_fault_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin_connect(&self.base).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .context("create a database")?;
        Ok(Database {
            url: format!("{}{name}", self.base),
            name,
            base: self.base.clone(),
        })
    }

    /// The port Postgres listens on.
    pub fn port(&self) -> anyhow::Result<u16> {
        let options = PgConnectOptions::from_str(&self.base)?;
        Ok(options.get_port())
    }
}

fn newest_pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

async fn admin_connect(base: &str) -> anyhow::Result<PgConnection> {
    connect_as(&format!("{base}postgres"), "ck-fault-suite").await
}

/// A direct connection (not through the service) under an application name
/// of the suite's own, so that it never counts as the service's.
pub async fn connect_as(url: &str, application_name: &str) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::from_str(url)?.application_name(application_name);
    Ok(options.connect().await?)
}

pub struct Database {
    pub url: String,
    pub name: String,
    base: String,
}

impl Database {
    pub async fn connect(&self, application_name: &str) -> anyhow::Result<PgConnection> {
        connect_as(&self.url, application_name).await
    }

    pub async fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        let options = PgConnectOptions::from_str(&self.url)?.application_name("ck-fault-suite");
        Ok(PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Best effort, in the background; leftovers are dropped by the next
        // run.
        let (base, name) = (self.base.clone(), self.name.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Ok(mut admin) = admin_connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------
// The service process

/// One scenario's view of the run: where its logs go and whether the timing
/// goals are asserted (`--all`).
#[derive(Clone)]
pub struct Scn {
    pub cluster: Arc<Cluster>,
    pub log_dir: PathBuf,
    pub all: bool,
    starts: Arc<Mutex<u32>>,
}

impl Scn {
    pub fn new(cluster: Arc<Cluster>, log_dir: PathBuf, all: bool) -> Scn {
        Scn {
            cluster,
            log_dir,
            all,
            starts: Arc::default(),
        }
    }

    /// The environment the service runs with: loopback, port 0, JWT auth
    /// with the integration tests' keys, JSON logs without one line per call.
    pub fn service_env(&self, database_url: &str) -> BTreeMap<String, String> {
        [
            ("CK__DATABASE__URL", database_url),
            ("CK__SERVER__GRPC_ADDR", "127.0.0.1:0"),
            ("CK__SERVER__ADMIN_ADDR", "127.0.0.1:0"),
            ("CK__SERVER__SHUTDOWN_GRACE_SECS", "10"),
            ("CK__DATABASE__HEALTH_CHECK_INTERVAL_MS", "200"),
            ("CK__AUTH__MODE", "jwt"),
            ("CK__AUTH__JWT__HS256_SECRET", JWT_SECRET),
            ("CK__AUTH__JWT__ISSUER", ISSUER),
            ("CK__AUTH__JWT__AUDIENCE", AUDIENCE),
            ("CK__LOG__FORMAT", "json"),
            (
                "CK__LOG__LEVEL",
                "info,customer_knowledge::access=warn,sqlx=warn",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

pub struct Service {
    child: Option<Child>,
    pub pid: i32,
    pub port: u16,
    pub admin_port: u16,
    pub log: PathBuf,
    pub started_in: Duration,
}

impl Service {
    /// Starts `customer-knowledge serve` with exactly `env` (nothing of the
    /// suite's own environment leaks in), in its own process group, killed
    /// with the suite (PR_SET_PDEATHSIG) should the suite itself be killed.
    /// Returns once it listens and its health is SERVING.
    pub async fn start(scn: &Scn, env: &BTreeMap<String, String>) -> anyhow::Result<Service> {
        let started = Instant::now();
        let n = {
            let mut starts = scn.starts.lock().unwrap();
            *starts += 1;
            *starts
        };
        std::fs::create_dir_all(&scn.log_dir)?;
        let log = scn.log_dir.join(format!("service-{n}.log"));
        let file = Arc::new(Mutex::new(std::fs::File::create(&log)?));

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_customer-knowledge"));
        cmd.arg("serve")
            .env_clear()
            .envs(env)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the
        // parent. The parent thread is a runtime worker that lives as long as
        // the suite.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("spawn customer-knowledge serve")?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))? as i32;
        LIVE_GROUPS.lock().unwrap().insert(pid);

        let (ports_tx, mut ports_rx) = watch::channel((None::<u16>, None::<u16>));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        {
            let file = file.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        let port = v["port"].as_u64().map(|p| p as u16);
                        match v["message"].as_str() {
                            Some("serving gRPC") => ports_tx.send_modify(|p| p.0 = port),
                            Some("serving admin HTTP") => ports_tx.send_modify(|p| p.1 = port),
                            _ => {}
                        }
                    }
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                }
            });
        }
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(file.lock().unwrap(), "stderr: {line}");
            }
        });

        let mut service = Service {
            child: Some(child),
            pid,
            port: 0,
            admin_port: 0,
            log,
            started_in: Duration::ZERO,
        };
        let ports = async {
            ports_rx
                .wait_for(|p| p.0.is_some() && p.1.is_some())
                .await
                .map(|p| (p.0.unwrap(), p.1.unwrap()))
        };
        let exited = async {
            loop {
                if let Some(status) = service.try_exit_status() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let (port, admin_port) = tokio::select! {
            ports = ports => ports.map_err(|_| anyhow!("the service's stdout closed before it listened"))?,
            status = exited => bail!(
                "the service exited ({status}) before it listened; {}",
                log_tail(&service.log)
            ),
            _ = tokio::time::sleep(Duration::from_secs(120)) => bail!(
                "the service did not listen within 120 s; {}",
                log_tail(&service.log)
            ),
        };
        service.port = port;
        service.admin_port = admin_port;
        service
            .wait_health(ServingStatus::Serving, Duration::from_secs(60))
            .await
            .with_context(|| {
                format!(
                    "the service never became SERVING; {}",
                    log_tail(&service.log)
                )
            })?;
        service.started_in = started.elapsed();
        Ok(service)
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        channel(&self.addr()).await
    }

    /// Health `Check("")` on a fresh connection; `None` when it does not
    /// answer within a second.
    pub async fn health(&self) -> Option<ServingStatus> {
        let check = async {
            let mut client = HealthClient::new(self.channel().await.ok()?);
            let mut request = Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(Duration::from_secs(1));
            let status = client.check(request).await.ok()?.into_inner().status;
            ServingStatus::try_from(status).ok()
        };
        tokio::time::timeout(Duration::from_secs(2), check)
            .await
            .ok()
            .flatten()
    }

    /// Polls health until it is `wanted`; the time it took.
    pub async fn wait_health(
        &self,
        wanted: ServingStatus,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.health().await == Some(wanted) {
                return Ok(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("health was not {wanted:?} within {within:?}")
    }

    fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// `kill -9` of the service's process group; returns once it is reaped.
    pub async fn kill9(&mut self) {
        kill_group(self.pid, libc::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait().await;
        }
        self.child = None;
        LIVE_GROUPS.lock().unwrap().remove(&self.pid);
    }

    /// SIGTERM to the service process (a graceful shutdown).
    pub fn sigterm(&self) {
        // SAFETY: kill(2) touches no memory.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit; its status, or `None` when it still
    /// runs after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(within, child.wait())
            .await
            .ok()?
            .ok()?;
        self.child = None;
        kill_group(self.pid, libc::SIGKILL);
        LIVE_GROUPS.lock().unwrap().remove(&self.pid);
        Some(status)
    }

    /// The peak resident set (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub async fn customers(&self, caller: &Caller) -> anyhow::Result<CustomerClient> {
        Ok(CustomerServiceClient::with_interceptor(
            self.channel().await?,
            Bearer::of(caller),
        ))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.is_some() {
            kill_group(self.pid, libc::SIGKILL);
        }
        LIVE_GROUPS.lock().unwrap().remove(&self.pid);
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
    format!("log {}:\n    {tail}", path.display())
}

/// Health `Check("")` over one kept connection (reconnecting when it
/// breaks), for polling.
pub struct HealthProbe {
    addr: String,
    client: Option<HealthClient<Channel>>,
}

impl HealthProbe {
    pub fn new(port: u16) -> HealthProbe {
        HealthProbe {
            addr: format!("http://127.0.0.1:{port}"),
            client: None,
        }
    }

    /// The overall status, or `None` when there is no answer within a
    /// second.
    pub async fn check(&mut self) -> Option<ServingStatus> {
        let check = async {
            if self.client.is_none() {
                self.client = Some(HealthClient::new(channel(&self.addr).await.ok()?));
            }
            let client = self.client.as_mut()?;
            let mut request = Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(Duration::from_secs(1));
            match client.check(request).await {
                Ok(response) => ServingStatus::try_from(response.into_inner().status).ok(),
                Err(_) => {
                    self.client = None;
                    None
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), check)
            .await
            .ok()
            .flatten()
    }
}

/// A new HTTP/2 connection to the service.
pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(addr.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?)
}

pub fn interactions_on(channel: Channel, caller: &Caller) -> InteractionClient {
    InteractionServiceClient::with_interceptor(channel, Bearer::of(caller))
}

pub fn customers_on(channel: Channel, caller: &Caller) -> CustomerClient {
    CustomerServiceClient::with_interceptor(channel, Bearer::of(caller))
}

/// Creates `count` customers of `branch` (ids `{prefix}-{i}`) as an admin.
pub async fn create_customers(
    service: &Service,
    prefix: &str,
    branch: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut client = service.customers(&Caller::admin()).await?;
    let mut names = Vec::new();
    for i in 0..count {
        let customer = client
            .create_customer(pb::CreateCustomerRequest {
                customer_id: format!("{prefix}-{i}"),
                customer: Some(pb::Customer {
                    display_name: format!("Fault Customer {i}"),
                    kind: pb::customer::Kind::Individual as i32,
                    home_branch: branch.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .context("create a customer")?
            .into_inner();
        names.push(customer.name);
    }
    Ok(names)
}

/// A request with a deadline (`grpc-timeout`).
pub fn with_deadline<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}

// ---------------------------------------------------------------------------
// Outcomes and figures

/// What a call came back with: the server's gRPC code; the client's own
/// deadline timer firing before the server answered (tonic reports that as
/// CANCELLED "Timeout expired", made up on the client, which is not the
/// server's CANCELLED); or nothing at all within the deadline plus a generous
/// slack (the suite stops waiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Code(i32),
    ClientDeadline,
    NoAnswer,
}

impl Outcome {
    pub const OK: Outcome = Outcome::Code(Code::Ok as i32);

    pub fn of(code: Code) -> Outcome {
        Outcome::Code(code as i32)
    }

    pub fn is(self, code: Code) -> bool {
        self == Outcome::of(code)
    }
}

impl Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Outcome::NoAnswer => "NO_ANSWER",
            Outcome::ClientDeadline => "CLIENT_DEADLINE",
            Outcome::Code(c) => match Code::from_i32(*c) {
                Code::Ok => "OK",
                Code::Cancelled => "CANCELLED",
                Code::Unknown => "UNKNOWN",
                Code::InvalidArgument => "INVALID_ARGUMENT",
                Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
                Code::NotFound => "NOT_FOUND",
                Code::AlreadyExists => "ALREADY_EXISTS",
                Code::PermissionDenied => "PERMISSION_DENIED",
                Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
                Code::FailedPrecondition => "FAILED_PRECONDITION",
                Code::Aborted => "ABORTED",
                Code::OutOfRange => "OUT_OF_RANGE",
                Code::Unimplemented => "UNIMPLEMENTED",
                Code::Internal => "INTERNAL",
                Code::Unavailable => "UNAVAILABLE",
                Code::DataLoss => "DATA_LOSS",
                Code::Unauthenticated => "UNAUTHENTICATED",
            },
        };
        f.write_str(name)
    }
}

/// The outcome of a failed call. A status the server sent carries at least
/// its response headers as metadata; the one tonic's client makes up when
/// the call's own `grpc-timeout` expires carries none.
pub fn outcome_of(status: &tonic::Status) -> Outcome {
    if status.code() == Code::Cancelled
        && status.message() == tonic::TimeoutExpired(()).to_string()
        && status.metadata().is_empty()
    {
        Outcome::ClientDeadline
    } else {
        Outcome::of(status.code())
    }
}

/// Runs a call, bounded at `deadline + slack` on the client side: its
/// result (or how it failed) and how long it took.
pub async fn timed<T>(
    deadline: Duration,
    slack: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> (Result<T, Outcome>, Duration) {
    let start = Instant::now();
    let result = tokio::time::timeout(deadline + slack, call).await;
    let took = start.elapsed();
    match result {
        Ok(Ok(response)) => (Ok(response.into_inner()), took),
        Ok(Err(status)) => (Err(outcome_of(&status)), took),
        Err(_) => (Err(Outcome::NoAnswer), took),
    }
}

/// Counts of outcomes, printed as `OK=12 UNAVAILABLE=3`.
#[derive(Clone, Debug, Default)]
pub struct Tally(pub BTreeMap<Outcome, usize>);

impl Tally {
    pub fn add(&mut self, outcome: Outcome) {
        *self.0.entry(outcome).or_default() += 1;
    }
    pub fn merge(&mut self, other: Tally) {
        for (outcome, n) in other.0 {
            *self.0.entry(outcome).or_default() += n;
        }
    }
    pub fn count(&self, outcome: Outcome) -> usize {
        self.0.get(&outcome).copied().unwrap_or(0)
    }
    /// The outcomes seen that are not in `allowed`.
    pub fn outside(&self, allowed: &[Outcome]) -> Vec<Outcome> {
        self.0
            .keys()
            .filter(|o| !allowed.contains(o))
            .copied()
            .collect()
    }
}

impl Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|(o, n)| format!("{o}={n}")).collect();
        f.write_str(&parts.join(" "))
    }
}

pub fn list(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Latencies of a set of calls.
#[derive(Clone, Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Nearest-rank percentile; zero when empty.
    pub fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
    pub fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }
}

impl Display for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no calls");
        }
        write!(
            f,
            "p50 {} p99 {} max {} (n={})",
            ms(self.pct(50.0)),
            ms(self.pct(99.0)),
            ms(self.max()),
            self.len()
        )
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// What a scenario found: its figures, in order, and the expectations it
/// missed.
#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<(String, String)>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn figure(&mut self, name: &str, value: impl Display) {
        self.figures.push((name.to_string(), value.to_string()));
    }

    /// An expectation of behaviour: asserted in every run.
    pub fn check(&mut self, ok: bool, expectation: impl Into<String>) {
        if !ok {
            self.failures.push(expectation.into());
        }
    }

    /// A timing or size goal: asserted only with `--all` (a dedicated run);
    /// the fast part, run by CI on busy machines, only prints figures.
    pub fn goal(&mut self, scn: &Scn, ok: bool, goal: impl Into<String>) {
        let goal = goal.into();
        if scn.all {
            self.check(ok, goal);
        } else if !ok {
            self.figure("goal missed (not asserted without --all)", goal);
        }
    }
}

/// Polls `condition` every `every` until it holds or `within` passed.
pub async fn eventually<F, Fut>(within: Duration, every: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return true;
        }
        if start.elapsed() >= within {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Count of the service's statements (its application name) now running in
/// the database, excluding its health probe (`SELECT 1`) and the suite's
/// own connections; and of those, how many wait for a lock.
pub async fn service_statements(monitor: &mut PgConnection) -> anyhow::Result<(i64, i64)> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock')
           FROM pg_stat_activity
          WHERE application_name = 'customer-knowledge'
            AND datname = current_database()
            AND state = 'active'
            AND pid <> pg_backend_pid()
            AND query <> 'SELECT 1'",
    )
    .fetch_one(monitor)
    .await?;
    Ok(row)
}
