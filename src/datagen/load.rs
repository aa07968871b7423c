//! Loads a [`Spec`] into a running service through its own gRPC API:
//! CreateCustomer for customers, ImportInteractions client streams for
//! interactions, CreateKnowledgeItem for knowledge items, each phase with
//! concurrent callers over a few HTTP/2 connections, printing progress.
//!
//! Rerunning with the same seed adds nothing: customers and knowledge items
//! come back ALREADY_EXISTS (their ids are the caller's), imported rows as
//! duplicates (keyed by customer, source system and `external_ref`). Rows
//! are keyed under the caller's source system, so rerun as the same caller.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use super::Spec;
use crate::pb::v1::{
    self as pb, customer_service_client::CustomerServiceClient,
    interaction_service_client::InteractionServiceClient,
    knowledge_service_client::KnowledgeServiceClient,
};

/// Rows per ImportInteractions message (the contract's maximum).
const ROWS_PER_MESSAGE: u64 = 5_000;
/// Rows per ImportInteractions stream: a failed stream is resent whole.
const ROWS_PER_STREAM: u64 = 50_000;

/// `customer-knowledge generate-data`: build the synthetic bank of a seed
/// and load it into a running service.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The gRPC address of the running service.
    #[arg(
        long,
        env = "CK_DATAGEN_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// A JWT of an `admin` caller, sent as `authorization: Bearer …`. When
    /// unset, the generator calls with trusted headers (the service's
    /// `trusted_headers` mode, as scripts/run.sh starts it) as an admin.
    #[arg(long, env = "CK_DATAGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The employee id sent as `x-employee-id` in trusted-headers mode; the
    /// interactions are stored under its source system, so a rerun must use
    /// the same one to be recognised.
    #[arg(long, env = "CK_DATAGEN_EMPLOYEE_ID", default_value = "datagen")]
    pub employee_id: String,
    /// The seed: the same seed gives the same data (and ids).
    #[arg(long, default_value_t = Spec::default().seed)]
    pub seed: u64,
    /// Customers to create.
    #[arg(long, default_value_t = Spec::default().customers)]
    pub customers: u64,
    /// Branches the customers belong to (B01, B02, …).
    #[arg(long, default_value_t = Spec::default().branches)]
    pub branches: u32,
    /// Interactions to import, spread over the two years to 2026-01-01.
    #[arg(long, default_value_t = Spec::default().interactions)]
    pub interactions: u64,
    /// Knowledge items to create, in Chinese and English.
    #[arg(long, default_value_t = Spec::default().knowledge)]
    pub knowledge: u64,
    /// Concurrent calls (a quarter of them, at least one, as import streams).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

impl Args {
    pub fn spec(&self) -> Spec {
        Spec {
            seed: self.seed,
            customers: self.customers,
            branches: self.branches,
            interactions: self.interactions,
            knowledge: self.knowledge,
        }
    }
}

/// How the generator authenticates.
#[derive(Clone, Debug)]
pub enum Credential {
    /// `authorization: Bearer <jwt>`.
    Bearer(MetadataValue<Ascii>),
    /// `x-employee-id: <id>` and `x-roles: admin` (trusted-headers mode).
    TrustedAdmin(MetadataValue<Ascii>),
}

impl Credential {
    pub fn bearer(token: &str) -> anyhow::Result<Credential> {
        Ok(Credential::Bearer(format!("Bearer {token}").parse()?))
    }

    pub fn trusted_admin(employee_id: &str) -> anyhow::Result<Credential> {
        Ok(Credential::TrustedAdmin(employee_id.parse()?))
    }
}

impl Interceptor for Credential {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let m = request.metadata_mut();
        match self {
            Credential::Bearer(value) => {
                m.insert("authorization", value.clone());
            }
            Credential::TrustedAdmin(employee) => {
                m.insert("x-employee-id", employee.clone());
                m.insert("x-roles", MetadataValue::from_static("admin"));
            }
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Credential>;

/// Where to load: a few HTTP/2 connections to the service and a credential.
#[derive(Clone)]
pub struct Target {
    channels: Vec<Channel>,
    credential: Credential,
}

impl Target {
    /// Opens `connections` HTTP/2 connections to `addr`.
    pub async fn connect(
        addr: &str,
        credential: Credential,
        connections: usize,
    ) -> anyhow::Result<Target> {
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = Channel::from_shared(addr.to_string())?
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("connect to {addr}: {e}"))?;
            channels.push(channel);
        }
        Ok(Target {
            channels,
            credential,
        })
    }

