//! Two service processes against one database, as replicas behind a load
//! balancer run: a caller's next call may reach the other one. Watch streams,
//! page tokens, request_id retries and long-running operations must not care
//! which replica answered before.

use std::time::Duration;

use customer_knowledge::pb::{
    google::longrunning::{self as lro, operations_client::OperationsClient},
    v1::{self as pb, interaction::Channel, interaction::Kind},
};
use futures::StreamExt;

use crate::{
    helpers::{Bearer, Caller, TestApp, new_customer, violated_fields},
    insights::insights,
};

/// The page-token key every replica shares (`api.page_token_secret`); a
/// replica without it signs with a random key of its own.
const SHARED_SECRET: &str = "page tokens of every replica, 32+ bytes";

/// Two replicas on one fresh database.
async fn two_replicas() -> (TestApp, TestApp) {
    let shared = |env: &mut std::collections::HashMap<String, String>| {
        env.insert("CK__API__PAGE_TOKEN_SECRET".into(), SHARED_SECRET.into());
    };
    let one = TestApp::spawn_with(shared).await;
    let two = TestApp::spawn_on(&one.database_url, shared).await;
    (one, two)
}

fn visit(summary: &str, request_id: &str, parent: &str) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: Channel::Branch as i32,
            kind: Kind::Inquiry as i32,
            summary: summary.into(),
            ..Default::default()
        }),
        request_id: request_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_watch_on_one_replica_receives_what_the_other_logs() {
    let (one, two) = two_replicas().await;
    let customer = new_customer(&one, "张伟", "B01").await;
    let mut watch = one
        .interactions(&Caller::teller("B01"))
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .expect("WatchInteractions")
        .into_inner();

    let mut writer = two.interactions(&Caller::rm("B01")).await;
    for i in 0..5 {
        writer
            .log_interaction(visit(&format!("visit {i}"), "", &customer))
            .await
            .expect("LogInteraction on replica two");
    }
    for i in 0..5 {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("an event arrives")
            .expect("the stream is open")
            .expect("not an error");
        assert_eq!(event.interaction.unwrap().summary, format!("visit {i}"));
    }
}

#[tokio::test]
async fn a_page_token_from_one_replica_continues_on_the_other() {
    let (one, two) = two_replicas().await;
    for name in ["A", "B", "C", "D", "E"] {
        new_customer(&one, name, "B01").await;
    }
    let caller = Caller::rm("B01");
    let first = one
        .customers(&caller)
        .await
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.customers.len(), 2);
    assert!(!first.next_page_token.is_empty());

    let mut seen: Vec<String> = first.customers.iter().map(|c| c.name.clone()).collect();
    let mut token = first.next_page_token;
    let mut other = two.customers(&caller).await;
    while !token.is_empty() {
        let page = other
            .list_customers(pb::ListCustomersRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("replica two accepts replica one's token")
            .into_inner();
        seen.extend(page.customers.into_iter().map(|c| c.name));
        token = page.next_page_token;
    }
    // Five customers, each once, in the order one listing gives.
    let mut names = seen.clone();
    names.sort();
    names.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(names.len(), 5);

    // A replica without the shared secret cannot read the token: the reason
    // every replica must be given the same api.page_token_secret.
    let stranger = TestApp::spawn_on(&one.database_url, |_| {}).await;
    let first = one
        .customers(&caller)
        .await
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = stranger
        .customers(&caller)
        .await
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn a_write_retried_on_the_other_replica_is_not_repeated() {
    let (one, two) = two_replicas().await;
    let caller = Caller::rm("B01");
    let create = |request_id: &str| pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: "王芳".into(),
            kind: pb::customer::Kind::Individual as i32,
            home_branch: "B01".into(),
            ..Default::default()
        }),
        request_id: request_id.into(),
        ..Default::default()
    };

    // One after the other: the retry on replica two answers what replica
    // one answered.
    let request_id = uuid::Uuid::now_v7().to_string();
    let first = one
        .customers(&caller)
        .await
        .create_customer(create(&request_id))
        .await
        .unwrap()
        .into_inner();
    let retried = two
        .customers(&caller)
        .await
        .create_customer(create(&request_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);

    // At once on both (the first try timed out at the client and its retry
    // went elsewhere): one customer, one answer.
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut calls = Vec::new();
    for app in [&one, &two, &one, &two] {
        let mut client = app.customers(&caller).await;
        let request = create(&request_id);
        calls.push(tokio::spawn(async move {
            client.create_customer(request).await
        }));
    }
    let mut replies = Vec::new();
    for call in calls {
        replies.push(
            call.await
                .unwrap()
                .expect("every try succeeds")
                .into_inner(),
        );
    }
    assert!(replies.iter().all(|r| *r == replies[0]));
    assert_ne!(replies[0].name, first.name);
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&one.db)
        .await
        .unwrap();
    assert_eq!(customers, 2);

    // The append path batches calls per process (group commit): tries of one
    // LogInteraction on both replicas at once still log it once.
    let customer = first.name.clone();
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut calls = Vec::new();
    for app in [&one, &two, &one, &two] {
        let mut client = app.interactions(&caller).await;
        let request = visit("asked about a deposit", &request_id, &customer);
        calls.push(tokio::spawn(async move {
            client.log_interaction(request).await
        }));
    }
    let mut replies = Vec::new();
    for call in calls {
        replies.push(
            call.await
                .unwrap()
                .expect("every try succeeds")
                .into_inner(),
        );
    }
    assert!(replies.iter().all(|r| *r == replies[0]));
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions")
        .fetch_one(&one.db)
        .await
        .unwrap();
    assert_eq!(logged, 1);
}

