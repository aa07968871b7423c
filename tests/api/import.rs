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

/// Every outbox row, for checking that a replay writes none.
async fn outbox(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

fn one_message(rows: Vec<Row>, request_id: &str) -> pb::ImportInteractionsRequest {
    pb::ImportInteractionsRequest {
        rows,
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn an_import_keeps_dedupe_conflicts_erasure_merges_and_feeds_the_watch() {
    // Batches of 2 valid rows, so the rows below span several COPY chunks.
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__INTERACTIONS__IMPORT_BATCH_SIZE".into(), "2".into());
    })
    .await;
    let b01 = new_customer(&app, "A", "B01").await;
    let b02 = new_customer(&app, "B", "B02").await;
    let erased = new_customer(&app, "C", "B01").await;
    let merged = new_customer(&app, "D", "B01").await;
    let mut customers = app.customers(&Caller::admin()).await;
    customers
        .delete_customer(pb::DeleteCustomerRequest {
            name: erased.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    customers
        .merge_customers(pb::MergeCustomersRequest {
            name: b01.clone(),
            duplicate: merged.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut client = app.interactions(&Caller::service()).await;
    // An earlier import stored TXN-00000001 and TXN-00000002 for b01.
    let earlier = client
        .import_interactions(futures::stream::iter([one_message(
            vec![row(&b01, 1), row(&b01, 2)],
            "",
        )]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((earlier.accepted_count, earlier.duplicate_count), (2, 0));

    let mut watch = app
        .interactions(&Caller::rm("B01"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut changed = row(&b01, 2);
    changed.interaction.as_mut().unwrap().summary = "other content".into();
    let mut bad = row(&b01, 9);
    bad.interaction
        .as_mut()
        .unwrap()
        .amount
        .as_mut()
        .unwrap()
        .currency_code = "XX".into();
    let rows = vec![
        row(&b01, 1),               // 0: stored by the earlier import: a duplicate
        row(&b01, 3),               // 1: new
        changed,                    // 2: TXN-00000002 with other content: a conflict
        row(&b02, 4),               // 3: new, branch B02
        row(&erased, 5),            // 4: an erased customer: refused
        bad,                        // 5: invalid currency: refused before any write
        row(&merged, 6),            // 6: a merged duplicate: refused
        row(&b01, 7),               // 7: new
        row(&b01, 3),               // 8: TXN-00000003 again, same content: a duplicate
        row("customers/nobody", 8), // 9: no such customer: refused
    ];
    let response = client
        .import_interactions(futures::stream::iter(
            rows.chunks(3)
                .map(|c| one_message(c.to_vec(), ""))
                .collect::<Vec<_>>(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted_count, 3, "rows 1, 3 and 7");
    assert_eq!(response.duplicate_count, 2, "rows 0 and 8");
    assert_eq!(response.rejected_count, 5, "rows 2, 4, 5, 6 and 9");
    let mut rejections: Vec<(i64, String)> = response
        .rejections
        .iter()
        .map(|r| (r.index, r.field.clone()))
        .collect();
    rejections.sort();
    assert_eq!(
        rejections,
        [
            (2, "interaction.external_ref".to_string()),
            (4, "parent".to_string()),
            (5, "interaction.amount.currency_code".to_string()),
            (6, "parent".to_string()),
            (9, "parent".to_string()),
        ]
    );
    let conflict = response.rejections.iter().find(|r| r.index == 2).unwrap();
    assert!(
        conflict.reason.starts_with("EXTERNAL_REF_CONFLICT: ")
            && conflict.reason.contains(&format!("{b01}/interactions/")),
        "{}",
        conflict.reason
    );
    // 2 earlier + 3 now; each with its outbox row.
    assert_eq!(count(&app).await, 5);
    let outboxed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'interaction.logged'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(outboxed, 5);

    // The branch B01 watcher sees the two new B01 rows, in stream order,
    // and not the B02 one.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("an imported row is streamed")
            .unwrap()
            .unwrap();
        seen.push(event.interaction.unwrap().external_ref);
    }
    assert_eq!(seen, ["TXN-00000003", "TXN-00000007"]);
    let more = tokio::time::timeout(Duration::from_millis(1500), watch.next()).await;
    assert!(more.is_err(), "unexpected event: {more:?}");
}

#[tokio::test]
async fn an_import_with_a_request_id_answers_its_retry_without_importing_again() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__INTERACTIONS__IMPORT_BATCH_SIZE".into(), "3".into());
    })
    .await;
    let customer = new_customer(&app, "A", "B01").await;
    let mut client = app.interactions(&Caller::service()).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut rows: Vec<Row> = (0..8).map(|n| row(&customer, n)).collect();
    rows[5]
        .interaction
        .as_mut()
        .unwrap()
        .amount
        .as_mut()
        .unwrap()
        .currency_code = "XX".into();
    // Three messages of 3, 3 and 2 rows; the request_id in the first.
    let split = |rows: &[Row], per: usize, request_id: &str| -> Vec<_> {
        rows.chunks(per)
            .enumerate()
            .map(|(i, c)| one_message(c.to_vec(), if i == 0 { request_id } else { "" }))
            .collect()
    };
    let first = client
        .import_interactions(futures::stream::iter(split(&rows, 3, &request_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            first.accepted_count,
            first.duplicate_count,
            first.rejected_count
        ),
        (7, 0, 1)
    );
    assert_eq!(first.rejections[0].index, 5);
    let (stored, outboxed) = (count(&app).await, outbox(&app).await);
    assert_eq!(stored, 7);

    // The same rows, split otherwise: the stored response, nothing written.
    let replay = client
        .import_interactions(futures::stream::iter(split(&rows, 5, &request_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, first);
    assert_eq!((count(&app).await, outbox(&app).await), (stored, outboxed));

    // Other rows under the same request_id: refused, and the new row is not
    // imported.
    let mut other = rows.clone();
    other.push(row(&customer, 8));
    let reused = client
        .import_interactions(futures::stream::iter(split(&other, 3, &request_id)))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(crate::helpers::reason(&reused), "REQUEST_ID_REUSED");
    assert_eq!((count(&app).await, outbox(&app).await), (stored, outboxed));

    let invalid = client
        .import_interactions(futures::stream::iter(split(&rows, 3, "not-a-uuid")))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_import_that_failed_midway_is_completed_by_its_retry_under_the_same_request_id() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__INTERACTIONS__IMPORT_BATCH_SIZE".into(), "4".into());
    })
    .await;
    let customer = new_customer(&app, "A", "B01").await;
    let mut client = app.interactions(&Caller::service()).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    let rows: Vec<Row> = (0..10).map(|n| row(&customer, n)).collect();
    let mut messages: Vec<_> = rows
        .chunks(4)
        .enumerate()
        .map(|(i, c)| one_message(c.to_vec(), if i == 0 { &request_id } else { "" }))
        .collect();
    // The stream fails on its third message (too many rows), after the
    // first two batches of 4 were read: they are committed, no response is.
    let mut failing = messages[..2].to_vec();
    failing.push(one_message(
        (0..5001).map(|n| row(&customer, 100 + n)).collect(),
        "",
    ));
    let failed = client
        .import_interactions(futures::stream::iter(failing))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::InvalidArgument);
    assert_eq!(count(&app).await, 8);

    // Sent again, whole: it completes, counting what was committed.
    let completed = client
        .import_interactions(futures::stream::iter(messages.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (completed.accepted_count, completed.duplicate_count),
        (2, 8)
    );
    assert_eq!(count(&app).await, 10);
    // And its response is now the one a retry gets.
    messages[0].request_id = request_id.clone();
    let replay = client
        .import_interactions(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, completed);
    assert_eq!(count(&app).await, 10);
}
