//! LogInteraction's group commit: concurrent calls share transactions, and
//! each is answered exactly as if it had committed alone.

use std::{collections::HashSet, time::Duration};

use customer_knowledge::pb::v1::{self as pb, interaction::Channel, interaction::Kind};
use tonic::{Code, Request, Status};

use crate::{
    helpers::{Caller, TestApp, new_customer, sample, violated_fields},
    reliability::{lock_interactions, until_waiting},
};

fn payment(units: i64, external_ref: &str) -> pb::Interaction {
    pb::Interaction {
        channel: Channel::OnlineBanking as i32,
        kind: Kind::Transaction as i32,
        summary: "Card payment".into(),
        amount: Some(pb::Money {
            currency_code: "CNY".into(),
            units,
            nanos: 0,
        }),
        external_ref: external_ref.into(),
        ..Default::default()
    }
}

fn log(parent: &str, interaction: pb::Interaction, request_id: &str) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(interaction),
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// Sends every request at once, each on its own task; the answers in order.
async fn all_at_once(
    app: &TestApp,
    calls: Vec<(Caller, pb::LogInteractionRequest)>,
) -> Vec<Result<pb::Interaction, Status>> {
    let mut clients = Vec::new();
    for (caller, _) in &calls {
        clients.push(app.interactions(caller).await);
    }
    let tasks = calls
        .into_iter()
        .zip(clients)
        .map(|((_, request), mut client)| {
            tokio::spawn(async move {
                client
                    .log_interaction(request)
                    .await
                    .map(|r| r.into_inner())
            })
        });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// A server that admits every call of these tests at once.
async fn spawn() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("CK__SERVER__MAX_CONCURRENT_CALLS".into(), "512".into());
    })
    .await
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn concurrent_calls_land_once_each_and_replay_what_they_wrote() {
    let app = spawn().await;
    let mut customers = Vec::new();
    for i in 0..4 {
        customers.push(new_customer(&app, &format!("客户{i}"), "B01").await);
    }
    let requests: Vec<(Caller, pb::LogInteractionRequest)> = (0..64)
        .map(|i| {
            let request = log(
                &customers[i % customers.len()],
                payment(i as i64 + 1, &format!("PAY-{i}")),
                &uuid::Uuid::now_v7().to_string(),
            );
            (Caller::service(), request)
        })
        .collect();
    let first: Vec<pb::Interaction> = all_at_once(&app, requests.clone())
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for (i, (reply, (_, request))) in first.iter().zip(&requests).enumerate() {
        assert!(
            reply
                .name
                .starts_with(&format!("{}/interactions/", request.parent))
        );
        assert_eq!(reply.amount.as_ref().unwrap().units, i as i64 + 1);
        assert_eq!(reply.external_ref, format!("PAY-{i}"));
    }
    let names: HashSet<&str> = first.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 64);
    assert_eq!(count(&app, "SELECT count(*) FROM interactions").await, 64);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox WHERE aggregate_type = 'interaction'"
        )
        .await,
        64
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM idempotency_keys WHERE resources IS NOT NULL"
        )
        .await,
        64
    );

    // The same calls again, again all at once: each replays its own row.
    let again: Vec<pb::Interaction> = all_at_once(&app, requests)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.name, b.name);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM interactions").await, 64);

    // Under concurrency batches of more than one call form: the histogram's
    // sum exceeds its count. Rounds repeat until one did (bounded).
    let batched = |metrics: &str| {
        sample(metrics, "ck_append_batch_size_sum") > sample(metrics, "ck_append_batch_size_count")
    };
    let mut rounds = 0;
    loop {
        let (_, metrics) = app.admin_get("/metrics").await;
        if batched(&metrics) {
            break;
        }
        rounds += 1;
        assert!(rounds <= 50, "no batch of more than one call formed");
        let more = (0..64)
            .map(|i| {
                let request = log(&customers[i % 4], payment(1, ""), "");
                (Caller::service(), request)
            })
            .collect();
        for reply in all_at_once(&app, more).await {
            reply.unwrap();
        }
    }
}

