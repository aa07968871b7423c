//! ImportInteractions: bulk loads counted exactly; a cut stream leaves whole
//! batches only, and sending it again creates no duplicates.

use std::time::Duration;

use futures::StreamExt;

use customer_knowledge::pb::v1::{
    self as pb, import_interactions_request::Row, interaction::Channel, interaction::Kind,
};
use tonic::Code;

use crate::helpers::{Caller, TestApp, new_customer};

fn row(parent: &str, n: usize) -> Row {
    Row {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: Channel::OnlineBanking as i32,
            kind: Kind::Transaction as i32,
            amount: Some(pb::Money {
                currency_code: "CNY".into(),
                units: (n % 10_000) as i64,
                nanos: 0,
            }),
            products: vec!["DEPOSIT".into()],
            external_ref: format!("TXN-{n:08}"),
            source_system: String::new(),
            ..Default::default()
        }),
    }
}

/// The stream's messages: `total` rows over `customers`, `per_message` a message.
fn messages(
    customers: &[String],
    total: usize,
    per_message: usize,
) -> Vec<pb::ImportInteractionsRequest> {
    (0..total)
        .map(|n| row(&customers[n % customers.len()], n))
        .collect::<Vec<_>>()
        .chunks(per_message)
        .map(|rows| pb::ImportInteractionsRequest {
            rows: rows.to_vec(),
            ..Default::default()
        })
        .collect()
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM interactions")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_import_of_200_000_rows_is_counted_exactly() {
    // A bulk load may outlast the default per-call timeout on a busy
    // machine; the test is about counts, not speed.
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__SERVER__REQUEST_TIMEOUT_SECS".into(), "3600".into());
    })
    .await;
    let mut customers = Vec::new();
    for i in 0..20 {
        customers.push(new_customer(&app, &format!("Customer {i}"), "B01").await);
    }
    let mut stream = messages(&customers, 200_000, 5000);
    // Rows that must be refused, each with its reason: a bad currency, a
    // missing external ref, a customer that does not exist.
    let mut bad_currency = row(&customers[0], 900_001);
    bad_currency
        .interaction
        .as_mut()
        .unwrap()
        .amount
        .as_mut()
        .unwrap()
        .currency_code = "XX".into();
    let mut no_ref = row(&customers[0], 900_002);
    no_ref.interaction.as_mut().unwrap().external_ref.clear();
    let unknown = row("customers/nobody", 900_003);
    stream.push(pb::ImportInteractionsRequest {
        rows: vec![bad_currency, no_ref, unknown, row(&customers[7], 7)],
        ..Default::default()
    });

    let mut client = app.interactions(&Caller::service()).await;
    let response = client
        .import_interactions(futures::stream::iter(stream))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted_count, 200_000);
    assert_eq!(response.duplicate_count, 1, "TXN-00000007 came twice");
    assert_eq!(response.rejected_count, 3);
    let mut reasons: Vec<(i64, String)> = response
        .rejections
        .iter()
        .map(|r| (r.index, r.field.clone()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (200_000, "interaction.amount.currency_code".to_string()),
            (200_001, "interaction.external_ref".to_string()),
            (200_002, "parent".to_string()),
        ]
    );
    assert_eq!(count(&app).await, 200_000);
}

#[tokio::test]
async fn a_cut_import_keeps_whole_batches_and_a_resend_completes_it_exactly_once() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__INTERACTIONS__IMPORT_BATCH_SIZE".into(), "1000".into());
    })
    .await;
    let customers = vec![
        new_customer(&app, "A", "B01").await,
        new_customer(&app, "B", "B01").await,
    ];
    let all = messages(&customers, 10_000, 500);

    // Send 13 messages (6,500 rows), then stall and cut the connection.
    let first_part: Vec<_> = all[..13].to_vec();
    let client = app.interactions(&Caller::service()).await;
    let sender = {
        let mut client = client.clone();
        tokio::spawn(async move {
            let stalled = futures::stream::iter(first_part).chain(futures::stream::pending());
            client.import_interactions(stalled).await
        })
    };
    for _ in 0..300 {
        if count(&app).await >= 6000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sender.abort();
    let _ = sender.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_cut = count(&app).await;
    assert_eq!(after_cut, 6000, "only whole batches of 1000 are kept");

    let mut client = client.clone();
    let response = client
        .import_interactions(futures::stream::iter(all))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted_count, 4000);
    assert_eq!(response.duplicate_count, 6000);
    assert_eq!(count(&app).await, 10_000);
    let distinct: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT (customer_id, source_system, external_ref)) FROM interactions",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(distinct, 10_000);
}

#[tokio::test]
async fn an_import_refuses_oversized_messages_and_anonymous_callers() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "A", "B01").await;
    let mut client = app.interactions(&Caller::service()).await;
    let oversized = messages(&[customer], 5001, 5001);
    let status = client
        .import_interactions(futures::stream::iter(oversized))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = app
        .interactions(&Caller::analyst())
        .await
        .import_interactions(futures::stream::iter(
            Vec::<pb::ImportInteractionsRequest>::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}
