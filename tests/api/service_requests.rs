//! Service requests as a life cycle: each state method, the illegal moves
//! refused naming the state, the SLA by priority and tier, the history of
//! who moved it when, replay, the list with its filters and branch scoping;
//! and GetServiceMetrics on figures worked out by hand.

use std::time::{SystemTime, UNIX_EPOCH};

use customer_knowledge::pb::v1::{
    self as pb,
    complaint::{Category, Severity},
    interaction::{Channel, Kind},
    service_request::{Priority, State},
};
use prost_types::Timestamp;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Caller, InteractionClient, TestApp, new_customer, reason, violated_fields};

const HOUR: i64 = 3600;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// A SERVICE_REQUEST (or another kind) to log under `parent`.
fn logged(
    parent: &str,
    kind: Kind,
    channel: Channel,
    occur: Option<i64>,
    intake: Option<pb::ServiceRequestIntake>,
) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: channel as i32,
            kind: kind as i32,
            occur_time: occur.map(at),
            summary: "Asked to replace a damaged debit card".into(),
            service_request: intake,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn intake(priority: Priority, assignee: &str) -> Option<pb::ServiceRequestIntake> {
    Some(pb::ServiceRequestIntake {
        priority: priority as i32,
        assignee: assignee.into(),
    })
}

/// Logs a SERVICE_REQUEST and returns its service request's name.
async fn open_request(
    client: &mut InteractionClient,
    parent: &str,
    channel: Channel,
    occur: Option<i64>,
    intake: Option<pb::ServiceRequestIntake>,
) -> String {
    client
        .log_interaction(logged(parent, Kind::ServiceRequest, channel, occur, intake))
        .await
        .unwrap()
        .into_inner()
        .name
        .replace("/interactions/", "/serviceRequests/")
}

