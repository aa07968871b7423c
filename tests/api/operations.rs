//! RecomputeSegments as an AIP-151 long-running operation, and the
//! `google.longrunning.Operations` service over real gRPC and Postgres:
//! completion, replay, who sees an operation, cancelling a running one, and
//! an operation whose runner died.

use std::time::Duration;

use customer_knowledge::pb::{
    google::longrunning::{
        self as lro, operation::Result as Outcome, operations_client::OperationsClient,
    },
    v1 as pb,
};
use prost::Message;
use sqlx::{Connection, PgConnection};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::{
    helpers::{Bearer, Caller, TestApp, new_customer, reason},
    insights::insights,
};

type Client = OperationsClient<InterceptedService<Channel, Bearer>>;

async fn operations(app: &TestApp, caller: &Caller) -> Client {
    OperationsClient::with_interceptor(app.channel().await, Bearer::of(caller))
}

/// Polls `name` until it is done (a run of a few customers takes well under
/// a second; the bound is for a machine busy with other work).
pub(crate) async fn finished(app: &TestApp, caller: &Caller, name: &str) -> lro::Operation {
    let mut client = operations(app, caller).await;
    for _ in 0..600 {
        let op = client
            .wait_operation(lro::WaitOperationRequest {
                name: name.into(),
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            })
            .await
            .expect("WaitOperation")
            .into_inner();
        if op.done {
            return op;
        }
    }
    panic!("{name} did not end");
}

/// Starts a recompute as `caller` and returns its response once done.
pub(crate) async fn recompute_as(
    app: &TestApp,
    caller: &Caller,
    request: pb::RecomputeSegmentsRequest,
) -> pb::RecomputeSegmentsResponse {
    let op = insights(app, caller)
        .await
        .recompute_segments(request)
        .await
        .expect("RecomputeSegments")
        .into_inner();
    response(&finished(app, caller, &op.name).await)
}

fn response(op: &lro::Operation) -> pb::RecomputeSegmentsResponse {
    match &op.result {
        Some(Outcome::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/bank.customerknowledge.v1.RecomputeSegmentsResponse"
            );
            pb::RecomputeSegmentsResponse::decode(any.value.as_slice()).unwrap()
        }
        other => panic!("{} ended without a response: {other:?}", op.name),
    }
}

fn metadata(op: &lro::Operation) -> pb::RecomputeSegmentsMetadata {
    let any = op.metadata.as_ref().expect("metadata");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/bank.customerknowledge.v1.RecomputeSegmentsMetadata"
    );
    pb::RecomputeSegmentsMetadata::decode(any.value.as_slice()).unwrap()
}

fn error(op: &lro::Operation) -> (i32, String) {
    match &op.result {
        Some(Outcome::Error(status)) => {
            let info = status
                .details
                .iter()
                .find(|d| d.type_url.ends_with("google.rpc.ErrorInfo"))
                .map(|d| tonic_types::pb::ErrorInfo::decode(d.value.as_slice()).unwrap())
                .expect("ErrorInfo");
            (status.code, info.reason)
        }
        other => panic!("{} did not end in an error: {other:?}", op.name),
    }
}

