//! Load generator: drives a real server process with the tonic client and
//! reports throughput, latency percentiles, errors by status code, and the
//! server process's CPU seconds and peak RSS (from /proc).
//!
//! It starts the release build of the service (`serve`, trusted-headers
//! auth) as a child process on the database given, optionally loads the
//! deterministic synthetic bank (`customer_knowledge::datagen`, the code of
//! `customer-knowledge generate-data`) through the API, then runs each
//! scenario: a warm-up, then a fixed duration, closed loop (`--callers`
//! callers over `--connections` HTTP/2 connections, each sending its next
//! call when the last returns) or open loop (`--rate` calls per second
//! whatever the answers; latency counted from when the call was due, so a
//! stalled server shows as latency rather than as fewer calls).
//!
//!   cargo bench --bench load -- --database-url postgres://…/db --generate
//!   cargo bench --bench load -- --database-url … --scenarios get-customer,mixed --rate 1000
//!
//! With `--minimal-health` it also starts a minimal tonic server answering
//! only grpc.health.v1 Check (this binary with `--serve-minimal-health`) and
//! runs `health-check` against it, for the ratio service / minimal.
//!
//! Why a bench binary and not a subcommand of the service: it is a tool of
//! the repository, not of the deployed binary (the image stays smaller and
//! the load code cannot reach production by accident), it is built in the
//! release profile by `cargo bench` as the server it starts is, and cargo
//! gives it the path of that server (`CARGO_BIN_EXE_customer-knowledge`).
//!
//! Output: readable lines and `RESULT <scenario>.<key>=<value>` lines that
//! scripts/bench-all.sh reads.

use std::{
    collections::BTreeMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use customer_knowledge::{
    datagen::{
        self, Spec,
        load::{Credential, Target},
    },
    pb::v1::{
        self as pb, customer_service_client::CustomerServiceClient,
        insight_service_client::InsightServiceClient,
        interaction_service_client::InteractionServiceClient,
        knowledge_service_client::KnowledgeServiceClient,
    },
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator of the Customer Knowledge Service")]
struct Args {
    /// The database the server serves (a full URL); the server is started
    /// on it as a child process. Also BENCH_DATABASE_URL.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Instead of starting a server: the address of one already running
    /// (trusted-headers mode); CPU and RSS are then read from --server-pid.
    #[arg(long)]
    addr: Option<String>,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Extra environment of the started server, KEY=VALUE (repeatable).
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Comma-separated scenarios: log-interaction, batch-log, get-customer,
    /// customer-360, customer-360-10x, list-timeline, search-knowledge,
    /// health-check, mixed; or `all`, or `none` (with --generate: only
    /// load the data). `name@rate` runs one open loop at `rate` calls per
    /// second.
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Closed loop: concurrent callers.
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Open loop: calls per second (closed loop when unset).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 12.0)]
    duration: f64,
    /// Seconds of warm-up before each scenario's measurement.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Interactions per BatchLogInteractions call.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Load the synthetic bank of --seed first (idempotent).
    #[arg(long)]
    generate: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 2_000)]
    customers: u64,
    #[arg(long, default_value_t = 50)]
    branches: u32,
    #[arg(long, default_value_t = 100_000)]
    interactions: u64,
    #[arg(long, default_value_t = 5_000)]
    knowledge: u64,
    /// Also measure health-check against a minimal tonic health server.
    #[arg(long)]
    minimal_health: bool,
    /// Internal: serve only grpc.health.v1 on a free loopback port, print
    /// the port and run until killed.
    #[arg(long, hide = true)]
    serve_minimal_health: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    LogInteraction,
    BatchLog,
    GetCustomer,
    ListTimeline,
    SearchKnowledge,
    HealthCheck,
    /// GetCustomer360 of customers whose history is the median length.
    Customer360,
    /// GetCustomer360 of customers with about ten times that history.
    Customer360Tenfold,
    Mixed,
}

