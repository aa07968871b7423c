//! The change feed callers build caches on: the watch streams carry UPDATED
//! and ERASED (live and on a resume, only to whoever could see the row), and
//! ListInteractions / ListKnowledgeItems page by update_time, so a change
//! made after a page was read still reaches the cache.

use std::time::Duration;

use customer_knowledge::pb::v1::{
    self as pb,
    complaint::{Category, Severity, State},
    interaction::{Channel, Kind},
    knowledge_item::{Nature, Visibility},
    watch_interactions_response::Change,
    watch_knowledge_response::Change as KnowledgeChange,
};
use futures::StreamExt;
use tonic::{Code, Streaming};

use crate::{
    helpers::{Caller, TestApp, new_customer, violated_fields},
    knowledge::{create, employee, item},
};

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives")
        .expect("the stream is open")
        .expect("not an error")
}

/// Nothing more arrives for a while (heartbeats aside: none is due).
async fn quiet<T: std::fmt::Debug>(stream: &mut Streaming<T>) {
    let more = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await;
    assert!(more.is_err(), "unexpected event: {more:?}");
}

fn complaint(parent: &str) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: Channel::Phone as i32,
            kind: Kind::Complaint as i32,
            summary: "Annual card fee charged twice".into(),
            notes: "Customer phoned twice".into(),
            complaint: Some(pb::Complaint {
                severity: Severity::Medium as i32,
                category: Category::Fees as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn visit(parent: &str, summary: &str) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: Channel::Branch as i32,
            kind: Kind::Inquiry as i32,
            summary: summary.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn to_state(name: &str, state: State, resolution: &str) -> pb::UpdateComplaintRequest {
    pb::UpdateComplaintRequest {
        name: name.into(),
        state: state as i32,
        resolution: resolution.into(),
        ..Default::default()
    }
}

/// (change, name) of an interaction event, with the checks every event
/// passes: an ERASED one carries the name and nothing else.
fn interaction_event(event: &pb::WatchInteractionsResponse) -> (Change, String) {
    let change = Change::try_from(event.change).unwrap();
    let interaction = event.interaction.clone().unwrap();
    if change == Change::Erased {
        assert_eq!(
            interaction,
            pb::Interaction {
                name: interaction.name.clone(),
                ..Default::default()
            },
            "an ERASED event carries the name only"
        );
    }
    assert!(event.previous_name.is_empty());
    (change, interaction.name)
}

#[tokio::test]
async fn interaction_watchers_get_updates_and_erasures_live_and_on_resume() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let elsewhere = new_customer(&app, "李娜", "B02").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let watch = |branch: &str, resume_token: String| pb::WatchInteractionsRequest {
        branch: branch.into(),
        resume_token,
        ..Default::default()
    };
    let mut b01 = rm
        .watch_interactions(watch("B01", String::new()))
        .await
        .unwrap()
        .into_inner();
    let mut by_customer = rm
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut b02 = app
        .interactions(&Caller::rm("B02"))
        .await
        .watch_interactions(watch("B02", String::new()))
        .await
        .unwrap()
        .into_inner();

    // A complaint logged, taken on and resolved.
    let logged = rm.log_interaction(complaint(&customer)).await.unwrap();
    let complaint_name = logged.into_inner().name;
    let first = next(&mut b01).await;
    assert_eq!(
        interaction_event(&first),
        (Change::Logged, complaint_name.clone())
    );
    rm.update_complaint(to_state(&complaint_name, State::InProgress, ""))
        .await
        .unwrap();
    let event = next(&mut b01).await;
    assert_eq!(
        interaction_event(&event),
        (Change::Updated, complaint_name.clone())
    );
    let updated = event.interaction.unwrap();
    assert_eq!(updated.summary, "Annual card fee charged twice");
    assert_eq!(
        updated.complaint.unwrap().state,
        State::InProgress as i32,
        "an UPDATED event carries the row as it is now"
    );
    rm.resolve_complaint(pb::ResolveComplaintRequest {
        name: complaint_name.clone(),
        resolution: "Fee refunded".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let event = next(&mut b01).await;
    assert_eq!(
        interaction_event(&event),
        (Change::Updated, complaint_name.clone())
    );
    assert_eq!(
        event.interaction.unwrap().complaint.unwrap().state,
        State::Resolved as i32
    );

    // A service request logged and confirmed: its interaction is UPDATED.
    let mut request = visit(&customer, "Asked to replace a damaged debit card");
    if let Some(i) = request.interaction.as_mut() {
        i.kind = Kind::ServiceRequest as i32;
    }
    let request_name = rm.log_interaction(request).await.unwrap().into_inner().name;
    assert_eq!(
        interaction_event(&next(&mut b01).await),
        (Change::Logged, request_name.clone())
    );
    rm.confirm_service_request(pb::ConfirmServiceRequestRequest {
        name: request_name.replace("/interactions/", "/serviceRequests/"),
        need: "A replacement card".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        interaction_event(&next(&mut b01).await),
        (Change::Updated, request_name.clone())
    );

    // Resumed just after the first event: each row once more, as it is now
    // (the feed holds rows at their last position, not every step).
    let mut resumed = rm
        .watch_interactions(watch("B01", first.resume_token.clone()))
        .await
        .unwrap()
        .into_inner();
    let event = next(&mut resumed).await;
    assert_eq!(
        interaction_event(&event),
        (Change::Updated, complaint_name.clone())
    );
    assert_eq!(
        event.interaction.unwrap().complaint.unwrap().state,
        State::Resolved as i32
    );
    assert_eq!(
        interaction_event(&next(&mut resumed).await),
        (Change::Updated, request_name.clone())
    );
    quiet(&mut resumed).await;
    drop(resumed);

    // The customer is erased: each interaction once more, as ERASED.
    app.customers(&Caller::rm("B01"))
        .await
        .delete_customer(pb::DeleteCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut erased = vec![
        interaction_event(&next(&mut b01).await),
        interaction_event(&next(&mut b01).await),
    ];
    erased.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = vec![
        (Change::Erased, complaint_name.clone()),
        (Change::Erased, request_name.clone()),
    ];
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(erased, expected);
    quiet(&mut b01).await;

    // The customer's own watcher saw the same six events.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(interaction_event(&next(&mut by_customer).await).0);
    }
    assert_eq!(
        seen,
        [
            Change::Logged,
            Change::Updated,
            Change::Updated,
            Change::Logged,
            Change::Updated,
            Change::Erased,
        ]
    );
    assert_eq!(
        interaction_event(&next(&mut by_customer).await).0,
        Change::Erased
    );

    // The other branch's watcher got none of it, and still gets its own.
    rm.log_interaction(visit(&elsewhere, "other branch"))
        .await
        .unwrap_err();
    app.interactions(&Caller::rm("B02"))
        .await
        .log_interaction(visit(&elsewhere, "other branch"))
        .await
        .unwrap();
    let own = next(&mut b02).await;
    assert_eq!(own.interaction.unwrap().summary, "other branch");
    quiet(&mut b02).await;

    // Resumed again from the first event: by now both rows are ERASED.
    let mut resumed = rm
        .watch_interactions(watch("B01", first.resume_token.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut replay = vec![
        interaction_event(&next(&mut resumed).await),
        interaction_event(&next(&mut resumed).await),
    ];
    replay.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(replay, expected);
    quiet(&mut resumed).await;
}

#[tokio::test]
async fn knowledge_watchers_get_updates_narrowing_and_erasures_they_could_see() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut author = app.knowledge(&employee("E1", "B01", "T1")).await;
    let colleague = employee("E3", "B01", "T2");
    let mut subject_watch = app
        .knowledge(&colleague)
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects: vec![customer.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut everything = app
        .knowledge(&colleague)
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut other_branch = app
        .knowledge(&employee("E9", "B02", "T9"))
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest::default())
        .await
        .unwrap()
        .into_inner();

    let update = |knowledge_item: pb::KnowledgeItem, path: &str| pb::UpdateKnowledgeItemRequest {
        knowledge_item: Some(knowledge_item),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![path.into()],
        }),
        ..Default::default()
    };
    let name_only = |name: &str| pb::KnowledgeItem {
        name: name.into(),
        ..Default::default()
    };
    let mut streams = [&mut subject_watch, &mut everything];

    let narrowed = create(
        &mut author,
        item(
            "prefers mornings",
            Nature::Explicit,
            Visibility::Branch,
            &[&customer],
        ),
    )
    .await;
    let mut first_token = String::new();
    for stream in streams.iter_mut() {
        let created = next(&mut **stream).await;
        assert_eq!(created.change, KnowledgeChange::Created as i32);
        first_token = created.resume_token;
    }

    author
        .update_knowledge_item(update(
            pb::KnowledgeItem {
                name: narrowed.name.clone(),
                body: "prefers mornings before 10".into(),
                ..Default::default()
            },
            "body",
        ))
        .await
        .unwrap();
    for stream in streams.iter_mut() {
        let event = next(&mut **stream).await;
        assert_eq!(event.change, KnowledgeChange::Updated as i32);
        let item = event.knowledge_item.unwrap();
        assert_eq!(item.body, "prefers mornings before 10");
        assert_eq!(item.title, "prefers mornings");
    }

    // Narrowed to its author: the colleague must drop it.
    author
        .update_knowledge_item(update(
            pb::KnowledgeItem {
                name: narrowed.name.clone(),
                visibility: Visibility::Private as i32,
                ..Default::default()
            },
            "visibility",
        ))
        .await
        .unwrap();
    for stream in streams.iter_mut() {
        let event = next(&mut **stream).await;
        assert_eq!(event.change, KnowledgeChange::Updated as i32);
        assert_eq!(
            event.knowledge_item.unwrap(),
            name_only(&narrowed.name),
            "no longer visible to the watcher: its name only"
        );
    }

    let erased = create(
        &mut author,
        item(
            "wary of fees",
            Nature::Explicit,
            Visibility::Branch,
            &[&customer],
        ),
    )
    .await;
    for stream in streams.iter_mut() {
        let event = next(&mut **stream).await;
        assert_eq!(event.change, KnowledgeChange::Created as i32);
        assert_eq!(event.knowledge_item.unwrap().title, "wary of fees");
    }

    app.customers(&Caller::rm("B01"))
        .await
        .delete_customer(pb::DeleteCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Only the item the colleague could see; the narrowed one was its
    // author's alone by then.
    for stream in streams.iter_mut() {
        let event = next(&mut **stream).await;
        assert_eq!(event.change, KnowledgeChange::Erased as i32);
        assert_eq!(event.knowledge_item.unwrap(), name_only(&erased.name));
        quiet(&mut **stream).await;
    }
    quiet(&mut other_branch).await;

    // Resumed from the first event, the colleague gets every change again
    // (knowledge changes are kept one by one), each as the item is now.
    let mut resumed = app
        .knowledge(&colleague)
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest {
            resume_token: first_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut changes = Vec::new();
    for _ in 0..4 {
        let event = next(&mut resumed).await;
        changes.push((event.change, event.knowledge_item.unwrap().name));
    }
    assert_eq!(
        changes,
        [
            (KnowledgeChange::Updated as i32, narrowed.name.clone()),
            (KnowledgeChange::Updated as i32, narrowed.name.clone()),
            (KnowledgeChange::Created as i32, erased.name.clone()),
            (KnowledgeChange::Erased as i32, erased.name.clone()),
        ]
    );
    quiet(&mut resumed).await;
}

fn rfc3339(t: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn interactions_page_by_update_time_and_a_later_change_comes_again() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let a = rm
        .log_interaction(complaint(&customer))
        .await
        .unwrap()
        .into_inner();
    let b = rm
        .log_interaction(visit(&customer, "b"))
        .await
        .unwrap()
        .into_inner();
    let c = rm
        .log_interaction(visit(&customer, "c"))
        .await
        .unwrap()
        .into_inner();
    let list = |filter: String, page_token: String| pb::ListInteractionsRequest {
        parent: customer.clone(),
        page_size: 2,
        page_token,
        filter,
        order_by: "update_time".into(),
        ..Default::default()
    };
    let names = |page: &pb::ListInteractionsResponse| -> Vec<String> {
        page.interactions.iter().map(|i| i.name.clone()).collect()
    };

    // Logged a, b, c: least recently changed first, two to a page.
    let since = format!(
        "update_time >= \"{}\"",
        rfc3339(a.update_time.as_ref().unwrap())
    );
    let first = rm
        .list_interactions(list(since.clone(), String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&first), [a.name.clone(), b.name.clone()]);
    assert!(!first.next_page_token.is_empty());

    // a changes after the first page was read: it comes again at the end.
    rm.update_complaint(to_state(&a.name, State::InProgress, ""))
        .await
        .unwrap();
    let second = rm
        .list_interactions(list(since.clone(), first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&second), [c.name.clone(), a.name.clone()]);
    assert!(second.next_page_token.is_empty());

    // From the last time seen, only what changed since.
    let last_seen = second.interactions.last().unwrap().update_time.unwrap();
    let c_time = second.interactions[0].update_time.unwrap();
    let after_c = rm
        .list_interactions(list(
            format!("update_time > \"{}\"", rfc3339(&c_time)),
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&after_c), std::slice::from_ref(&a.name));
    let after_last = rm
        .list_interactions(list(
            format!("update_time > \"{}\"", rfc3339(&last_seen)),
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(after_last.interactions.is_empty());

    // The default order is still the timeline, newest first.
    let timeline = rm
        .list_interactions(pb::ListInteractionsRequest {
            parent: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        names(&timeline),
        [c.name.clone(), b.name.clone(), a.name.clone()]
    );

    // A token is bound to its order; an unknown order is refused.
    let status = rm
        .list_interactions(pb::ListInteractionsRequest {
            order_by: String::new(),
            ..list(since.clone(), first.next_page_token.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = rm
        .list_interactions(pb::ListInteractionsRequest {
            order_by: "occur_time desc".into(),
            filter: "update_time = 3".into(),
            ..list(String::new(), String::new())
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["filter", "order_by"]);

    // Another branch may not read this customer's list in either order.
    let status = app
        .interactions(&Caller::rm("B02"))
        .await
        .list_interactions(list(String::new(), String::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn knowledge_items_page_by_update_time_within_what_the_caller_sees() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut author = app.knowledge(&employee("E1", "B01", "T1")).await;
    let mut made = Vec::new();
    for title in ["x", "y", "z"] {
        made.push(
            create(
                &mut author,
                item(title, Nature::Explicit, Visibility::Branch, &[&customer]),
            )
            .await,
        );
    }
    let since = format!(
        "update_time >= \"{}\"",
        rfc3339(made[0].update_time.as_ref().unwrap())
    );
    let list = |page_token: String| pb::ListKnowledgeItemsRequest {
        page_size: 2,
        page_token,
        filter: since.clone(),
        order_by: "update_time".into(),
        ..Default::default()
    };
    let titles = |page: &pb::ListKnowledgeItemsResponse| -> Vec<String> {
        page.knowledge_items
            .iter()
            .map(|i| i.title.clone())
            .collect()
    };
    let mut colleague = app.knowledge(&employee("E3", "B01", "T2")).await;
    let first = colleague
        .list_knowledge_items(list(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(&first), ["x", "y"]);

    // x changes after the first page was read: it comes again at the end.
    author
        .update_knowledge_item(pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                name: made[0].name.clone(),
                body: "x, revised".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["body".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = colleague
        .list_knowledge_items(list(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(&second), ["z", "x"]);
    assert_ne!(
        second.knowledge_items[1].etag, made[0].etag,
        "x as it is now"
    );
    assert!(second.next_page_token.is_empty());
    let z_time = second.knowledge_items[0].update_time.unwrap();
    let after_z = colleague
        .list_knowledge_items(pb::ListKnowledgeItemsRequest {
            filter: format!("update_time > \"{}\"", rfc3339(&z_time)),
            order_by: "update_time".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(&after_z), ["x"]);

    // Another branch sees none of them, in either order.
    let mut stranger = app.knowledge(&employee("E9", "B02", "T9")).await;
    for order_by in ["", "update_time"] {
        let page = stranger
            .list_knowledge_items(pb::ListKnowledgeItemsRequest {
                order_by: order_by.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.knowledge_items.is_empty(), "{order_by:?}: {page:?}");
    }
    let status = colleague
        .list_knowledge_items(pb::ListKnowledgeItemsRequest {
            order_by: "title".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["order_by"]);
}
