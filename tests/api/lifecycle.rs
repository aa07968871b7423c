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