#[tokio::test]
async fn an_operation_started_on_one_replica_is_followed_on_the_other() {
    let (one, two) = two_replicas().await;
    new_customer(&one, "One", "B01").await;
    new_customer(&one, "Two", "B02").await;
    let caller = Caller::service();
    let started = insights(&one, &caller)
        .await
        .recompute_segments(pb::RecomputeSegmentsRequest::default())
        .await
        .expect("RecomputeSegments on replica one")
        .into_inner();

    let mut operations =
        OperationsClient::with_interceptor(two.channel().await, Bearer::of(&caller));
    let seen = operations
        .get_operation(lro::GetOperationRequest {
            name: started.name.clone(),
        })
        .await
        .expect("replica two knows the operation")
        .into_inner();
    assert_eq!(seen.name, started.name);

    let mut done = None;
    for _ in 0..600 {
        let op = operations
            .wait_operation(lro::WaitOperationRequest {
                name: started.name.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            })
            .await
            .expect("WaitOperation on replica two")
            .into_inner();
        if op.done {
            done = Some(op);
            break;
        }
    }
    let done = done.expect("the operation ends");
    match done.result {
        Some(lro::operation::Result::Response(any)) => {
            let response: pb::RecomputeSegmentsResponse =
                prost::Message::decode(any.value.as_slice()).unwrap();
            assert_eq!(response.customer_count, 2);
        }
        other => panic!("the operation ended without a response: {other:?}"),
    }
}

/// Where each table goes on a distributed Postgres (Citus), as
/// docs/scale-out.md explains: by the customer, by the knowledge item, as a
/// reference table copied to every node, or kept on the coordinator.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Placement {
    /// Hash-distributed on this column, which holds the customer id.
    Customer(&'static str),
    /// Hash-distributed on this column, which holds the knowledge item id.
    KnowledgeItem(&'static str),
    Reference,
    Coordinator,
}

const PLACEMENT: &[(&str, Placement)] = &[
    ("customers", Placement::Customer("id")),
    ("customer_external_ids", Placement::Customer("customer_id")),
    ("customer_consents", Placement::Customer("customer_id")),
    ("customer_links", Placement::Customer("customer_id")),
    ("consent_events", Placement::Customer("customer_id")),
    ("interactions", Placement::Customer("customer_id")),
    ("interaction_keys", Placement::Customer("customer_id")),
    ("follow_ups", Placement::Customer("customer_id")),
    ("service_requests", Placement::Customer("customer_id")),
    ("service_request_events", Placement::Customer("customer_id")),
    ("customer_segments", Placement::Customer("customer_id")),
    ("customer_products", Placement::Customer("customer_id")),
    ("campaign_contacts", Placement::Customer("customer_id")),
    ("knowledge_items", Placement::KnowledgeItem("id")),
    ("knowledge_edges", Placement::KnowledgeItem("source_item")),
    (
        "knowledge_conversions",
        Placement::KnowledgeItem("target_item"),
    ),
    ("knowledge_shares", Placement::KnowledgeItem("item_id")),
    (
        "knowledge_internalizations",
        Placement::KnowledgeItem("item_id"),
    ),
    ("knowledge_events", Placement::KnowledgeItem("item_id")),
    ("segment_runs", Placement::Reference),
    ("segment_products", Placement::Reference),
    ("campaigns", Placement::Reference),
    ("campaign_activities", Placement::Reference),
    ("access_events", Placement::Coordinator),
    ("outbox", Placement::Coordinator),
    ("idempotency_keys", Placement::Coordinator),
    ("operations", Placement::Coordinator),
    ("_sqlx_migrations", Placement::Coordinator),
];

/// Unique indexes of distributed tables that lack the distribution column
/// (Citus refuses them): each needs the change docs/scale-out.md names before
/// the table can be distributed. A table leaves this list when fixed.
const UNIQUE_WITHOUT_DISTRIBUTION_COLUMN: &[&str] = &[
    "consent_events_pkey",
    "customer_external_ids_pkey",
    "knowledge_conversions_pkey",
    "knowledge_events_pkey",
    "knowledge_internalizations_pkey",
    "knowledge_shares_pkey",
];

#[tokio::test]
async fn every_table_has_a_documented_place_beyond_one_primary() {
    let app = TestApp::spawn().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let mut documented: Vec<String> = PLACEMENT.iter().map(|(t, _)| t.to_string()).collect();
    documented.sort();
    assert_eq!(
        tables, documented,
        "every table is placed in docs/scale-out.md and in PLACEMENT"
    );

    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
          WHERE table_schema = 'public'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let unique: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, ic.relname::text,
                array_agg(a.attname::text ORDER BY a.attnum)
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE n.nspname = 'public' AND i.indisunique
          GROUP BY 1, 2",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let mut lacking = Vec::new();
    for (table, placement) in PLACEMENT {
        let column = match placement {
            Placement::Customer(c) | Placement::KnowledgeItem(c) => *c,
            Placement::Reference | Placement::Coordinator => continue,
        };
        assert!(
            columns.iter().any(|(t, c)| t == table && c == column),
            "{table} has its distribution column {column}"
        );
        for (_, index, _) in unique
            .iter()
            .filter(|(t, _, cols)| t == table && !cols.iter().any(|c| c == column))
        {
            lacking.push(index.clone());
        }
    }
    lacking.sort();
    assert_eq!(lacking, UNIQUE_WITHOUT_DISTRIBUTION_COLUMN);
}
