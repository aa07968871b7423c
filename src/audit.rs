//! The access audit at run time: the note each audited call carries, the
//! bounded queue between calls and Postgres, and the one background writer
//! per process that chains batches of events into `access_events`.
//!
//! A call's path: the per-call layer (`telemetry::rpc`) puts an `AuditNote`
//! into the request's extensions; the auth interceptor reserves a queue slot
//! (`admit`, or UNAVAILABLE when the queue is full) and records the
//! principal (`identify`); handlers name the customers they touch
//! (`note_customer`); when the status is known the layer fills the slot. The
//! request path never waits for the database. The writer takes what is
//! queued, and in one transaction takes an advisory lock, reads the chain
//! head, hashes each event in Rust and inserts the batch, so replicas that
//! share the database extend one chain.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use http::HeaderMap;
use tokio::{
    sync::{
        mpsc::{self, OwnedPermit, error::TrySendError},
        watch,
    },
    task::JoinHandle,
};
use tonic::{Code, Request, Status};

use crate::{
    domain::{
        audit::{self as rules, AccessEvent, Action, Pseudonyms},
        principal::Principal,
    },
    metrics::{Metrics, code_name},
    pb,
    store::Db,
};

/// The services whose every call is recorded.
pub const AUDITED_SERVICES: [&str; 7] = [
    pb::v1::campaign_service_server::SERVICE_NAME,
    pb::v1::customer_service_server::SERVICE_NAME,
    pb::v1::insight_service_server::SERVICE_NAME,
    pb::v1::interaction_service_server::SERVICE_NAME,
    pb::v1::knowledge_service_server::SERVICE_NAME,
    pb::v1::audit_service_server::SERVICE_NAME,
    pb::google::longrunning::operations_server::SERVICE_NAME,
];

/// The metadata key of the declared purpose.
pub const PURPOSE_HEADER: &str = "x-purpose";

/// Events per transaction, well below Postgres' 65,535 bind parameters.
const MAX_BATCH: usize = 500;
/// How long the writer waits for more events after the first of a batch.
const LINGER: Duration = Duration::from_millis(10);

/// A call's event before the writer pseudonymizes and chains it.
#[derive(Debug)]
pub struct PendingEvent {
    event_time_us: i64,
    principal: String,
    roles: Vec<String>,
    calling_system: String,
    on_behalf_of: Option<String>,
    method: String,
    outcome: &'static str,
    customer_ids: BTreeSet<String>,
    purpose: String,
    trace_id: String,
}

impl PendingEvent {
    fn into_event(self, pseudonyms: &Pseudonyms) -> AccessEvent {
        let customers: BTreeSet<String> = self
            .customer_ids
            .iter()
            .map(|id| pseudonyms.of(id))
            .collect();
        AccessEvent {
            sequence: 0,
            event_time_us: self.event_time_us,
            principal: rules::storable(&self.principal),
            roles: self.roles,
            calling_system: rules::storable(&self.calling_system),
            on_behalf_of: self
                .on_behalf_of
                .map(|c| pseudonyms.of_customer(&c))
                .unwrap_or_default(),
            action: Action::of_method(&self.method),
            method: rules::storable(&self.method),
            outcome: self.outcome.to_string(),
            customers: customers.into_iter().collect(),
            purpose: self.purpose,
            trace_id: rules::storable(&self.trace_id),
        }
    }
}

/// The handle calls use: the queue's sending side and its counters.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<LogInner>,
}

struct LogInner {
    sender: mpsc::Sender<PendingEvent>,
    metrics: Metrics,
    /// Events handed to the queue and events committed, for the shutdown
    /// report of what was lost.
    queued: AtomicU64,
    written: AtomicU64,
}

/// What an audited call collects on its way: who called, which customers
/// the handler named, and its reserved slot in the queue. A handler sees
/// it through `note_customer`; a request without one (auditing off, or a
/// unit test) notes nothing.
#[derive(Clone, Default)]
pub struct AuditNote(Option<Arc<Mutex<NoteState>>>);