async fn get(client: &mut InteractionClient, name: &str) -> pb::ServiceRequest {
    client
        .get_service_request(pb::GetServiceRequestRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

fn confirm(name: &str, need: &str) -> pb::ConfirmServiceRequestRequest {
    pb::ConfirmServiceRequestRequest {
        name: name.into(),
        need: need.into(),
        ..Default::default()
    }
}

fn propose(name: &str) -> pb::ProposeServiceRequestSolutionRequest {
    pb::ProposeServiceRequestSolutionRequest {
        name: name.into(),
        solution: "Issue a new card at the branch within two days".into(),
        ..Default::default()
    }
}

fn start(name: &str) -> pb::StartServiceRequestRequest {
    pb::StartServiceRequestRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn resolve(name: &str) -> pb::ResolveServiceRequestRequest {
    pb::ResolveServiceRequestRequest {
        name: name.into(),
        resolution: "New card handed over".into(),
        ..Default::default()
    }
}

fn check(name: &str, satisfaction: i32) -> pb::CheckServiceRequestSatisfactionRequest {
    pb::CheckServiceRequestSatisfactionRequest {
        name: name.into(),
        satisfaction,
        feedback: "Quick and friendly".into(),
        ..Default::default()
    }
}

fn cancel(name: &str) -> pb::CancelServiceRequestRequest {
    pb::CancelServiceRequestRequest {
        name: name.into(),
        reason: "The customer found the old card".into(),
        ..Default::default()
    }
}

/// The state a status refused a move in, as FAILED_PRECONDITION
/// SERVICE_REQUEST_STATE naming it in the message and the metadata.
fn refused_in_state(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(status), "SERVICE_REQUEST_STATE");
    let info = status.get_error_details().error_info().cloned().unwrap();
    let state = info.metadata.get("state").cloned().unwrap_or_default();
    assert!(status.message().contains(&state), "{}", status.message());
    state
}

fn secs(ts: &Option<Timestamp>) -> i64 {
    ts.as_ref().unwrap().seconds
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
async fn a_service_request_moves_through_its_states_with_who_and_when() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let vip = new_customer(&app, "欧阳锋", "B01").await;
    set_tier(&app, &vip, "VIP").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let mut teller = app.interactions(&Caller::teller("B01")).await;
    let occur = now_secs() - 60;

    // HIGH: 4 h to respond, 24 h to resolve (the documented defaults); a
    // VIP gets 50 % of both: 2 h and 12 h.
    let name = open_request(
        &mut rm,
        &zhang,
        Channel::Branch,
        Some(occur),
        intake(Priority::High, ""),
    )
    .await;
    let opened = get(&mut rm, &name).await;
    assert_eq!(opened.state, State::Received as i32);
    assert_eq!(opened.priority, Priority::High as i32);
    assert!(!opened.key_customer);
    assert_eq!(opened.channel, Channel::Branch as i32);
    assert_eq!(secs(&opened.receive_time), occur);
    assert_eq!(secs(&opened.response_due_time), occur + 4 * HOUR);
    assert_eq!(secs(&opened.resolution_due_time), occur + 24 * HOUR);
    assert_eq!(
        opened.interaction,
        name.replace("/serviceRequests/", "/interactions/")
    );
    assert_eq!(opened.history.len(), 1);
    assert_eq!(opened.history[0].from_state, State::Unspecified as i32);
    assert_eq!(opened.history[0].to_state, State::Received as i32);
    assert_eq!(opened.history[0].actor, "E-rm-B01");
    let key = open_request(
        &mut rm,
        &vip,
        Channel::Phone,
        Some(occur),
        intake(Priority::High, "E-vip-desk"),
    )
    .await;
    let key = get(&mut rm, &key).await;
    assert!(key.key_customer);
    assert_eq!(key.assignee, "E-vip-desk");
    assert_eq!(secs(&key.response_due_time), occur + 2 * HOUR);
    assert_eq!(secs(&key.resolution_due_time), occur + 12 * HOUR);
    // No intake: MEDIUM, 8 h and 72 h.
    let plain = open_request(&mut rm, &zhang, Channel::Chat, Some(occur), None).await;
    let plain = get(&mut rm, &plain).await;
    assert_eq!(plain.priority, Priority::Medium as i32);
    assert_eq!(secs(&plain.resolution_due_time), occur + 72 * HOUR);

    // Every method refuses a state it does not take, naming it.
    let refused = rm.start_service_request(start(&name)).await.unwrap_err();
    assert_eq!(refused_in_state(&refused), "RECEIVED");
    let refused = rm
        .check_service_request_satisfaction(check(&name, 4))
        .await
        .unwrap_err();
    assert_eq!(refused_in_state(&refused), "RECEIVED");

    let confirmed = teller
        .confirm_service_request(confirm(&name, "A replacement card, same number"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.state, State::Confirmed as i32);
    assert_eq!(confirmed.need, "A replacement card, same number");
    // Nobody was assigned: the confirming employee is.
    assert_eq!(confirmed.assignee, "E-teller-B01");
    assert!(confirmed.first_response_time.is_some());
    assert!(!confirmed.response_overdue);
    let refused = rm
        .resolve_service_request(resolve(&name))
        .await
        .unwrap_err();
    assert_eq!(refused_in_state(&refused), "CONFIRMED");
    let refused = rm
        .confirm_service_request(confirm(&name, "again"))
        .await
        .unwrap_err();
    assert_eq!(refused_in_state(&refused), "CONFIRMED");

    // A stale etag is ABORTED; the current one passes.
    let stale = rm
        .propose_service_request_solution(pb::ProposeServiceRequestSolutionRequest {
            etag: opened.etag.clone(),
            ..propose(&name)
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let proposed = rm
        .propose_service_request_solution(pb::ProposeServiceRequestSolutionRequest {
            etag: confirmed.etag.clone(),
            ..propose(&name)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proposed.state, State::SolutionProposed as i32);
    let started = rm
        .start_service_request(start(&name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state, State::InProgress as i32);
    let resolved = rm
        .resolve_service_request(resolve(&name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.state, State::Resolved as i32);
    assert!(resolved.resolve_time.is_some());
    let refused = rm.cancel_service_request(cancel(&name)).await.unwrap_err();
    assert_eq!(refused_in_state(&refused), "RESOLVED");
    let bad = rm
        .check_service_request_satisfaction(check(&name, 0))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["satisfaction"]);
    let checked = teller
        .check_service_request_satisfaction(check(&name, 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.state, State::SatisfactionChecked as i32);
    assert_eq!(checked.satisfaction, Some(4));
    let refused = rm.cancel_service_request(cancel(&name)).await.unwrap_err();
    assert_eq!(refused_in_state(&refused), "SATISFACTION_CHECKED");

    // The read returns every change, oldest first, with who and when.
    let read = get(&mut rm, &name).await;
    let steps: Vec<(i32, i32, &str)> = read
        .history
        .iter()
        .map(|c| (c.from_state, c.to_state, c.actor.as_str()))
        .collect();
    use State::*;
    assert_eq!(
        steps,
        [
            (Unspecified as i32, Received as i32, "E-rm-B01"),
            (Received as i32, Confirmed as i32, "E-teller-B01"),
            (Confirmed as i32, SolutionProposed as i32, "E-rm-B01"),
            (SolutionProposed as i32, InProgress as i32, "E-rm-B01"),
            (InProgress as i32, Resolved as i32, "E-rm-B01"),
            (Resolved as i32, SatisfactionChecked as i32, "E-teller-B01"),
        ]
    );
    let times: Vec<i64> = read.history.iter().map(|c| secs(&c.change_time)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(times[0], occur);

    // Cancel from an open state, replayed by request_id: the same answer,
    // not a refusal of the now CANCELLED request; one change recorded.
    let request = pb::CancelServiceRequestRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        ..cancel(&key.name)
    };
    let first = rm
        .cancel_service_request(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = rm
        .cancel_service_request(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.state, State::Cancelled as i32);
    assert_eq!(again, first);
    assert_eq!(first.history.len(), 2);
    assert_eq!(first.cancel_reason, "The customer found the old card");

    // Another branch may neither read nor move it; an unknown one is
    // NOT_FOUND; an intake on another kind is INVALID_ARGUMENT.
    let mut stranger = app.interactions(&Caller::rm("B02")).await;
    let denied = stranger
        .get_service_request(pb::GetServiceRequestRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = stranger
        .cancel_service_request(cancel(&plain.name))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let inquiry = rm
        .log_interaction(logged(&zhang, Kind::Inquiry, Channel::Branch, None, None))
        .await
        .unwrap()
        .into_inner()
        .name
        .replace("/interactions/", "/serviceRequests/");
    let missing = rm
        .get_service_request(pb::GetServiceRequestRequest { name: inquiry })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // An intake on another kind is ignored, as a complaint is: no request.
    let ignored = rm
        .log_interaction(logged(
            &zhang,
            Kind::Inquiry,
            Channel::Branch,
            None,
            intake(Priority::Low, ""),
        ))
        .await
        .unwrap()
        .into_inner()
        .name
        .replace("/interactions/", "/serviceRequests/");
    let missing = rm
        .get_service_request(pb::GetServiceRequestRequest { name: ignored })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad = rm
        .log_interaction(logged(
            &zhang,
            Kind::ServiceRequest,
            Channel::Branch,
            None,
            Some(pb::ServiceRequestIntake {
                priority: 99,
                assignee: String::new(),
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        ["interaction.service_request.priority"]
    );

    // Erasure removes the free text, keeps the codes and times.
    app.customers(&Caller::admin())
        .await
        .delete_customer(pb::DeleteCustomerRequest {
            name: vip.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (reason,): (String,) = sqlx::query_as(
        "SELECT cancel_reason FROM service_requests WHERE 'customers/' || customer_id = $1",
    )
    .bind(&vip)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(reason, "");
}

async fn list(
    client: &mut InteractionClient,
    parent: &str,
    filter: &str,
) -> Result<Vec<String>, tonic::Status> {
    Ok(client
        .list_service_requests(pb::ListServiceRequestsRequest {
            parent: parent.into(),
            filter: filter.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .service_requests
        .into_iter()
        .map(|r| r.name)
        .collect())
}

#[tokio::test]
async fn service_requests_list_by_state_assignee_branch_and_overdue_within_reach() {
    let app = TestApp::spawn().await;
    let a = new_customer(&app, "张伟", "B01").await;
    let b = new_customer(&app, "李娜", "B01").await;
    let c = new_customer(&app, "王芳", "B02").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let mut admin = app.interactions(&Caller::admin()).await;
    let now = now_secs();
    // r1: MEDIUM received 10 h ago: the response was due 2 h ago (overdue);
    // resolution due in 62 h.
    let r1 = open_request(&mut rm, &a, Channel::Branch, Some(now - 10 * HOUR), None).await;
    // r2: MEDIUM, now, for E1, confirmed: due in 72 h, not overdue.
    let r2 = open_request(
        &mut rm,
        &a,
        Channel::Phone,
        Some(now),
        intake(Priority::Medium, "E1"),
    )
    .await;
    rm.confirm_service_request(confirm(&r2, "Statement copies"))
        .await
        .unwrap();
    // r3: LOW, now: due in 240 h.
    let r3 = open_request(
        &mut rm,
        &b,
        Channel::Chat,
        Some(now),
        intake(Priority::Low, ""),
    )
    .await;
    // r4: B02, received 10 h ago: overdue, out of the B01 manager's reach.
    let r4 = open_request(&mut admin, &c, Channel::Branch, Some(now - 10 * HOUR), None).await;

    // Earliest resolution due first.
    assert_eq!(
        list(&mut rm, "customers/-", "").await.unwrap(),
        [r1.as_str(), r2.as_str(), r3.as_str()]
    );
    assert_eq!(list(&mut rm, &b, "").await.unwrap(), [r3.as_str()]);
    assert_eq!(
        list(&mut rm, "customers/-", "state = CONFIRMED")
            .await
            .unwrap(),
        [r2.as_str()]
    );
    assert_eq!(
        list(&mut rm, "customers/-", r#"assignee = "E1""#)
            .await
            .unwrap(),
        [r2.as_str()]
    );
    assert_eq!(
        list(&mut rm, "customers/-", "priority = LOW")
            .await
            .unwrap(),
        [r3.as_str()]
    );
    assert_eq!(
        list(&mut rm, "customers/-", "overdue = true")
            .await
            .unwrap(),
        [r1.as_str()]
    );
    assert_eq!(
        list(&mut rm, "customers/-", "overdue = false")
            .await
            .unwrap(),
        [r2.as_str(), r3.as_str()]
    );
    // The branch filter cannot widen a branch-bound caller's reach.
    assert!(
        list(&mut rm, "customers/-", r#"home_branch = "B02""#)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        list(&mut admin, "customers/-", r#"home_branch = "B02""#)
            .await
            .unwrap(),
        [r4.as_str()]
    );
    assert_eq!(
        list(&mut admin, "customers/-", "overdue = true")
            .await
            .unwrap(),
        [r1.as_str(), r4.as_str()]
    );
    let denied = list(&mut rm, &c, "").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = list(&mut rm, "customers/-", "severity = HIGH")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // One at a time with page tokens: the same three, once each.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = rm
            .list_service_requests(pb::ListServiceRequestsRequest {
                parent: "customers/-".into(),
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.service_requests.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, [r1.as_str(), r2.as_str(), r3.as_str()]);
}

/// Sets a service request's times to whole hours after its receipt (None:
/// unchanged), so the figures are exact.
async fn set_request_times(
    app: &TestApp,
    name: &str,
    first_response: Option<i32>,
    resolve: Option<i32>,
    check: Option<i32>,
) {
    sqlx::query(
        "UPDATE service_requests SET
            first_response_time = CASE WHEN $2::int IS NULL THEN first_response_time
                                       ELSE receive_time + make_interval(hours => $2) END,
            resolve_time = CASE WHEN $3::int IS NULL THEN resolve_time
                                ELSE receive_time + make_interval(hours => $3) END,
            satisfaction_check_time = CASE WHEN $4::int IS NULL THEN satisfaction_check_time
                                   ELSE receive_time + make_interval(hours => $4) END
         WHERE 'customers/' || customer_id || '/serviceRequests/' || interaction_id = $1",
    )
    .bind(name)
    .bind(first_response)
    .bind(resolve)
    .bind(check)
    .execute(&app.db)
    .await
    .unwrap();
}

/// Takes a service request from RECEIVED to RESOLVED (and, with a CSAT, to
/// SATISFACTION_CHECKED).
async fn carry_out(client: &mut InteractionClient, name: &str, csat: Option<i32>) {
    client
        .confirm_service_request(confirm(name, "need"))
        .await
        .unwrap();
    client
        .propose_service_request_solution(propose(name))
        .await
        .unwrap();
    client.start_service_request(start(name)).await.unwrap();
    client.resolve_service_request(resolve(name)).await.unwrap();
    if let Some(csat) = csat {
        client
            .check_service_request_satisfaction(check(name, csat))
            .await
            .unwrap();
    }
}

/// Logs a rated interaction (CSAT and/or NPS) at `occur`.
async fn rated(
    client: &mut InteractionClient,
    parent: &str,
    channel: Channel,
    occur: i64,
    csat: Option<i32>,
    nps: Option<i32>,
) {
    client
        .log_interaction(pb::LogInteractionRequest {
            parent: parent.into(),
            interaction: Some(pb::Interaction {
                channel: channel as i32,
                kind: Kind::Survey as i32,
                occur_time: Some(at(occur)),
                summary: "Survey answer".into(),
                satisfaction: csat,
                nps,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn complaint(
    client: &mut InteractionClient,
    parent: &str,
    channel: Channel,
    occur: i64,
    severity: Severity,
) -> String {
    client
        .log_interaction(pb::LogInteractionRequest {
            parent: parent.into(),
            interaction: Some(pb::Interaction {
                channel: channel as i32,
                kind: Kind::Complaint as i32,
                occur_time: Some(at(occur)),
                summary: "Fee charged twice".into(),
                complaint: Some(pb::Complaint {
                    severity: severity as i32,
                    category: Category::Fees as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

async fn resolve_complaint_after(
    app: &TestApp,
    client: &mut InteractionClient,
    name: &str,
    hours: i32,
) {
    client
        .resolve_complaint(pb::ResolveComplaintRequest {
            name: name.into(),
            resolution: "Refunded".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    sqlx::query(
        "UPDATE interactions SET complaint_resolve_time = occur_time + make_interval(hours => $2)
         WHERE 'customers/' || customer_id || '/interactions/' || id = $1",
    )
    .bind(name)
    .bind(hours)
    .execute(&app.db)
    .await
    .unwrap();
}

/// Schedules a follow-up due at `due` (set in the database: scheduling
/// takes future times only) and returns its name.
async fn follow_up(
    app: &TestApp,
    client: &mut InteractionClient,
    parent: &str,
    assignee: &str,
    channel: Option<Channel>,
    due: i64,
) -> String {
    let name = client
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: parent.into(),
            follow_up: Some(pb::FollowUp {
                assignee: assignee.into(),
                due_time: Some(at(now_secs() + 86_400)),
                purpose: "回访: how did the new card work out".into(),
                channel: channel.map(|c| c as i32).unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    sqlx::query(
        "UPDATE follow_ups SET due_time = to_timestamp($2)
         WHERE 'customers/' || customer_id || '/followUps/' || id = $1",
    )
    .bind(&name)
    .bind(due as f64)
    .execute(&app.db)
    .await
    .unwrap();
    name
}

/// Rates compared to 1e-6.
fn r(x: f64) -> i64 {
    (x * 1e6).round() as i64
}

/// (received, cancelled, resolved, rate, responded, responded within SLA,
/// its rate, median and p90 response s, resolved within SLA, its rate,
/// median and p90 resolution s, response overdue, resolution overdue).
type Resolution = (
    (i64, i64, i64, i64, i64, i64, i64),
    (
        Option<f64>,
        Option<f64>,
        i64,
        i64,
        Option<f64>,
        Option<f64>,
        i64,
        i64,
    ),
);

fn resolution(f: &Option<pb::ResolutionFigures>) -> Resolution {
    let f = f.unwrap();
    (
        (
            f.received_count,
            f.cancelled_count,
            f.resolved_count,
            r(f.resolution_rate),
            f.responded_count,
            f.responded_within_sla_count,
            r(f.response_within_sla_rate),
        ),
        (
            f.median_response_seconds,
            f.p90_response_seconds,
            f.resolved_within_sla_count,
            r(f.resolution_within_sla_rate),
            f.median_resolution_seconds,
            f.p90_resolution_seconds,
            f.response_overdue_count,
            f.resolution_overdue_count,
        ),
    )
}

/// (csat answers, sum, average, nps answers, promoters, passives,
/// detractors, nps).
fn satisfaction(
    f: &Option<pb::SatisfactionFigures>,
) -> (i64, i64, Option<i64>, i64, i64, i64, i64, Option<i64>) {
    let f = f.unwrap();
    (
        f.csat_count,
        f.csat_sum,
        f.csat_average.map(r),
        f.nps_count,
        f.promoter_count,
        f.passive_count,
        f.detractor_count,
        f.nps.map(r),
    )
}

/// (due, completed, cancelled, overdue, completion rate).
fn follow_ups(f: &Option<pb::FollowUpFigures>) -> (i64, i64, i64, i64, i64) {
    let f = f.unwrap();
    (
        f.due_count,
        f.completed_count,
        f.cancelled_count,
        f.overdue_count,
        r(f.completion_rate),
    )
}

fn channel(report: &pb::ServiceMetrics, channel: Channel) -> pb::ServiceFigures {
    report
        .channels
        .iter()
        .find(|c| c.channel == channel as i32)
        .and_then(|c| c.figures)
        .unwrap_or_else(|| panic!("no {channel:?} row in {:?}", report.channels))
}

#[tokio::test]
async fn service_metrics_match_figures_worked_out_by_hand() {
    let app = TestApp::spawn().await;
    let z = new_customer(&app, "张伟", "B01").await;
    let l = new_customer(&app, "李娜", "B01").await;
    let w = new_customer(&app, "王芳", "B02").await;
    // Everything of B01 is recorded by team T-A.
    let mut rm = app
        .interactions(&Caller {
            team: Some("T-A".into()),
            ..Caller::rm("B01")
        })
        .await;
    let mut admin = app.interactions(&Caller::admin()).await;
    let t0 = now_secs() - 5 * 86_400;
    let start = t0 - 86_400;
    let h = |hours: f64| hours * 3600.0;

    // Service requests of B01, all MEDIUM (respond in 8 h, resolve in 72 h),
    // received at t0:
    // s1 BRANCH, E1: responded 1 h, resolved 10 h, CSAT 5 checked at 11 h.
    let s1 = open_request(
        &mut rm,
        &z,
        Channel::Branch,
        Some(t0),
        intake(Priority::Medium, "E1"),
    )
    .await;
    carry_out(&mut rm, &s1, Some(5)).await;
    set_request_times(&app, &s1, Some(1), Some(10), Some(11)).await;
    // s2 PHONE: responded 3 h, resolved 80 h (late), CSAT 3 checked at 81 h.
    let s2 = open_request(&mut rm, &z, Channel::Phone, Some(t0), None).await;
    carry_out(&mut rm, &s2, Some(3)).await;
    set_request_times(&app, &s2, Some(3), Some(80), Some(81)).await;
    // s3 PHONE: responded 9 h (late), still CONFIRMED: resolution overdue
    // (due at t0 + 72 h, two days ago).
    let s3 = open_request(&mut rm, &l, Channel::Phone, Some(t0), None).await;
    rm.confirm_service_request(confirm(&s3, "need"))
        .await
        .unwrap();
    set_request_times(&app, &s3, Some(9), None, None).await;
    // s4 BRANCH: never answered: response and resolution overdue.
    let _s4 = open_request(&mut rm, &l, Channel::Branch, Some(t0), None).await;
    // s5 BRANCH: cancelled while RECEIVED.
    let s5 = open_request(&mut rm, &z, Channel::Branch, Some(t0), None).await;
    rm.cancel_service_request(cancel(&s5)).await.unwrap();
    // s6 B02: resolved; outside B01.
    let s6 = open_request(&mut admin, &w, Channel::Branch, Some(t0), None).await;
    carry_out(&mut admin, &s6, None).await;
    // Received before the period: not counted.
    let _early = open_request(&mut rm, &z, Channel::Branch, Some(start - HOUR), None).await;

    // Ratings of B01 in the period.
    rated(&mut rm, &z, Channel::Branch, t0 + 86_400, Some(4), Some(9)).await;
    rated(&mut rm, &l, Channel::Phone, t0 + 86_400, Some(2), Some(3)).await;
    rated(&mut rm, &z, Channel::Phone, t0 + 86_400, None, Some(7)).await;
    rated(&mut rm, &l, Channel::Branch, t0 + 86_400, Some(5), Some(10)).await;
    rated(&mut rm, &z, Channel::Branch, start - HOUR, Some(1), Some(0)).await;
    rated(&mut admin, &w, Channel::Branch, t0, Some(1), Some(0)).await;

    // Complaints of B01 received at t0: k1 PHONE MEDIUM (due 72 h) resolved
    // after 2 h; k2 BRANCH CRITICAL (due 4 h) open: overdue; k3 PHONE LOW
    // (due 120 h) resolved after 100 h. Resolving schedules 回访 follow-ups
    // due in 3 days: after the period.
    let k1 = complaint(&mut rm, &z, Channel::Phone, t0, Severity::Medium).await;
    resolve_complaint_after(&app, &mut rm, &k1, 2).await;
    let _k2 = complaint(&mut rm, &l, Channel::Branch, t0, Severity::Critical).await;
    let k3 = complaint(&mut rm, &z, Channel::Phone, t0, Severity::Low).await;
    resolve_complaint_after(&app, &mut rm, &k3, 100).await;

    // Follow-ups of B01 due in the period: f1 PHONE E1 completed; f2 PHONE
    // E1 still scheduled: overdue; f3 no channel E2 cancelled; f4 BRANCH E2
    // completed.
    let f1 = follow_up(&app, &mut rm, &z, "E1", Some(Channel::Phone), t0 + 86_400).await;
    let _f2 = follow_up(&app, &mut rm, &l, "E1", Some(Channel::Phone), t0 + 86_400).await;
    let f3 = follow_up(&app, &mut rm, &z, "E2", None, t0 + 2 * 86_400).await;
    let f4 = follow_up(
        &app,
        &mut rm,
        &l,
        "E2",
        Some(Channel::Branch),
        t0 + 2 * 86_400,
    )
    .await;
    for done in [&f1, &f4] {
        rm.complete_follow_up(pb::CompleteFollowUpRequest {
            name: done.clone(),
            interaction: Some(pb::Interaction {
                channel: Channel::Phone as i32,
                summary: "Called back".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    rm.cancel_follow_up(pb::CancelFollowUpRequest {
        name: f3.clone(),
        reason: "Customer moved abroad".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let metrics = |caller: Caller, request: pb::GetServiceMetricsRequest| {
        let app = &app;
        async move {
            app.interactions(&caller)
                .await
                .get_service_metrics(pb::GetServiceMetricsRequest {
                    start_time: Some(at(start)),
                    ..request
                })
                .await
        }
    };
    let branch = |b: &str| pb::GetServiceMetricsRequest {
        branch: b.into(),
        ..Default::default()
    };
    let b01 = metrics(Caller::rm("B01"), branch("B01"))
        .await
        .unwrap()
        .into_inner();
    let total = b01.total.unwrap();

    // CSAT: 4, 2, 5 (interactions) + 5, 3 (s1, s2 checks) = 19 / 5 = 3.8.
    // NPS: 9, 3, 7, 10: promoters 2, passive 1, detractor 1;
    // 100 × (2 − 1) / 4 = 25.
    assert_eq!(
        satisfaction(&total.satisfaction),
        (5, 19, Some(r(3.8)), 4, 2, 1, 1, Some(r(25.0)))
    );
    // Requests: s1..s5 received, s5 cancelled, s1 and s2 resolved:
    // 2 / (5 − 1) = 0.5. Responded s1 1 h, s2 3 h, s3 9 h: 2 of 3 by 8 h;
    // median 3 h; p90 at rank 0.9 × (3 − 1) = 1.8: 3 h + 0.8 × (9 − 3) h
    // = 7.8 h. Resolved 10 h (in SLA) and 80 h (not): 1 of 2; median
    // (10 + 80) / 2 = 45 h; p90 at rank 0.9: 10 h + 0.9 × 70 h = 73 h.
    // Overdue: s4 unanswered; s3 and s4 unresolved past 72 h.
    assert_eq!(
        resolution(&total.service_requests),
        (
            (5, 1, 2, r(0.5), 3, 2, r(2.0 / 3.0)),
            (
                Some(h(3.0)),
                Some(h(7.8)),
                1,
                r(0.5),
                Some(h(45.0)),
                Some(h(73.0)),
                1,
                2
            ),
        )
    );
    // Complaints: k1, k3 of 3 resolved (2/3), both within SLA; median
    // (2 + 100) / 2 = 51 h; p90: 2 h + 0.9 × 98 h = 90.2 h; k2 overdue.
    assert_eq!(
        resolution(&total.complaints),
        (
            (3, 0, 2, r(2.0 / 3.0), 0, 0, 0),
            (None, None, 2, r(1.0), Some(h(51.0)), Some(h(90.2)), 0, 1),
        )
    );
    // Follow-ups: 4 due, 2 completed, 1 cancelled: 2 / (4 − 1); f2 overdue.
    assert_eq!(follow_ups(&total.follow_ups), (4, 2, 1, 1, r(2.0 / 3.0)));

    // BRANCH: CSAT 4, 5, 5 (s1) = 14 / 3; NPS 9, 10: 100. Requests s1, s4,
    // s5: s5 cancelled, s1 resolved: 1 / 2; s1 responded in 1 h (in SLA)
    // and resolved in 10 h (in SLA); s4 overdue both ways. Complaint k2
    // open, overdue. Follow-up f4 completed.
    let by_branch = channel(&b01, Channel::Branch);
    assert_eq!(
        satisfaction(&by_branch.satisfaction),
        (3, 14, Some(r(14.0 / 3.0)), 2, 2, 0, 0, Some(r(100.0)))
    );
    assert_eq!(
        resolution(&by_branch.service_requests),
        (
            (3, 1, 1, r(0.5), 1, 1, r(1.0)),
            (
                Some(h(1.0)),
                Some(h(1.0)),
                1,
                r(1.0),
                Some(h(10.0)),
                Some(h(10.0)),
                1,
                1
            ),
        )
    );
    assert_eq!(resolution(&by_branch.complaints).0.0, 1);
    assert_eq!(resolution(&by_branch.complaints).1.7, 1);
    assert_eq!(follow_ups(&by_branch.follow_ups), (1, 1, 0, 0, r(1.0)));
    // PHONE: CSAT 2, 3 (s2) = 5 / 2; NPS 3, 7: 100 × (0 − 1) / 2 = −50.
    // Requests s2, s3: responded 3 h and 9 h (1 in SLA), median 6 h;
    // s2 resolved (1/2) late. Complaints k1, k3 both resolved.
    // Follow-ups f1 completed, f2 overdue: 1/2.
    let by_phone = channel(&b01, Channel::Phone);
    assert_eq!(
        satisfaction(&by_phone.satisfaction),
        (2, 5, Some(r(2.5)), 2, 0, 1, 1, Some(r(-50.0)))
    );
    let phone_requests = resolution(&by_phone.service_requests);
    assert_eq!(
        (
            phone_requests.0.0,
            phone_requests.0.2,
            phone_requests.0.3,
            phone_requests.0.4
        ),
        (2, 1, r(0.5), 2)
    );
    assert_eq!((phone_requests.0.5, phone_requests.1.0), (1, Some(h(6.0))));
    assert_eq!(phone_requests.1.2, 0);
    assert_eq!(resolution(&by_phone.complaints).0.2, 2);
    assert_eq!(follow_ups(&by_phone.follow_ups), (2, 1, 0, 1, r(0.5)));
    // f3 has no channel: CHANNEL_UNSPECIFIED, 1 due, cancelled: rate 0.
    let unspecified = channel(&b01, Channel::Unspecified);
    assert_eq!(follow_ups(&unspecified.follow_ups), (1, 0, 1, 0, 0));

    // An employee: E1 is assigned s1 (its CSAT 5 counts, recorded by
    // nobody else) and f1, f2.
    let e1 = metrics(
        Caller::rm("B01"),
        pb::GetServiceMetricsRequest {
            employee: "E1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner()
    .total
    .unwrap();
    assert_eq!(satisfaction(&e1.satisfaction).0, 1);
    assert_eq!(satisfaction(&e1.satisfaction).2, Some(r(5.0)));
    assert_eq!(resolution(&e1.service_requests).0.0, 1);
    assert_eq!(follow_ups(&e1.follow_ups), (2, 1, 0, 1, r(0.5)));
    // A team: T-A recorded every B01 request, rating and complaint; the
    // follow-ups were scheduled without a prompting interaction, so none
    // is the team's.
    let team = metrics(
        Caller::rm("B01"),
        pb::GetServiceMetricsRequest {
            team: "T-A".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner()
    .total
    .unwrap();
    assert_eq!(resolution(&team.service_requests).0.0, 5);
    assert_eq!(resolution(&team.complaints).0.0, 3);
    assert_eq!(satisfaction(&team.satisfaction).3, 4);
    assert_eq!(follow_ups(&team.follow_ups).0, 0);

    // Scoping: B02's manager sees only B02 and may not ask for B01; the
    // admin sees both.
    let denied = metrics(Caller::rm("B02"), branch("B01")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let b02 = metrics(Caller::rm("B02"), branch(""))
        .await
        .unwrap()
        .into_inner();
    let b02 = b02.total.unwrap();
    assert_eq!(resolution(&b02.service_requests).0.0, 1);
    assert_eq!(resolution(&b02.service_requests).0.2, 1);
    assert_eq!(satisfaction(&b02.satisfaction).0, 1);
    let all = metrics(Caller::admin(), branch(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolution(&all.total.unwrap().service_requests).0.0, 6);
    // Branch and team narrow together: T-A within B01 is all of B01's
    // requests; T-A within B02 is none.
    let together = |b: &str| pb::GetServiceMetricsRequest {
        branch: b.into(),
        team: "T-A".into(),
        ..Default::default()
    };
    let both = metrics(Caller::admin(), together("B01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolution(&both.total.unwrap().service_requests).0.0, 5);
    let neither = metrics(Caller::admin(), together("B02"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolution(&neither.total.unwrap().service_requests).0.0, 0);
    // The same report by its name (AIP-156), the period a parameter: the
    // same figures, and the answer carries the name.
    assert_eq!(both.name, "branches/B01/teams/T-A/serviceMetrics");
    for request in [
        pb::GetServiceMetricsRequest {
            name: both.name.clone(),
            end_time: both.end_time,
            ..Default::default()
        },
        pb::GetServiceMetricsRequest {
            name: both.name.clone(),
            end_time: both.end_time,
            ..together("B01")
        },
    ] {
        let named = metrics(Caller::admin(), request)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(named, both);
    }
    assert_eq!(b01.name, "branches/B01/serviceMetrics");
    // A name and fields that disagree are refused, naming both; so is a
    // malformed name; another branch by name is denied as by the field.
    for (request, field) in [
        (
            pb::GetServiceMetricsRequest {
                name: "branches/B01/teams/T-A/serviceMetrics".into(),
                team: "T-B".into(),
                ..Default::default()
            },
            "team",
        ),
        (
            pb::GetServiceMetricsRequest {
                name: "employees/E1/serviceMetrics".into(),
                branch: "B01".into(),
                ..Default::default()
            },
            "branch",
        ),
    ] {
        let status = metrics(Caller::admin(), request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["name", field]);
    }
    for malformed in [
        "serviceMetrics/branches/B01",
        "teams/T-A/branches/B01/serviceMetrics",
        "employees/E1/employees/E2/serviceMetrics",
        "branches/B01/complaintSummary",
    ] {
        let status = metrics(
            Caller::admin(),
            pb::GetServiceMetricsRequest {
                name: malformed.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(violated_fields(&status), ["name"], "{malformed}");
    }
    let status = metrics(
        Caller::rm("B01"),
        pb::GetServiceMetricsRequest {
            name: "branches/B02/serviceMetrics".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A period longer than a year is refused, as is one that ends first.
    let long = app
        .interactions(&Caller::admin())
        .await
        .get_service_metrics(pb::GetServiceMetricsRequest {
            start_time: Some(at(now_secs() - 367 * 86_400)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&long), ["start_time"]);
    let backwards = app
        .interactions(&Caller::admin())
        .await
        .get_service_metrics(pb::GetServiceMetricsRequest {
            start_time: Some(at(now_secs())),
            end_time: Some(at(now_secs() - 86_400)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_merged_duplicates_service_requests_move_to_the_survivor() {
    let app = TestApp::spawn().await;
    let survivor = new_customer(&app, "王芳", "B01").await;
    let duplicate = new_customer(&app, "王芳 (dup)", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let name = open_request(
        &mut rm,
        &duplicate,
        Channel::Branch,
        None,
        intake(Priority::High, "E7"),
    )
    .await;
    let before = get(&mut rm, &name).await;

    app.customers(&Caller::admin())
        .await
        .merge_customers(pb::MergeCustomersRequest {
            name: survivor.clone(),
            duplicate: duplicate.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The request, with its history, is the survivor's now, and a cache
    // following update_time sees that it changed.
    let moved = name.replace(&duplicate, &survivor);
    let after = get(&mut rm, &moved).await;
    assert_eq!(after.name, moved);
    assert_eq!(after.priority, before.priority);
    assert_eq!(after.history.len(), before.history.len());
    let time = |r: &pb::ServiceRequest| r.update_time.map(|t| (t.seconds, t.nanos));
    assert!(time(&after) > time(&before), "{after:?}");
    assert_eq!(list(&mut rm, &survivor, "").await.unwrap(), [moved]);
    // The duplicate's own list points at the survivor.
    let status = list(&mut rm, &duplicate, "").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains(&survivor), "{status:?}");
}

#[tokio::test]
async fn a_service_request_change_is_stamped_by_the_databases_clock() {
    // The update_time a cache pages by comes from the database, as for every
    // other list, not from whichever replica's clock served the call: the
    // request and its interaction, changed in one transaction, agree.
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let name = open_request(
        &mut rm,
        &customer,
        Channel::Branch,
        None,
        intake(Priority::Medium, "E7"),
    )
    .await;
    let confirmed = rm
        .confirm_service_request(confirm(&name, "a new debit card"))
        .await
        .unwrap()
        .into_inner();
    let interaction = rm
        .get_interaction(pb::GetInteractionRequest {
            name: name.replace("/serviceRequests/", "/interactions/"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.update_time, interaction.update_time);
}
