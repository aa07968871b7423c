//! The server around the services: health, reflection, trusted headers, and
//! the graceful drain.

use std::time::Duration;

use customer_knowledge::pb::v1::{
    self as pb, customer::Kind, customer_service_client::CustomerServiceClient,
};
use futures::StreamExt;
use sqlx::Connection;
use tonic::{Code, Request};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{Caller, TestApp};

const SERVICES: [&str; 5] = [
    "bank.customerknowledge.v1.CustomerService",
    "bank.customerknowledge.v1.InteractionService",
    "bank.customerknowledge.v1.KnowledgeService",
    "bank.customerknowledge.v1.InsightService",
    "bank.customerknowledge.v1.AuditService",
];

async fn status_of(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

async fn wait_for_status(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    wanted: ServingStatus,
) {
    for _ in 0..100 {
        if status_of(health, service).await == wanted as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{service:?} never became {wanted:?}");
}

#[tokio::test]
async fn health_reports_serving_overall_and_per_service() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    wait_for_status(&mut health, "", ServingStatus::Serving).await;
    for service in SERVICES {
        assert_eq!(
            status_of(&mut health, service).await,
            ServingStatus::Serving as i32
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn health_is_not_serving_while_postgres_is_unreachable() {
    // A port nothing listens on: the pool is lazy, so the server starts.
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "DATABASE_URL".into(),
            "postgres://postgres@127.0.0.1:9/none".into(),
        );
        env.insert("CK__DATABASE__MIGRATE".into(), "false".into());
        env.insert("CK__DATABASE__ACQUIRE_TIMEOUT_MS".into(), "300".into());
    })
    .await;
    let mut health = HealthClient::new(app.channel().await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        status_of(&mut health, "").await,
        ServingStatus::NotServing as i32
    );
    let status = app
        .customers(&Caller::admin())
        .await
        .get_customer(pb::GetCustomerRequest {
            name: "customers/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn reflection_v1_lists_every_service() {
    let app = TestApp::spawn().await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in SERVICES.iter().chain(&[
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing: {names:?}"
        );
    }
}

#[tokio::test]
async fn trusted_headers_identify_the_caller_on_loopback() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__AUTH__MODE".into(), "trusted_headers".into());
    })
    .await;
    let mut client = CustomerServiceClient::new(app.channel().await);
    let mut request = Request::new(pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: "张伟".into(),
            kind: Kind::Individual as i32,
            home_branch: "B01".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-employee-id", "E1001".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-branch", "B01".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-roles", "relationship_manager".parse().unwrap());
    let created = client.create_customer(request).await.unwrap().into_inner();
    assert_eq!(created.home_branch, "B01");

    let mut other_branch = Request::new(pb::GetCustomerRequest {
        name: created.name.clone(),
        ..Default::default()
    });
    other_branch
        .metadata_mut()
        .insert("x-employee-id", "E2".parse().unwrap());
    other_branch
        .metadata_mut()
        .insert("x-branch", "B02".parse().unwrap());
    other_branch
        .metadata_mut()
        .insert("x-roles", "teller".parse().unwrap());
    assert_eq!(
        client.get_customer(other_branch).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let status = client
        .get_customer(pb::GetCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_after_going_not_serving() {
    let mut app = TestApp::spawn().await;
    let mut client = app.customers(&Caller::rm("B01")).await;
    let created = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "张伟".into(),
                kind: Kind::Individual as i32,
                home_branch: "B01".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut health = HealthClient::new(app.channel().await);
    wait_for_status(&mut health, "", ServingStatus::Serving).await;
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICES[0].into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    // Hold the customer's row lock so an update stays in flight.
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished());

    app.begin_shutdown();
    let status = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("health changes on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(status.status, ServingStatus::NotServing as i32);
    drop(watch);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !app.server.as_ref().unwrap().is_finished(),
        "the drain waits for the update"
    );

    tx.rollback().await.unwrap();
    let updated = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(updated.into_inner().display_name, "张伟明");
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops after the drain")
        .unwrap()
        .unwrap();
}