const ALL: &[Scenario] = &[
    Scenario::LogInteraction,
    Scenario::BatchLog,
    Scenario::GetCustomer,
    Scenario::Customer360,
    Scenario::Customer360Tenfold,
    Scenario::ListTimeline,
    Scenario::SearchKnowledge,
    Scenario::HealthCheck,
    Scenario::Mixed,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::LogInteraction => "log-interaction",
            Scenario::BatchLog => "batch-log",
            Scenario::GetCustomer => "get-customer",
            Scenario::Customer360 => "customer-360",
            Scenario::Customer360Tenfold => "customer-360-10x",
            Scenario::ListTimeline => "list-timeline",
            Scenario::SearchKnowledge => "search-knowledge",
            Scenario::HealthCheck => "health-check",
            Scenario::Mixed => "mixed",
        }
    }

    /// `all`, `none`, or names separated by commas; `name@rate` runs that one open
    /// loop at `rate` calls per second whatever `--rate` says.
    fn parse(list: &str) -> anyhow::Result<Vec<(Scenario, Option<f64>)>> {
        match list {
            "all" => return Ok(ALL.iter().map(|s| (*s, None)).collect()),
            "none" => return Ok(Vec::new()),
            _ => {}
        }
        list.split(',')
            .map(|s| {
                let (name, rate) = match s.trim().split_once('@') {
                    None => (s.trim(), None),
                    Some((name, rate)) => (
                        name,
                        Some(
                            rate.parse::<f64>()
                                .ok()
                                .filter(|r| *r > 0.0)
                                .ok_or_else(|| anyhow::anyhow!("bad rate in {s:?}"))?,
                        ),
                    ),
                };
                let scenario = ALL
                    .iter()
                    .copied()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| anyhow::anyhow!("unknown scenario {s:?}"))?;
                Ok((scenario, rate))
            })
            .collect()
    }

    fn reads_360(self) -> bool {
        matches!(
            self,
            Scenario::Customer360 | Scenario::Customer360Tenfold | Scenario::Mixed
        )
    }

    /// The single call a step of this scenario makes (mixed draws one):
    /// 70% reads, 30% writes.
    fn pick(self, rng: &mut StdRng) -> Scenario {
        if self != Scenario::Mixed {
            return self;
        }
        match rng.random_range(0..100) {
            0..30 => Scenario::GetCustomer,
            30..35 => Scenario::Customer360,
            35..55 => Scenario::ListTimeline,
            55..70 => Scenario::SearchKnowledge,
            70..97 => Scenario::LogInteraction,
            _ => Scenario::BatchLog,
        }
    }
}

// ---------------------------------------------------------------------------
// Latency histogram: log-linear buckets of microseconds, 128 per power of two
// (under 1% error), like HdrHistogram at two significant digits.

const SUB: u64 = 128;

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; (SUB * 40) as usize],
            total: 0,
            max: 0,
        }
    }

    fn index(us: u64) -> usize {
        if us < SUB {
            return us as usize;
        }
        let shift = 63 - us.leading_zeros() as u64 - 7; // msb - log2(SUB)
        (SUB + shift * SUB + ((us >> shift) - SUB)) as usize
    }

    fn value(index: usize) -> u64 {
        let i = index as u64;
        if i < SUB {
            return i;
        }
        let shift = (i - SUB) / SUB;
        let mantissa = SUB + (i - SUB) % SUB;
        (mantissa << shift) + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128 / 4) as u64;
        let i = Self::index(us).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The latency under which a share `p` of the calls fell, in ms.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((p * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max) as f64 / 1000.0;
            }
        }
        self.max as f64 / 1000.0
    }
}

// ---------------------------------------------------------------------------
// The server process: started here, or given by pid; CPU and RSS from /proc.

struct ServerProcess {
    pid: u32,
    _child: Option<tokio::process::Child>,
}

impl ServerProcess {
    /// utime + stime of the process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return f64::NAN;
        };
        // Fields after the command name (which may hold spaces) in parens.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 of stat(5): 11 and 12 here.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        match (ticks(11), ticks(12)) {
            (Some(u), Some(s)) => (u + s) / hz,
            _ => f64::NAN,
        }
    }

    fn status_kib(&self, key: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(f64::NAN)
    }

    /// Peak resident set (VmHWM) in MiB since the last reset.
    fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") / 1024.0
    }

    /// Starts a new peak-RSS window (clear_refs 5 resets VmHWM).
    fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_serving(addr: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(channel) = Channel::from_shared(addr.to_string())?.connect().await
            && let Ok(r) = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
            && r.into_inner().status == 1
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            anyhow::bail!("{addr} did not become SERVING within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_service(
    database_url: &str,
    extra: &[String],
) -> anyhow::Result<(ServerProcess, String)> {
    let port = free_port()?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_customer-knowledge"));
    command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("CK__SERVER__GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("CK__SERVER__ADMIN_ADDR", "127.0.0.1:0")
        .env("CK__AUTH__MODE", "trusted_headers")
        .env("CK__AUTH__SYSTEMS__CORE-BANKING__METHODS", "*")
        .env("CK__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for kv in extra {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--server-env {kv:?} is not KEY=VALUE"))?;
        command.env(k, v);
    }
    let child = command.spawn()?;
    let pid = child.id().expect("a running child has a pid");
    let addr = format!("http://127.0.0.1:{port}");
    wait_serving(&addr, Duration::from_secs(120)).await?;
    Ok((
        ServerProcess {
            pid,
            _child: Some(child),
        },
        addr,
    ))
}