    fn channel(&self, worker: usize) -> Channel {
        self.channels[worker % self.channels.len()].clone()
    }

    fn customers(&self, worker: usize) -> CustomerServiceClient<Authed> {
        CustomerServiceClient::with_interceptor(self.channel(worker), self.credential.clone())
    }

    fn interactions(&self, worker: usize) -> InteractionServiceClient<Authed> {
        InteractionServiceClient::with_interceptor(self.channel(worker), self.credential.clone())
            .max_decoding_message_size(16 << 20)
    }

    fn knowledge(&self, worker: usize) -> KnowledgeServiceClient<Authed> {
        KnowledgeServiceClient::with_interceptor(self.channel(worker), self.credential.clone())
    }
}

/// What one phase did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows created by this run.
    pub created: u64,
    /// Rows that were already there (ALREADY_EXISTS, import duplicates).
    pub existing: u64,
    /// Rows the service refused as invalid (imports only; a generator bug).
    pub rejected: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub customers: Counts,
    pub interactions: Counts,
    pub knowledge: Counts,
}

/// Statuses worth another try: the service shed load or was briefly away.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted
    )
}

async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..6 {
        match call().await {
            Err(status) if transient(&status) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    call().await
}

/// Prints `label: done/total (rate/s)` every two seconds until dropped.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(label: &'static str, done: Arc<AtomicU64>, total: u64, quiet: bool) -> Progress {
        if quiet {
            return Progress { task: None };
        }
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "  {label}: {n}/{total} sent ({:.0}/s)",
                    n as f64 / secs.max(1e-9)
                );
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn summary(label: &str, total: u64, counts: Counts, secs: f64, quiet: bool) {
    if !quiet {
        println!(
            "{label}: {total} in {secs:.1} s ({:.0} rows/s): {} created, {} already there{}",
            total as f64 / secs.max(1e-9),
            counts.created,
            counts.existing,
            if counts.rejected > 0 {
                format!(", {} REJECTED", counts.rejected)
            } else {
                String::new()
            }
        );
    }
}

/// Loads `spec` into the service behind `target`: customers first (the
/// other phases refer to them), then interactions, then knowledge items.
pub async fn load(
    spec: &Spec,
    target: &Target,
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<Report> {
    let concurrency = concurrency.max(1);
    let customers = customers(spec, target, concurrency, quiet).await?;
    let interactions = interactions(spec, target, concurrency.div_ceil(4), quiet).await?;
    let knowledge = knowledge(spec, target, concurrency, quiet).await?;
    Ok(Report {
        customers,
        interactions,
        knowledge,
    })
}

/// Runs `workers` tasks that take indices 0..total in turn and create one
/// record each; `Ok(true)` is created, `Ok(false)` already there.
async fn unary_phase<F, Fut>(
    label: &'static str,
    total: u64,
    workers: usize,
    quiet: bool,
    create: F,
) -> anyhow::Result<Counts>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(label, done.clone(), total, quiet);
    let create = Arc::new(create);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (next, done, create) = (next.clone(), done.clone(), create.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts = Counts::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(counts);
                }
                if create(worker, i).await? {
                    counts.created += 1;
                } else {
                    counts.existing += 1;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut counts = Counts::default();
    for task in tasks {
        let c = task.await??;
        counts.created += c.created;
        counts.existing += c.existing;
    }
    summary(label, total, counts, started.elapsed().as_secs_f64(), quiet);
    Ok(counts)
}

async fn customers(
    spec: &Spec,
    target: &Target,
    workers: usize,
    quiet: bool,
) -> anyhow::Result<Counts> {
    let clients: Vec<_> = (0..workers).map(|w| target.customers(w)).collect();
    let spec = spec.clone();
    unary_phase("customers", spec.customers, workers, quiet, move |w, i| {
        let client = clients[w].clone();
        let request = spec.customer(i);
        async move {
            let call = || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.create_customer(request).await }
            };
            match with_retry(call).await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                Err(s) => Err(anyhow::anyhow!(
                    "CreateCustomer {}: {:?} {}",
                    request.customer_id,
                    s.code(),
                    s.message()
                )),
            }
        }
    })
    .await
}

