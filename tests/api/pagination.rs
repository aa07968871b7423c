//! Keyset pagination: every customer exactly once, even while customers are
//! created during the walk; tokens are tamper-checked.

use std::collections::HashSet;

use customer_knowledge::pb::v1::{self as pb, customer::Kind};
use tonic::Code;

use crate::helpers::{Caller, CustomerClient, TestApp, violated_fields};

async fn create_many(client: &CustomerClient, prefix: &str, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    let mut pending = Vec::new();
    for i in 0..count {
        let mut client = client.clone();
        let request = pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: format!("{prefix} {i}"),
                kind: Kind::Individual as i32,
                home_branch: "B01".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        pending.push(tokio::spawn(async move {
            client
                .create_customer(request)
                .await
                .unwrap()
                .into_inner()
                .name
        }));
        if pending.len() == 16 {
            for task in pending.drain(..) {
                names.push(task.await.unwrap());
            }
        }
    }
    for task in pending {
        names.push(task.await.unwrap());
    }
    names
}

#[tokio::test]
async fn walking_all_pages_returns_each_customer_once_while_others_are_created() {
    let app = TestApp::spawn().await;
    let client = app.customers(&Caller::service()).await;
    let existing: HashSet<String> = create_many(&client, "Existing", 1050)
        .await
        .into_iter()
        .collect();
    assert_eq!(existing.len(), 1050);

    let writer = {
        let client = client.clone();
        tokio::spawn(async move { create_many(&client, "During", 200).await })
    };
    let mut reader = client.clone();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = reader
            .list_customers(pb::ListCustomersRequest {
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.customers.len() <= 100);
        seen.extend(page.customers.into_iter().map(|c| c.name));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let created_during: HashSet<String> = writer.await.unwrap().into_iter().collect();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no customer appears twice");
    for name in &existing {
        assert!(unique.contains(name), "{name} was skipped");
    }
    for name in &seen {
        assert!(existing.contains(name) || created_during.contains(name));
    }
    assert!(pages >= 11);
}

#[tokio::test]
async fn page_tokens_are_tamper_checked_and_bound_to_the_query() {
    let app = TestApp::spawn().await;
    let mut client = app.customers(&Caller::service()).await;
    create_many(&client, "C", 5).await;
    let first = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.customers.len(), 2);
    let token = first.next_page_token;
    assert!(!token.is_empty());

    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let other_filter = pb::ListCustomersRequest {
        page_size: 2,
        page_token: token.clone(),
        filter: "kind = INDIVIDUAL".into(),
        ..Default::default()
    };
    for request in [
        pb::ListCustomersRequest {
            page_size: 2,
            page_token: String::from_utf8(tampered).unwrap(),
            ..Default::default()
        },
        other_filter,
        pb::ListCustomersRequest {
            page_token: "not a token".into(),
            ..Default::default()
        },
    ] {
        let status = client.list_customers(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["page_token"]);
    }
    // Another caller cannot use the token either.
    let status = app
        .customers(&Caller::admin())
        .await
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let second = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.customers.len(), 2);
    assert!(
        second
            .customers
            .iter()
            .all(|c| !first.customers.contains(c))
    );
}

#[tokio::test]
async fn page_size_defaults_to_50_and_caps_at_1000() {
    let app = TestApp::spawn().await;
    let mut client = app.customers(&Caller::service()).await;
    create_many(&client, "C", 60).await;
    let page = client
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.customers.len(), 50);
    let page = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.customers.len(), 60);
    assert!(page.next_page_token.is_empty());
}

/// A page of the longest notes still fits the largest message the server
/// sends: it ends early (with a token) instead of failing to encode.
#[tokio::test]
async fn pages_of_long_cjk_notes_stay_under_the_message_limit() {
    use customer_knowledge::pb::v1::interaction::{Channel, Kind as InteractionKind};
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__SERVER__MAX_MESSAGE_BYTES".into(), "65536".into());
    })
    .await;
    let customer = crate::helpers::new_customer(&app, "长备注", "B01").await;
    let mut interactions = app.interactions(&Caller::rm("B01")).await;
    for i in 0..5 {
        interactions
            .log_interaction(pb::LogInteractionRequest {
                parent: customer.clone(),
                interaction: Some(pb::Interaction {
                    channel: Channel::Branch as i32,
                    kind: InteractionKind::Inquiry as i32,
                    summary: format!("visit {i}"),
                    // 10,000 characters of three bytes each: about 30 KB.
                    notes: "知".repeat(10_000),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let (mut seen, mut token, mut pages) = (0, String::new(), 0);
    loop {
        let page = interactions
            .list_interactions(pb::ListInteractionsRequest {
                parent: customer.clone(),
                page_size: 50,
                page_token: token,
                view: pb::View::Full as i32,
                ..Default::default()
            })
            .await
            .expect("a page fits the message limit")
            .into_inner();
        seen += page.interactions.len();
        pages += 1;
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, 5);
    assert!(
        pages >= 3,
        "five 30 KB notes need several 64 KiB pages, got {pages}"
    );

    // The list's default view, BASIC, leaves the notes out: one page.
    let basic = interactions
        .list_interactions(pb::ListInteractionsRequest {
            parent: customer.clone(),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(basic.interactions.len(), 5);
    assert!(basic.next_page_token.is_empty());
    assert!(basic.interactions.iter().all(|i| i.notes.is_empty()));
}
