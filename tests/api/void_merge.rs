//! Interactions voided and corrected (append-only: the original stays for
//! audit) and customers merged (the duplicate's name answers with the
//! survivor), over real gRPC and Postgres.

use std::time::Duration;

use chrono::Utc;
use customer_knowledge::pb::v1::{
    self as pb, insight_service_client::InsightServiceClient, watch_interactions_response::Change,
};
use futures::StreamExt;
use tonic::{Code, Status};

use crate::helpers::{
    Bearer, Caller, TestApp, move_to_branch, new_customer, reason, violated_fields,
};

/// `ErrorInfo.metadata[key]` of a status.
fn meta(status: &Status, key: &str) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_default()
}

fn cny(units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "CNY".into(),
        units,
        nanos: 0,
    })
}

fn transaction(units: i64, days_ago: i64, external_ref: &str) -> pb::Interaction {
    pb::Interaction {
        channel: pb::interaction::Channel::OnlineBanking as i32,
        kind: pb::interaction::Kind::Transaction as i32,
        occur_time: Some(customer_knowledge::api::timestamp(
            Utc::now() - chrono::Duration::days(days_ago),
        )),
        summary: format!("payment of {units}"),
        amount: cny(units),
        products: vec!["DEPOSIT-3M".into()],
        external_ref: external_ref.into(),
        ..Default::default()
    }
}

async fn log(app: &TestApp, caller: &Caller, parent: &str, i: pb::Interaction) -> pb::Interaction {
    app.interactions(caller)
        .await
        .log_interaction(pb::LogInteractionRequest {
            parent: parent.into(),
            interaction: Some(i),
            ..Default::default()
        })
        .await
        .expect("log")
        .into_inner()
}

async fn timeline(app: &TestApp, caller: &Caller, parent: &str) -> Vec<String> {
    app.interactions(caller)
        .await
        .list_interactions(pb::ListInteractionsRequest {
            parent: parent.into(),
            page_size: 50,
            ..Default::default()
        })
        .await
        .expect("timeline")
        .into_inner()
        .interactions
        .into_iter()
        .map(|i| i.name)
        .collect()
}