async fn start_minimal_health() -> anyhow::Result<(ServerProcess, String)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--serve-minimal-health")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().expect("a running child has a pid");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let port: u16 = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the minimal health server printed no port"))?
        .trim()
        .parse()?;
    let addr = format!("http://127.0.0.1:{port}");
    wait_serving(&addr, Duration::from_secs(10)).await?;
    Ok((
        ServerProcess {
            pid,
            _child: Some(child),
        },
        addr,
    ))
}

/// The minimal server: tonic with only the standard health service (SERVING),
/// on the same runtime shape and with TCP_NODELAY as the service.
async fn serve_minimal_health() -> anyhow::Result<()> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Calls.

/// One HTTP/2 connection's clients.
#[derive(Clone)]
struct Clients {
    customers: CustomerServiceClient<Channel>,
    interactions: InteractionServiceClient<Channel>,
    knowledge: KnowledgeServiceClient<Channel>,
    insights: InsightServiceClient<Channel>,
    health: HealthClient<Channel>,
}

/// Caller identities, parsed once: core banking for writes, a relationship
/// manager of each branch (with a purpose, recorded by the audit) for reads.
struct Identities {
    rms: Vec<(MetadataValue<Ascii>, MetadataValue<Ascii>)>,
}

impl Identities {
    fn new(branches: u32) -> Identities {
        Identities {
            rms: (0..branches.max(1))
                .map(|b| {
                    let branch = Spec::branch_code(b);
                    (
                        format!("E{:02}01", b + 1).parse().unwrap(),
                        branch.parse().unwrap(),
                    )
                })
                .collect(),
        }
    }

    fn core_banking<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        let m = r.metadata_mut();
        m.insert("x-employee-id", MetadataValue::from_static("core-banking"));
        m.insert("x-roles", MetadataValue::from_static("service"));
        r
    }

    fn rm<T>(&self, branch: u32, message: T) -> Request<T> {
        let (employee, code) = &self.rms[branch as usize % self.rms.len()];
        let mut r = Request::new(message);
        let m = r.metadata_mut();
        m.insert("x-employee-id", employee.clone());
        m.insert("x-branch", code.clone());
        m.insert(
            "x-roles",
            MetadataValue::from_static("relationship_manager"),
        );
        m.insert("x-purpose", MetadataValue::from_static("SERVICE_REQUEST"));
        r
    }
}

struct Ctx {
    spec: Spec,
    ids: Identities,
    batch_size: usize,
    /// With `appended`, makes the external_refs of this process unique (a
    /// rerun appends anew).
    run: u64,
    appended: std::sync::atomic::AtomicU64,
    /// Customers of the median generated history, and of about ten times
    /// it, for the GetCustomer360 scenarios (empty when none runs).
    histories: Histories,
}

#[derive(Default)]
struct Histories {
    median: Vec<u64>,
    tenfold: Vec<u64>,
}

impl Histories {
    /// The customers whose generated history is nearest the median length
    /// (up to 100), and nearest ten times it (up to 5).
    fn of(spec: &Spec) -> Histories {
        let lengths = spec.history_lengths();
        let mut sorted = lengths.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        let nearest = |target: u64, n: usize| {
            let mut by_distance: Vec<u64> = (0..lengths.len() as u64).collect();
            by_distance.sort_by_key(|&c| (lengths[c as usize].abs_diff(target), c));
            by_distance.truncate(n);
            by_distance
        };
        let histories = Histories {
            median: nearest(median, 100),
            tenfold: nearest(10 * median, 5),
        };
        let span = |group: &[u64]| {
            let l = group.iter().map(|&c| lengths[c as usize]);
            (l.clone().min().unwrap_or(0), l.max().unwrap_or(0))
        };
        let (m, t) = (span(&histories.median), span(&histories.tenfold));
        println!(
            "customer-360 reads {} customers of {}–{} generated interactions (the median), customer-360-10x {} of {}–{}",
            histories.median.len(),
            m.0,
            m.1,
            histories.tenfold.len(),
            t.0,
            t.1
        );
        histories
    }
}

