//! Recurring follow-ups (回访): every N days or months, the cadence a
//! customer's tier gives one scheduled without a recurrence, the next
//! occurrence scheduled by the completion, and cancellation ending a series.

use customer_knowledge::pb::v1::{self as pb, interaction::Channel};
use prost_types::Timestamp;
use tonic::Code;

use crate::helpers::{Caller, InteractionClient, TestApp, new_customer, violated_fields};

fn rfc3339(text: &str) -> Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn every(days: i32, months: i32) -> Option<pb::FollowUpRecurrence> {
    Some(pb::FollowUpRecurrence {
        every_days: days,
        every_months: months,
    })
}

async fn schedule(
    client: &mut InteractionClient,
    parent: &str,
    due: &str,
    recurrence: Option<pb::FollowUpRecurrence>,
) -> Result<pb::FollowUp, tonic::Status> {
    Ok(client
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: parent.into(),
            follow_up: Some(pb::FollowUp {
                assignee: "E1001".into(),
                due_time: Some(rfc3339(due)),
                purpose: "回访: how is the wealth plan going".into(),
                channel: Channel::Phone as i32,
                recurrence,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner())
}

fn complete(name: &str, request_id: &str) -> pb::CompleteFollowUpRequest {
    pb::CompleteFollowUpRequest {
        name: name.into(),
        interaction: Some(pb::Interaction {
            channel: Channel::Phone as i32,
            summary: "Called, all well".into(),
            satisfaction: Some(5),
            ..Default::default()
        }),
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn set_tier(app: &TestApp, customer: &str, tier: &str) {
    sqlx::query("UPDATE customers SET tier = $2 WHERE 'customers/' || id = $1")
        .bind(customer)
        .bind(tier)
        .execute(&app.db)
        .await
        .unwrap();
}

#[tokio::test]
async fn recurring_follow_ups_schedule_their_next_occurrence_by_tier_or_as_asked() {
    let app = TestApp::spawn().await;
    let vip = new_customer(&app, "欧阳锋", "B01").await;
    let major = new_customer(&app, "黄药师", "B01").await;
    let plain = new_customer(&app, "张伟", "B01").await;
    set_tier(&app, &vip, "VIP").await;
    set_tier(&app, &major, "MAJOR").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let due = "2030-01-31T09:00:00Z";

    // Without a recurrence the tier decides (defaults: VIP monthly, MAJOR
    // quarterly, others a one-off); an explicit 0/0 is a one-off.
    let monthly = schedule(&mut rm, &vip, due, None).await.unwrap();
    assert_eq!(monthly.recurrence, every(0, 1));
    let quarterly = schedule(&mut rm, &major, due, None).await.unwrap();
    assert_eq!(quarterly.recurrence, every(0, 3));
    let once = schedule(&mut rm, &plain, due, None).await.unwrap();
    assert_eq!(once.recurrence, None);
    let asked_once = schedule(&mut rm, &vip, due, every(0, 0)).await.unwrap();
    assert_eq!(asked_once.recurrence, None);

    // Completing the monthly one schedules the next, a month on: 31
    // January + 1 month = 28 February 2030 (no 31st), same time of day.
    let request_id = uuid::Uuid::now_v7().to_string();
    let done = rm
        .complete_follow_up(complete(&monthly.name, &request_id))
        .await
        .unwrap()
        .into_inner();
    let next = done.next_follow_up.clone().unwrap();
    assert_ne!(next.name, monthly.name);
    assert_eq!(next.due_time, Some(rfc3339("2030-02-28T09:00:00Z")));
    assert_eq!(next.state, pb::follow_up::State::Scheduled as i32);
    assert_eq!(
        (next.assignee.as_str(), next.purpose.as_str(), next.channel),
        ("E1001", monthly.purpose.as_str(), Channel::Phone as i32)
    );
    assert_eq!(next.recurrence, every(0, 1));
    // A retry gets the same answer, and no third occurrence.
    let again = rm
        .complete_follow_up(complete(&monthly.name, &request_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.next_follow_up.map(|f| f.name),
        Some(next.name.clone())
    );
    let scheduled = rm
        .list_follow_ups(pb::ListFollowUpsRequest {
            parent: vip.clone(),
            filter: "state = SCHEDULED".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    let mut names: Vec<&str> = scheduled.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    let mut expected = vec![next.name.as_str(), asked_once.name.as_str()];
    expected.sort();
    assert_eq!(names, expected);

    // Every 14 days: 31 January → 14 February. A one-off completes alone.
    let fortnightly = schedule(&mut rm, &plain, due, every(14, 0)).await.unwrap();
    let done = rm
        .complete_follow_up(complete(&fortnightly.name, ""))
        .await
        .unwrap()
        .into_inner();
    let next = done.next_follow_up.unwrap();
    assert_eq!(next.due_time, Some(rfc3339("2030-02-14T09:00:00Z")));
    let done = rm
        .complete_follow_up(complete(&once.name, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.next_follow_up, None);

    // Cancelling an occurrence ends the series: nothing new is scheduled.
    rm.cancel_follow_up(pb::CancelFollowUpRequest {
        name: next.name.clone(),
        reason: "The customer asked for no more calls".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let left = rm
        .list_follow_ups(pb::ListFollowUpsRequest {
            parent: plain.clone(),
            filter: "state = SCHEDULED".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    assert!(left.is_empty(), "{left:?}");

    // Bounds: one of days or months, each in range.
    let both = schedule(&mut rm, &plain, due, every(7, 1))
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&both), ["follow_up.recurrence"]);
    let long = schedule(&mut rm, &plain, due, every(0, 13))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&long),
        ["follow_up.recurrence.every_months"]
    );
    let negative = schedule(&mut rm, &plain, due, every(-1, 0))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&negative),
        ["follow_up.recurrence.every_days"]
    );
}