struct NoteState {
    log: AuditLog,
    principal: Option<Principal>,
    customer_ids: BTreeSet<String>,
    slot: Option<OwnedPermit<PendingEvent>>,
}

impl AuditNote {
    fn with<R>(&self, f: impl FnOnce(&mut NoteState) -> R) -> Option<R> {
        self.0
            .as_ref()
            .map(|state| f(&mut state.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// Names a customer the call touches: `customers/{id}`, a child name
    /// such as `customers/{id}/interactions/{i}`, or a bare id. Anything
    /// else (`customers/-`, a malformed name) is ignored.
    pub fn customer(&self, name_or_id: &str) {
        if let Some(id) = rules::customer_id_of(name_or_id) {
            self.with(|s| {
                // Imports note the same customers over and over.
                if !s.customer_ids.contains(id) {
                    s.customer_ids.insert(id.to_string());
                }
            });
        }
    }

    pub fn customers<'a>(&self, names_or_ids: impl IntoIterator<Item = &'a str>) {
        for name in names_or_ids {
            self.customer(name);
        }
    }

    /// Notes every customer a message names.
    pub fn customers_in(&self, message: &impl NamesCustomers) {
        self.customers(message.customer_names());
    }
}

/// A message that names customers (knowledge items name theirs in
/// `subjects`), so a handler can note them all in one line.
pub trait NamesCustomers {
    fn customer_names(&self) -> Vec<&str>;
}

impl NamesCustomers for pb::v1::KnowledgeItem {
    fn customer_names(&self) -> Vec<&str> {
        self.subjects.iter().map(String::as_str).collect()
    }
}

impl<T: NamesCustomers> NamesCustomers for [T] {
    fn customer_names(&self) -> Vec<&str> {
        self.iter().flat_map(|m| m.customer_names()).collect()
    }
}

impl<T: NamesCustomers> NamesCustomers for Option<T> {
    fn customer_names(&self) -> Vec<&str> {
        self.as_ref()
            .map(|m| m.customer_names())
            .unwrap_or_default()
    }
}

impl NamesCustomers for pb::v1::ListKnowledgeItemsResponse {
    fn customer_names(&self) -> Vec<&str> {
        self.knowledge_items.customer_names()
    }
}

impl NamesCustomers for pb::v1::SearchKnowledgeItemsResponse {
    fn customer_names(&self) -> Vec<&str> {
        self.knowledge_items.customer_names()
    }
}

impl NamesCustomers for pb::v1::SocializeKnowledgeResponse {
    fn customer_names(&self) -> Vec<&str> {
        self.knowledge_items.customer_names()
    }
}

impl NamesCustomers for pb::v1::InternalizeKnowledgeResponse {
    fn customer_names(&self) -> Vec<&str> {
        self.tacit_item.customer_names()
    }
}

impl NamesCustomers for pb::v1::ShareKnowledgeItemResponse {
    fn customer_names(&self) -> Vec<&str> {
        self.knowledge_item.customer_names()
    }
}

impl NamesCustomers for pb::v1::KnowledgeLineage {
    fn customer_names(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .flat_map(|n| n.item.customer_names())
            .collect()
    }
}

impl NamesCustomers for pb::v1::WatchKnowledgeRequest {
    fn customer_names(&self) -> Vec<&str> {
        self.subjects.iter().map(String::as_str).collect()
    }
}

/// Notes every customer a message names (e.g. the subjects of the knowledge
/// items a handler returns).
pub fn note_customers_in<T>(request: &Request<T>, message: &impl NamesCustomers) {
    note_customers(request, message.customer_names());
}

/// The note of a request, to keep after `into_inner()` (e.g. for a customer
/// id generated later in the handler).
pub fn note<T>(request: &Request<T>) -> AuditNote {
    request
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default()
}

/// Records that the call touches a customer (`customers/{id}`, a child name
/// or a bare id). One line in a handler:
/// `crate::audit::note_customer(&request, &request.get_ref().name);`
pub fn note_customer<T>(request: &Request<T>, name_or_id: &str) {
    if let Some(note) = request.extensions().get::<AuditNote>() {
        note.customer(name_or_id);
    }
}

/// Records several customers, e.g. every customer of a returned page.
pub fn note_customers<'a, T>(
    request: &Request<T>,
    names_or_ids: impl IntoIterator<Item = &'a str>,
) {
    if let Some(note) = request.extensions().get::<AuditNote>() {
        note.customers(names_or_ids);
    }
}

/// For the auth interceptor, before it authenticates: reserves the call's
/// slot in the queue, so the event can be recorded whatever happens later.
/// With the queue full (Postgres slow or down) the call is refused: no
/// customer data is served unaudited.
pub fn admit<T>(request: &Request<T>) -> Result<(), Status> {
    let Some(note) = request.extensions().get::<AuditNote>() else {
        return Ok(());
    };
    let refused = note.with(|state| {
        if state.slot.is_some() {
            return false;
        }
        match state.log.inner.sender.clone().try_reserve_owned() {
            Ok(permit) => {
                state.slot = Some(permit);
                false
            }
            Err(_) => {
                state.log.inner.metrics.audit_call_refused();
                true
            }
        }
    });
    if refused == Some(true) {
        return Err(crate::api::status::layer_status(
            Code::Unavailable,
            crate::error::ErrorReason::AuditBacklog,
            "the access audit cannot keep up; retry with backoff",
            None,
        ));
    }
    Ok(())
}

/// For the auth interceptor, once the caller is known.
pub fn identify<T>(request: &Request<T>, principal: &Principal) {
    if let Some(note) = request.extensions().get::<AuditNote>() {
        note.with(|state| state.principal = Some(principal.clone()));
    }
}

/// One audited call, held by the per-call layer until its status is known.
pub struct AuditedCall {
    note: AuditNote,
    method: String,
    purpose: String,
    trace_id: String,
}

impl AuditedCall {
    /// The note to put into the request's extensions.
    pub fn note(&self) -> AuditNote {
        self.note.clone()
    }

