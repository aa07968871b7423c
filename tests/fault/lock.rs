//! Scenario 3: `interactions` is locked (ACCESS EXCLUSIVE, in an open
//! transaction) while calls with 500 ms deadlines write and read it. They
//! must end DEADLINE_EXCEEDED at their deadline, their statements must not
//! go on running in Postgres, and calls that do not touch the table, and
//! health, must still be served while the lock is held.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use customer_knowledge::pb::v1::{
    self as pb,
    interaction::{Channel as Via, Kind},
};
use sqlx::Connection;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    harness::{
        Latencies, Outcome, Report, Scn, Service, Tally, create_customers, customers_on,
        interactions_on, list, secs, service_statements, timed, with_deadline,
    },
    helpers::Caller,
};

const DEADLINE: Duration = Duration::from_millis(500);
const CALLS: usize = 120;
/// Below the pool size (16), so that admission control has no reason to
/// shed: every call should reach the lock and time out there.
const IN_FLIGHT: usize = 12;

fn log(parent: &str, n: usize) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: Via::Phone as i32,
            kind: Kind::Inquiry as i32,
            summary: format!("fault lock {n}"),
            ..Default::default()
        }),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    }
}

pub async fn run(scn: Scn) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let db = scn.cluster.create_database().await?;
    let mut env = scn.service_env(&db.url);
    env.insert("CK__DATABASE__MAX_CONNECTIONS".into(), "16".into());
    let service = Service::start(&scn, &env).await?;
    let customers = create_customers(&service, "lock", "B01", 4).await?;
    let caller = Caller::rm("B01");
    let channel = service.channel().await?;
    let mut interactions = interactions_on(channel.clone(), &caller);
    for (n, customer) in customers.iter().enumerate() {
        interactions.log_interaction(log(customer, n)).await?;
    }

    let mut monitor = db.connect("ck-fault-monitor").await?;
    let mut locker = db.connect("ck-fault-locker").await?;
    let mut lock = locker.begin().await?;
    sqlx::query("LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;

    // Health, watched every 100 ms for as long as the lock is held.
    let watching = Arc::new(AtomicBool::new(true));
    let not_serving = Arc::new(AtomicUsize::new(0));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let health_watch = {
        let (watching, not_serving, unanswered) =
            (watching.clone(), not_serving.clone(), unanswered.clone());
        let port = service.port;
        tokio::spawn(async move {
            let mut checks = 0;
            let mut probe = crate::harness::HealthProbe::new(port);
            while watching.load(Ordering::SeqCst) {
                checks += 1;
                match probe.check().await {
                    Some(ServingStatus::Serving) => {}
                    Some(_) => {
                        not_serving.fetch_add(1, Ordering::SeqCst);
                    }
                    None => {
                        unanswered.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            checks
        })
    };

    // The burst: LogInteraction and ListInteractions alternately, at most
    // IN_FLIGHT at a time, each with a 500 ms deadline.
    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut calls = Vec::new();
    for n in 0..CALLS {
        let permit = semaphore.clone().acquire_owned().await?;
        let mut client = interactions_on(channel.clone(), &caller);
        let customer = customers[n % customers.len()].clone();
        calls.push(tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let slack = Duration::from_secs(3);
            let (outcome, took) = if n % 2 == 0 {
                let (r, took) = timed(
                    DEADLINE,
                    slack,
                    client.log_interaction(with_deadline(log(&customer, 100 + n), DEADLINE)),
                )
                .await;
                (r.err().unwrap_or(Outcome::OK), took)
            } else {
                let request = pb::ListInteractionsRequest {
                    parent: customer,
                    page_size: 10,
                    ..Default::default()
                };
                let (r, took) = timed(
                    DEADLINE,
                    slack,
                    client.list_interactions(with_deadline(request, DEADLINE)),
                )
                .await;
                (r.err().unwrap_or(Outcome::OK), took)
            };
            (started, outcome, took)
        }));
    }
    let mut codes = Tally::default();
    let mut latencies = Latencies::default();
    let mut last_deadline = Instant::now();
    for call in calls {
        let (started, outcome, took) = call.await?;
        codes.add(outcome);
        latencies.push(took);
        last_deadline = last_deadline.max(started + DEADLINE);
    }

    // Statements of the timed-out calls still running in Postgres, 1 s and
    // up to 2 s after the last deadline.
    tokio::time::sleep_until((last_deadline + Duration::from_secs(1)).into()).await;
    let (active_1s, locked_1s) = service_statements(&mut monitor).await?;
    let (mut active_2s, mut locked_2s) = (active_1s, locked_1s);
    while locked_2s > 0 && Instant::now() < last_deadline + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (active_2s, locked_2s) = service_statements(&mut monitor).await?;
    }

    // Calls that do not touch the locked table, while it is still locked.
    let mut customers_client = customers_on(channel.clone(), &caller);
    let mut unrelated = Tally::default();
    let mut unrelated_latency = Latencies::default();
    for customer in &customers {
        let request = pb::GetCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        };
        let deadline = Duration::from_secs(2);
        let (r, took) = timed(
            deadline,
            Duration::from_secs(3),
            customers_client.get_customer(with_deadline(request, deadline)),
        )
        .await;
        unrelated.add(r.err().unwrap_or(Outcome::OK));
        unrelated_latency.push(took);
    }
    // A health check that gets no answer at all (a busy machine) is asked
    // again; an answer must be SERVING.
    let mut health_now = None;
    for _ in 0..3 {
        health_now = service.health().await;
        if health_now.is_some() {
            break;
        }
    }
    watching.store(false, Ordering::SeqCst);
    let health_checks = health_watch.await.unwrap_or(0);

    lock.rollback().await?;
    let released = Instant::now();
    let mut recovered = None;
    while released.elapsed() < Duration::from_secs(30) {
        let deadline = Duration::from_secs(2);
        let (r, _) = timed(
            deadline,
            Duration::from_secs(3),
            interactions.log_interaction(with_deadline(log(&customers[0], 999), deadline)),
        )
        .await;
        if r.is_ok() {
            recovered = Some(released.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    report.figure("calls under the lock (500 ms deadline)", CALLS);
    report.figure("codes", &codes);
    report.figure("latency", &latencies);
    report.figure(
        "service statements running 1 s after the last deadline (waiting on the lock)",
        format!("{active_1s} ({locked_1s})"),
    );
    report.figure(
        "service statements running at most 2 s after it (waiting on the lock)",
        format!("{active_2s} ({locked_2s})"),
    );
    report.figure("GetCustomer while locked", &unrelated);
    report.figure("GetCustomer latency while locked", &unrelated_latency);
    report.figure(
        "health while locked",
        format!(
            "{} now; NOT_SERVING in {} and no answer in {} of {health_checks} checks",
            health_now.map_or("no answer".into(), |s| format!("{s:?}")),
            not_serving.load(Ordering::SeqCst),
            unanswered.load(Ordering::SeqCst)
        ),
    );
    report.figure(
        "first LogInteraction after the lock is released",
        recovered.map_or("never (30 s)".into(), secs),
    );

    let bad = codes.outside(&[Outcome::of(Code::DeadlineExceeded), Outcome::ClientDeadline]);
    report.check(
        bad.is_empty(),
        format!(
            "every call under the lock ends DEADLINE_EXCEEDED (from the server, or from the \
             client's own timer when the answer is late), never CANCELLED or INTERNAL (saw {})",
            list(&bad)
        ),
    );
    report.check(
        locked_2s == 0,
        "no statement of a timed-out call still waits in Postgres 2 s after its deadline",
    );
    report.check(
        unrelated.count(Outcome::OK) == customers.len(),
        "GetCustomer is served while interactions is locked",
    );
    report.check(
        health_now == Some(ServingStatus::Serving) && not_serving.load(Ordering::SeqCst) == 0,
        "health stays SERVING while one table is locked",
    );
    report.check(
        recovered.is_some(),
        "LogInteraction succeeds once the lock is released",
    );
    let late = codes.count(Outcome::ClientDeadline);
    report.goal(
        &scn,
        late == 0,
        format!(
            "the server answers every call before the caller's own deadline fires \
             ({late} answered too late)"
        ),
    );
    Ok(report)
}
