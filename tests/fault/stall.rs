//! Scenario 4: the network between the service and Postgres stalls (a proxy
//! stops forwarding bytes but keeps the sockets open) under load. Calls must
//! still answer by their deadline with a code that says "retry later",
//! health must turn NOT_SERVING, and once the network is back the service
//! serves again by itself.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use customer_knowledge::pb::v1::{
    self as pb,
    interaction::{Channel as Via, Kind},
};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    harness::{
        HealthProbe, Latencies, Outcome, Report, Scn, Service, Tally, create_customers,
        customers_on, eventually, interactions_on, list, secs, timed, with_deadline,
    },
    helpers::Caller,
    proxy::StallProxy,
    restart::retryable,
};

const WORKERS: usize = 8;
const DEADLINE: Duration = Duration::from_secs(1);

struct Call {
    started: Instant,
    ended: Instant,
    outcome: Outcome,
    took: Duration,
}

pub async fn run(scn: Scn) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let db = scn.cluster.create_database().await?;
    let upstream: SocketAddr = ([127, 0, 0, 1], scn.cluster.port()?).into();
    let proxy = StallProxy::start(upstream).await?;
    let mut env = scn.service_env(&format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, db.name
    ));
    env.insert("CK__DATABASE__MAX_CONNECTIONS".into(), "16".into());
    let service = Service::start(&scn, &env).await?;
    let customers = create_customers(&service, "stall", "B01", 4).await?;
    let caller = Caller::rm("B01");

    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let channel = service.channel().await?;
        let mut interactions = interactions_on(channel.clone(), &caller);
        let mut customers_client = customers_on(channel, &caller);
        let (stop, calls, customers) = (stop.clone(), calls.clone(), customers.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let customer = customers[(w + n) % customers.len()].clone();
                let started = Instant::now();
                let slack = Duration::from_secs(10);
                let (outcome, took) = if n % 2 == 0 {
                    let request = pb::LogInteractionRequest {
                        parent: customer,
                        interaction: Some(pb::Interaction {
                            channel: Via::Phone as i32,
                            kind: Kind::Inquiry as i32,
                            summary: format!("fault stall {w} {n}"),
                            ..Default::default()
                        }),
                        request_id: uuid::Uuid::now_v7().to_string(),
                        ..Default::default()
                    };
                    let (r, took) = timed(
                        DEADLINE,
                        slack,
                        interactions.log_interaction(with_deadline(request, DEADLINE)),
                    )
                    .await;
                    (r.err().unwrap_or(Outcome::OK), took)
                } else {
                    let request = pb::GetCustomerRequest {
                        name: customer,
                        ..Default::default()
                    };
                    let (r, took) = timed(
                        DEADLINE,
                        slack,
                        customers_client.get_customer(with_deadline(request, DEADLINE)),
                    )
                    .await;
                    (r.err().unwrap_or(Outcome::OK), took)
                };
                calls.lock().unwrap().push(Call {
                    started,
                    ended: Instant::now(),
                    outcome,
                    took,
                });
                if outcome != Outcome::OK {
                    // A client backs off a little before its next call.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let oks_since = |since: Instant| {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.started >= since && c.outcome == Outcome::OK)
            .map(|c| c.ended)
            .min()
    };
    let began = Instant::now();
    let warmed = eventually(
        Duration::from_secs(30),
        Duration::from_millis(10),
        || async {
            calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.outcome == Outcome::OK)
                .count()
                >= 50
        },
    )
    .await;
    report.check(
        warmed || oks_since(began).is_some(),
        "calls succeed before the stall",
    );

    let mut probe = HealthProbe::new(service.port);
    let stalled_at = Instant::now();
    proxy.stall();
    let mut not_serving_after = None;
    while stalled_at.elapsed() < Duration::from_secs(30) {
        if probe.check().await == Some(ServingStatus::NotServing) {
            not_serving_after = Some(stalled_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // How long the stall lasts: in the fast part long enough for every call
    // in flight when it began to pass its deadline twice over; with --all
    // longer than the pool's acquire timeout and Postgres's statement
    // timeout.
    let stall_for = Duration::from_secs(if scn.all { 12 } else { 3 });
    eventually(stall_for, Duration::from_millis(50), || async {
        stalled_at.elapsed() >= stall_for
    })
    .await;
    let resumed_at = Instant::now();
    proxy.resume();

    let mut serving_after = None;
    while resumed_at.elapsed() < Duration::from_secs(60) {
        if probe.check().await == Some(ServingStatus::Serving) {
            serving_after = Some(resumed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async { oks_since(resumed_at).is_some() },
    )
    .await;
    let first_ok = oks_since(resumed_at).map(|t| t - resumed_at);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    }

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    let mut codes = Tally::default();
    let mut latencies = Latencies::default();
    for call in calls
        .iter()
        .filter(|c| c.started >= stalled_at && c.started < resumed_at)
    {
        codes.add(call.outcome);
        latencies.push(call.took);
    }
    let mut all_codes = Tally::default();
    for call in &calls {
        all_codes.add(call.outcome);
    }

    report.figure("stall lasted", secs(resumed_at - stalled_at));
    report.figure("proxied connections", proxy.connections());
    report.figure(
        "codes of calls started during the stall (1 s deadline)",
        &codes,
    );
    report.figure("their latency", &latencies);
    report.figure(
        "health NOT_SERVING after the stall began",
        not_serving_after.map_or("never".into(), secs),
    );
    report.figure(
        "health SERVING after the network is back",
        serving_after.map_or("never".into(), secs),
    );
    report.figure(
        "first success after the network is back",
        first_ok.map_or("never".into(), secs),
    );
    report.figure("codes of the whole run", &all_codes);

    let mut allowed = retryable();
    allowed.push(Outcome::OK);
    let bad = all_codes.outside(&allowed);
    report.check(
        bad.is_empty(),
        format!(
            "errors are only UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or RESOURCE_EXHAUSTED (saw {})",
            list(&bad)
        ),
    );
    report.check(
        not_serving_after.is_some(),
        "health turns NOT_SERVING while Postgres cannot be reached",
    );
    report.check(
        serving_after.is_some(),
        "health is SERVING again once the network is back",
    );
    report.check(
        first_ok.is_some(),
        "calls succeed again once the network is back",
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