    /// Queues the call's event with its gRPC status code. Never waits: the
    /// slot was reserved when the call was admitted. A call that was never
    /// admitted (it did not reach the interceptor) takes a free slot if
    /// there is one; otherwise its event is lost, counted and logged.
    pub fn finish(self, code: i32) {
        let Some((log, principal, customer_ids, slot)) = self.note.with(|s| {
            (
                s.log.clone(),
                s.principal.take(),
                std::mem::take(&mut s.customer_ids),
                s.slot.take(),
            )
        }) else {
            return;
        };
        let principal = principal.as_ref();
        let event = PendingEvent {
            event_time_us: Utc::now().timestamp_micros(),
            principal: principal.map(|p| p.subject.clone()).unwrap_or_default(),
            roles: principal
                .map(|p| p.roles.iter().map(|r| r.as_str().to_string()).collect())
                .unwrap_or_default(),
            calling_system: principal
                .and_then(|p| p.calling_system())
                .unwrap_or_default()
                .to_string(),
            on_behalf_of: principal.and_then(|p| p.on_behalf_of.clone()),
            method: self.method,
            outcome: code_name(code),
            customer_ids,
            purpose: self.purpose,
            trace_id: self.trace_id,
        };
        let inner = &log.inner;
        match slot {
            Some(slot) => {
                slot.send(event);
                inner.queued.fetch_add(1, Ordering::Relaxed);
            }
            None => match inner.sender.try_send(event) {
                Ok(()) => {
                    inner.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(event) | TrySendError::Closed(event)) => {
                    inner.metrics.audit_events_lost(1);
                    tracing::error!(
                        rpc.method = %event.method,
                        code = event.outcome,
                        "access event lost: the audit queue is full or closed"
                    );
                }
            },
        }
    }
}

impl AuditLog {
    /// Starts the background writer on its own connection (`db` should be a
    /// pool of one), so request load never starves the audit and the audit
    /// never takes a request's connection.
    pub fn start(db: Db, pseudonyms: Pseudonyms, capacity: usize, metrics: Metrics) -> AuditWriter {
        let (sender, receiver) = mpsc::channel(capacity);
        let log = AuditLog {
            inner: Arc::new(LogInner {
                sender,
                metrics,
                queued: AtomicU64::new(0),
                written: AtomicU64::new(0),
            }),
        };
        let (close, close_rx) = watch::channel(false);
        let task = tokio::spawn(write_events(
            db,
            pseudonyms,
            receiver,
            close_rx,
            log.inner.clone(),
        ));
        AuditWriter { log, close, task }
    }

