//! Scenario 1: the service is killed (`kill -9`) in the middle of appends;
//! clients retry every unacknowledged request with its `request_id` against
//! the restarted service. Every acknowledged write must be stored exactly
//! once, under the name its acknowledgment gave, and nothing twice.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    appends::{Appends, Ledger, Op, retry_unacked, send, stored, verdict},
    harness::{
        Report, Scn, Service, Tally, channel, create_customers, eventually, interactions_on, secs,
    },
    helpers::Caller,
};

const WORKERS: usize = 16;
const CONNECTIONS: usize = 4;

/// What one kill cycle left behind.
#[derive(Default)]
struct Cycle {
    made: usize,
    acked: usize,
    /// Over every cycle so far: ops without an acknowledgment at the kill.
    unacked: usize,
    in_doubt: usize,
    at_kill: Tally,
}

pub async fn run(scn: Scn) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let db = scn.cluster.create_database().await?;
    let env = scn.service_env(&db.url);
    let mut service = Service::start(&scn, &env).await?;
    let customers = create_customers(&service, "kill", "B01", 8).await?;
    let appends = Arc::new(Appends::new("kill", customers));
    let caller = Caller::rm("B01");
    let pool = db.pool().await?;
    // Kill cycles, and acknowledged calls per cycle before its kill.
    let (cycles, target) = if scn.all { (5, 600) } else { (1, 300) };

    let mut ops = Vec::new();
    let mut totals = Cycle::default();
    let mut restarts = Vec::new();
    let mut retry_errors = Tally::default();
    let mut loaded = true;
    for _ in 0..cycles {
        let (cycle, cycle_ops, reached) =
            load_then_kill(&mut service, &appends, &caller, target).await?;
        loaded &= reached;
        ops.extend(cycle_ops);
        let before = stored(&pool, &appends).await?;
        let unacked: Vec<_> = ops.iter().filter(|o| o.acked.is_none()).collect();
        totals.made += cycle.made;
        totals.acked += cycle.acked;
        totals.unacked += unacked.len();
        totals.in_doubt += unacked
            .iter()
            .filter(|o| o.markers.iter().any(|m| before.contains_key(m)))
            .count();
        totals.at_kill.merge(cycle.at_kill);

        let killed_at = Instant::now();
        service = Service::start(&scn, &env).await?;
        restarts.push(killed_at.elapsed());
        let client = interactions_on(channel(&service.addr()).await?, &caller);
        retry_errors.merge(retry_unacked(&client, &mut ops, 8, Duration::from_secs(60)).await);
    }
    report.check(
        loaded,
        format!("{target} calls acknowledged before each kill"),
    );
    let v = verdict(&ops, &stored(&pool, &appends).await?);

    report.figure("kill -9 cycles", cycles);
    report.figure("calls made before the kills", totals.made);
    report.figure("acknowledged before the kills", totals.acked);
    report.figure("unacknowledged at the kills", totals.unacked);
    report.figure(
        "of those already committed (acknowledgment lost)",
        totals.in_doubt,
    );
    report.figure("errors seen at the kills", &totals.at_kill);
    report.figure(
        "restart to SERVING",
        restarts
            .iter()
            .map(|d| secs(*d))
            .collect::<Vec<_>>()
            .join(", "),
    );
    report.figure("retry errors", &retry_errors);
    report.figure(
        "interactions acknowledged / stored",
        format!("{} / {}", v.acked, v.stored),
    );
    report.figure("duplicates", v.duplicates);
    report.figure("acknowledged but missing", v.missing);
    report.figure("stored under another name than acknowledged", v.renamed);
    report.figure("never acknowledged after retries", v.unacked);

    report.check(v.duplicates == 0, "no interaction is stored twice");
    report.check(v.missing == 0, "every acknowledged interaction is stored");
    report.check(
        v.renamed == 0,
        "a retry answers with the interaction first stored (same name)",
    );
    report.check(
        v.unacked == 0,
        "every unacknowledged request succeeds when retried with its request_id",
    );
    report.check(
        v.acked == v.stored,
        "acknowledged interactions equal stored interactions",
    );
    Ok(report)
}

/// Appends from WORKERS clients over CONNECTIONS connections until `target`
/// calls are acknowledged, then `kill -9` with calls in flight. Every op made
/// is returned, acknowledged or not, and whether the target was reached.
async fn load_then_kill(
    service: &mut Service,
    appends: &Arc<Appends>,
    caller: &Caller,
    target: usize,
) -> anyhow::Result<(Cycle, Vec<Op>, bool)> {
    let ledger = Ledger::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(service.channel().await?);
    }
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let mut client = interactions_on(channels[w % CONNECTIONS].clone(), caller);
        let (appends, ledger, acked, killed) = (
            appends.clone(),
            ledger.clone(),
            acked.clone(),
            killed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut failures = Tally::default();
            while !killed.load(Ordering::SeqCst) {
                let mut op = appends.new_op();
                let result = send(&mut client, &mut op, Duration::from_secs(5)).await.0;
                ledger.push(op);
                match result {
                    Ok(()) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(outcome) => failures.add(outcome),
                }
            }
            failures
        }));
    }

    let reached = eventually(
        Duration::from_secs(60),
        Duration::from_millis(5),
        || async { acked.load(Ordering::SeqCst) >= target },
    )
    .await;
    killed.store(true, Ordering::SeqCst);
    service.kill9().await;
    let mut cycle = Cycle::default();
    for worker in workers {
        if let Ok(Ok(failures)) = tokio::time::timeout(Duration::from_secs(30), worker).await {
            cycle.at_kill.merge(failures);
        }
    }
    let ops = ledger.take();
    cycle.made = ops.len();
    cycle.acked = ops.iter().filter(|o| o.acked.is_some()).count();
    Ok((cycle, ops, reached))
}
