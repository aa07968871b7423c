//! Retries with one `request_id` create once and all get the same reply.

use customer_knowledge::pb::v1::{self as pb, customer::Kind};
use tonic::Code;

use crate::helpers::{Caller, TestApp, violated_fields};

fn request(name: &str, request_id: &str) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: name.into(),
            kind: Kind::Individual as i32,
            home_branch: "B01".into(),
            ..Default::default()
        }),
        request_id: request_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn twenty_concurrent_creates_with_one_request_id_create_one_customer() {
    let app = TestApp::spawn().await;
    let client = app.customers(&Caller::rm("B01")).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    let calls = (0..20).map(|_| {
        let mut client = client.clone();
        let request = request("张伟", &request_id);
        tokio::spawn(async move { client.create_customer(request).await })
    });
    let replies: Vec<pb::Customer> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().expect("every retry succeeds").into_inner())
        .collect();
    assert_eq!(replies.len(), 20);
    assert!(replies.iter().all(|reply| *reply == replies[0]));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(outbox, 1);
}

#[tokio::test]
async fn a_request_id_reused_for_another_payload_is_refused() {
    let app = TestApp::spawn().await;
    let mut client = app.customers(&Caller::rm("B01")).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    let first = client
        .create_customer(request("张伟", &request_id))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .create_customer(request("李娜", &request_id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["request_id"]);

    // The key is per caller: another caller's same key is a new request.
    let mut service = app.customers(&Caller::service()).await;
    let other = service
        .create_customer(request("张伟", &request_id))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.name, first.name);

    // A later replay answers with the customer as it is now (AIP-155): the
    // key keeps no copy of the response.
    client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: first.name.clone(),
                display_name: "张伟 (changed)".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let replay = client
        .create_customer(request("张伟", &request_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.name, first.name);
    assert_eq!(replay.display_name, "张伟 (changed)");
}

#[tokio::test]
async fn update_and_delete_replay_too() {
    let app = TestApp::spawn().await;
    let mut client = app.customers(&Caller::rm("B01")).await;
    let created = client
        .create_customer(request("张伟", ""))
        .await
        .unwrap()
        .into_inner();
    let update = pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: created.name.clone(),
            display_name: "张伟明".into(),
            etag: created.etag.clone(),
            ..Default::default()
        }),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    let first = client
        .update_customer(update.clone())
        .await
        .unwrap()
        .into_inner();
    // Without the key this retry would be ABORTED by the etag it carries.
    let retry = client.update_customer(update).await.unwrap().into_inner();
    assert_eq!(first, retry);

    let delete = pb::DeleteCustomerRequest {
        name: created.name.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    client.delete_customer(delete.clone()).await.unwrap();
    client
        .delete_customer(delete)
        .await
        .expect("a retried delete succeeds");
}
