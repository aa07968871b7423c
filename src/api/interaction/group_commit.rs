//! Group commit for LogInteraction: concurrent calls are queued to a few
//! batcher tasks, and each batcher writes whatever is queued when it becomes
//! free (at most `max_batch` calls, no linger) in one transaction: one
//! multi-row INSERT, one NOTIFY, one fsynced commit. Each caller is answered
//! after that commit, with exactly what its own transaction would have
//! answered: its idempotency key is claimed and stored in the batch's
//! transaction, its customer checked in its own branch scope, its
//! `external_ref` deduplicated, and its own error (another branch's or an
//! erased customer, a conflicting `external_ref`, a reused `request_id`)
//! never fails the others. When the batch's transaction itself fails (a
//! statement error, a lost connection, a deadlock), every caller commits
//! alone on its own connection, under its own deadline, as before group
//! commit; so does a caller whose batcher is gone.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::*;
use crate::store::idempotency::{self, Claim};

/// How the group commit runs (`interactions.group_commit*`).
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitSettings {
    /// Most calls one transaction writes.
    pub max_batch: usize,
    /// Batches in flight at once, each on its own connection.
    pub workers: usize,
}

/// One LogInteraction call, validated, waiting for a batch.
pub(super) struct Queued {
    pub key: Option<IdempotencyKey>,
    pub scope: BranchScope,
    pub customer: CustomerId,
    pub new: NewInteraction,
}

struct Pending {
    call: Queued,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Answer>,
}

enum Answer {
    /// The call's answer, after the commit that holds its row (if any), and
    /// where the primary's WAL stood after that commit (with a standby).
    Done(Result<pb::Interaction, Error>, Option<i64>),
    /// The batch failed as a whole: the caller commits on its own.
    Alone(Queued),
}

/// The handle calls queue through; the batchers stop when it is dropped.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Starts the batchers (on the current Tokio runtime).
    pub(super) fn start(db: Db, metrics: Metrics, settings: GroupCommitSettings) -> GroupCommit {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let max_batch = settings.max_batch.max(1);
        for _ in 0..settings.workers.max(1) {
            let batcher = Batcher {
                db: db.clone(),
                metrics: metrics.clone(),
                max_batch,
            };
            tokio::spawn(batcher.run(rx.clone()));
        }
        GroupCommit { queue }
    }

    /// Queues `call` and waits for its batch: Ok with the call's answer and
    /// the write position for read-your-writes (`Db::note_write_at`), or Err
    /// with the call given back, to be committed by the caller alone.
    pub(super) async fn submit(
        &self,
        call: Queued,
    ) -> Result<(Result<pb::Interaction, Error>, Option<i64>), Queued> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            call,
            deadline: crate::store::deadline(),
            reply,
        };
        if let Err(mpsc::error::SendError(pending)) = self.queue.send(pending) {
            return Err(pending.call);
        }
        match answer.await {
            Ok(Answer::Done(result, written_at)) => Ok((result, written_at)),
            Ok(Answer::Alone(call)) => Err(call),
            // The batcher ended without answering (a panic): whether the row
            // was committed is unknown, so the call is not written again.
            Err(_) => Ok((
                Err(Error::Internal(anyhow::anyhow!(
                    "the group commit ended without answering"
                ))),
                None,
            )),
        }
    }
}

struct Batcher {
    db: Db,
    metrics: Metrics,
    max_batch: usize,
}

