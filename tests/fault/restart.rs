//! Scenario 2: Postgres restarts (`pg_ctl restart -m fast`, or `-m
//! immediate`: a crash and recovery) under a steady append load whose
//! clients retry with their `request_id`. During the outage the service may
//! only answer with codes a client retries on; it serves again once Postgres
//! is back, and nothing acknowledged is lost or stored twice.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::Code;

use crate::{
    appends::{Appends, Ledger, retry_unacked, send, stored, verdict},
    harness::{
        Outcome, Report, Scn, Service, Tally, create_customers, eventually, interactions_on, list,
        secs,
    },
    helpers::Caller,
};

const WORKERS: usize = 8;

/// What a client may see while Postgres is away: codes that all say "retry
/// later", and its own deadline firing first.
pub fn retryable() -> Vec<Outcome> {
    [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::ResourceExhausted,
    ]
    .into_iter()
    .map(Outcome::of)
    .chain([Outcome::ClientDeadline])
    .collect()
}

/// One restart: when it began, when Postgres accepted connections again,
/// and the first call that succeeded after that.
struct Outage {
    began: Instant,
    back: Instant,
    first_ok: Option<Instant>,
}

pub async fn run(scn: Scn, mode: &'static str) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let db = scn.cluster.create_database().await?;
    let env = scn.service_env(&db.url);
    let service = Service::start(&scn, &env).await?;
    let customers = create_customers(&service, "restart", "B01", 8).await?;
    let appends = Arc::new(Appends::new(&format!("restart-{mode}"), customers));
    let caller = Caller::rm("B01");

    let ledger = Ledger::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // (when the answer came, what it was)
    let answers: Arc<Mutex<Vec<(Instant, Outcome)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let mut client = interactions_on(service.channel().await?, &caller);
        let (appends, ledger, acked, stop, answers) = (
            appends.clone(),
            ledger.clone(),
            acked.clone(),
            stop.clone(),
            answers.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut op = appends.new_op();
                let mut backoff = Duration::from_millis(20);
                while !stop.load(Ordering::SeqCst) {
                    let result = send(&mut client, &mut op, Duration::from_secs(5)).await.0;
                    let outcome = result.err().unwrap_or(Outcome::OK);
                    answers.lock().unwrap().push((Instant::now(), outcome));
                    if outcome == Outcome::OK {
                        acked.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                ledger.push(op);
            }
        }));
    }

    let warmed = eventually(
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async { acked.load(Ordering::SeqCst) >= 100 },
    )
    .await;
    report.check(warmed, "100 calls acknowledged before the restart");

    // Restarts, each once the load has run a while since the last recovery.
    let restarts = if scn.all { 3 } else { 1 };
    let first_ok_after = |answers: &[(Instant, Outcome)], back: Instant| {
        answers
            .iter()
            .filter(|(at, o)| *at > back && *o == Outcome::OK)
            .map(|(at, _)| *at)
            .min()
    };
    let mut outages: Vec<Outage> = Vec::new();
    for _ in 0..restarts {
        let acked_before = acked.load(Ordering::SeqCst);
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(10),
            || async { acked.load(Ordering::SeqCst) >= acked_before + 50 },
        )
        .await;
        let began = Instant::now();
        let restarted = scn.cluster.restart(mode).await;
        let back = Instant::now();
        if let Err(e) = &restarted {
            report.check(false, format!("pg_ctl restart -m {mode} succeeds: {e:#}"));
        }
        eventually(
            Duration::from_secs(60),
            Duration::from_millis(10),
            || async { first_ok_after(&answers.lock().unwrap(), back).is_some() },
        )
        .await;
        outages.push(Outage {
            began,
            back,
            first_ok: first_ok_after(&answers.lock().unwrap(), back),
        });
    }
    // A little more load after the last recovery, then stop.
    let acked_at_recovery = acked.load(Ordering::SeqCst);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(10),
        || async { acked.load(Ordering::SeqCst) >= acked_at_recovery + 50 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    }

    let answers = answers.lock().unwrap().clone();
    let mut outage = Tally::default();
    let mut all_errors = Tally::default();
    for (at, outcome) in &answers {
        if *outcome != Outcome::OK {
            all_errors.add(*outcome);
            if outages
                .iter()
                .any(|o| *at >= o.began && o.first_ok.is_none_or(|end| *at <= end))
            {
                outage.add(*outcome);
            }
        }
    }
    let recovered = outages.iter().all(|o| o.first_ok.is_some());
    let joined =
        |f: &dyn Fn(&Outage) -> String| outages.iter().map(f).collect::<Vec<_>>().join(", ");

    let mut ops = ledger.take();
    let client = interactions_on(service.channel().await?, &caller);
    let retry_errors = retry_unacked(&client, &mut ops, 8, Duration::from_secs(60)).await;
    let pool = db.pool().await?;
    let v = verdict(&ops, &stored(&pool, &appends).await?);

    report.figure(
        &format!("pg_ctl restart -m {mode}"),
        format!("{restarts} time(s)"),
    );
    report.figure("pg_ctl restart took", joined(&|o| secs(o.back - o.began)));
    report.figure("codes during the outages", &outage);
    report.figure("all errors of the run", &all_errors);
    report.figure(
        "first success after Postgres is back",
        joined(&|o| o.first_ok.map_or("never".into(), |t| secs(t - o.back))),
    );
    report.figure("calls answered", answers.len());
    report.figure("retry errors at the end", &retry_errors);
    report.figure(
        "interactions acknowledged / stored",
        format!("{} / {}", v.acked, v.stored),
    );
    report.figure("duplicates", v.duplicates);
    report.figure("acknowledged but missing", v.missing);

    let bad = all_errors.outside(&retryable());
    report.check(
        bad.is_empty(),
        format!(
            "errors are only UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or RESOURCE_EXHAUSTED (saw {})",
            list(&bad)
        ),
    );
    report.check(
        recovered,
        "a call succeeds within 60 s of Postgres being back, after every restart",
    );
    report.check(v.duplicates == 0, "no interaction is stored twice");
    report.check(v.missing == 0, "every acknowledged interaction is stored");
    report.check(
        v.renamed == 0,
        "a retry answers with the interaction first stored",
    );
    report.check(v.unacked == 0, "every request is acknowledged in the end");
    report.check(
        v.acked == v.stored,
        "acknowledged interactions equal stored interactions",
    );
    Ok(report)
}
