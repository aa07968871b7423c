//! Complaints as a life cycle of their own: the fields a complaint carries,
//! ResolveComplaint / CloseComplaint / ReopenComplaint with the state named
//! when a move is illegal, what a resolution sets off (the 回访 follow-up and
//! the COMPLAINT_INSIGHT item) and GetComplaintSummary on figures worked out
//! by hand.

use std::time::{SystemTime, UNIX_EPOCH};

use customer_knowledge::pb::v1::{
    self as pb, ConsentPurpose,
    complaint::{Category, Severity, State},
    interaction::{Channel, Kind},
};
use prost_types::Timestamp;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Caller, InteractionClient, TestApp, new_customer, reason, violated_fields};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// A COMPLAINT to log under `parent`.
fn complaint(
    parent: &str,
    occur: Option<i64>,
    severity: Severity,
    category: Category,
    product: &str,
    assignee: &str,
) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(pb::Interaction {
            channel: Channel::Phone as i32,
            kind: Kind::Complaint as i32,
            occur_time: occur.map(at),
            summary: "Annual card fee charged twice".into(),
            complaint: Some(pb::Complaint {
                severity: severity as i32,
                category: category as i32,
                product: product.into(),
                assignee: assignee.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resolve(name: &str, resolution: &str, root_cause: &str) -> pb::ResolveComplaintRequest {
    pb::ResolveComplaintRequest {
        name: name.into(),
        resolution: resolution.into(),
        root_cause: root_cause.into(),
        ..Default::default()
    }
}

fn close(name: &str) -> pb::CloseComplaintRequest {
    pb::CloseComplaintRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn reopen(name: &str, reason: &str) -> pb::ReopenComplaintRequest {
    pb::ReopenComplaintRequest {
        name: name.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

/// The complaint a status refused, as FAILED_PRECONDITION naming its state.
fn refused_in_state(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(status), "COMPLAINT_STATE");
    let info = status.get_error_details().error_info().cloned().unwrap();
    let state = info.metadata.get("state").cloned().unwrap_or_default();
    assert!(status.message().contains(&state), "{}", status.message());
    state
}

async fn follow_ups(rm: &mut InteractionClient, customer: &str) -> Vec<pb::FollowUp> {
    rm.list_follow_ups(pb::ListFollowUpsRequest {
        parent: customer.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .follow_ups
}

async fn grant_sharing_consent(app: &TestApp, customer: &str) {
    app.customers(&Caller::admin())
        .await
        .grant_consent(pb::GrantConsentRequest {
            name: customer.into(),
            purpose: ConsentPurpose::KnowledgeSharing as i32,
            channel: "BRANCH_FORM".into(),
            policy_version: "2026.1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// (visibility, carrier type, carrier id, nature, body, sources) of the
/// COMPLAINT_INSIGHT items about a customer.
async fn insights(
    app: &TestApp,
    customer: &str,
) -> Vec<(String, String, String, String, String, Vec<String>)> {
    let id = customer.strip_prefix("customers/").unwrap();
    sqlx::query_as(
        "SELECT visibility, carrier_type, carrier_id, nature, body, sources FROM knowledge_items
         WHERE kind = 'COMPLAINT_INSIGHT' AND $1 = ANY (subjects) ORDER BY create_time",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_complaint_is_resolved_closed_and_reopened_by_its_own_methods() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let logged = rm
        .log_interaction(complaint(
            &customer,
            None,
            Severity::High,
            Category::Fees,
            "CARD-GOLD",
            "E-handler",
        ))
        .await
        .unwrap()
        .into_inner();
    let name = logged.name.clone();
    let c = logged.complaint.clone().unwrap();
    assert_eq!(c.state, State::Open as i32);
    assert_eq!(c.category, Category::Fees as i32);
    assert_eq!(
        (c.product.as_str(), c.assignee.as_str()),
        ("CARD-GOLD", "E-handler")
    );
    assert_eq!(c.reopen_count, 0);

    // Neither closing nor reopening an OPEN complaint is a move it can make.
    let status = rm.close_complaint(close(&name)).await.unwrap_err();
    assert_eq!(refused_in_state(&status), "OPEN");
    let status = rm
        .reopen_complaint(reopen(&name, "again"))
        .await
        .unwrap_err();
    assert_eq!(refused_in_state(&status), "OPEN");

    // UpdateComplaint works as before, and changes the new fields too.
    let in_progress = rm
        .update_complaint(pb::UpdateComplaintRequest {
            name: name.clone(),
            state: State::InProgress as i32,
            product: "CARD-PLATINUM".into(),
            etag: logged.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = in_progress.complaint.clone().unwrap();
    assert_eq!(c.state, State::InProgress as i32);
    assert_eq!(c.product, "CARD-PLATINUM");
    assert_eq!(c.category, Category::Fees as i32);

    // A resolution is required; a stale etag is refused.
    let status = rm
        .resolve_complaint(resolve(&name, " ", ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["resolution"]);
    let status = rm
        .resolve_complaint(pb::ResolveComplaintRequest {
            etag: logged.etag.clone(),
            ..resolve(&name, "Fee refunded", "")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    // Resolved, idempotently: a replay answers the same and changes nothing.
    let request = pb::ResolveComplaintRequest {
        etag: in_progress.etag.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..resolve(&name, "Fee refunded", "Batch job charged renewals twice")
    };
    let resolved = rm
        .resolve_complaint(request.clone())
        .await
        .unwrap()
        .into_inner();
    let c = resolved.complaint.clone().unwrap();
    assert_eq!(c.state, State::Resolved as i32);
    assert_eq!(c.resolution, "Fee refunded");
    assert_eq!(c.root_cause, "Batch job charged renewals twice");
    assert!(c.resolve_time.is_some());
    let replayed = rm
        .resolve_complaint(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed, resolved);
    assert_eq!(follow_ups(&mut rm, &customer).await.len(), 1);
    let status = rm
        .resolve_complaint(pb::ResolveComplaintRequest {
            resolution: "Something else".into(),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "REQUEST_ID_REUSED");
    let status = rm
        .resolve_complaint(resolve(&name, "Again", ""))
        .await
        .unwrap_err();
    assert_eq!(refused_in_state(&status), "RESOLVED");

    let closed = rm.close_complaint(close(&name)).await.unwrap().into_inner();
    let c = closed.complaint.clone().unwrap();
    assert_eq!(c.state, State::Closed as i32);
    assert!(c.close_time.is_some());
    let status = rm.close_complaint(close(&name)).await.unwrap_err();
    assert_eq!(refused_in_state(&status), "CLOSED");
    let status = rm
        .resolve_complaint(resolve(&name, "Again", ""))
        .await
        .unwrap_err();
    assert_eq!(refused_in_state(&status), "CLOSED");

    // Reopened: a reason is required; OPEN again, counted, due anew by the
    // SLA (HIGH: 24 hours), the old resolution gone.
    let status = rm.reopen_complaint(reopen(&name, "")).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["reason"]);
    let before = now_secs();
    let reopened = rm
        .reopen_complaint(reopen(&name, "Charged again in the next cycle"))
        .await
        .unwrap()
        .into_inner();
    let c = reopened.complaint.clone().unwrap();
    assert_eq!(c.state, State::Open as i32);
    assert_eq!(c.reopen_count, 1);
    assert_eq!(c.reopen_reason, "Charged again in the next cycle");
    assert_eq!(c.resolution, "");
    assert!(c.resolve_time.is_none() && c.close_time.is_none());
    let due = c.due_time.unwrap().seconds;
    assert!((before + 24 * 3600 - 5..=now_secs() + 24 * 3600 + 5).contains(&due));
    assert_eq!(c.root_cause, "Batch job charged renewals twice");

    // Resolved and reopened once more: from RESOLVED too.
    rm.resolve_complaint(resolve(&name, "Refunded both", ""))
        .await
        .unwrap();
    let again = rm
        .reopen_complaint(reopen(&name, "Third charge"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.complaint.unwrap().reopen_count, 2);

    // Every change is recorded with who made it; the outbox row says when.
    let events: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT event_type, payload->>'by', payload->>'from_state' FROM outbox
         WHERE aggregate_id = $1 AND event_type LIKE 'complaint.%' ORDER BY id",
    )
    .bind(&name)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let by = "E-rm-B01".to_string();
    let event = |t: &str, from: &str| (t.to_string(), by.clone(), from.to_string());
    assert_eq!(
        events,
        [
            event("complaint.updated", "OPEN"),
            event("complaint.resolved", "IN_PROGRESS"),
            event("complaint.closed", "RESOLVED"),
            event("complaint.reopened", "CLOSED"),
            event("complaint.resolved", "OPEN"),
            event("complaint.reopened", "RESOLVED"),
        ]
    );

    // Another branch cannot move it; an inquiry is no complaint.
    let mut stranger = app.interactions(&Caller::rm("B02")).await;
    let status = stranger
        .resolve_complaint(resolve(&name, "x", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut inquiry = complaint(&customer, None, Severity::Low, Category::Other, "", "");
    if let Some(i) = inquiry.interaction.as_mut() {
        i.kind = Kind::Inquiry as i32;
        i.complaint = None;
    }
    let inquiry = rm.log_interaction(inquiry).await.unwrap().into_inner();
    let status = rm
        .resolve_complaint(resolve(&inquiry.name, "x", ""))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "NOT_A_COMPLAINT");

    // No product team is configured: no COMPLAINT_INSIGHT item.
    assert!(insights(&app, &customer).await.is_empty());
}

#[tokio::test]
async fn a_resolution_schedules_the_follow_up_for_the_assignee_or_the_resolver() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "李娜", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let assigned = rm
        .log_interaction(complaint(
            &customer,
            None,
            Severity::Medium,
            Category::ServiceQuality,
            "",
            "E-handler",
        ))
        .await
        .unwrap()
        .into_inner();
    let unassigned = rm
        .log_interaction(complaint(
            &customer,
            None,
            Severity::Low,
            Category::DigitalChannels,
            "MOBILE-APP",
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    let before = now_secs();
    rm.resolve_complaint(resolve(&assigned.name, "Apologised", ""))
        .await
        .unwrap();
    // UpdateComplaint reaching RESOLVED sets off the same.
    rm.update_complaint(pb::UpdateComplaintRequest {
        name: unassigned.name.clone(),
        state: State::InProgress as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    rm.update_complaint(pb::UpdateComplaintRequest {
        name: unassigned.name.clone(),
        state: State::Resolved as i32,
        resolution: "App updated".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let tasks = follow_ups(&mut rm, &customer).await;
    assert_eq!(tasks.len(), 2);
    let for_source = |source: &str| {
        tasks
            .iter()
            .find(|t| t.source_interaction == source)
            .cloned()
            .unwrap_or_else(|| panic!("no follow-up of {source}"))
    };
    let task = for_source(&assigned.name);
    assert_eq!(task.assignee, "E-handler");
    assert_eq!(task.branch, "B01");
    assert_eq!(task.state, pb::follow_up::State::Scheduled as i32);
    assert!(task.purpose.contains("回访"));
    assert_eq!(task.created_by, "E-rm-B01");
    let due = task.due_time.unwrap().seconds;
    assert!((before + 3 * 86_400 - 5..=now_secs() + 3 * 86_400 + 5).contains(&due));
    // Nobody assigned: the resolver calls back.
    assert_eq!(for_source(&unassigned.name).assignee, "E-rm-B01");

    // Days = 0 turns it off.
    let quiet = TestApp::spawn_with(|env| {
        env.insert(
            "CK__INTERACTIONS__COMPLAINT_FOLLOW_UP_DAYS".into(),
            "0".into(),
        );
    })
    .await;
    let customer = new_customer(&quiet, "王芳", "B01").await;
    let mut rm = quiet.interactions(&Caller::rm("B01")).await;
    let logged = rm
        .log_interaction(complaint(
            &customer,
            None,
            Severity::Medium,
            Category::Fees,
            "",
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    rm.resolve_complaint(resolve(&logged.name, "Refunded", ""))
        .await
        .unwrap();
    assert!(follow_ups(&mut rm, &customer).await.is_empty());
}

#[tokio::test]
async fn a_root_cause_becomes_a_complaint_insight_for_the_product_team() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "CK__INTERACTIONS__COMPLAINT_INSIGHT_TEAM".into(),
            "T-PRODUCT".into(),
        );
    })
    .await;
    let consenting = new_customer(&app, "张伟", "B01").await;
    grant_sharing_consent(&app, &consenting).await;
    let withholding = new_customer(&app, "李娜", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let log = |customer: &str| {
        complaint(
            customer,
            None,
            Severity::Medium,
            Category::Fees,
            "CARD-GOLD",
            "",
        )
    };
    let shared = rm
        .log_interaction(log(&consenting))
        .await
        .unwrap()
        .into_inner();
    let kept = rm
        .log_interaction(log(&withholding))
        .await
        .unwrap()
        .into_inner();
    let no_cause = rm
        .log_interaction(log(&consenting))
        .await
        .unwrap()
        .into_inner();
    let cause = "Renewal batch ran twice";
    rm.resolve_complaint(resolve(&shared.name, "Refunded", cause))
        .await
        .unwrap();
    rm.resolve_complaint(resolve(&kept.name, "Refunded", cause))
        .await
        .unwrap();
    // Without a root cause there is nothing to learn.
    rm.resolve_complaint(resolve(&no_cause.name, "Refunded", ""))
        .await
        .unwrap();

    let body = format!("Category: FEES\nProduct: CARD-GOLD\nRoot cause: {cause}");
    let item = |visibility: &str, carrier: &str, id: &str, source: &str| {
        (
            visibility.to_string(),
            carrier.to_string(),
            id.to_string(),
            "EXPLICIT".to_string(),
            body.clone(),
            vec![source.to_string()],
        )
    };
    assert_eq!(
        insights(&app, &consenting).await,
        [item("TEAM", "TEAM", "T-PRODUCT", &shared.name)]
    );
    // No KNOWLEDGE_SHARING consent: it stays with the home branch.
    assert_eq!(
        insights(&app, &withholding).await,
        [item("BRANCH", "BRANCH", "B01", &kept.name)]
    );

    // The product team reads its item through the knowledge service.
    let product_team = Caller {
        team: Some("T-PRODUCT".into()),
        ..Caller::new("E-product", Some("B01"), &["relationship_manager"])
    };
    let listed = app
        .knowledge(&product_team)
        .await
        .list_knowledge_items(pb::ListKnowledgeItemsRequest {
            filter: format!("subjects:\"{consenting}\""),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .knowledge_items;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].kind,
        pb::knowledge_item::Kind::ComplaintInsight as i32
    );
    assert_eq!(listed[0].sources, std::slice::from_ref(&shared.name));
}

/// Logs a complaint received at `occur`, as an admin.
async fn received(
    admin: &mut InteractionClient,
    customer: &str,
    occur: i64,
    severity: Severity,
    category: Category,
    product: &str,
) -> String {
    admin
        .log_interaction(complaint(
            customer,
            Some(occur),
            severity,
            category,
            product,
            "",
        ))
        .await
        .unwrap()
        .into_inner()
        .name
}

/// Sets when a resolved complaint was resolved: `hours` after its receipt.
async fn resolved_after(app: &TestApp, name: &str, hours: i32) {
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

/// (received, resolved, open, overdue, resolution rate, median seconds,
/// reopen rate), rates rounded to 1e-6.
type Figures = (i64, i64, i64, i64, i64, Option<f64>, i64);

fn figures(f: &Option<pb::ComplaintFigures>) -> Figures {
    let f = f.unwrap();
    let rate = |r: f64| (r * 1e6).round() as i64;
    (
        f.received_count,
        f.resolved_count,
        f.open_count,
        f.overdue_count,
        rate(f.resolution_rate),
        f.median_resolution_seconds,
        rate(f.reopen_rate),
    )
}

#[tokio::test]
async fn the_complaint_summary_matches_figures_worked_out_by_hand() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let li = new_customer(&app, "李娜", "B01").await;
    let wang = new_customer(&app, "王芳", "B02").await;
    let mut admin = app.interactions(&Caller::admin()).await;
    let t = now_secs() - 5 * 86_400;
    let start = t - 86_400;
    let hour = 3600.0;

    // k1 B01 FEES CARD-GOLD: resolved after 2 h.
    let k1 = received(
        &mut admin,
        &zhang,
        t,
        Severity::Medium,
        Category::Fees,
        "CARD-GOLD",
    )
    .await;
    admin
        .resolve_complaint(resolve(&k1, "Refunded", ""))
        .await
        .unwrap();
    resolved_after(&app, &k1, 2).await;
    // k2 B01 FEES LOAN-HOME: resolved after 6 h, then closed.
    let k2 = received(
        &mut admin,
        &zhang,
        t,
        Severity::Medium,
        Category::Fees,
        "LOAN-HOME",
    )
    .await;
    admin
        .resolve_complaint(resolve(&k2, "Waived", ""))
        .await
        .unwrap();
    admin.close_complaint(close(&k2)).await.unwrap();
    resolved_after(&app, &k2, 6).await;
    // k3 B01 SERVICE_QUALITY CARD-GOLD: resolved, reopened: open again, due
    // 72 h from now (MEDIUM), so not overdue.
    let k3 = received(
        &mut admin,
        &li,
        t,
        Severity::Medium,
        Category::ServiceQuality,
        "CARD-GOLD",
    )
    .await;
    admin
        .resolve_complaint(resolve(&k3, "Apologised", ""))
        .await
        .unwrap();
    admin
        .reopen_complaint(reopen(&k3, "Still waiting"))
        .await
        .unwrap();
    // k4 B02 FEES CARD-GOLD: CRITICAL, due 4 h after receipt: overdue.
    let _k4 = received(
        &mut admin,
        &wang,
        t,
        Severity::Critical,
        Category::Fees,
        "CARD-GOLD",
    )
    .await;
    // k5 B02, no category, no product: resolved after 10 h.
    let k5 = received(
        &mut admin,
        &wang,
        t,
        Severity::Low,
        Category::Unspecified,
        "",
    )
    .await;
    admin
        .resolve_complaint(resolve(&k5, "Explained", ""))
        .await
        .unwrap();
    resolved_after(&app, &k5, 10).await;
    // Received before the range: not counted anywhere.
    let early = received(
        &mut admin,
        &zhang,
        start - 86_400,
        Severity::Medium,
        Category::Fees,
        "CARD-GOLD",
    )
    .await;
    admin
        .resolve_complaint(resolve(&early, "Old", ""))
        .await
        .unwrap();

    let summary = |caller: Caller, branch: &str| {
        let app = &app;
        let request = pb::GetComplaintSummaryRequest {
            name: String::new(),
            branch: branch.into(),
            start_time: Some(at(start)),
            end_time: None,
        };
        async move {
            app.interactions(&caller)
                .await
                .get_complaint_summary(request)
                .await
        }
    };
    let all = summary(Caller::analyst(), "").await.unwrap().into_inner();
    // Total: 5 received; k1, k2, k5 resolved (3/5); k3, k4 open; k4
    // overdue; median of 2 h, 6 h, 10 h = 6 h; k3 reopened (1/5).
    assert_eq!(
        figures(&all.total),
        (5, 3, 2, 1, 600_000, Some(6.0 * hour), 200_000)
    );
    let categories: Vec<(i32, Figures)> = all
        .categories
        .iter()
        .map(|r| (r.category, figures(&r.figures)))
        .collect();
    assert_eq!(
        categories,
        [
            // k5: resolved after 10 h.
            (
                Category::Unspecified as i32,
                (1, 1, 0, 0, 1_000_000, Some(10.0 * hour), 0)
            ),
            // k1, k2, k4: 2 of 3 resolved; median of 2 h and 6 h = 4 h.
            (
                Category::Fees as i32,
                (3, 2, 1, 1, 666_667, Some(4.0 * hour), 0)
            ),
            // k3: open, reopened.
            (
                Category::ServiceQuality as i32,
                (1, 0, 1, 0, 0, None, 1_000_000)
            ),
        ]
    );
    let products: Vec<(String, Figures)> = all
        .products
        .iter()
        .map(|r| (r.product.clone(), figures(&r.figures)))
        .collect();
    assert_eq!(
        products,
        [
            ("".into(), (1, 1, 0, 0, 1_000_000, Some(10.0 * hour), 0)),
            // k1, k3, k4: only k1 resolved (2 h); k3 reopened.
            (
                "CARD-GOLD".into(),
                (3, 1, 2, 1, 333_333, Some(2.0 * hour), 333_333)
            ),
            (
                "LOAN-HOME".into(),
                (1, 1, 0, 0, 1_000_000, Some(6.0 * hour), 0)
            ),
        ]
    );
    let branches: Vec<(String, Figures)> = all
        .branches
        .iter()
        .map(|r| (r.branch.clone(), figures(&r.figures)))
        .collect();
    let b01 = (3, 2, 1, 0, 666_667, Some(4.0 * hour), 333_333);
    let b02 = (2, 1, 1, 1, 500_000, Some(10.0 * hour), 0);
    assert_eq!(branches, [("B01".into(), b01), ("B02".into(), b02)]);

    // A branch-bound caller gets its own branch only, asked or not.
    let own = summary(Caller::rm("B01"), "").await.unwrap().into_inner();
    assert_eq!(figures(&own.total), b01);
    assert_eq!(own.branches.len(), 1);
    let named = summary(Caller::teller("B01"), "B01")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(figures(&named.total), b01);
    // Another branch is denied.
    let status = summary(Caller::rm("B01"), "B02").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // An unbound caller may pick any.
    let other = summary(Caller::admin(), "B02").await.unwrap().into_inner();
    assert_eq!(figures(&other.total), b02);
    assert_eq!(other.branch, "B02");

    // The same reports by their names (AIP-156), the period a parameter:
    // the same figures, and every answer carries its name.
    let by_name = |caller: Caller, name: &str, branch: &str, end_time: Option<Timestamp>| {
        let app = &app;
        let request = pb::GetComplaintSummaryRequest {
            name: name.into(),
            branch: branch.into(),
            start_time: Some(at(start)),
            end_time,
        };
        async move {
            app.interactions(&caller)
                .await
                .get_complaint_summary(request)
                .await
        }
    };
    assert_eq!(other.name, "branches/B02/complaintSummary");
    assert_eq!(all.name, "complaintSummary");
    for (name, branch) in [
        ("branches/B02/complaintSummary", ""),
        ("branches/B02/complaintSummary", "B02"),
    ] {
        let named = by_name(Caller::admin(), name, branch, other.end_time)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(named, other, "{name} {branch}");
    }
    let named = by_name(Caller::analyst(), "complaintSummary", "", all.end_time)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named, all);
    // A name and a branch that disagree are refused, naming both.
    for (name, branch) in [
        ("branches/B02/complaintSummary", "B01"),
        ("complaintSummary", "B01"),
    ] {
        let status = by_name(Caller::admin(), name, branch, None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            violated_fields(&status),
            ["name", "branch"],
            "{name} {branch}"
        );
    }
    for malformed in [
        "branches/B02",
        "branches/B02/complaintsummary",
        "teams/T1/complaintSummary",
        "branches//complaintSummary",
        "branches/B 2/complaintSummary",
        "/complaintSummary",
    ] {
        let status = by_name(Caller::admin(), malformed, "", None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{malformed}");
        assert_eq!(violated_fields(&status), ["name"], "{malformed}");
    }
    // Another branch by name is denied as by the field.
    let status = by_name(Caller::rm("B01"), "branches/B02/complaintSummary", "", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // An empty range is a total of zeros; a reversed one is refused.
    let empty = app
        .interactions(&Caller::analyst())
        .await
        .get_complaint_summary(pb::GetComplaintSummaryRequest {
            name: String::new(),
            branch: String::new(),
            start_time: Some(at(start - 10 * 86_400)),
            end_time: Some(at(start - 9 * 86_400)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(figures(&empty.total), (0, 0, 0, 0, 0, None, 0));
    assert!(empty.categories.is_empty() && empty.branches.is_empty());
    let status = app
        .interactions(&Caller::analyst())
        .await
        .get_complaint_summary(pb::GetComplaintSummaryRequest {
            name: String::new(),
            branch: String::new(),
            start_time: Some(at(start)),
            end_time: Some(at(start - 1)),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["start_time"]);
}

#[tokio::test]
async fn the_mobile_backend_sees_its_complaint_without_assignee_or_root_cause() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[auth.systems.mobile-backend]\n\
         methods = [\"InteractionService/GetInteraction\"]\n\
         acts_for_customers = true\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(|env| {
        env.insert("CK_CONFIG".into(), config.display().to_string());
    })
    .await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let logged = rm
        .log_interaction(complaint(
            &customer,
            None,
            Severity::Medium,
            Category::Fees,
            "CARD-GOLD",
            "E-handler",
        ))
        .await
        .unwrap()
        .into_inner();
    rm.resolve_complaint(resolve(&logged.name, "Refunded", "Batch ran twice"))
        .await
        .unwrap();
    let mut claims = Caller::new("mobile-backend", None, &["service"]).claims();
    claims["on_behalf_of"] = serde_json::json!(customer);
    let mut mobile = pb::interaction_service_client::InteractionServiceClient::with_interceptor(
        app.channel().await,
        crate::helpers::Bearer::token(&crate::helpers::sign(&claims)),
    );
    let seen = mobile
        .get_interaction(pb::GetInteractionRequest {
            name: logged.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .complaint
        .unwrap();
    assert_eq!(seen.state, State::Resolved as i32);
    assert_eq!(
        (seen.category, seen.product.as_str()),
        (Category::Fees as i32, "CARD-GOLD")
    );
    assert_eq!((seen.assignee.as_str(), seen.root_cause.as_str()), ("", ""));
}
