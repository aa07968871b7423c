//! Life cycles beyond create: a follow-up is read, handed to someone else
//! and cancelled (kept for the record), and a cancelled one cannot be
//! completed.

use customer_knowledge::pb::v1::{self as pb, follow_up::State};
use tonic::Code;

use crate::helpers::{Caller, TestApp, new_customer, reason, violated_fields};

fn tomorrow() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 86_400,
        nanos: 0,
    })
}

#[tokio::test]
async fn a_follow_up_is_read_reassigned_and_cancelled_for_the_record() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Lifecycle", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let task = rm
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: customer.clone(),
            follow_up: Some(pb::FollowUp {
                assignee: "E-rm-B01".into(),
                due_time: tomorrow(),
                purpose: "check the new card arrived".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let read = rm
        .get_follow_up(pb::GetFollowUpRequest {
            name: task.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, task);
    let status = app
        .interactions(&Caller::rm("B02"))
        .await
        .get_follow_up(pb::GetFollowUpRequest {
            name: task.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Handed to a colleague, two days later.
    let later = prost_types::Timestamp {
        seconds: task.due_time.unwrap().seconds + 86_400,
        nanos: 0,
    };
    let reassigned = rm
        .reassign_follow_up(pb::ReassignFollowUpRequest {
            name: task.name.clone(),
            assignee: "E1002".into(),
            due_time: Some(later),
            etag: task.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reassigned.assignee, "E1002");
    assert_eq!(reassigned.branch, task.branch);
    assert_eq!(reassigned.due_time, Some(later));
    assert_ne!(reassigned.etag, task.etag);
    // The old etag is stale; another branch is out of the caller's reach.
    let stale = rm
        .reassign_follow_up(pb::ReassignFollowUpRequest {
            name: task.name.clone(),
            assignee: "E1003".into(),
            etag: task.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let elsewhere = rm
        .reassign_follow_up(pb::ReassignFollowUpRequest {
            name: task.name.clone(),
            assignee: "E1003".into(),
            branch: "B02".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::PermissionDenied);

    let no_reason = rm
        .cancel_follow_up(pb::CancelFollowUpRequest {
            name: task.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_reason), ["reason"]);
    let request_id = uuid::Uuid::now_v7().to_string();
    let cancel = pb::CancelFollowUpRequest {
        name: task.name.clone(),
        reason: "the customer moved abroad".into(),
        request_id: request_id.clone(),
        ..Default::default()
    };
    let cancelled = rm
        .cancel_follow_up(cancel.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), State::Cancelled);
    assert_eq!(cancelled.cancel_reason, "the customer moved abroad");
    assert!(cancelled.cancel_time.is_some() && !cancelled.overdue);
    // A retry with the same request_id answers the same follow-up.
    let replayed = rm.cancel_follow_up(cancel).await.unwrap().into_inner();
    assert_eq!(replayed, cancelled);

    // Cancelled is final: no completion, no reassignment, no second cancel.
    let complete = rm
        .complete_follow_up(pb::CompleteFollowUpRequest {
            name: task.name.clone(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::Phone as i32,
                summary: "called anyway".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(complete.code(), Code::FailedPrecondition);
    assert_eq!(reason(&complete), "FOLLOW_UP_NOT_SCHEDULED");
    let again = rm
        .reassign_follow_up(pb::ReassignFollowUpRequest {
            name: task.name.clone(),
            assignee: "E1003".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "FOLLOW_UP_NOT_SCHEDULED");

    let listed = rm
        .list_follow_ups(pb::ListFollowUpsRequest {
            parent: customer.clone(),
            filter: "state = CANCELLED".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    assert_eq!(listed.len(), 1);

    // Erasure takes the reason (free text) with the rest.
    app.customers(&Caller::admin())
        .await
        .delete_customer(pb::DeleteCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let left: String =
        sqlx::query_scalar("SELECT cancel_reason FROM follow_ups WHERE customer_id = $1")
            .bind(customer.trim_start_matches("customers/"))
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(left, "");
}

mod knowledge_ends {
    //! A knowledge item is retracted (kept for lineage, gone from every
    //! read, dropped by watchers), and a grant ends before it lapses.

    use customer_knowledge::pb::v1::{
        self as pb, carrier::Type as CarrierType, knowledge_item::Nature,
        knowledge_item::Visibility, watch_knowledge_response::Change,
    };
    use tonic::Code;

    use crate::helpers::{Caller, TestApp, new_customer, reason, violated_fields};
    use crate::knowledge::{create, employee, item, next, watch};

    fn in_a_week() -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 7 * 86_400,
            nanos: 0,
        })
    }

    #[tokio::test]
    async fn a_retracted_item_leaves_every_read_but_its_lineage_and_watchers_drop_it() {
        let app = TestApp::spawn().await;
        let customer = new_customer(&app, "张伟", "B01").await;
        let author = employee("E1", "B01", "T1");
        let colleague = employee("E3", "B01", "T2");
        let mut k = app.knowledge(&author).await;
        let tacit = create(
            &mut k,
            item(
                "feel for him",
                Nature::Tacit,
                Visibility::Branch,
                &[&customer],
            ),
        )
        .await;
        let written = k
            .externalize_knowledge(pb::ExternalizeKnowledgeRequest {
                source_items: vec![tacit.name.clone()],
                knowledge_item: Some(item(
                    "wrongly written down",
                    Nature::Explicit,
                    Visibility::Branch,
                    &[&customer],
                )),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut stream = watch(&app, &colleague, std::slice::from_ref(&customer)).await;

        // Only the author, the carrier or an admin; a reason is required; a
        // stale etag is ABORTED.
        let retract = |etag: &str, reason: &str| pb::RetractKnowledgeItemRequest {
            name: written.name.clone(),
            reason: reason.into(),
            etag: etag.into(),
            request_id: String::new(),
        };
        let status = app
            .knowledge(&colleague)
            .await
            .retract_knowledge_item(retract("", "not mine to retract"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = k
            .retract_knowledge_item(retract("", " "))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["reason"]);
        let status = k
            .retract_knowledge_item(retract("\"v0\"", "the customer corrected us"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "{status:?}");

        let request_id = uuid::Uuid::now_v7().to_string();
        let request = pb::RetractKnowledgeItemRequest {
            request_id: request_id.clone(),
            ..retract(&written.etag, "the customer corrected us")
        };
        let retracted = k
            .retract_knowledge_item(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(retracted.retract_time.is_some());
        assert_eq!(retracted.retract_reason, "the customer corrected us");
        // A retry answers the same; a second retraction finds nothing.
        let again = k
            .retract_knowledge_item(request)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, retracted);
        let status = k
            .retract_knowledge_item(retract("", "twice"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

        // Watchers who could see it are told to drop it, without its text.
        // (Under load the stream may first replay the creations committed
        // just before it started: delivery is at least once.)
        let mut event = next(&mut stream).await;
        while event.change == Change::Created as i32 {
            event = next(&mut stream).await;
        }
        assert_eq!(event.change, Change::Retracted as i32);
        let dropped = event.knowledge_item.unwrap();
        assert_eq!(dropped.name, written.name);
        assert!(dropped.title.is_empty() && dropped.body.is_empty());
        assert!(dropped.retract_time.is_some());

        // Gone from every read: AIP-211 for callers who see everything too.
        for caller in [&author, &colleague] {
            let status = app
                .knowledge(caller)
                .await
                .get_knowledge_item(pb::GetKnowledgeItemRequest {
                    name: written.name.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        }
        let mut admin = app.knowledge(&Caller::admin()).await;
        let status = admin
            .get_knowledge_item(pb::GetKnowledgeItemRequest {
                name: written.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let listed = admin
            .list_knowledge_items(pb::ListKnowledgeItemsRequest {
                filter: format!("subjects:\"{customer}\""),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let names: Vec<_> = listed.knowledge_items.iter().map(|i| &i.name).collect();
        assert_eq!(names, [&tacit.name]);
        let found = admin
            .search_knowledge_items(pb::SearchKnowledgeItemsRequest {
                query: "wrongly".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(found.knowledge_items.is_empty(), "{found:?}");
        let view = crate::insights::insights(&app, &Caller::admin())
            .await
            .get_customer360(pb::GetCustomer360Request {
                name: customer.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{view:?}").contains("wrongly written down"));

        // The lineage keeps it, marked retracted, from either end.
        for root in [&tacit.name, &written.name] {
            let lineage = k
                .get_knowledge_lineage(pb::GetKnowledgeLineageRequest {
                    name: root.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let node = lineage
                .nodes
                .iter()
                .find(|n| n.name == written.name)
                .expect("the retracted item stays in the lineage");
            assert!(node.retracted && !node.redacted);
            assert!(node.item.as_ref().unwrap().retract_time.is_some());
            assert_eq!(lineage.edges.len(), 1);
        }
    }

    #[tokio::test]
    async fn a_revoked_grant_ends_at_once_and_stays_on_record() {
        let app = TestApp::spawn().await;
        let customer = new_customer(&app, "张伟", "B01").await;
        let author = employee("E1", "B01", "T1");
        let grantee = employee("E5", "B01", "T-RISK");
        let mut k = app.knowledge(&author).await;
        let about = create(
            &mut k,
            item(
                "for the risk team",
                Nature::Explicit,
                Visibility::Private,
                &[&customer],
            ),
        )
        .await;
        let team = || {
            Some(pb::Carrier {
                r#type: CarrierType::Team as i32,
                id: "T-RISK".into(),
            })
        };
        k.share_knowledge_item(pb::ShareKnowledgeItemRequest {
            name: about.name.clone(),
            grantee: team(),
            purpose: "joint review".into(),
            expire_time: in_a_week(),
            ..Default::default()
        })
        .await
        .unwrap();
        let get = pb::GetKnowledgeItemRequest {
            name: about.name.clone(),
            ..Default::default()
        };
        let mut g = app.knowledge(&grantee).await;
        g.get_knowledge_item(get.clone()).await.unwrap();
        // The grantee watches the customer: the revocation is news to it.
        let mut stream = watch(&app, &grantee, std::slice::from_ref(&customer)).await;

        let revoke = |grantee| pb::RevokeKnowledgeGrantRequest {
            name: about.name.clone(),
            grantee,
            ..Default::default()
        };
        let status = k.revoke_knowledge_grant(revoke(None)).await.unwrap_err();
        assert_eq!(violated_fields(&status), ["grantee"]);
        let status = g.revoke_knowledge_grant(revoke(team())).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "only the author");

        let request = pb::RevokeKnowledgeGrantRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..revoke(team())
        };
        let after = k
            .revoke_knowledge_grant(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(after.grants.is_empty(), "{:?}", after.grants);
        assert_ne!(after.etag, about.etag);
        assert_eq!(
            k.revoke_knowledge_grant(request)
                .await
                .unwrap()
                .into_inner(),
            after,
            "a retry answers the same"
        );
        let status = g.get_knowledge_item(get.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        // Its watch says to drop the item, and nothing of what it says.
        // (Under load the stream may first replay what was committed just
        // before it started: delivery is at least once.)
        let mut event = next(&mut stream).await;
        while event.change != Change::Updated as i32 {
            event = next(&mut stream).await;
        }
        assert_eq!(
            event.knowledge_item,
            Some(pb::KnowledgeItem {
                name: about.name.clone(),
                ..Default::default()
            })
        );
        let listed = g
            .list_knowledge_items(pb::ListKnowledgeItemsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.knowledge_items.is_empty());
        let status = k.revoke_knowledge_grant(revoke(team())).await.unwrap_err();
        assert_eq!(reason(&status), "NO_LIVE_GRANT");

        // The share stays on record, with its revocation.
        let revoked_at: Option<(chrono::DateTime<chrono::Utc>, String)> = sqlx::query_as(
            "SELECT revoke_time, revoked_by FROM knowledge_shares
             WHERE item_id = $1 AND is_grant",
        )
        .bind(about.name.trim_start_matches("knowledgeItems/"))
        .fetch_optional(&app.db)
        .await
        .unwrap();
        assert_eq!(revoked_at.map(|(_, by)| by).as_deref(), Some("E1"));
    }
}

mod customer_links {
    //! A link made by LinkCustomers is removed from both customers by a
    //! caller who may write both.

    use customer_knowledge::pb::v1::{self as pb, customer_link::Relationship};
    use tonic::Code;

    use crate::helpers::{Caller, TestApp, new_customer, reason, violated_fields};

    #[tokio::test]
    async fn a_link_is_removed_from_both_customers_by_who_may_write_both() {
        let app = TestApp::spawn().await;
        let husband = new_customer(&app, "郭靖", "B01").await;
        let wife = new_customer(&app, "黄蓉", "B01").await;
        let far = new_customer(&app, "洪七公", "B02").await;
        let mut rm = app.customers(&Caller::rm("B01")).await;
        let linked = rm
            .link_customers(pb::LinkCustomersRequest {
                name: husband.clone(),
                linked_customer: wife.clone(),
                relationship: Relationship::Spouse as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(linked.links.len(), 1);
        let mut admin = app.customers(&Caller::admin()).await;
        admin
            .link_customers(pb::LinkCustomersRequest {
                name: husband.clone(),
                linked_customer: far.clone(),
                relationship: Relationship::Guarantor as i32,
                ..Default::default()
            })
            .await
            .unwrap();

        let unlink =
            |linked: &str, relationship: Relationship, etag: &str| pb::UnlinkCustomersRequest {
                name: husband.clone(),
                linked_customer: linked.into(),
                relationship: relationship as i32,
                etag: etag.into(),
                request_id: String::new(),
            };
        let status = rm
            .unlink_customers(pb::UnlinkCustomersRequest {
                relationship: 0,
                ..unlink(&husband, Relationship::Spouse, "")
            })
            .await
            .unwrap_err();
        assert_eq!(
            violated_fields(&status),
            ["linked_customer", "relationship"]
        );
        // The other customer is out of reach: denied, the link stays.
        let status = rm
            .unlink_customers(unlink(&far, Relationship::Guarantor, ""))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = rm
            .unlink_customers(unlink(&wife, Relationship::Household, ""))
            .await
            .unwrap_err();
        assert_eq!(reason(&status), "NOT_LINKED");
        let status = rm
            .unlink_customers(unlink(&wife, Relationship::Spouse, "\"v0\""))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "{status:?}");

        let current = rm
            .get_customer(pb::GetCustomerRequest {
                name: husband.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Symmetric: named from either side.
        let request = pb::UnlinkCustomersRequest {
            name: wife.clone(),
            linked_customer: husband.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            ..unlink(&husband, Relationship::Spouse, "")
        };
        let after = rm
            .unlink_customers(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(after.links.is_empty(), "{:?}", after.links);
        assert_eq!(
            rm.unlink_customers(request).await.unwrap().into_inner(),
            after,
            "a retry answers the same"
        );
        let husband_now = admin
            .get_customer(pb::GetCustomerRequest {
                name: husband.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(husband_now.etag, current.etag);
        let kept: Vec<_> = husband_now.links.iter().map(|l| &l.customer).collect();
        assert_eq!(kept, [&far], "only the spouse link went");
        let outbox: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE event_type = 'customer.unlinked'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(outbox, 1);
    }
}
