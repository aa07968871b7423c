//! Scenario 5: twenty times more calls at once than the service admits
//! (`CK__SERVER__MAX_CONCURRENT_CALLS`), over many connections. The excess
//! must be shed at once with RESOURCE_EXHAUSTED, the admitted calls must not
//! slow down much, memory must stay bounded, and the service must answer
//! normally right after the burst.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use customer_knowledge::pb::v1 as pb;
use tonic::Code;

use crate::{
    harness::{
        CustomerClient, Latencies, Outcome, Report, Scn, Service, Tally, create_customers,
        customers_on, list, ms, timed, with_deadline,
    },
    helpers::Caller,
};

const POOL: usize = 5;
const LIMIT: usize = 10;
const CONNECTIONS: usize = 20;
const DEADLINE: Duration = Duration::from_secs(5);

async fn get(client: &mut CustomerClient, name: &str) -> (Outcome, Duration) {
    let request = pb::GetCustomerRequest {
        name: name.into(),
        ..Default::default()
    };
    let (r, took) = timed(
        DEADLINE,
        Duration::from_secs(10),
        client.get_customer(with_deadline(request, DEADLINE)),
    )
    .await;
    (r.err().unwrap_or(Outcome::OK), took)
}

/// `rounds` rounds of `in_flight` calls fired together; every call's outcome
/// and latency.
async fn rounds(
    clients: &[CustomerClient],
    customers: &[String],
    in_flight: usize,
    rounds: usize,
) -> Vec<(Outcome, Duration)> {
    let mut results = Vec::new();
    for round in 0..rounds {
        let barrier = Arc::new(tokio::sync::Barrier::new(in_flight));
        let calls: Vec<_> = (0..in_flight)
            .map(|i| {
                let mut client = clients[i % clients.len()].clone();
                let name = customers[(round + i) % customers.len()].clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    get(&mut client, &name).await
                })
            })
            .collect();
        for call in calls {
            if let Ok(result) = call.await {
                results.push(result);
            }
        }
    }
    results
}

pub async fn run(scn: Scn) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let db = scn.cluster.create_database().await?;
    let mut env = scn.service_env(&db.url);
    env.insert("CK__DATABASE__MAX_CONNECTIONS".into(), POOL.to_string());
    env.insert("CK__SERVER__MAX_CONCURRENT_CALLS".into(), LIMIT.to_string());
    let service = Service::start(&scn, &env).await?;
    let customers = create_customers(&service, "load", "B01", 20).await?;
    let caller = Caller::rm("B01");
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(customers_on(service.channel().await?, &caller));
    }

    // Unloaded: one call at a time, after a warm-up.
    let samples = if scn.all { 400 } else { 100 };
    rounds(&clients[..1], &customers, 1, 50).await;
    let mut unloaded = Latencies::default();
    for (outcome, took) in rounds(&clients[..1], &customers, 1, samples).await {
        if outcome == Outcome::OK {
            unloaded.push(took);
        }
    }
    // At the limit, without excess: for reading the figures.
    let mut at_limit = Latencies::default();
    for (outcome, took) in rounds(&clients, &customers, LIMIT, samples / LIMIT).await {
        if outcome == Outcome::OK {
            at_limit.push(took);
        }
    }

    // The burst: 20 × the limit at once, in waves.
    let waves = if scn.all { 40 } else { 5 };
    let burst_started = Instant::now();
    let burst = rounds(&clients, &customers, 20 * LIMIT, waves).await;
    let burst_took = burst_started.elapsed();
    let mut codes = Tally::default();
    let mut shed = Latencies::default();
    let mut admitted = Latencies::default();
    for (outcome, took) in &burst {
        codes.add(*outcome);
        if outcome.is(Code::ResourceExhausted) {
            shed.push(*took);
        } else if *outcome == Outcome::OK {
            admitted.push(*took);
        }
    }
    let mut after = customers_on(service.channel().await?, &caller);
    let (right_after, right_after_took) = get(&mut after, &customers[0]).await;
    let peak_rss = service.peak_rss_kib();

    report.figure(
        "pool / limit / calls at once",
        format!("{POOL} / {LIMIT} / {}", 20 * LIMIT),
    );
    report.figure("unloaded GetCustomer (1 in flight)", &unloaded);
    report.figure(
        format!("at the limit ({LIMIT} in flight)").as_str(),
        &at_limit,
    );
    report.figure(
        "burst",
        format!(
            "{waves} waves of {} calls in {}",
            20 * LIMIT,
            ms(burst_took)
        ),
    );
    report.figure("burst codes", &codes);
    report.figure("shed (RESOURCE_EXHAUSTED) latency", &shed);
    report.figure("admitted (OK) latency", &admitted);
    let ratio = if unloaded.len() > 0 && admitted.len() > 0 {
        admitted.pct(99.0).as_secs_f64() / unloaded.pct(99.0).as_secs_f64()
    } else {
        f64::INFINITY
    };
    report.figure("admitted p99 / unloaded p99", format!("{ratio:.1}x"));
    report.figure(
        "peak RSS of the service (VmHWM)",
        peak_rss.map_or("unknown".into(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        }),
    );
    report.figure(
        "GetCustomer right after the burst",
        format!("{right_after} in {}", ms(right_after_took)),
    );

    let bad = codes.outside(&[
        Outcome::OK,
        Outcome::of(Code::ResourceExhausted),
        Outcome::of(Code::Unavailable),
        Outcome::of(Code::DeadlineExceeded),
        Outcome::ClientDeadline,
    ]);
    report.check(
        bad.is_empty(),
        format!(
            "the burst is answered OK or with a retryable code (saw {})",
            list(&bad)
        ),
    );
    report.check(
        codes.count(Outcome::of(Code::ResourceExhausted)) > 0,
        "calls beyond the limit are shed with RESOURCE_EXHAUSTED",
    );
    report.check(
        right_after == Outcome::OK,
        "a normal call succeeds right after the burst",
    );
    report.goal(
        &scn,
        shed.len() > 0 && shed.pct(99.0) < Duration::from_millis(50),
        format!("shed calls answer in < 50 ms at p99 ({shed})"),
    );
    report.goal(
        &scn,
        ratio < 3.0,
        format!("admitted p99 < 3x unloaded p99 ({ratio:.1}x)"),
    );
    report.goal(
        &scn,
        peak_rss.is_some_and(|k| k <= 150 * 1024),
        "peak RSS <= 150 MiB",
    );
    Ok(report)
}
