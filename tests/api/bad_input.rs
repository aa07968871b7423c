//! The caller's mistakes answer INVALID_ARGUMENT, never INTERNAL or a
//! handler panic (which a client sees as CANCELLED): NUL characters,
//! timestamps outside the protobuf range, durations no clock can hold.

use customer_knowledge::pb::v1::{
    self as pb,
    knowledge_item::{Kind, Nature, Visibility},
};
use tonic::Code;

use crate::helpers::{Caller, TestApp, new_customer};

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

#[tokio::test]
async fn a_nul_byte_in_a_filter_value_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let status = app
        .customers(&Caller::admin())
        .await
        .list_customers(pb::ListCustomersRequest {
            filter: "home_branch = \"B\u{0}\"".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn timestamps_outside_the_protobuf_range_are_invalid_argument() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Out Of Range", "B01").await;
    let mut interactions = app.interactions(&Caller::rm("B01")).await;
    let now = chrono::Utc::now().timestamp();
    for due_time in [
        ts(now + 86_400, 1_000_000_000),
        ts(now + 86_400, -1),
        ts(253_402_300_800, 0),
        ts(i64::MAX, 0),
    ] {
        let status = interactions
            .schedule_follow_up(pb::ScheduleFollowUpRequest {
                parent: customer.clone(),
                follow_up: Some(pb::FollowUp {
                    assignee: "E-rm-B01".into(),
                    due_time,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{due_time:?}: {status:?}"
        );
    }
    let mut knowledge = app.knowledge(&Caller::compliance()).await;
    for end_time in [ts(-62_135_596_800, 0), ts(i64::MIN, 0)] {
        let status = knowledge
            .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
                end_time,
                ..Default::default()
            })
            .await;
        if let Err(status) = status {
            assert!(
                !matches!(
                    status.code(),
                    Code::Internal | Code::Cancelled | Code::Unknown
                ),
                "{end_time:?}: {status:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_review_interval_no_clock_can_hold_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let author = Caller {
        team: Some("T1".into()),
        ..Caller::rm("B01")
    };
    let item = app
        .knowledge(&author)
        .await
        .create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: "to verify".into(),
                nature: Nature::Explicit as i32,
                kind: Kind::Playbook as i32,
                visibility: Visibility::Branch as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut verifier = app
        .knowledge(&Caller::new(
            "E-verifier",
            Some("B01"),
            &["relationship_manager"],
        ))
        .await;
    for seconds in [i64::MAX, i64::MIN] {
        let status = verifier
            .verify_knowledge_item(pb::VerifyKnowledgeItemRequest {
                name: item.name.clone(),
                review_interval: Some(prost_types::Duration { seconds, nanos: 0 }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{seconds}: {status:?}"
        );
    }
}
