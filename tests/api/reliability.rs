//! Behaviour while things go wrong: deadlines that reach Postgres and answer
//! DEADLINE_EXCEEDED, load shedding, streams bounded by the caller rather
//! than the unary limit, heartbeats and UNAVAILABLE on drain, writes that
//! lock the customer they hang off, bounded error details and the limits the
//! contract states.

use std::time::{Duration, Instant};

use customer_knowledge::pb::v1::{
    self as pb,
    interaction::{Channel, Kind},
    knowledge_item::{Nature, Visibility},
};
use futures::StreamExt;
use sqlx::{Connection, PgConnection};
use tonic::{Code, Request};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::helpers::{Caller, TestApp, new_customer, reason, sample};

/// Generous bound for conditions polled on a busy machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn visit(summary: &str) -> pb::Interaction {
    pb::Interaction {
        channel: Channel::Branch as i32,
        kind: Kind::Inquiry as i32,
        summary: summary.into(),
        ..Default::default()
    }
}

fn log_request(parent: &str, timeout: Option<Duration>) -> Request<pb::LogInteractionRequest> {
    let mut request = Request::new(pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(visit("while the table is locked")),
        ..Default::default()
    });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// Holds `LOCK TABLE interactions` in an open transaction until dropped.
pub(crate) async fn lock_interactions(app: &TestApp) -> PgConnection {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// The service's statements now waiting for a lock.
async fn waiting_statements(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'customer-knowledge'
           AND state = 'active' AND wait_event_type = 'Lock'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Polls until `count` of the service's statements wait for a lock.
pub(crate) async fn until_waiting(app: &TestApp, count: i64) {
    let started = Instant::now();
    while waiting_statements(app).await < count {
        assert!(
            started.elapsed() < PATIENCE,
            "{count} statements never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A service with `connections` pooled connections and a session statement
/// timeout far away (only a caller's deadline ends a blocked statement), a
/// customer of B01, and `interactions` locked until the connection returned
/// is dropped.
async fn service_with_interactions_locked(
    connections: usize,
    display_name: &str,
) -> (TestApp, String, PgConnection) {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "CK__DATABASE__MAX_CONNECTIONS".into(),
            connections.to_string(),
        );
        env.insert("CK__DATABASE__STATEMENT_TIMEOUT_MS".into(), "600000".into());
    })
    .await;
    let customer = new_customer(&app, display_name, "B01").await;
    let lock = lock_interactions(&app).await;
    (app, customer, lock)
}

async fn health(app: &TestApp) -> ServingStatus {
    HealthClient::new(app.channel().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn a_callers_deadline_reaches_postgres_and_leaves_the_pool_free() {
    // The session-wide statement timeout is far away: only the caller's
    // deadline can end the blocked statements in time.
    let (app, customer, _lock) = service_with_interactions_locked(4, "Deadline").await;

    let calls = (0..8).map(|_| {
        let app = &app;
        let customer = customer.clone();
        async move {
            app.interactions(&Caller::rm("B01"))
                .await
                .log_interaction(log_request(&customer, Some(Duration::from_millis(500))))
                .await
                .unwrap_err()
        }
    });
    let mut gave_up = 0.0;
    for status in futures::future::join_all(calls).await {
        // The server answers before the deadline; only on a machine too
        // busy to deliver that answer in time does the client's own timer
        // (tonic's, which it reports as CANCELLED) win.
        let clients_own_timer =
            status.code() == Code::Cancelled && std::error::Error::source(&status).is_some();
        assert!(
            status.code() == Code::DeadlineExceeded || clients_own_timer,
            "{status:?}"
        );
        if clients_own_timer {
            gave_up += 1.0;
        }
    }
    // The server counts each as DEADLINE_EXCEEDED too (once it has seen
    // them end), except a call whose client gave up first and reset the
    // stream: the server saw that one cancelled by its caller.
    let started = Instant::now();
    loop {
        let (_, metrics) = app.admin_get("/metrics").await;
        let answered = |code: &str| {
            sample(
                &metrics,
                &format!(
                    r#"ck_grpc_requests_total{{code="{code}",method="LogInteraction",service="bank.customerknowledge.v1.InteractionService"}}"#
                ),
            )
        };
        assert!(answered("CANCELLED") <= gave_up, "{metrics}");
        if answered("DEADLINE_EXCEEDED") + answered("CANCELLED") == 8.0 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No statement outlives its caller: all are gone long before the
    // 600 s session timeout, while the lock is still held.
    let started = Instant::now();
    while waiting_statements(&app).await > 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "statements outlived their callers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Calls on other tables are served, and the replica stays in rotation.
    app.customers(&Caller::rm("B01"))
        .await
        .get_customer(pb::GetCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        })
        .await
        .expect("an unrelated call is served while interactions is locked");
    assert_eq!(health(&app).await, ServingStatus::Serving);
}

#[tokio::test]
async fn the_servers_own_limit_answers_deadline_exceeded_not_cancelled() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__SERVER__REQUEST_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let customer = new_customer(&app, "Server Limit", "B01").await;
    let _lock = lock_interactions(&app).await;
    let status = app
        .interactions(&Caller::rm("B01"))
        .await
        .log_interaction(log_request(&customer, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "DEADLINE_EXCEEDED");
}

#[tokio::test]
async fn calls_beyond_the_limit_are_shed_at_once_and_the_service_recovers() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__SERVER__MAX_CONCURRENT_CALLS".into(), "2".into());
    })
    .await;
    let customer = new_customer(&app, "Shed", "B01").await;
    let lock = lock_interactions(&app).await;
    let mut blocked = Vec::new();
    for _ in 0..2 {
        let customer = customer.clone();
        let mut client = app.interactions(&Caller::rm("B01")).await;
        blocked.push(tokio::spawn(async move {
            client.log_interaction(log_request(&customer, None)).await
        }));
    }
    until_waiting(&app, 2).await;

    let status = app
        .customers(&Caller::rm("B01"))
        .await
        .get_customer(pb::GetCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "OVERLOADED");
    assert!(
        status.get_error_details().retry_info().is_some(),
        "a shed call says when to retry"
    );
    // Health is not counted against the limit.
    assert_eq!(health(&app).await, ServingStatus::Serving);
    let (_, metrics) = app.admin_get("/metrics").await;
    assert_eq!(sample(&metrics, "ck_grpc_calls_shed_total"), 1.0);

    drop(lock);
    for call in blocked {
        call.await.unwrap().expect("admitted calls complete");
    }
    app.customers(&Caller::rm("B01"))
        .await
        .get_customer(pb::GetCustomerRequest {
            name: customer,
            ..Default::default()
        })
        .await
        .expect("served again once the load is gone");
}

fn import_row(parent: &str, external_ref: &str) -> pb::ImportInteractionsRequest {
    pb::ImportInteractionsRequest {
        rows: vec![pb::import_interactions_request::Row {
            parent: parent.into(),
            interaction: Some(pb::Interaction {
                source_system: "core-banking".into(),
                external_ref: external_ref.into(),
                ..visit("imported")
            }),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn an_import_is_bounded_by_its_caller_not_by_the_unary_limit() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__SERVER__REQUEST_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let customer = new_customer(&app, "Long Import", "B01").await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let client = app.interactions(&Caller::service()).await;
    let call = tokio::spawn(async move {
        let mut client = client;
        client
            .import_interactions(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(import_row(&customer, "long-1")).await.unwrap();
    // The stream stays open past the one-second unary limit (this sleep
    // makes the call long; nothing depends on its exact length).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tx.send(import_row(&customer, "long-2")).await.unwrap();
    drop(tx);
    let response = call
        .await
        .unwrap()
        .expect("a long import completes")
        .into_inner();
    assert_eq!(response.accepted_count, 2);
}

#[tokio::test]
async fn a_silent_import_ends_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__API__STREAM_IDLE_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let customer = new_customer(&app, "Idle Import", "B01").await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(import_row(&customer, "idle-1")).await.unwrap();
    let status = app
        .interactions(&Caller::service())
        .await
        .import_interactions(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    drop(tx);
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "STREAM_IDLE");
}

#[tokio::test]
async fn quiet_watch_streams_get_heartbeats_with_a_usable_resume_token() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__API__STREAM_HEARTBEAT_SECS".into(), "1".into());
    })
    .await;
    let customer = new_customer(&app, "Heartbeat", "B01").await;
    let mut interactions = app.interactions(&Caller::rm("B01")).await;
    let mut stream = interactions
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let beat = stream.next().await.expect("open").expect("a heartbeat");
    assert!(beat.heartbeat && beat.interaction.is_none(), "{beat:?}");
    assert!(!beat.resume_token.is_empty());
    drop(stream);

    // The heartbeat's token resumes right after it.
    interactions
        .log_interaction(log_request(&customer, None))
        .await
        .unwrap();
    let mut resumed = interactions
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: customer.clone(),
            resume_token: beat.resume_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = loop {
        let message = resumed.next().await.expect("open").expect("a message");
        if !message.heartbeat {
            break message;
        }
    };
    assert_eq!(
        first.interaction.expect("an interaction").summary,
        "while the table is locked"
    );

    let mut knowledge = app
        .knowledge(&Caller::rm("B01"))
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let beat = knowledge.next().await.expect("open").expect("a heartbeat");
    assert_eq!(
        beat.change(),
        pb::watch_knowledge_response::Change::Heartbeat
    );
    assert!(beat.knowledge_item.is_none() && !beat.resume_token.is_empty());
}

#[tokio::test]
async fn watch_streams_end_unavailable_when_the_server_drains() {
    let mut app = TestApp::spawn().await;
    let customer = new_customer(&app, "Drain", "B01").await;
    let mut interactions = app
        .interactions(&Caller::rm("B01"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            customer,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut knowledge = app
        .knowledge(&Caller::rm("B01"))
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest::default())
        .await
        .unwrap()
        .into_inner();
    app.begin_shutdown();
    for end in [
        interactions.next().await.map(|r| r.map(|_| ())),
        knowledge.next().await.map(|r| r.map(|_| ())),
    ] {
        let status = end
            .expect("the stream ends with a status, not silently")
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(reason(&status), "SERVER_DRAINING");
    }
}

#[tokio::test]
async fn a_follow_up_cannot_be_scheduled_for_a_customer_erased_meanwhile() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Erased Meanwhile", "B01").await;
    let id = customer.trim_start_matches("customers/").to_string();
    // An erasure in progress: it holds the customer row.
    let mut eraser = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut eraser).await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .execute(&mut eraser)
        .await
        .unwrap();

    let mut client = app.interactions(&Caller::rm("B01")).await;
    let parent = customer.clone();
    let schedule = tokio::spawn(async move {
        client
            .schedule_follow_up(pb::ScheduleFollowUpRequest {
                parent,
                follow_up: Some(pb::FollowUp {
                    assignee: "E-rm-B01".into(),
                    due_time: Some(prost_types::Timestamp {
                        seconds: chrono::Utc::now().timestamp() + 86_400,
                        nanos: 0,
                    }),
                    purpose: "talk about the mortgage".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
    });
    until_waiting(&app, 1).await;
    sqlx::query("UPDATE customers SET delete_time = now() WHERE id = $1")
        .bind(&id)
        .execute(&mut eraser)
        .await
        .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut eraser).await.unwrap();

    let status = schedule.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM follow_ups WHERE customer_id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no follow-up of an erased customer");
}

#[tokio::test]
async fn an_unreachable_customer_in_a_batch_needs_no_second_connection() {
    // One pooled connection: the append holds it, so telling why a customer
    // is out of reach must use the same one.
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__DATABASE__MAX_CONNECTIONS".into(), "1".into());
    })
    .await;
    let other_branch = new_customer(&app, "Other Branch", "B02").await;
    let status = app
        .interactions(&Caller::rm("B01"))
        .await
        .batch_log_interactions(pb::BatchLogInteractionsRequest {
            requests: vec![pb::LogInteractionRequest {
                parent: other_branch,
                interaction: Some(visit("out of reach")),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn a_thousand_bad_rows_give_a_short_answer_with_the_total() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Bad Batch", "B01").await;
    let requests = (0..1000)
        .map(|_| pb::LogInteractionRequest {
            parent: customer.clone(),
            interaction: Some(pb::Interaction {
                channel: 99,
                kind: 99,
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let status = app
        .interactions(&Caller::rm("B01"))
        .await
        .batch_log_interactions(pb::BatchLogInteractionsRequest {
            requests,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let listed = details
        .bad_request()
        .expect("violations")
        .field_violations
        .len();
    assert_eq!(listed, 20);
    let total: usize = details.error_info().expect("ErrorInfo").metadata["violations"]
        .parse()
        .unwrap();
    assert!(total >= 2000, "{total}");
    assert!(status.message().len() < 8 * 1024);
    assert!(status.details().len() < 8 * 1024);
}

#[tokio::test]
async fn limits_the_contract_states_are_enforced() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Limits", "B01").await;
    let rm = Caller::rm("B01");

    let item = |sources: Vec<String>, carrier: Option<pb::Carrier>| pb::KnowledgeItem {
        title: "limits".into(),
        kind: pb::knowledge_item::Kind::Preference as i32,
        nature: Nature::Explicit as i32,
        visibility: Visibility::Branch as i32,
        subjects: vec![customer.clone()],
        sources,
        carrier,
        ..Default::default()
    };
    let too_many = (0..101)
        .map(|i| format!("{customer}/interactions/i-{i}"))
        .collect();
    let unknown_carrier = pb::Carrier {
        r#type: 99,
        id: "x".into(),
    };
    for (case, knowledge_item) in [
        ("101 sources", item(too_many, None)),
        ("carrier type 99", item(vec![], Some(unknown_carrier))),
    ] {
        let status = app
            .knowledge(&rm)
            .await
            .create_knowledge_item(pb::CreateKnowledgeItemRequest {
                knowledge_item: Some(knowledge_item),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    }

    let status = app
        .customers(&Caller::admin())
        .await
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "Ann\u{202E}moc.evil".into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: "B01".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let task = app
        .interactions(&rm)
        .await
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: customer.clone(),
            follow_up: Some(pb::FollowUp {
                assignee: "E-rm-B01".into(),
                due_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = app
        .interactions(&rm)
        .await
        .complete_follow_up(pb::CompleteFollowUpRequest {
            name: task.name,
            interaction: Some(pb::Interaction {
                kind: 99,
                ..visit("done")
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_knowledge_watch_reads_every_subject_up_to_its_limit_and_refuses_more() {
    let app = TestApp::spawn().await;
    let own = new_customer(&app, "Own", "B01").await;
    let other = new_customer(&app, "Other", "B02").await;
    let mut knowledge = app.knowledge(&Caller::rm("B01")).await;
    // The 61st subject is out of reach: it is checked, not silently dropped.
    let mut subjects = vec![own.clone(); 60];
    subjects.push(other);
    let status = knowledge
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = knowledge
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects: vec![own; 101],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_pool_wait_on_busy_connections_is_answered_overloaded_not_database_unavailable() {
    // One pooled connection, held by an append waiting for a table lock,
    // while the database itself is up: saying it cannot be reached would
    // send operators after the wrong fault. The service is saturated, as
    // when it sheds.
    let (app, customer, lock) = service_with_interactions_locked(1, "Busy Pool").await;
    let held = {
        let app = &app;
        let customer = customer.clone();
        async move {
            app.interactions(&Caller::rm("B01"))
                .await
                .log_interaction(log_request(&customer, Some(Duration::from_secs(120))))
                .await
        }
    };
    let read = async {
        until_waiting(&app, 1).await;
        let status = app
            .customers(&Caller::rm("B01"))
            .await
            .get_customer(pb::GetCustomerRequest {
                name: customer.clone(),
                ..Default::default()
            })
            .await
            .expect_err("the only connection is held");
        drop(lock);
        status
    };
    let (held, status) = tokio::join!(held, read);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "OVERLOADED", "{status:?}");
    assert!(status.message().contains("busy"), "{status:?}");
    assert!(
        status.get_details_retry_info().is_some(),
        "a retry delay: {status:?}"
    );
    held.expect("the held append completes once the lock is gone");
}
