//! The admin HTTP port: /livez, /readyz following health and the drain, and
//! Prometheus /metrics that move with calls.

use std::time::Duration;

use customer_knowledge::pb::v1::{self as pb, customer::Kind};
use sqlx::Connection;
use tonic::Code;

use crate::helpers::{Caller, TestApp, sample};

const CUSTOMER_SERVICE: &str = "bank.customerknowledge.v1.CustomerService";

async fn wait_for_readyz(app: &TestApp, wanted: u16) {
    for _ in 0..100 {
        if app.admin_get("/readyz").await.0 == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {wanted}");
}

fn new_customer(branch: &str) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: "张伟".into(),
            kind: Kind::Individual as i32,
            home_branch: branch.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn series(name: &str, method: &str, code: &str) -> String {
    format!(r#"{name}{{code="{code}",method="{method}",service="{CUSTOMER_SERVICE}"}}"#)
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code_and_show_the_pool() {
    let app = TestApp::spawn().await;
    assert_eq!(app.admin_get("/livez").await.0, 200);
    wait_for_readyz(&app, 200).await;

    let (status, before) = app.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let created_ok = series("ck_grpc_requests_total", "CreateCustomer", "OK");
    let get_not_found = series("ck_grpc_requests_total", "GetCustomer", "NOT_FOUND");
    let get_errors = series("ck_grpc_errors_total", "GetCustomer", "NOT_FOUND");
    let unauthenticated = series("ck_grpc_requests_total", "GetCustomer", "UNAUTHENTICATED");
    let latency_count = format!(
        r#"ck_grpc_request_duration_seconds_count{{method="CreateCustomer",service="{CUSTOMER_SERVICE}"}}"#
    );

    let mut client = app.customers(&Caller::rm("B01")).await;
    for _ in 0..2 {
        client.create_customer(new_customer("B01")).await.unwrap();
    }
    let missing = app
        .customers(&Caller::admin())
        .await
        .get_customer(pb::GetCustomerRequest {
            name: "customers/nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let anonymous = app
        .anonymous_customers()
        .await
        .get_customer(pb::GetCustomerRequest {
            name: "customers/nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    app.metrics.observe_append_batch(3);

    let (_, after) = app.admin_get("/metrics").await;
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved(&created_ok), 2.0, "{after}");
    assert_eq!(moved(&latency_count), 2.0, "{after}");
    assert_eq!(moved(&get_not_found), 1.0, "{after}");
    assert_eq!(moved(&get_errors), 1.0, "{after}");
    assert_eq!(moved(&unauthenticated), 1.0, "{after}");
    assert_eq!(
        sample(
            &after,
            &series("ck_grpc_errors_total", "CreateCustomer", "OK")
        ),
        0.0,
        "OK is not an error"
    );
    assert_eq!(sample(&after, "ck_grpc_requests_in_flight"), 0.0);
    assert_eq!(moved("ck_append_batch_size_count"), 1.0);
    assert_eq!(moved("ck_append_batch_size_sum"), 3.0);
    assert_eq!(sample(&after, "ck_db_pool_max_connections"), 30.0);
    assert!(sample(&after, "ck_db_pool_connections") >= 1.0, "{after}");
    assert_eq!(
        sample(&after, "ck_db_pool_connections"),
        sample(&after, "ck_db_pool_idle_connections")
            + sample(&after, "ck_db_pool_in_use_connections")
    );
    assert!(after.contains("# TYPE ck_grpc_request_duration_seconds histogram"));
}

#[tokio::test]
async fn unknown_methods_share_one_metric_label() {
    let app = TestApp::spawn().await;
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            "/no.such.Service/Steal".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let (_, metrics) = app.admin_get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            r#"ck_grpc_requests_total{code="UNIMPLEMENTED",method="unknown",service="unknown"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert!(!metrics.contains("Steal"));
}

#[tokio::test]
async fn readyz_turns_503_when_the_drain_begins_while_livez_stays_200() {
    let mut app = TestApp::spawn().await;
    wait_for_readyz(&app, 200).await;
    let mut client = app.customers(&Caller::rm("B01")).await;
    let created = client
        .create_customer(new_customer("B01"))
        .await
        .unwrap()
        .into_inner();

    // Hold the customer's row lock so an update stays in flight and the
    // drain cannot end before /readyz is asked.
    let mut blocker = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(created.name.trim_start_matches("customers/"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move {
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    name: created.name.clone(),
                    display_name: "张伟明".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
    });
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app.admin_get("/metrics").await.1;
        if sample(&metrics, "ck_grpc_requests_in_flight") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sample(&metrics, "ck_grpc_requests_in_flight"),
        1.0,
        "{metrics}"
    );

    app.begin_shutdown();
    wait_for_readyz(&app, 503).await;
    assert_eq!(app.admin_get("/livez").await.0, 200);

    tx.rollback().await.unwrap();
    in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops after the drain")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", app.admin_port))
            .await
            .is_err(),
        "the admin port closes with the server"
    );
}

/// The value of an unlabelled gauge in a Prometheus text page.
fn gauge(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[tokio::test]
async fn the_waiters_gauge_counts_calls_queued_for_a_connection() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__DATABASE__MAX_CONNECTIONS".into(), "2".into());
        env.insert("CK__DATABASE__ACQUIRE_TIMEOUT_MS".into(), "20000".into());
        env.insert(
            "CK__DATABASE__HEALTH_CHECK_INTERVAL_MS".into(),
            "60000".into(),
        );
    })
    .await;
    let customer = crate::helpers::new_customer(&app, "张伟", "B01").await;
    // The feed's periodic check may wait a moment for one of the two
    // connections, so the gauge is read until it settles, never once.
    settles_at_zero(&app).await;

    // Two updates hold both connections, blocked on a row lock taken outside
    // the service; a third call then waits for a connection.
    let mut blocker = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(customer.trim_start_matches("customers/"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let client = app.customers(&Caller::admin()).await;
    let mut calls = Vec::new();
    for n in 0..2 {
        let mut client = client.clone();
        let name = customer.clone();
        calls.push(tokio::spawn(async move {
            client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        name,
                        display_name: format!("张伟 {n}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(|_| ())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut reader = client.clone();
    let name = customer.clone();
    calls.push(tokio::spawn(async move {
        reader
            .get_customer(pb::GetCustomerRequest {
                name,
                ..Default::default()
            })
            .await
            .map(|_| ())
    }));
    let mut waiting = 0;
    for _ in 0..50 {
        let (_, page) = app.admin_get("/metrics").await;
        waiting = gauge(&page, "ck_db_pool_waiters");
        if waiting >= 1 {
            assert_eq!(gauge(&page, "ck_db_pool_in_use_connections"), 2);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The read waits, and so may the interaction feed's periodic check.
    assert!(waiting >= 1, "the read waits for a connection");

    tx.rollback().await.unwrap();
    for call in calls {
        call.await
            .unwrap()
            .expect("every call completes once the lock is gone");
    }
    settles_at_zero(&app).await;
}

async fn settles_at_zero(app: &TestApp) {
    for _ in 0..100 {
        let (_, page) = app.admin_get("/metrics").await;
        if gauge(&page, "ck_db_pool_waiters") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ck_db_pool_waiters never went back to 0");
}