#[tokio::test]
async fn a_bad_call_fails_alone_and_its_batch_mates_commit() {
    let app = spawn().await;
    let mine = new_customer(&app, "张伟", "B01").await;
    let elsewhere = new_customer(&app, "李娜", "B02").await;
    let erased = new_customer(&app, "王芳", "B01").await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let current = rm
        .get_customer(pb::GetCustomerRequest {
            name: erased.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    rm.delete_customer(pb::DeleteCustomerRequest {
        name: erased.clone(),
        etag: current.etag,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut core = app.interactions(&Caller::service()).await;
    let stored = core
        .log_interaction(log(&mine, payment(100, "REF-1"), ""))
        .await
        .unwrap()
        .into_inner();
    let used = uuid::Uuid::now_v7().to_string();
    let keyed = core
        .log_interaction(log(&mine, payment(7, ""), &used))
        .await
        .unwrap()
        .into_inner();
    let before = count(&app, "SELECT count(*) FROM interactions").await;

    let teller = Caller::teller("B01");
    let service = Caller::service();
    for round in 0..3 {
        let mut calls = vec![
            // 0: a customer of another branch.
            (teller.clone(), log(&elsewhere, payment(1, ""), "")),
            // 1: an erased customer.
            (teller.clone(), log(&erased, payment(1, ""), "")),
            // 2: the external_ref of another interaction.
            (service.clone(), log(&mine, payment(999, "REF-1"), "")),
            // 3: the same interaction re-sent under its external_ref.
            (service.clone(), log(&mine, payment(100, "REF-1"), "")),
            // 4: a used request_id with another payload.
            (service.clone(), log(&mine, payment(8, ""), &used)),
            // 5: a retry of the keyed call.
            (service.clone(), log(&mine, payment(7, ""), &used)),
            // 6: a new key on another branch's customer: refused, and the
            // key stays unused.
            (
                teller.clone(),
                log(
                    &elsewhere,
                    payment(1, ""),
                    &uuid::Uuid::now_v7().to_string(),
                ),
            ),
        ];
        let good = 20;
        for i in 0..good {
            calls.push((
                service.clone(),
                log(&mine, payment(i, &format!("R{round}-{i}")), ""),
            ));
        }
        let replies = all_at_once(&app, calls).await;
        let code = |i: usize| replies[i].as_ref().unwrap_err().code();
        assert_eq!(code(0), Code::PermissionDenied, "{:?}", replies[0]);
        assert_eq!(code(1), Code::NotFound, "{:?}", replies[1]);
        assert_eq!(code(2), Code::AlreadyExists, "{:?}", replies[2]);
        assert_eq!(replies[3].as_ref().unwrap().name, stored.name);
        assert_eq!(code(4), Code::InvalidArgument, "{:?}", replies[4]);
        assert_eq!(
            violated_fields(replies[4].as_ref().unwrap_err()),
            ["request_id"]
        );
        assert_eq!(replies[5].as_ref().unwrap().name, keyed.name);
        assert_eq!(code(6), Code::PermissionDenied, "{:?}", replies[6]);
        for (i, reply) in replies[7..].iter().enumerate() {
            let reply = reply.as_ref().unwrap();
            assert_eq!(reply.external_ref, format!("R{round}-{i}"));
        }
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM interactions").await,
        before + 3 * 20
    );
    // The refused keyed calls left no key behind.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM idempotency_keys WHERE resources IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM idempotency_keys").await,
        1
    );
}

#[tokio::test]
async fn a_batch_statement_that_fails_commits_its_calls_one_by_one() {
    let app = spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    // Two calls with one interaction_id: in one batch they fail its INSERT,
    // so every call of it is committed alone.
    for round in 0..3 {
        let id = format!("fixed-{round}");
        let mut calls = Vec::new();
        for i in 0..12 {
            let mut request = log(&customer, payment(i, ""), "");
            if i < 2 {
                request.interaction_id = id.clone();
            }
            calls.push((Caller::service(), request));
        }
        let replies = all_at_once(&app, calls).await;
        let won: Vec<_> = replies[..2].iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "{replies:?}");
        assert!(
            won[0]
                .as_ref()
                .unwrap()
                .name
                .ends_with(&format!("/interactions/{id}"))
        );
        let lost = replies[..2].iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(lost.code(), Code::AlreadyExists);
        for reply in &replies[2..] {
            reply.as_ref().unwrap();
        }
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM interactions").await,
        3 * 11
    );
}

#[tokio::test]
async fn a_call_whose_deadline_passes_in_the_queue_is_not_written() {
    // One batcher, held up by a lock on the table: calls queue behind it.
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__INTERACTIONS__GROUP_COMMIT_WORKERS".into(), "1".into());
    })
    .await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let lock = lock_interactions(&app).await;
    let client = app.interactions(&Caller::service()).await;
    let call = |summary: &str, timeout: Option<Duration>| {
        let mut client = client.clone();
        let mut interaction = payment(1, "");
        interaction.summary = summary.into();
        let mut request = Request::new(log(&customer, interaction, ""));
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        tokio::spawn(async move { client.log_interaction(request).await })
    };
    let first = call("first", None);
    until_waiting(&app, 1).await;
    let late = call("late", Some(Duration::from_millis(300)));
    let status = late.await.unwrap().unwrap_err();
    // The server answers before the deadline; only on a machine too busy to
    // deliver that answer in time does the client's own timer (tonic's,
    // reported as CANCELLED) win. Either way the call must not be written.
    let clients_own_timer =
        status.code() == Code::Cancelled && std::error::Error::source(&status).is_some();
    assert!(
        status.code() == Code::DeadlineExceeded || clients_own_timer,
        "{status:?}"
    );
    drop(lock);
    first.await.unwrap().unwrap();
    // A call queued after the late one is answered after the batcher
    // passed the late one by.
    call("after", None).await.unwrap().unwrap();
    let late: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions WHERE summary = 'late'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(late, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM interactions").await, 2);
}

/// How many times this test database ran statements whose text is `like`
/// (pg_stat_statements, which the test cluster preloads).
async fn statements_run(app: &TestApp, like: &str) -> i64 {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND query LIKE $1",
    )
    .bind(like)
    .fetch_one(&app.db)
    .await
    .expect("pg_stat_statements (restart the test cluster: scripts/postgres.sh stop test)")
}

