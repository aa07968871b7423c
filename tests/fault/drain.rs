//! Scenario 6: SIGTERM while unary calls are in flight and a
//! WatchInteractions stream is open. Health turns NOT_SERVING, the unary
//! calls complete OK, and the stream ends with UNAVAILABLE saying the
//! server is draining (a client must hear that it should reconnect
//! elsewhere, not that the stream is over); then the process exits 0.

use std::time::{Duration, Instant};

use customer_knowledge::pb::v1::{
    self as pb,
    interaction::{Channel as Via, Kind},
};
use sqlx::Connection;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    harness::{
        Report, Scn, Service, create_customers, customers_on, interactions_on, secs,
        service_statements, with_deadline,
    },
    helpers::Caller,
};

const IN_FLIGHT: usize = 3;

/// How the watch stream ended.
enum StreamEnd {
    /// Trailers with grpc-status 0: the client believes the stream is over.
    Ok,
    Status(tonic::Status),
    NotEnded,
}

pub async fn run(scn: Scn) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let db = scn.cluster.create_database().await?;
    let mut env = scn.service_env(&db.url);
    env.insert("CK__SERVER__SHUTDOWN_GRACE_SECS".into(), "20".into());
    let mut service = Service::start(&scn, &env).await?;
    let customers = create_customers(&service, "drain", "B01", IN_FLIGHT).await?;
    let caller = Caller::rm("B01");
    let channel = service.channel().await?;
    let mut interactions = interactions_on(channel.clone(), &caller);

    // An open watch stream, proven live by receiving one interaction.
    let mut watch = interactions
        .watch_interactions(pb::WatchInteractionsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    interactions
        .log_interaction(pb::LogInteractionRequest {
            parent: customers[0].clone(),
            interaction: Some(pb::Interaction {
                channel: Via::Branch as i32,
                kind: Kind::Inquiry as i32,
                summary: "fault drain".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let first = tokio::time::timeout(Duration::from_secs(10), watch.message()).await;
    report.check(
        matches!(first, Ok(Ok(Some(_)))),
        "the watch stream delivers an interaction before the shutdown",
    );

    let mut health = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let first_health = tokio::time::timeout(Duration::from_secs(5), health.message()).await;
    report.check(
        matches!(&first_health, Ok(Ok(Some(s))) if s.status == ServingStatus::Serving as i32),
        "health is SERVING before the shutdown",
    );

    // Unary calls held in flight by row locks on their customers.
    let mut monitor = db.connect("ck-fault-monitor").await?;
    let mut locker = db.connect("ck-fault-locker").await?;
    let mut locks = locker.begin().await?;
    let ids: Vec<String> = customers
        .iter()
        .map(|c| c.trim_start_matches("customers/").to_string())
        .collect();
    sqlx::query("SELECT 1 FROM customers WHERE id = ANY($1) FOR UPDATE")
        .bind(&ids)
        .execute(&mut *locks)
        .await?;
    let mut calls = Vec::new();
    for (i, customer) in customers.iter().enumerate() {
        let mut client = customers_on(channel.clone(), &caller);
        let request = pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: customer.clone(),
                display_name: format!("Drained {i}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            ..Default::default()
        };
        calls.push(tokio::spawn(async move {
            client
                .update_customer(with_deadline(request, Duration::from_secs(30)))
                .await
        }));
    }
    let waiting_since = Instant::now();
    let mut held = false;
    while !held && waiting_since.elapsed() < Duration::from_secs(10) {
        held = service_statements(&mut monitor)
            .await
            .is_ok_and(|(_, locked)| locked >= IN_FLIGHT as i64);
        if !held {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    report.check(
        held,
        "the unary calls are in flight (waiting on the row locks)",
    );

    let sigterm_at = Instant::now();
    service.sigterm();

    let mut not_serving_after = None;
    while sigterm_at.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), health.message()).await {
            Ok(Ok(Some(s))) if s.status == ServingStatus::NotServing as i32 => {
                not_serving_after = Some(sigterm_at.elapsed());
                break;
            }
            Ok(Ok(Some(_))) => continue,
            _ => break,
        }
    }
    drop(health);

    let mut extra_messages = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.message()).await {
            Ok(Ok(Some(_))) => extra_messages += 1,
            Ok(Ok(None)) => break StreamEnd::Ok,
            Ok(Err(status)) => break StreamEnd::Status(status),
            Err(_) => break StreamEnd::NotEnded,
        }
    };
    let stream_ended_after = sigterm_at.elapsed();

    locks.rollback().await?;
    let mut completed = 0;
    let mut call_errors = Vec::new();
    for call in calls {
        match tokio::time::timeout(Duration::from_secs(20), call).await {
            Ok(Ok(Ok(_))) => completed += 1,
            Ok(Ok(Err(status))) => call_errors.push(format!("{:?}", status.code())),
            _ => call_errors.push("no answer".into()),
        }
    }
    drop(watch);
    drop(interactions);
    drop(channel);
    let exit = service.wait_exit(Duration::from_secs(30)).await;
    let exited_after = sigterm_at.elapsed();

    let end_text = match &end {
        StreamEnd::Ok => "OK (the stream just ends)".to_string(),
        StreamEnd::Status(s) => format!(
            "{:?} (reason {}): {}",
            s.code(),
            crate::helpers::reason(s),
            s.message()
        ),
        StreamEnd::NotEnded => "not ended within 10 s".to_string(),
    };
    report.figure("watch stream ended with", &end_text);
    report.figure("watch stream ended after SIGTERM", secs(stream_ended_after));
    report.figure("messages after SIGTERM", extra_messages);
    report.figure(
        "health NOT_SERVING after SIGTERM",
        not_serving_after.map_or("never".into(), secs),
    );
    report.figure(
        "in-flight unary calls completed OK",
        format!("{completed} of {IN_FLIGHT}"),
    );
    if !call_errors.is_empty() {
        report.figure("in-flight call errors", call_errors.join(", "));
    }
    report.figure(
        "process exit",
        match exit {
            Some(status) => format!("{status} after {}", secs(exited_after)),
            None => "still running after 30 s".into(),
        },
    );

    report.check(
        not_serving_after.is_some(),
        "health turns NOT_SERVING on SIGTERM",
    );
    report.check(
        completed == IN_FLIGHT,
        "every in-flight unary call completes OK",
    );
    report.check(
        matches!(&end, StreamEnd::Status(s) if s.code() == Code::Unavailable && {
            let message = s.message().to_lowercase();
            message.contains("drain")
                || message.contains("shutting down")
                || crate::helpers::reason(s) == "SERVER_DRAINING"
        }),
        "the watch stream ends UNAVAILABLE saying the server drains (message or reason)",
    );
    report.check(
        exit.is_some_and(|s| s.success()),
        "the process exits 0 within its grace period",
    );
    Ok(report)
}