#[tokio::test]
async fn a_voided_interaction_leaves_every_ordinary_read_but_stays_for_audit() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Void Owner", "B01").await;
    let rm = Caller::rm("B01");
    let kept = log(&app, &rm, &customer, transaction(100, 3, "")).await;
    let wrong = log(&app, &rm, &customer, transaction(900, 2, "")).await;
    let mut interactions = app.interactions(&rm).await;

    // Required reason, all violations at once; another branch is denied.
    let bad = interactions
        .void_interaction(pb::VoidInteractionRequest {
            name: "customers/x/followUps/y".into(),
            reason: "  ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["name", "reason"]);
    let other = app
        .interactions(&Caller::rm("B02"))
        .await
        .void_interaction(pb::VoidInteractionRequest {
            name: wrong.name.clone(),
            reason: "not mine".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");
    // An analyst reads but may not write.
    let analyst = app
        .interactions(&Caller::analyst())
        .await
        .void_interaction(pb::VoidInteractionRequest {
            name: wrong.name.clone(),
            reason: "no".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(analyst.code(), Code::PermissionDenied);
    // A stale etag is ABORTED.
    let stale = interactions
        .void_interaction(pb::VoidInteractionRequest {
            name: wrong.name.clone(),
            reason: "keyed twice".into(),
            etag: "v99".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let request = pb::VoidInteractionRequest {
        name: wrong.name.clone(),
        reason: "keyed twice".into(),
        etag: wrong.etag.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let voided = interactions
        .void_interaction(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(voided.name, wrong.name);
    assert_eq!(voided.void_reason, "keyed twice");
    assert_eq!(voided.voided_by, "E-rm-B01");
    assert!(voided.void_time.is_some());
    assert_eq!(voided.superseded_by, "");
    // A retry answers the same, and voids nothing twice.
    let again = interactions
        .void_interaction(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, voided);
    // A new void of it is FAILED_PRECONDITION naming its state.
    let twice = interactions
        .void_interaction(pb::VoidInteractionRequest {
            name: wrong.name.clone(),
            reason: "again".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(reason(&twice), "INTERACTION_NOT_CURRENT");
    assert_eq!(meta(&twice, "state"), "VOIDED");
    let corrected = interactions
        .correct_interaction(pb::CorrectInteractionRequest {
            name: wrong.name.clone(),
            reason: "too late".into(),
            interaction: Some(transaction(90, 2, "")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&corrected), "INTERACTION_NOT_CURRENT");

    // Gone from the timeline and from ordinary reads ...
    assert_eq!(
        timeline(&app, &rm, &customer).await,
        vec![kept.name.clone()]
    );
    let read = interactions
        .get_interaction(pb::GetInteractionRequest {
            name: wrong.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::NotFound);
    assert_eq!(reason(&read), "INTERACTION_VOIDED");
    // ... but compliance reads it with its void record.
    let audited = app
        .interactions(&Caller::compliance())
        .await
        .get_interaction(pb::GetInteractionRequest {
            name: wrong.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audited.summary, "payment of 900");
    assert_eq!(audited.void_reason, "keyed twice");
}

#[tokio::test]
async fn a_correction_supersedes_the_original_and_reads_of_it_point_there() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Correct Owner", "B01").await;
    let rm = Caller::rm("B01");
    let sent = transaction(200, 4, "CORE-200");
    let original = log(&app, &rm, &customer, sent.clone()).await;
    let mut interactions = app.interactions(&rm).await;

    // The correction may not take the original's reference.
    let same_ref = interactions
        .correct_interaction(pb::CorrectInteractionRequest {
            name: original.name.clone(),
            reason: "amount".into(),
            interaction: Some(transaction(250, 4, "CORE-200")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(same_ref.code(), Code::AlreadyExists, "{same_ref:?}");
    assert_eq!(reason(&same_ref), "EXTERNAL_REF_CONFLICT");
    // That failed call left the original as it was.
    assert_eq!(
        timeline(&app, &rm, &customer).await,
        vec![original.name.clone()]
    );

    let correction = interactions
        .correct_interaction(pb::CorrectInteractionRequest {
            name: original.name.clone(),
            reason: "amount keyed wrong".into(),
            interaction: Some(transaction(250, 4, "CORE-200-FIX")),
            interaction_id: "fix-1".into(),
            etag: original.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(correction.name, format!("{customer}/interactions/fix-1"));
    assert_eq!(correction.corrects, original.name);
    assert_eq!(correction.amount, cny(250));
    assert!(correction.void_time.is_none());

    assert_eq!(
        timeline(&app, &rm, &customer).await,
        vec![correction.name.clone()]
    );
    let read = interactions
        .get_interaction(pb::GetInteractionRequest {
            name: original.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::NotFound);
    assert_eq!(reason(&read), "INTERACTION_SUPERSEDED");
    assert_eq!(meta(&read, "correction"), correction.name);
    let audited = app
        .interactions(&Caller::admin())
        .await
        .get_interaction(pb::GetInteractionRequest {
            name: original.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audited.superseded_by, correction.name);
    assert_eq!(audited.amount, cny(200));
    assert_eq!(audited.voided_by, "E-rm-B01");
    // Correcting it again is refused, naming the correction.
    let again = interactions
        .correct_interaction(pb::CorrectInteractionRequest {
            name: original.name.clone(),
            reason: "again".into(),
            interaction: Some(transaction(260, 4, "")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(meta(&again, "state"), "SUPERSEDED");
    assert_eq!(meta(&again, "correction"), correction.name);
    // Core banking re-sending the original reference gets the stored
    // original back (idempotent), not a new live row.
    let resent = log(&app, &rm, &customer, sent).await;
    assert_eq!(resent.name, original.name);
    assert_eq!(
        timeline(&app, &rm, &customer).await,
        vec![correction.name.clone()]
    );
}

#[tokio::test]
async fn voided_and_superseded_interactions_leave_rfm_and_the_watch_says_so() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Segment Owner", "B01").await;
    let rm = Caller::rm("B01");
    let mut watch = app
        .interactions(&rm)
        .await
        .watch_interactions(pb::WatchInteractionsRequest {
            customer: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let a = log(&app, &rm, &customer, transaction(100, 5, "")).await;
    let b = log(&app, &rm, &customer, transaction(200, 4, "")).await;
    let c = log(&app, &rm, &customer, transaction(300, 3, "")).await;
    let mut interactions = app.interactions(&rm).await;
    interactions
        .void_interaction(pb::VoidInteractionRequest {
            name: c.name.clone(),
            reason: "reversed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let fix = interactions
        .correct_interaction(pb::CorrectInteractionRequest {
            name: b.name.clone(),
            reason: "amount".into(),
            // Without a time of its own, the correction keeps b's.
            interaction: Some(pb::Interaction {
                occur_time: None,
                ..transaction(250, 4, "")
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fix.occur_time, b.occur_time);

    // The watch: the LOGGED rows, then c VOIDED without content, then b
    // SUPERSEDED just before the correction. The feed reads rows as they are
    // when it reads them, so the LOGGED of b and c is skipped when the void
    // or correction re-stamped them first; delivery is at least once, so
    // repeats of what was seen are skipped too.
    let correction = (
        fix.name.clone(),
        Change::Logged,
        "payment of 250".to_string(),
    );
    let mut seen: Vec<(String, Change, String)> = Vec::new();
    while !seen.contains(&correction) {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .unwrap_or_else(|_| panic!("an event arrives after {seen:?}"))
            .expect("open")
            .expect("not an error");
        if event.heartbeat {
            continue;
        }
        let change = event.change();
        let i = event.interaction.unwrap();
        let entry = (i.name.clone(), change, i.summary.clone());
        if !seen.contains(&entry) {
            seen.push(entry);
        }
    }
    let early = [
        (b.name.clone(), Change::Logged, "payment of 200".to_string()),
        (c.name.clone(), Change::Logged, "payment of 300".to_string()),
    ];
    let settled: Vec<_> = seen
        .iter()
        .filter(|e| !early.contains(e))
        .cloned()
        .collect();
    let expected = vec![
        (a.name.clone(), Change::Logged, "payment of 100".to_string()),
        (c.name.clone(), Change::Voided, String::new()),
        (b.name.clone(), Change::Superseded, String::new()),
        correction,
    ];
    assert_eq!(settled, expected, "{seen:?}");
    // A LOGGED b or c, when delivered, came before the void.
    let void_at = seen.iter().position(|e| e.1 == Change::Voided).unwrap();
    assert!(
        seen.iter()
            .enumerate()
            .all(|(at, e)| !early.contains(e) || at < void_at),
        "{seen:?}"
    );

    // RFM counts a (100) and the correction (250): F = 2, M = 350.
    let mut insight =
        InsightServiceClient::with_interceptor(app.channel().await, Bearer::of(&Caller::admin()));
    crate::operations::recompute_as(&app, &Caller::admin(), Default::default()).await;
    let view = insight
        .get_customer360(pb::GetCustomer360Request {
            name: customer.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let segment = view.segment.expect("segmented");
    assert_eq!(segment.transaction_count, 2);
    assert_eq!(segment.monetary_value, cny(350));
    let recent: Vec<String> = view
        .recent_interactions
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert_eq!(recent, [fix.name.clone(), a.name.clone()]);
}

#[tokio::test]
async fn a_merged_duplicate_answers_with_the_survivor_and_its_history_moves() {
    let app = TestApp::spawn().await;
    let admin = Caller::admin();
    let mut customers = app.customers(&admin).await;
    let create = |name: &str, branch: &str, cif: &str| pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: name.into(),
            kind: pb::customer::Kind::Individual as i32,
            home_branch: branch.into(),
            phone: "+86 139 0000 0001".into(),
            external_ids: vec![pb::ExternalId {
                system: "CIF".into(),
                value: cif.into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let survivor = customers
        .create_customer(create("王芳", "B01", "CIF-1"))
        .await
        .unwrap()
        .into_inner();
    let duplicate = customers
        .create_customer(create("王芳 (dup)", "B01", "CIF-2"))
        .await
        .unwrap()
        .into_inner();
    let neighbour = new_customer(&app, "Neighbour", "B01").await;
    let elsewhere = new_customer(&app, "Elsewhere", "B02").await;
    let rm = Caller::rm("B01");
    let moved = log(&app, &rm, &duplicate.name, transaction(500, 2, "CORE-9")).await;
    let stays = log(&app, &rm, &survivor.name, transaction(100, 1, "")).await;
    customers
        .link_customers(pb::LinkCustomersRequest {
            name: duplicate.name.clone(),
            linked_customer: neighbour.clone(),
            relationship: pb::customer_link::Relationship::Household as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let item = app
        .knowledge(&admin)
        .await
        .create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: "prefers mornings".into(),
                body: "calls before ten".into(),
                nature: pb::knowledge_item::Nature::Explicit as i32,
                kind: pb::knowledge_item::Kind::Preference as i32,
                subjects: vec![duplicate.name.clone()],
                visibility: pb::knowledge_item::Visibility::Branch as i32,
                sources: vec![moved.name.clone()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let merge = |name: &str, dup: &str| pb::MergeCustomersRequest {
        name: name.into(),
        duplicate: dup.into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    // Not for a branch, not the same customer twice.
    let rm_merge = app
        .customers(&rm)
        .await
        .merge_customers(merge(&survivor.name, &duplicate.name))
        .await
        .unwrap_err();
    assert_eq!(rm_merge.code(), Code::PermissionDenied);
    let same = customers
        .merge_customers(merge(&survivor.name, &survivor.name))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&same), ["duplicate"]);
    let stale = customers
        .merge_customers(pb::MergeCustomersRequest {
            duplicate_etag: "v99".into(),
            ..merge(&survivor.name, &duplicate.name)
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let mut knowledge_watch = app
        .knowledge(&admin)
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects: vec![survivor.name.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let request = merge(&survivor.name, &duplicate.name);
    let merged = customers
        .merge_customers(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.name, survivor.name);
    assert_eq!(merged.display_name, "王芳");
    let mut cifs: Vec<String> = merged
        .external_ids
        .iter()
        .map(|e| e.value.clone())
        .collect();
    cifs.sort();
    assert_eq!(cifs, ["CIF-1", "CIF-2"]);
    assert_eq!(
        merged
            .links
            .iter()
            .map(|l| l.customer.clone())
            .collect::<Vec<_>>(),
        vec![neighbour.clone()]
    );
    // A retry answers the survivor again.
    let retry = customers
        .merge_customers(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.name, survivor.name);

    // The duplicate's name answers with the survivor (an alias); its CIF
    // looks up the survivor.
    let alias = customers
        .get_customer(pb::GetCustomerRequest {
            name: duplicate.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alias.name, survivor.name);
    let looked_up = customers
        .lookup_customer(pb::LookupCustomerRequest {
            system: "CIF".into(),
            value: "CIF-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(looked_up.name, survivor.name);
    // The history moved: the survivor's timeline holds both, newest first.
    let moved_name = format!(
        "{}/interactions/{}",
        survivor.name,
        moved.name.rsplit('/').next().unwrap()
    );
    assert_eq!(
        timeline(&app, &rm, &survivor.name).await,
        [stays.name.clone(), moved_name.clone()]
    );
    // Anything else under the duplicate names the survivor.
    let child = app
        .interactions(&rm)
        .await
        .list_interactions(pb::ListInteractionsRequest {
            parent: duplicate.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(child.code(), Code::NotFound);
    assert_eq!(reason(&child), "CUSTOMER_MERGED");
    assert_eq!(meta(&child, "survivor"), survivor.name);
    // Knowledge about the duplicate is about the survivor now.
    let item = app
        .knowledge(&admin)
        .await
        .get_knowledge_item(pb::GetKnowledgeItemRequest {
            name: item.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(item.subjects, vec![survivor.name.clone()]);
    assert_eq!(item.sources, vec![moved_name.clone()]);
    // ... and reaches the survivor's knowledge watchers as SHARED.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), knowledge_watch.next())
            .await
            .expect("the item arrives")
            .expect("open")
            .expect("not an error");
        if event.change() == pb::watch_knowledge_response::Change::Heartbeat {
            continue;
        }
        assert_eq!(event.change(), pb::watch_knowledge_response::Change::Shared);
        assert_eq!(event.knowledge_item.unwrap().name, item.name);
        break;
    }
    // Merged once: merging the duplicate again names the survivor.
    let again = customers
        .merge_customers(merge(&survivor.name, &duplicate.name))
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "CUSTOMER_MERGED");

    // The access audit records the merge as a write about both customers
    // (the writer is asynchronous: poll, with a generous bound).
    let mut audit =
        customer_knowledge::pb::v1::audit_service_client::AuditServiceClient::with_interceptor(
            app.channel().await,
            Bearer::of(&admin),
        );
    let mut recorded = Vec::new();
    for _ in 0..600 {
        recorded = audit
            .list_access_events(pb::ListAccessEventsRequest {
                filter: r#"principal = "E-admin" AND action = WRITE"#.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .access_events
            .into_iter()
            .filter(|e| e.method.ends_with("/MergeCustomers") && e.outcome == "OK")
            .collect::<Vec<_>>();
        if recorded.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The merge and its retry, each about the survivor and the duplicate.
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded.iter().all(|e| e.customer_pseudonyms.len() == 2));

    // An erased customer cannot be merged.
    customers
        .delete_customer(pb::DeleteCustomerRequest {
            name: elsewhere.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let erased = customers
        .merge_customers(merge(&survivor.name, &elsewhere))
        .await
        .unwrap_err();
    assert_eq!(erased.code(), Code::NotFound);
    assert_eq!(reason(&erased), "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn the_alias_of_a_merged_customer_keeps_branch_scoping() {
    let app = TestApp::spawn().await;
    let survivor = new_customer(&app, "Survivor", "B01").await;
    let duplicate = new_customer(&app, "Duplicate", "B02").await;
    let clash = new_customer(&app, "Clash", "B01").await;
    let rm = Caller::rm("B01");
    // Both hold an interaction with the same id: the merge cannot fold them.
    for parent in [&survivor, &clash] {
        app.interactions(&rm)
            .await
            .log_interaction(pb::LogInteractionRequest {
                parent: parent.clone(),
                interaction: Some(transaction(10, 1, "")),
                interaction_id: "same-id".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut admin = app.customers(&Caller::admin()).await;
    let conflict = admin
        .merge_customers(pb::MergeCustomersRequest {
            name: survivor.clone(),
            duplicate: clash.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    assert_eq!(reason(&conflict), "MERGE_CONFLICT");
    assert_eq!(
        meta(&conflict, "resource"),
        format!("{clash}/interactions/same-id")
    );

    admin
        .merge_customers(pb::MergeCustomersRequest {
            name: survivor.clone(),
            duplicate: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The B02 manager reached the duplicate, but the survivor is in B01:
    // the alias does not carry them there, nor say that it exists.
    let b02 = app
        .customers(&Caller::rm("B02"))
        .await
        .get_customer(pb::GetCustomerRequest {
            name: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(b02.code(), Code::PermissionDenied, "{b02:?}");
    assert!(!b02.message().contains(&survivor));
    // B01 follows the alias; the B02 list no longer holds the duplicate.
    let b01 = app
        .customers(&rm)
        .await
        .get_customer(pb::GetCustomerRequest {
            name: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b01.name, survivor);
    let listed = app
        .customers(&Caller::rm("B02"))
        .await
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.customers.iter().all(|c| c.name != duplicate));

    // The survivor moves to B03: its alias goes with it.
    move_to_branch(&app, &survivor, "B03").await;
    let b01 = app
        .customers(&rm)
        .await
        .get_customer(pb::GetCustomerRequest {
            name: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(b01.code(), Code::PermissionDenied);
    let b03 = app
        .customers(&Caller::rm("B03"))
        .await
        .get_customer(pb::GetCustomerRequest {
            name: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b03.name, survivor);
}

#[tokio::test]
async fn a_voided_complaint_leaves_the_complaint_list_and_cannot_move_on() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Complainer", "B01").await;
    let rm = Caller::rm("B01");
    let complaint = log(
        &app,
        &rm,
        &customer,
        pb::Interaction {
            channel: pb::interaction::Channel::Phone as i32,
            kind: pb::interaction::Kind::Complaint as i32,
            summary: "logged against the wrong customer".into(),
            ..Default::default()
        },
    )
    .await;
    let mut interactions = app.interactions(&rm).await;
    let list = |client: &mut crate::helpers::InteractionClient| {
        let mut client = client.clone();
        let parent = customer.clone();
        async move {
            client
                .list_complaints(pb::ListComplaintsRequest {
                    parent,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .interactions
                .len()
        }
    };
    assert_eq!(list(&mut interactions).await, 1);
    interactions
        .void_interaction(pb::VoidInteractionRequest {
            name: complaint.name.clone(),
            reason: "wrong customer".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(list(&mut interactions).await, 0);
    let resolve = interactions
        .resolve_complaint(pb::ResolveComplaintRequest {
            name: complaint.name.clone(),
            resolution: "n/a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(resolve.code(), Code::FailedPrecondition);
    assert_eq!(reason(&resolve), "INTERACTION_NOT_CURRENT");
    assert_eq!(meta(&resolve, "state"), "VOIDED");
}

#[tokio::test]
async fn a_merge_keeps_the_later_consent_and_narrows_what_it_no_longer_covers() {
    let app = TestApp::spawn().await;
    let survivor = new_customer(&app, "Survivor", "B01").await;
    let duplicate = new_customer(&app, "Duplicate", "B01").await;
    let admin = Caller::admin();
    let mut customers = app.customers(&admin).await;
    let grant = |name: &str, purpose: pb::ConsentPurpose| pb::GrantConsentRequest {
        name: name.into(),
        purpose: purpose as i32,
        channel: "BRANCH_FORM".into(),
        policy_version: "2026.1".into(),
        ..Default::default()
    };
    let withdraw = |name: &str, purpose: pb::ConsentPurpose| pb::WithdrawConsentRequest {
        name: name.into(),
        purpose: purpose as i32,
        channel: "PHONE_RECORDED".into(),
        ..Default::default()
    };
    // In time order: the duplicate consents to sharing and marketing, then
    // withdraws marketing; the survivor then withdraws sharing.
    customers
        .grant_consent(grant(&duplicate, pb::ConsentPurpose::KnowledgeSharing))
        .await
        .unwrap();
    customers
        .grant_consent(grant(&survivor, pb::ConsentPurpose::Marketing))
        .await
        .unwrap();
    customers
        .withdraw_consent(withdraw(&duplicate, pb::ConsentPurpose::Marketing))
        .await
        .unwrap();
    let item = app
        .knowledge(&admin)
        .await
        .create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: "prefers WeChat".into(),
                body: "reply there".into(),
                nature: pb::knowledge_item::Nature::Explicit as i32,
                kind: pb::knowledge_item::Kind::Preference as i32,
                subjects: vec![duplicate.clone()],
                visibility: pb::knowledge_item::Visibility::Bank as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    customers
        .grant_consent(grant(&survivor, pb::ConsentPurpose::KnowledgeSharing))
        .await
        .unwrap();
    customers
        .withdraw_consent(withdraw(&survivor, pb::ConsentPurpose::KnowledgeSharing))
        .await
        .unwrap();

    let merged = customers
        .merge_customers(pb::MergeCustomersRequest {
            name: survivor.clone(),
            duplicate: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let granted = |purpose: pb::ConsentPurpose| {
        merged
            .consents
            .iter()
            .find(|c| c.purpose == purpose as i32)
            .map(|c| c.granted)
    };
    // Marketing: the duplicate's withdrawal came after the survivor's grant.
    assert_eq!(granted(pb::ConsentPurpose::Marketing), Some(false));
    // Sharing: the survivor's withdrawal came last, so the bank-wide item
    // about the duplicate (now about the survivor) falls back to its branch.
    assert_eq!(granted(pb::ConsentPurpose::KnowledgeSharing), Some(false));
    let item = app
        .knowledge(&admin)
        .await
        .get_knowledge_item(pb::GetKnowledgeItemRequest {
            name: item.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(item.subjects, vec![survivor.clone()]);
    assert_eq!(
        item.visibility,
        pb::knowledge_item::Visibility::Branch as i32
    );
    // Written set-based for however many items: the narrowing's outbox row
    // and the re-subjected item's SHARED change, one each.
    let item_id = item.name.rsplit('/').next().unwrap().to_string();
    let (narrowed, shared): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox
                  WHERE event_type = 'knowledge_item.narrowed' AND aggregate_id = $1),
                (SELECT count(*) FROM knowledge_events WHERE item_id = $2 AND change = 'SHARED')",
    )
    .bind(&item.name)
    .bind(&item_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((narrowed, shared), (1, 1));
    // The history of both is the survivor's: the duplicate's two decisions
    // and the survivor's three.
    let events = customers
        .list_consent_events(pb::ListConsentEventsRequest {
            parent: survivor.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.consent_events.len(), 5);
}
