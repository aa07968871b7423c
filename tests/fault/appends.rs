//! The append workload of the crash and restart scenarios: LogInteraction
//! and BatchLogInteractions calls, each with a `request_id` and a marker per
//! interaction (its summary), and the ledger that compares what was
//! acknowledged with what Postgres stores.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use customer_knowledge::pb::v1::{
    self as pb,
    interaction::{Channel as Via, Kind},
};

use crate::{
    harness::{Outcome, timed, with_deadline},
    helpers::InteractionClient,
};

/// One append call as sent, kept so that a retry sends exactly the same
/// request (same `request_id`, same payload).
#[derive(Clone, Debug)]
pub enum Append {
    One(Box<pb::LogInteractionRequest>),
    Batch(pb::BatchLogInteractionsRequest),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub request: Append,
    /// The summary of each interaction the call writes, in request order.
    pub markers: Vec<String>,
    /// The interaction names of the acknowledgment, once there is one.
    pub acked: Option<Vec<String>>,
    /// Calls made for this op (1 = no retry).
    pub attempts: u32,
}

/// Makes ops with unique markers: `fault <tag> <n>`.
pub struct Appends {
    tag: String,
    customers: Vec<String>,
    next: AtomicUsize,
    ops: AtomicUsize,
    /// Every `batch_every`-th op is a BatchLogInteractions of `batch_len`.
    batch_every: usize,
    batch_len: usize,
}

impl Appends {
    pub fn new(tag: &str, customers: Vec<String>) -> Appends {
        Appends {
            tag: tag.to_string(),
            customers,
            next: AtomicUsize::new(0),
            ops: AtomicUsize::new(0),
            batch_every: 4,
            batch_len: 5,
        }
    }

    /// The SQL `LIKE` pattern of this workload's summaries.
    pub fn pattern(&self) -> String {
        format!("fault {} %", self.tag)
    }

    fn marker(&self) -> (String, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (
            format!("fault {} {n}", self.tag),
            self.customers[n % self.customers.len()].clone(),
        )
    }

    fn log_request(&self, request_id: String) -> (pb::LogInteractionRequest, String) {
        let (marker, parent) = self.marker();
        (
            pb::LogInteractionRequest {
                parent,
                interaction: Some(pb::Interaction {
                    channel: Via::Branch as i32,
                    kind: Kind::Inquiry as i32,
                    summary: marker.clone(),
                    notes: "logged by the fault suite".into(),
                    ..Default::default()
                }),
                request_id,
                ..Default::default()
            },
            marker,
        )
    }

    pub fn new_op(&self) -> Op {
        let n = self.ops.fetch_add(1, Ordering::Relaxed);
        let request_id = uuid::Uuid::now_v7().to_string();
        if n % self.batch_every == self.batch_every - 1 {
            let (requests, markers): (Vec<_>, Vec<_>) = (0..self.batch_len)
                .map(|_| self.log_request(String::new()))
                .unzip();
            Op {
                request: Append::Batch(pb::BatchLogInteractionsRequest {
                    requests,
                    request_id,
                }),
                markers,
                acked: None,
                attempts: 0,
            }
        } else {
            let (request, marker) = self.log_request(request_id);
            Op {
                request: Append::One(Box::new(request)),
                markers: vec![marker],
                acked: None,
                attempts: 0,
            }
        }
    }
}

/// Sends an op once, bounded on the client side at `deadline + 5 s`.
pub async fn send(
    client: &mut InteractionClient,
    op: &mut Op,
    deadline: Duration,
) -> (Result<(), Outcome>, Duration) {
    op.attempts += 1;
    let slack = Duration::from_secs(5);
    let (result, took) = match &op.request {
        Append::One(request) => {
            let (r, took) = timed(
                deadline,
                slack,
                client.log_interaction(with_deadline((**request).clone(), deadline)),
            )
            .await;
            (r.map(|i| vec![i.name]), took)
        }
        Append::Batch(request) => {
            let (r, took) = timed(
                deadline,
                slack,
                client.batch_log_interactions(with_deadline(request.clone(), deadline)),
            )
            .await;
            (
                r.map(|b| b.interactions.into_iter().map(|i| i.name).collect()),
                took,
            )
        }
    };
    match result {
        Ok(names) => {
            op.acked = Some(names);
            (Ok(()), took)
        }
        Err(outcome) => (Err(outcome), took),
    }
}

/// Every op made, acknowledged or not.
#[derive(Clone, Default)]
pub struct Ledger(pub Arc<Mutex<Vec<Op>>>);

impl Ledger {
    pub fn push(&self, op: Op) {
        self.0.lock().unwrap().push(op);
    }
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Interactions stored per marker: their names.
pub async fn stored(
    db: &sqlx::PgPool,
    appends: &Appends,
) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT summary, customer_id, id FROM interactions WHERE summary LIKE $1")
            .bind(appends.pattern())
            .fetch_all(db)
            .await?;
    let mut by_marker: HashMap<String, Vec<String>> = HashMap::new();
    for (summary, customer, id) in rows {
        by_marker
            .entry(summary)
            .or_default()
            .push(format!("customers/{customer}/interactions/{id}"));
    }
    Ok(by_marker)
}

/// Acknowledged against stored.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Interactions of acknowledged ops.
    pub acked: usize,
    /// Rows stored by the workload.
    pub stored: usize,
    /// Rows beyond the first for a marker.
    pub duplicates: usize,
    /// Acknowledged interactions with no row.
    pub missing: usize,
    /// Acknowledged interactions whose row has another name than the
    /// acknowledgment said.
    pub renamed: usize,
    /// Interactions never acknowledged (the op gave up).
    pub unacked: usize,
}

pub fn verdict(ops: &[Op], stored: &HashMap<String, Vec<String>>) -> Verdict {
    let mut v = Verdict {
        stored: stored.values().map(Vec::len).sum(),
        duplicates: stored.values().map(|n| n.len().saturating_sub(1)).sum(),
        ..Verdict::default()
    };
    for op in ops {
        match &op.acked {
            None => v.unacked += op.markers.len(),
            Some(names) => {
                for (i, marker) in op.markers.iter().enumerate() {
                    v.acked += 1;
                    match stored.get(marker).map(Vec::as_slice) {
                        None | Some([]) => v.missing += 1,
                        Some(rows) => {
                            if names.get(i).is_none_or(|n| !rows.contains(n)) {
                                v.renamed += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    v
}

/// Retries every op not yet acknowledged with its own request (same
/// `request_id`) until it is acknowledged or `within` has passed, at most
/// `parallel` at a time; backs off between attempts.
pub async fn retry_unacked(
    client: &InteractionClient,
    ops: &mut [Op],
    parallel: usize,
    within: Duration,
) -> crate::harness::Tally {
    let start = tokio::time::Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.acked.is_some() {
            continue;
        }
        let mut op = op.clone();
        let mut client = client.clone();
        let semaphore = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await.unwrap();
            let mut errors = Vec::new();
            let mut backoff = Duration::from_millis(50);
            while op.acked.is_none() && start.elapsed() < within {
                match send(&mut client, &mut op, Duration::from_secs(5)).await.0 {
                    Ok(()) => {}
                    Err(outcome) => {
                        errors.push(outcome);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
            (i, op, errors)
        }));
    }
    let mut tally = crate::harness::Tally::default();
    for task in tasks {
        if let Ok((i, op, errors)) = task.await {
            for e in errors {
                tally.add(e);
            }
            ops[i] = op;
        }
    }
    tally
}
