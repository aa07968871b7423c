//! WatchInteractions: live delivery in commit order, scoped to what the
//! caller may read, resumable without loss.

use std::time::Duration;

use customer_knowledge::pb::v1::{self as pb, interaction::Channel, interaction::Kind};
use futures::StreamExt;
use tonic::{Code, Streaming};

use crate::helpers::{Caller, TestApp, new_customer};

fn visit(summary: &str) -> pb::Interaction {
    pb::Interaction {
        channel: Channel::Branch as i32,
        kind: Kind::Inquiry as i32,
        summary: summary.into(),
        ..Default::default()
    }
}

async fn log(app: &TestApp, parent: &str, summary: &str) {
    app.interactions(&Caller::admin())
        .await
        .log_interaction(pb::LogInteractionRequest {
            parent: parent.into(),
            interaction: Some(visit(summary)),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn next(
    stream: &mut Streaming<pb::WatchInteractionsResponse>,
) -> pb::WatchInteractionsResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives")
        .expect("the stream is open")
        .expect("not an error")
}

/// Nothing more arrives for a while.
async fn quiet(stream: &mut Streaming<pb::WatchInteractionsResponse>) {
    let more = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await;
    assert!(more.is_err(), "unexpected event: {more:?}");
}

#[tokio::test]
async fn watchers_see_new_interactions_in_commit_order_and_only_what_they_may_read() {
    let app = TestApp::spawn().await;
    let b01 = new_customer(&app, "张伟", "B01").await;
    let b02 = new_customer(&app, "李娜", "B02").await;
    log(&app, &b01, "before subscribing").await;

    let mut by_customer = app
        .interactions(&Caller::rm("B01"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: b01.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut by_branch = app
        .interactions(&Caller::teller("B01"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    for i in 0..5 {
        log(&app, &b01, &format!("event {i}")).await;
        log(&app, &b02, &format!("other branch {i}")).await;
    }
    for stream in [&mut by_customer, &mut by_branch] {
        for i in 0..5 {
            let event = next(stream).await;
            assert_eq!(event.interaction.unwrap().summary, format!("event {i}"));
            assert!(!event.resume_token.is_empty());
        }
        quiet(stream).await;
    }

    let status = app
        .interactions(&Caller::rm("B02"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .interactions(&Caller::rm("B02"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: b01.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .interactions(&Caller::admin())
        .await
        .watch_interactions(pb::WatchInteractionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_resumed_stream_receives_what_it_missed() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut client = app.interactions(&Caller::rm("B01")).await;
    let watch = |resume_token: String| pb::WatchInteractionsRequest {
        customer: customer.clone(),
        resume_token,
        ..Default::default()
    };
    let mut stream = client
        .watch_interactions(watch(String::new()))
        .await
        .unwrap()
        .into_inner();
    log(&app, &customer, "one").await;
    log(&app, &customer, "two").await;
    assert_eq!(next(&mut stream).await.interaction.unwrap().summary, "one");
    let token = next(&mut stream).await.resume_token;
    drop(stream);

    for summary in ["three", "four", "five"] {
        log(&app, &customer, summary).await;
    }
    let mut resumed = client
        .watch_interactions(watch(token))
        .await
        .unwrap()
        .into_inner();
    for summary in ["three", "four", "five"] {
        assert_eq!(
            next(&mut resumed).await.interaction.unwrap().summary,
            summary
        );
    }
    log(&app, &customer, "six").await;
    assert_eq!(next(&mut resumed).await.interaction.unwrap().summary, "six");
    quiet(&mut resumed).await;

    let status = client
        .watch_interactions(watch("garbage".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// A transaction left open anywhere in the cluster holds the feed's start
/// point back (rows after it wait until it ends, to keep commit order). A
/// stream that begins meanwhile must still start at its own beginning:
/// what committed before it subscribed is not news to it.
#[tokio::test]
async fn a_new_stream_skips_what_committed_before_it_began_despite_an_open_transaction() {
    use sqlx::Connection;

    let app = TestApp::spawn().await;
    let b01 = new_customer(&app, "王芳", "B01").await;
    let mut holder = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut holder)
        .await
        .unwrap();

    log(&app, &b01, "committed before the stream").await;
    let mut stream = app
        .interactions(&Caller::rm("B01"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: b01.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    log(&app, &b01, "after 0").await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    log(&app, &b01, "after 1").await;

    for expected in ["after 0", "after 1"] {
        let event = next(&mut stream).await;
        assert_eq!(event.interaction.unwrap().summary, expected);
    }
}