async fn knowledge(
    spec: &Spec,
    target: &Target,
    workers: usize,
    quiet: bool,
) -> anyhow::Result<Counts> {
    let clients: Vec<_> = (0..workers).map(|w| target.knowledge(w)).collect();
    let spec = spec.clone();
    unary_phase("knowledge", spec.knowledge, workers, quiet, move |w, k| {
        let client = clients[w].clone();
        let request = spec.knowledge(k);
        async move {
            let call = || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.create_knowledge_item(request).await }
            };
            match with_retry(call).await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                Err(s) => Err(anyhow::anyhow!(
                    "CreateKnowledgeItem {}: {:?} {}",
                    request.knowledge_item_id,
                    s.code(),
                    s.message()
                )),
            }
        }
    })
    .await
}

/// Interactions in ImportInteractions streams of up to 50,000 rows, `streams`
/// of them at a time; the messages are built as the stream is sent.
async fn interactions(
    spec: &Spec,
    target: &Target,
    streams: usize,
    quiet: bool,
) -> anyhow::Result<Counts> {
    let started = Instant::now();
    let total = spec.interactions;
    let next = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start("interactions", sent.clone(), total, quiet);
    let mut tasks = Vec::new();
    for worker in 0..streams {
        let (next, sent, spec) = (next.clone(), sent.clone(), spec.clone());
        let client = target.interactions(worker);
        tasks.push(tokio::spawn(async move {
            let mut counts = Counts::default();
            loop {
                let start = next.fetch_add(ROWS_PER_STREAM, Ordering::Relaxed);
                if start >= total {
                    return Ok::<_, anyhow::Error>(counts);
                }
                let end = (start + ROWS_PER_STREAM).min(total);
                let response = with_retry(|| {
                    let (spec, sent) = (spec.clone(), sent.clone());
                    let messages =
                        tokio_stream::iter((start..end).step_by(ROWS_PER_MESSAGE as usize).map(
                            move |from| {
                                let to = (from + ROWS_PER_MESSAGE).min(end);
                                sent.fetch_add(to - from, Ordering::Relaxed);
                                pb::ImportInteractionsRequest {
                                    rows: (from..to).map(|j| spec.interaction(j)).collect(),
                                    request_id: String::new(),
                                }
                            },
                        ));
                    let mut client = client.clone();
                    async move { client.import_interactions(messages).await }
                })
                .await
                .map_err(|s| {
                    anyhow::anyhow!(
                        "ImportInteractions rows {start}..{end}: {:?} {}",
                        s.code(),
                        s.message()
                    )
                })?
                .into_inner();
                if let Some(first) = response.rejections.first() {
                    eprintln!(
                        "ImportInteractions rows {start}..{end}: {} rejected, e.g. row {} {}: {}",
                        response.rejected_count,
                        start as i64 + first.index,
                        first.field,
                        first.reason
                    );
                }
                counts.created += response.accepted_count as u64;
                counts.existing += response.duplicate_count as u64;
                counts.rejected += response.rejected_count as u64;
            }
        }));
    }
    let mut counts = Counts::default();
    for task in tasks {
        let c = task.await??;
        counts.created += c.created;
        counts.existing += c.existing;
        counts.rejected += c.rejected;
    }
    summary(
        "interactions",
        total,
        counts,
        started.elapsed().as_secs_f64(),
        quiet,
    );
    Ok(counts)
}

/// The `generate-data` command: connects, loads, prints the totals.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    let spec = args.spec();
    let credential = match &args.token {
        Some(token) => Credential::bearer(token)?,
        None => Credential::trusted_admin(&args.employee_id)?,
    };
    let connections = args.concurrency.div_ceil(16).clamp(1, 8);
    let target = Target::connect(&args.addr, credential, connections).await?;
    println!(
        "generate-data: seed {} ({} customers in {} branches, {} interactions, {} knowledge items) into {}, {} concurrent over {connections} connection(s)",
        spec.seed,
        spec.customers,
        spec.branches,
        spec.interactions,
        spec.knowledge,
        args.addr,
        args.concurrency
    );
    let started = Instant::now();
    let report = load(&spec, &target, args.concurrency, false).await?;
    println!(
        "generate-data: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if report.interactions.rejected > 0 {
        anyhow::bail!(
            "{} interactions were rejected",
            report.interactions.rejected
        );
    }
    Ok(report)
}