    /// Whether calls of this `/package.Service/Method` path are recorded.
    pub fn audits(path: &str) -> bool {
        path.strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(service, _)| AUDITED_SERVICES.contains(&service))
    }

    /// Begins recording a call (the per-call layer calls this on arrival).
    pub fn begin(&self, path: &str, headers: &HeaderMap, trace_id: Option<&str>) -> AuditedCall {
        let purpose = headers
            .get(PURPOSE_HEADER)
            .map(|v| rules::purpose(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_default();
        AuditedCall {
            note: AuditNote(Some(Arc::new(Mutex::new(NoteState {
                log: self.clone(),
                principal: None,
                customer_ids: BTreeSet::new(),
                slot: None,
            })))),
            method: path.to_string(),
            purpose,
            trace_id: trace_id.unwrap_or_default().to_string(),
        }
    }
}

impl AuditWriter {
    /// The handle calls record through.
    pub fn log(&self) -> AuditLog {
        self.log.clone()
    }
}

/// The background writer of one process.
pub struct AuditWriter {
    log: AuditLog,
    close: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AuditWriter {
    /// Stops taking new events and writes what is queued (and the events of
    /// calls still holding a slot) within `budget`; whatever is left then is
    /// lost, counted and logged.
    pub async fn flush(self, budget: Duration) {
        let _ = self.close.send(true);
        let mut task = self.task;
        if tokio::time::timeout(budget, &mut task).await.is_err() {
            task.abort();
            let inner = &self.log.inner;
            let lost = inner
                .queued
                .load(Ordering::Relaxed)
                .saturating_sub(inner.written.load(Ordering::Relaxed));
            inner.metrics.audit_events_lost(lost);
            tracing::error!(
                lost,
                budget_ms = budget.as_millis() as u64,
                "access events not written before shutdown"
            );
        } else {
            tracing::info!("access audit flushed");
        }
    }
}

async fn write_events(
    db: Db,
    pseudonyms: Pseudonyms,
    mut receiver: mpsc::Receiver<PendingEvent>,
    mut close: watch::Receiver<bool>,
    log: Arc<LogInner>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            _ = close.wait_for(|c| *c), if !closing => {
                // Calls holding a slot can still send; recv then returns
                // None once they have and the queue is empty.
                receiver.close();
                closing = true;
                continue;
            }
            received = receiver.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        // Linger briefly for more: one commit (and one WAL flush) then
        // carries many calls' events instead of a handful.
        if !closing && batch.len() < MAX_BATCH {
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            loop {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    _ = &mut linger => break,
                    received = receiver.recv_many(&mut batch, room) => {
                        if received == 0 || batch.len() >= MAX_BATCH {
                            break;
                        }
                    }
                }
            }
        }
        let mut events: Vec<AccessEvent> =
            batch.drain(..).map(|e| e.into_event(&pseudonyms)).collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            match crate::store::audit::append(&db, &mut events).await {
                Ok(()) => {
                    let n = events.len() as u64;
                    log.written.fetch_add(n, Ordering::Relaxed);
                    log.metrics.audit_events_written(n, receiver.len());
                    break;
                }
                Err(e) => {
                    // Kept in memory and retried: the queue fills meanwhile,
                    // and once it is full new calls are refused.
                    log.metrics.audit_write_failed();
                    tracing::warn!(
                        error = %e,
                        events = events.len(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "writing access events failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