#[tokio::test]
async fn recompute_segments_answers_an_operation_that_its_caller_and_admins_follow() {
    let app = TestApp::spawn().await;
    new_customer(&app, "One", "B01").await;
    new_customer(&app, "Two", "B02").await;
    let service = Caller::service();
    let request_id = uuid::Uuid::now_v7().to_string();
    let start = || pb::RecomputeSegmentsRequest {
        request_id: request_id.clone(),
        window_months: 6,
        ..Default::default()
    };
    let op = insights(&app, &service)
        .await
        .recompute_segments(start())
        .await
        .unwrap()
        .into_inner();
    assert!(op.name.starts_with("operations/"), "{}", op.name);
    assert_eq!(metadata(&op).window_months, 6);
    assert!(metadata(&op).as_of.is_some(), "as_of is filled in");

    let done = finished(&app, &service, &op.name).await;
    let run = response(&done);
    assert_eq!(run.customer_count, 2);
    assert_eq!(run.parameters.unwrap().window_months, 6);
    assert!(metadata(&done).end_time.is_some());

    // A retry with the same request_id is the same operation, not a new run.
    let again = insights(&app, &service)
        .await
        .recompute_segments(start())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.name, op.name);
    assert!(again.done);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM operations")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(runs, 1);

    // Admins see every operation; another caller does not see this one, in
    // words that do not tell whether it exists.
    let admin_view = operations(&app, &Caller::admin())
        .await
        .get_operation(lro::GetOperationRequest {
            name: op.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response(&admin_view).customer_count, 2);
    let other = Caller::rm("B01");
    let status = operations(&app, &other)
        .await
        .get_operation(lro::GetOperationRequest {
            name: op.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "RESOURCE_NOT_FOUND");
    let listed = operations(&app, &other)
        .await
        .list_operations(lro::ListOperationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.operations.is_empty());
    let listed = operations(&app, &service)
        .await
        .list_operations(lro::ListOperationsRequest {
            filter: "done = true".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .operations
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        [op.name.as_str()]
    );

    // Bad names and filters are the caller's mistake.
    let mut client = operations(&app, &service).await;
    let status = client
        .get_operation(lro::GetOperationRequest {
            name: "operations/not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .list_operations(lro::ListOperationsRequest {
            filter: "kind = \"x\"".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // A done operation can be deleted, once.
    client
        .delete_operation(lro::DeleteOperationRequest {
            name: op.name.clone(),
        })
        .await
        .unwrap();
    let status = client
        .get_operation(lro::GetOperationRequest {
            name: op.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// Holds `interactions` locked so that a run waits inside Postgres, and
/// returns once the run's statement is seen waiting for the lock.
async fn hold_a_run(app: &TestApp) -> (PgConnection, lro::Operation) {
    let mut locker = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let op = insights(app, &Caller::admin())
        .await
        .recompute_segments(pb::RecomputeSegmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!op.done);
    let id = op.name.trim_start_matches("operations/").to_string();
    for _ in 0..1200 {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN operations o
                             ON a.pid = o.runner_pid
                          WHERE o.id = $1::uuid AND a.wait_event_type = 'Lock')",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting {
            return (locker, op);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run never waited for the lock");
}

#[tokio::test]
async fn cancelling_a_running_recompute_ends_it_cancelled_with_nothing_stored() {
    let app = TestApp::spawn().await;
    new_customer(&app, "One", "B01").await;
    let (mut locker, op) = hold_a_run(&app).await;

    let mut client = operations(&app, &Caller::admin()).await;
    // Still running: it cannot be deleted.
    let status = client
        .delete_operation(lro::DeleteOperationRequest {
            name: op.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "OPERATION_RUNNING");

    client
        .cancel_operation(lro::CancelOperationRequest {
            name: op.name.clone(),
        })
        .await
        .unwrap();
    let done = finished(&app, &Caller::admin(), &op.name).await;
    assert_eq!(
        error(&done),
        (Code::Cancelled as i32, "OPERATION_CANCELLED".to_string())
    );
    assert!(metadata(&done).cancel_requested);
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM segment_runs")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(runs, 0, "a cancelled run stores nothing");
}

/// The cancel's mark and its signal to the runner are one statement, so the
/// runner can see its statement cancelled before the mark is committed. Here
/// the test is the canceller and holds the mark uncommitted after the
/// signal: the run must wait for it, and end CANCELLED, not with the
/// cancelled statement's own error.
#[tokio::test]
async fn a_run_cancelled_before_the_mark_commits_still_ends_cancelled() {
    let app = TestApp::spawn().await;
    new_customer(&app, "One", "B01").await;
    let (mut locker, op) = hold_a_run(&app).await;
    let id = op.name.trim_start_matches("operations/").to_string();

    let mut canceller = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut canceller).await.unwrap();
    let signalled: bool = sqlx::query_scalar(
        "WITH marked AS (UPDATE operations SET cancel_requested = true
                          WHERE id = $1::uuid RETURNING runner_pid)
         SELECT pg_cancel_backend(runner_pid) FROM marked",
    )
    .bind(&id)
    .fetch_one(&mut canceller)
    .await
    .unwrap();
    assert!(signalled);
    // The runner either waits for the mark (right) or has already ended
    // without it (the race).
    let mut waited = false;
    for _ in 0..1200 {
        let (done, waiting): (bool, bool) = sqlx::query_as(
            "SELECT o.done,
                    EXISTS (SELECT 1 FROM pg_stat_activity a
                             WHERE a.pid = o.runner_pid AND a.wait_event_type = 'Lock')
               FROM operations o WHERE o.id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting {
            waited = true;
            break;
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("COMMIT").execute(&mut canceller).await.unwrap();
    let done = finished(&app, &Caller::admin(), &op.name).await;
    assert_eq!(
        error(&done),
        (Code::Cancelled as i32, "OPERATION_CANCELLED".to_string())
    );
    assert!(
        waited,
        "the run ended before the cancel's mark was committed"
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
}

#[tokio::test]
async fn an_operation_whose_runner_died_is_reported_aborted() {
    let app = TestApp::spawn().await;
    new_customer(&app, "One", "B01").await;
    let (mut locker, op) = hold_a_run(&app).await;

    // The runner's session dies (as when its server is killed): the run
    // cannot record its end, and its lock goes with the session.
    let id = op.name.trim_start_matches("operations/").to_string();
    let killed: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(runner_pid) FROM operations WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(killed);
    let done = finished(&app, &Caller::admin(), &op.name).await;
    assert_eq!(
        error(&done),
        (Code::Aborted as i32, "RUNNER_STOPPED".to_string())
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    // A new run goes through.
    let run = recompute_as(&app, &Caller::admin(), Default::default()).await;
    assert_eq!(run.customer_count, 1);
}