/// Sends one keyed call for `customer`, and ten more while the first holds
/// the only batcher (a lock on the table), so that the ten share a batch;
/// returns the batches the eleven calls made.
async fn eleven_calls_in_few_batches(app: &TestApp, customer: &str) -> i64 {
    let (_, metrics) = app.admin_get("/metrics").await;
    let batches = sample(&metrics, "ck_append_batch_size_count");
    let rows = sample(&metrics, "ck_append_batch_size_sum");

    let lock = lock_interactions(app).await;
    let client = app.interactions(&Caller::service()).await;
    let call = |i: i64| {
        let mut client = client.clone();
        let request = log(customer, payment(i, ""), &uuid::Uuid::now_v7().to_string());
        tokio::spawn(async move { client.log_interaction(request).await })
    };
    let mut calls = vec![call(0)];
    until_waiting(app, 1).await;
    calls.extend((1..=10).map(call));
    for _ in 0..1200 {
        let (_, metrics) = app.admin_get("/metrics").await;
        if sample(&metrics, "ck_grpc_requests_in_flight") >= 11.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(lock);
    for call in calls {
        call.await.unwrap().unwrap();
    }

    let (_, metrics) = app.admin_get("/metrics").await;
    let batches = sample(&metrics, "ck_append_batch_size_count") - batches;
    assert_eq!(sample(&metrics, "ck_append_batch_size_sum") - rows, 11.0);
    assert!(batches < 11.0, "the queued calls were not batched");
    batches as i64
}

#[tokio::test]
async fn a_batch_claims_and_records_its_request_ids_in_one_statement_each() {
    // One batcher, so that calls sent while it is held up share its next
    // batch.
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__INTERACTIONS__GROUP_COMMIT_WORKERS".into(), "1".into());
        env.insert("CK__SERVER__MAX_CONCURRENT_CALLS".into(), "512".into());
    })
    .await;
    let customer = new_customer(&app, "张伟", "B01").await;
    const CLAIMS: &str = "%INSERT INTO idempotency_keys%";
    const RECORDS: &str = "UPDATE idempotency_keys%";
    let claims = statements_run(&app, CLAIMS).await;
    let records = statements_run(&app, RECORDS).await;
    let batches = eleven_calls_in_few_batches(&app, &customer).await;
    assert_eq!(statements_run(&app, CLAIMS).await - claims, batches);
    assert_eq!(statements_run(&app, RECORDS).await - records, batches);
}

/// With a standby, each writer's position for read-your-writes is read once
/// per batch, not once per call.
#[tokio::test]
async fn a_batch_reads_the_write_position_once_for_all_its_callers() {
    // The database itself stands in for the standby: only the writes'
    // bookkeeping is under test here.
    let url = crate::helpers::fresh_database().await;
    let app = TestApp::spawn_on(&url, |env| {
        env.insert("CK__INTERACTIONS__GROUP_COMMIT_WORKERS".into(), "1".into());
        env.insert("CK__SERVER__MAX_CONCURRENT_CALLS".into(), "512".into());
        env.insert("CK__DATABASE__READ_URL".into(), url.clone());
    })
    .await;
    let customer = new_customer(&app, "张伟", "B01").await;
    const POSITIONS: &str = "%pg_current_wal_insert_lsn%";
    let positions = statements_run(&app, POSITIONS).await;
    let batches = eleven_calls_in_few_batches(&app, &customer).await;
    assert_eq!(statements_run(&app, POSITIONS).await - positions, batches);
}