impl Batcher {
    async fn run(self, queue: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
        // Calls held back from a batch because a call of the same
        // idempotency key was already in it: they go in this batcher's next.
        let mut held: Vec<Pending> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut held);
            if batch.is_empty() {
                if queue
                    .lock()
                    .await
                    .recv_many(&mut batch, self.max_batch)
                    .await
                    == 0
                {
                    return;
                }
            } else if let Ok(mut queue) = queue.try_lock() {
                // Held calls never wait for new ones: another batcher may
                // be holding the queue while it waits for the next call.
                while batch.len() < self.max_batch
                    && let Ok(pending) = queue.try_recv()
                {
                    batch.push(pending);
                }
            }
            let mut keys = std::collections::HashSet::new();
            let (batch, later): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| {
                p.call
                    .key
                    .as_ref()
                    .is_none_or(|k| keys.insert((k.principal.clone(), k.method, k.request_id)))
            });
            held = later;
            self.commit(batch).await;
        }
    }

    /// Writes one batch and answers each of its calls.
    async fn commit(&self, batch: Vec<Pending>) {
        let now = Instant::now();
        let mut live = Vec::with_capacity(batch.len());
        for pending in batch {
            if pending.reply.is_closed() {
                // The caller gave up (its call was cancelled): not written.
                continue;
            }
            if pending.deadline.is_some_and(|d| d <= now) {
                let _ = pending
                    .reply
                    .send(Answer::Done(Err(Error::DeadlineExceeded), None));
                continue;
            }
            live.push(pending);
        }
        if live.is_empty() {
            return;
        }
        // The batch's statements may run until its last caller's deadline.
        let latest = live
            .iter()
            .map(|p| p.deadline)
            .try_fold(now, |latest, d| d.map(|d| latest.max(d)));
        let written = crate::store::with_deadline(latest, self.write(&live)).await;
        match written {
            Ok(answers) => {
                // One read of the WAL position for every caller of the batch.
                let written_at = if answers.iter().any(Result::is_ok) {
                    self.db.write_position().await
                } else {
                    None
                };
                for (pending, answer) in live.into_iter().zip(answers) {
                    let _ = pending.reply.send(Answer::Done(answer, written_at));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, calls = live.len(),
                    "a LogInteraction group commit failed; its calls commit one by one");
                for pending in live {
                    let _ = pending.reply.send(Answer::Alone(pending.call));
                }
            }
        }
    }

    /// The batch's transaction: Err when it failed as a whole (nothing was
    /// committed), else each call's answer, committed.
    async fn write(&self, live: &[Pending]) -> Result<Vec<Result<pb::Interaction, Error>>, Error> {
        let mut tx = self.db.begin().await?;
        let mut answers: Vec<Option<Result<Interaction, Error>>> = Vec::new();
        answers.resize_with(live.len(), || None);
        let mut claimed = vec![false; live.len()];
        // Keys are claimed in one order, so two batches claiming the same
        // keys (retries of calls still in flight) wait rather than deadlock.
        let mut keyed: Vec<(usize, &IdempotencyKey)> = live
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.call.key.as_ref()?)))
            .collect();
        keyed.sort_by(|(_, a), (_, b)| {
            (&a.principal, a.request_id).cmp(&(&b.principal, b.request_id))
        });
        let keys: Vec<&IdempotencyKey> = keyed.iter().map(|(_, key)| *key).collect();
        let claims = self.db.claim_keys(&mut tx, &keys).await?;
        for ((i, _), claim) in keyed.into_iter().zip(claims) {
            match claim {
                Claim::New => claimed[i] = true,
                Claim::Reused => answers[i] = Some(Err(Error::RequestIdReused)),
                Claim::Replay(names) => {
                    let replayed = match names.first() {
                        Some(name) => {
                            current_interaction(&mut tx, name, &live[i].call.scope).await?
                        }
                        None => Err(Error::Internal(anyhow::anyhow!(
                            "idempotency key without resource names"
                        ))),
                    };
                    answers[i] = Some(replayed);
                }
            }
        }
        let open: Vec<usize> = (0..live.len()).filter(|&i| answers[i].is_none()).collect();
        let wanted: Vec<(&str, Option<&str>)> = open
            .iter()
            .map(|&i| (live[i].call.customer.as_str(), live[i].call.scope.branch()))
            .collect();
        let mut reachable: Vec<usize> = store::lock_customers_each(&mut tx, &wanted)
            .await?
            .into_iter()
            .map(|n| open[n])
            .collect();
        reachable.sort_unstable();
        reachable.dedup();
        for &i in &open {
            if reachable.binary_search(&i).is_err() {
                let call = &live[i].call;
                answers[i] = Some(Err(unreachable_because(
                    &mut tx,
                    &call.customer,
                    &call.scope,
                )
                .await?));
            }
        }
        let rows: Vec<(CustomerId, NewInteraction)> = reachable
            .iter()
            .map(|&i| (live[i].call.customer.clone(), live[i].call.new.clone()))
            .collect();
        let appended = store::append(&mut tx, &rows, true).await?;
        for (&i, appended) in reachable.iter().zip(appended) {
            answers[i] = Some(match appended {
                Appended::New(x) | Appended::Duplicate(x) => Ok(*x),
                Appended::Conflict(existing) => Err(external_ref_conflict(existing)),
                Appended::Skipped => {
                    Err(Error::Internal(anyhow::anyhow!("duplicate not read back")))
                }
            });
        }
        let now = Utc::now();
        let mut out = Vec::with_capacity(live.len());
        let mut recorded = Vec::new();
        let mut released = Vec::new();
        for ((pending, answer), claimed) in live.iter().zip(answers).zip(claimed) {
            let answer = answer
                .unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("a call went unanswered"))));
            if claimed && let Some(key) = &pending.call.key {
                match &answer {
                    Ok(x) => recorded.push((key, x.name())),
                    Err(_) => released.push(key),
                }
            }
            out.push(answer.map(|x| interaction_to(&x, now)));
        }
        idempotency::record_each(&mut tx, &recorded).await?;
        idempotency::release_each(&mut tx, &released).await?;
        tx.commit().await?;
        if !rows.is_empty() {
            self.metrics.observe_append_batch(rows.len());
        }
        Ok(out)
    }
}