fn now() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The row LogInteraction appends: a card payment, as scripts/bench's
/// pgbench INSERT writes it.
fn transaction(ctx: &Ctx, rng: &mut StdRng) -> pb::LogInteractionRequest {
    let customer = ctx.spec.skewed_customer(rng);
    pb::LogInteractionRequest {
        parent: ctx.spec.customer_name(customer),
        interaction: Some(pb::Interaction {
            channel: pb::interaction::Channel::OnlineBanking as i32,
            kind: pb::interaction::Kind::Transaction as i32,
            occur_time: Some(now()),
            summary: "Card payment".into(),
            products: vec!["DEBIT-CARD".into()],
            amount: Some(pb::Money {
                currency_code: "CNY".into(),
                units: rng.random_range(1..10_000),
                nanos: 0,
            }),
            // Stored under the caller's own source system (core-banking).
            external_ref: format!(
                "LG-{:x}-{}",
                ctx.run,
                ctx.appended
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn call(
    scenario: Scenario,
    ctx: &Ctx,
    clients: &mut Clients,
    rng: &mut StdRng,
) -> Result<(), Status> {
    match scenario {
        Scenario::LogInteraction => {
            let request = ctx.ids.core_banking(transaction(ctx, rng));
            clients.interactions.log_interaction(request).await?;
        }
        Scenario::BatchLog => {
            let requests = (0..ctx.batch_size)
                .map(|_| {
                    let mut r = transaction(ctx, rng);
                    let mut body = ctx.spec.interaction_body(rng);
                    body.occur_time = Some(now());
                    body.external_ref = r.interaction.take().unwrap().external_ref;
                    r.interaction = Some(body);
                    r
                })
                .collect();
            let request = ctx.ids.core_banking(pb::BatchLogInteractionsRequest {
                requests,
                request_id: String::new(),
            });
            clients.interactions.batch_log_interactions(request).await?;
        }
        Scenario::GetCustomer => {
            let c = ctx.spec.skewed_customer(rng);
            let request = ctx.ids.rm(
                ctx.spec.branch_of(c),
                pb::GetCustomerRequest {
                    name: ctx.spec.customer_name(c),
                    ..Default::default()
                },
            );
            clients.customers.get_customer(request).await?;
        }
        Scenario::Customer360 | Scenario::Customer360Tenfold => {
            let group = if scenario == Scenario::Customer360 {
                &ctx.histories.median
            } else {
                &ctx.histories.tenfold
            };
            let c = *group.choose(rng).expect("customers picked for the 360");
            let request = ctx.ids.rm(
                ctx.spec.branch_of(c),
                pb::GetCustomer360Request {
                    name: ctx.spec.customer_name(c),
                },
            );
            clients.insights.get_customer360(request).await?;
        }
        Scenario::ListTimeline => {
            let c = ctx.spec.skewed_customer(rng);
            let request = ctx.ids.rm(
                ctx.spec.branch_of(c),
                pb::ListInteractionsRequest {
                    parent: ctx.spec.customer_name(c),
                    page_size: 50,
                    ..Default::default()
                },
            );
            clients.interactions.list_interactions(request).await?;
        }
        Scenario::SearchKnowledge => {
            let branch = rng.random_range(0..ctx.spec.branches.max(1));
            let query = datagen::search_terms().choose(rng).unwrap().to_string();
            let request = ctx.ids.rm(
                branch,
                pb::SearchKnowledgeItemsRequest {
                    query,
                    page_size: 20,
                    ..Default::default()
                },
            );
            clients.knowledge.search_knowledge_items(request).await?;
        }
        Scenario::HealthCheck => {
            clients.health.check(HealthCheckRequest::default()).await?;
        }
        Scenario::Mixed => unreachable!("mixed picks a concrete call"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Runs.

#[derive(Default)]
struct Tally {
    histogram: Option<Histogram>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Sample messages of errors, one per code.
    samples: BTreeMap<String, String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            histogram: Some(Histogram::new()),
            ..Default::default()
        }
    }

    fn record(&mut self, latency: Duration, result: Result<(), Status>) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.histogram.as_mut().unwrap().record(latency);
            }
            Err(status) => {
                let code = format!("{:?}", status.code());
                *self.errors.entry(code.clone()).or_default() += 1;
                self.samples
                    .entry(code)
                    .or_insert_with(|| status.message().chars().take(200).collect());
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.histogram
            .as_mut()
            .unwrap()
            .merge(other.histogram.as_ref().unwrap());
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.samples {
            self.samples.entry(k).or_insert(v);
        }
    }
}

async fn connect(addr: &str, connections: usize) -> anyhow::Result<Vec<Clients>> {
    let mut out = Vec::new();
    for _ in 0..connections.max(1) {
        let channel = Channel::from_shared(addr.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        out.push(Clients {
            customers: CustomerServiceClient::new(channel.clone()),
            interactions: InteractionServiceClient::new(channel.clone()),
            knowledge: KnowledgeServiceClient::new(channel.clone()),
            insights: InsightServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
        });
    }
    Ok(out)
}

/// Closed loop: `callers` tasks call back to back; calls that end in the
/// measured window count.
async fn closed_loop(
    scenario: Scenario,
    ctx: Arc<Ctx>,
    clients: &[Clients],
    callers: usize,
    warmup: Duration,
    measure: Duration,
) -> Tally {
    let start = Instant::now();
    let (from, until) = (start + warmup, start + warmup + measure);
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let mut clients = clients[caller % clients.len()].clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(caller as u64 ^ ctx.run);
            let mut tally = Tally::new();
            loop {
                let t = Instant::now();
                if t >= until {
                    return tally;
                }
                let step = scenario.pick(&mut rng);
                let result = call(step, &ctx, &mut clients, &mut rng).await;
                let end = Instant::now();
                if end >= from && end < until {
                    tally.record(end - t, result);
                }
            }
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await.expect("caller task"));
    }
    tally
}

/// Open loop: a call every 1/rate s whatever the answers; latency from the
/// moment the call was due.
async fn open_loop(
    scenario: Scenario,
    ctx: Arc<Ctx>,
    clients: &[Clients],
    rate: f64,
    warmup: Duration,
    measure: Duration,
) -> Tally {
    let start = tokio::time::Instant::now();
    let (from, until) = (start + warmup, start + warmup + measure);
    let tally = Arc::new(Mutex::new(Tally::new()));
    let mut rng = StdRng::seed_from_u64(ctx.run);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0u64.. {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due).await;
        let mut clients = clients[n as usize % clients.len()].clone();
        let (ctx, tally) = (ctx.clone(), tally.clone());
        let step = scenario.pick(&mut rng);
        let mut call_rng = StdRng::seed_from_u64(rng.random());
        tasks.spawn(async move {
            let result = call(step, &ctx, &mut clients, &mut call_rng).await;
            if due >= from {
                tally.lock().unwrap().record(due.elapsed(), result);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(tally)
        .ok()
        .expect("every call task ended")
        .into_inner()
        .unwrap()
}

struct Outcome {
    calls_per_sec: f64,
}

#[allow(clippy::too_many_arguments)]
async fn run_scenario(
    label: &str,
    scenario: Scenario,
    ctx: Arc<Ctx>,
    addr: &str,
    server: Option<&ServerProcess>,
    args: &Args,
) -> anyhow::Result<Outcome> {
    let clients = connect(addr, args.connections).await?;
    let (warmup, measure) = (
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
    );
    if let Some(s) = server {
        s.reset_peak_rss();
    }
    // The CPU window is the measured one: read it when warm-up ends.
    let cpu_reader = server.map(|s| (s.pid, s.cpu_seconds()));
    let cpu_at_warm = {
        let pid = server.map(|s| s.pid);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            pid.map(|pid| ServerProcess { pid, _child: None }.cpu_seconds())
        })
    };
    let tally = match args.rate {
        None => closed_loop(scenario, ctx, &clients, args.callers, warmup, measure).await,
        Some(rate) => open_loop(scenario, ctx, &clients, rate, warmup, measure).await,
    };
    let cpu_start = cpu_at_warm.await?.or(cpu_reader.map(|(_, c)| c));
    let h = tally.histogram.as_ref().unwrap();
    let secs = measure.as_secs_f64();
    let rate = tally.ok as f64 / secs;
    let errors: u64 = tally.errors.values().sum();
    let mode = match args.rate {
        None => format!("{} callers", args.callers),
        Some(r) => format!("open loop {r}/s"),
    };
    println!(
        "{label:<24} {mode}, {} conn, {secs:.0} s: {rate:>8.0} calls/s  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms  errors {errors}",
        args.connections,
        h.percentile_ms(0.50),
        h.percentile_ms(0.90),
        h.percentile_ms(0.99),
        h.percentile_ms(0.999),
        h.max as f64 / 1000.0
    );
    println!("RESULT {label}.calls_per_sec={rate:.1}");
    if scenario == Scenario::BatchLog {
        println!(
            "RESULT {label}.rows_per_sec={:.1}",
            rate * args.batch_size as f64
        );
    }
    for (p, key) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p999")] {
        println!("RESULT {label}.{key}_ms={:.3}", h.percentile_ms(p));
    }
    println!("RESULT {label}.errors={errors}");
    for (code, n) in &tally.errors {
        println!(
            "    {code}: {n} (e.g. {:?})",
            tally.samples.get(code).map(String::as_str).unwrap_or("")
        );
        println!("RESULT {label}.errors_{code}={n}");
    }
    if let (Some(s), Some(cpu_start)) = (server, cpu_start) {
        let cpu = s.cpu_seconds() - cpu_start;
        let peak = s.peak_rss_mib();
        println!(
            "    server: {cpu:.1} CPU s in {secs:.0} s ({:.0}% of a core, {:.0} µs/call), peak RSS {peak:.1} MiB, RSS now {:.1} MiB",
            100.0 * cpu / secs,
            1e6 * cpu / tally.ok.max(1) as f64,
            s.status_kib("VmRSS:") / 1024.0
        );
        println!("RESULT {label}.server_cpu_sec={cpu:.2}");
        println!("RESULT {label}.server_peak_rss_mib={peak:.1}");
    }
    Ok(Outcome {
        calls_per_sec: rate,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` appends --bench to a harness-less bench's arguments.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    if args.serve_minimal_health {
        return serve_minimal_health().await;
    }
    let scenarios = Scenario::parse(&args.scenarios)?;
    let spec = Spec {
        seed: args.seed,
        customers: args.customers,
        branches: args.branches,
        interactions: args.interactions,
        knowledge: args.knowledge,
    };
    let (server, addr) = match (&args.addr, &args.database_url) {
        (Some(addr), _) => (
            args.server_pid
                .map(|pid| ServerProcess { pid, _child: None }),
            addr.clone(),
        ),
        (None, Some(url)) => {
            let (server, addr) = start_service(url, &args.server_env).await?;
            println!(
                "server: pid {} on {addr}, RSS at start {:.1} MiB",
                server.pid,
                server.status_kib("VmRSS:") / 1024.0
            );
            (Some(server), addr)
        }
        (None, None) => anyhow::bail!("give --database-url (or BENCH_DATABASE_URL) or --addr"),
    };
    if args.generate {
        let started = Instant::now();
        let target = Target::connect(&addr, Credential::trusted_admin("datagen")?, 2).await?;
        let report = datagen::load::load(&spec, &target, 16, true).await?;
        println!(
            "data: seed {}, {} customers, {} interactions, {} knowledge items ({} rows created) in {:.1} s",
            spec.seed,
            spec.customers,
            spec.interactions,
            spec.knowledge,
            report.customers.created + report.interactions.created + report.knowledge.created,
            started.elapsed().as_secs_f64()
        );
        anyhow::ensure!(report.interactions.rejected == 0, "interactions rejected");
    }
    let histories = if scenarios.iter().any(|(s, _)| s.reads_360()) {
        Histories::of(&spec)
    } else {
        Histories::default()
    };
    let ctx = Arc::new(Ctx {
        histories,
        ids: Identities::new(spec.branches),
        spec,
        batch_size: args.batch_size,
        run: rand::rng().random(),
        appended: Default::default(),
    });
    let mut health = None;
    for (scenario, rate) in scenarios {
        let outcome = run_scenario(
            scenario.name(),
            scenario,
            ctx.clone(),
            &addr,
            server.as_ref(),
            &Args {
                rate: rate.or(args.rate),
                ..args.clone()
            },
        )
        .await?;
        if scenario == Scenario::HealthCheck {
            health = Some(outcome.calls_per_sec);
        }
    }
    if args.minimal_health {
        let (minimal, minimal_addr) = start_minimal_health().await?;
        let outcome = run_scenario(
            "health-check-minimal",
            Scenario::HealthCheck,
            ctx.clone(),
            &minimal_addr,
            Some(&minimal),
            &args,
        )
        .await?;
        if let Some(service) = health {
            println!(
                "health-check: service / minimal tonic server = {:.2}",
                service / outcome.calls_per_sec
            );
        }
    }
    Ok(())
}
