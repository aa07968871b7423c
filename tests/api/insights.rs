//! InsightService on hand-built data: RFM scores, pyramid tiers, tier
//! migrations and a changed configuration, worked out here by hand (not by
//! running the service's SQL again); the 360 view per role with its churn
//! signals, knowledge order and consent-gated offers; the at-risk worklist.

use chrono::{DateTime, Duration, Months, Utc};
use customer_knowledge::pb::v1::{
    self as pb, customer::Tier, insight_service_client::InsightServiceClient,
};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::{
    helpers::{Bearer, Caller, TestApp, new_customer, reason, violated_fields},
    operations::recompute_as,
};

pub(crate) type InsightClient = InsightServiceClient<InterceptedService<Channel, Bearer>>;

pub(crate) async fn insights(app: &TestApp, caller: &Caller) -> InsightClient {
    InsightServiceClient::with_interceptor(app.channel().await, Bearer::of(caller))
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(customer_knowledge::api::timestamp(t))
}

fn cny(units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "CNY".into(),
        units,
        nanos: 0,
    })
}

fn transaction(
    customer: &str,
    at: DateTime<Utc>,
    units: i64,
    product: &str,
) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: customer.into(),
        interaction: Some(pb::Interaction {
            channel: pb::interaction::Channel::OnlineBanking as i32,
            kind: pb::interaction::Kind::Transaction as i32,
            occur_time: ts(at),
            summary: "payment".into(),
            amount: cny(units),
            products: vec![product.into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn log_all(app: &TestApp, requests: Vec<pb::LogInteractionRequest>) {
    app.interactions(&Caller::admin())
        .await
        .batch_log_interactions(pb::BatchLogInteractionsRequest {
            requests,
            request_id: String::new(),
        })
        .await
        .expect("log the hand-built interactions");
}

/// The hand-built bank: 102 customers of B01, of which c0..c9 transact in
/// the window before `t0`. Returns their names, c0 first.
///
/// | c | F | M    | last txn | R rank | F rank | M rank |
/// |---|---|------|----------|--------|--------|--------|
/// | 0 | 1 | 100  | t0-10d   | 1      | 1      | 1      |
/// | 1 | 2 | 200  | t0-9d    | 2      | 5      | 2      |
/// | 2 | 3 | 300  | t0-8d    | 3      | 8      | 3      |
/// | 3 | 1 | 400  | t0-7d    | 4      | 1      | 4      |
/// | 4 | 2 | 500  | t0-6d    | 5      | 5      | 5      |
/// | 5 | 3 | 600  | t0-5d    | 6      | 8      | 6      |
/// | 6 | 1 | 700  | t0-4d    | 7      | 1      | 7      |
/// | 7 | 2 | 800  | t0-3d    | 8      | 5      | 8      |
/// | 8 | 3 | 900  | t0-2d    | 9      | 8      | 9 (tie)|
/// | 9 | 1 | 900  | t0-1d    | 10     | 1      | 9 (tie)|
///
/// Score = 1 + ⌊5 × (rank − 1) / 10⌋. Besides: c0 has a large transaction
/// 400 days back (outside the window), c1 one exactly at t0 (the window's
/// end is exclusive), c2's first is exactly at the window's start
/// (inclusive).
async fn hand_built_bank(app: &TestApp) -> (Vec<String>, DateTime<Utc>) {
    let mut names = Vec::new();
    for i in 0..102 {
        names.push(new_customer(app, &format!("Customer {i:03}"), "B01").await);
    }
    // After every customer exists: a run counts the customers of its as_of.
    let t0 = Utc::now();
    let window_start = t0.checked_sub_months(Months::new(12)).unwrap();
    let mut requests = Vec::new();
    for (i, name) in names.iter().enumerate().take(10) {
        let f = 1 + (i % 3);
        let m = if i == 9 { 900 } else { 100 * (i as i64 + 1) };
        let last = t0 - Duration::days(10 - i as i64);
        for k in 0..f {
            let at = if i == 2 && k == 2 {
                window_start
            } else {
                last - Duration::days(7 * k as i64)
            };
            requests.push(transaction(name, at, m / f as i64, "DEPOSIT-3M"));
        }
    }
    requests.push(transaction(
        &names[0],
        t0 - Duration::days(400),
        99_999,
        "FUND-A",
    ));
    requests.push(transaction(&names[1], t0, 5_000, "FUND-A"));
    log_all(app, requests).await;
    (names, t0)
}

async fn recompute(app: &TestApp, as_of: DateTime<Utc>) -> pb::RecomputeSegmentsResponse {
    recompute_as(
        app,
        &Caller::admin(),
        pb::RecomputeSegmentsRequest {
            as_of: ts(as_of),
            ..Default::default()
        },
    )
    .await
}

async fn facts(app: &TestApp, name: &str) -> pb::Customer360 {
    insights(app, &Caller::admin())
        .await
        .get_customer360(pb::GetCustomer360Request { name: name.into() })
        .await
        .expect("360")
        .into_inner()
}

fn tier_counts(summary: &pb::SegmentSummary) -> Vec<(i32, i64)> {
    summary
        .tiers
        .iter()
        .map(|t| (t.tier, t.customer_count))
        .collect()
}

#[tokio::test]
async fn rfm_scores_and_tiers_follow_the_hand_worked_quintiles() {
    let app = TestApp::spawn().await;
    let (names, t0) = hand_built_bank(&app).await;
    let before = app
        .customers(&Caller::admin())
        .await
        .get_customer(pb::GetCustomerRequest {
            name: names[9].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let run = recompute(&app, t0).await;
    assert_eq!(run.customer_count, 102);
    assert_eq!(
        run.tier_changed_count, 0,
        "the first run has nothing to compare with"
    );

    // (R, F, M) scores and tiers by hand: VIP ⌊102 × 1%⌋ = 1, MAJOR
    // ⌊102 × 4%⌋ = 4, ORDINARY ⌊102 × 15%⌋ = 15 (only 5 transact), the rest
    // SMALL. c9 beats c8 on the tie at 900 by its later last transaction.
    let expected: [((i32, i32, i32), Tier); 10] = [
        ((1, 1, 1), Tier::Ordinary),
        ((1, 3, 1), Tier::Ordinary),
        ((2, 4, 2), Tier::Ordinary),
        ((2, 1, 2), Tier::Ordinary),
        ((3, 3, 3), Tier::Ordinary),
        ((3, 4, 3), Tier::Major),
        ((4, 1, 4), Tier::Major),
        ((4, 3, 4), Tier::Major),
        ((5, 4, 5), Tier::Major),
        ((5, 1, 5), Tier::Vip),
    ];
    for (i, ((r, f, m), tier)) in expected.iter().enumerate() {
        let view = facts(&app, &names[i]).await;
        let segment = view.segment.expect("segmented");
        let rfm = segment.rfm.unwrap();
        assert_eq!(
            (rfm.recency_score, rfm.frequency_score, rfm.monetary_score),
            (*r, *f, *m),
            "c{i}"
        );
        assert_eq!(segment.tier, *tier as i32, "c{i}");
        assert_eq!(view.tier, *tier as i32, "c{i}");
        assert_eq!(
            segment.transaction_count,
            1 + (i as i64 % 3),
            "c{i}: F counts the window only"
        );
        let m = if i == 9 { 900 } else { 100 * (i as i64 + 1) };
        assert_eq!(
            segment.monetary_value,
            cny(m),
            "c{i}: M counts the window only"
        );
        assert_eq!(segment.days_since_last_transaction, 10 - i as i32, "c{i}");
    }
    // A customer without a transaction is SMALL and unscored.
    let quiet = facts(&app, &names[50]).await;
    assert_eq!(quiet.tier, Tier::Small as i32);
    assert_eq!(quiet.segment.as_ref().unwrap().rfm, None);
    assert_eq!(
        quiet.relationship_type,
        pb::RelationshipType::Unspecified as i32
    );
    // c1 has two transactions ever before t0 (the one at t0 is outside):
    // transactional; c0's two (one 400 days back) make it transactional too.
    assert_eq!(
        facts(&app, &names[3]).await.relationship_type,
        pb::RelationshipType::OneTime as i32
    );

    // Segment results are not part of the profile: the etag stays.
    let after = app
        .customers(&Caller::admin())
        .await
        .get_customer(pb::GetCustomerRequest {
            name: names[9].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.etag, before.etag);
    assert_eq!(after.update_time, before.update_time);
    assert_eq!(after.tier, Tier::Vip as i32);

    let summary = run.summary.unwrap();
    assert_eq!(
        tier_counts(&summary),
        vec![
            (Tier::Vip as i32, 1),
            (Tier::Major as i32, 4),
            (Tier::Ordinary as i32, 5),
            (Tier::Small as i32, 92),
        ]
    );
    assert_eq!(summary.total_value, cny(5_400));
    let major = &summary.tiers[1];
    assert_eq!(major.total_value, cny(900 + 800 + 700 + 600));
    assert_eq!(major.min_value, cny(600), "the MAJOR cut-off");
    assert!((summary.tiers[0].value_fraction - 900.0 / 5_400.0).abs() < 1e-9);
    // Ten transacting customers in nine cells: c2 and c5 share none, but
    // (5,4,5) and (5,1,5) are two cells.
    assert_eq!(
        summary
            .rfm_cells
            .iter()
            .map(|c| c.customer_count)
            .sum::<i64>(),
        10
    );
    assert_eq!(
        summary.rfm_cells[0].rfm,
        Some(pb::RfmScore {
            recency_score: 5,
            frequency_score: 4,
            monetary_score: 5
        })
    );

    // Tier migration: c0 buys 10,000 after t0, and c1's 5,000 at t0 falls
    // inside the next window (t1). By value: c0 10,100, c1 5,200, c9 900,
    // c8 900, c7 800, c6 700, ... So c0 ORDINARY→VIP, c1 ORDINARY→MAJOR,
    // c9 VIP→MAJOR, c6 and c5 MAJOR→ORDINARY: five changes.
    log_all(
        &app,
        vec![transaction(
            &names[0],
            t0 + Duration::milliseconds(1),
            10_000,
            "FUND-A",
        )],
    )
    .await;
    let t1 = t0 + Duration::seconds(2);
    let run = recompute(&app, t1).await;
    assert_eq!(run.tier_changed_count, 5);
    let summary = run.summary.unwrap();
    assert_eq!(
        summary.previous_as_of,
        ts(DateTime::from_timestamp_micros(t0.timestamp_micros()).unwrap())
    );
    let moved = |from: Tier, to: Tier| {
        summary
            .migrations
            .iter()
            .find(|m| m.from == from as i32 && m.to == to as i32)
            .map_or(0, |m| m.customer_count)
    };
    assert_eq!(moved(Tier::Ordinary, Tier::Vip), 1);
    assert_eq!(moved(Tier::Ordinary, Tier::Major), 1);
    assert_eq!(moved(Tier::Vip, Tier::Major), 1);
    assert_eq!(moved(Tier::Major, Tier::Ordinary), 2);
    assert_eq!(moved(Tier::Major, Tier::Major), 2);
    assert_eq!(moved(Tier::Ordinary, Tier::Ordinary), 3);
    assert_eq!(moved(Tier::Small, Tier::Small), 92);
    // The earlier run stays readable: history is kept per as_of.
    let old = insights(&app, &Caller::analyst())
        .await
        .get_segment_summary(pb::GetSegmentSummaryRequest {
            as_of: ts(t0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.tiers[0].customer_count, 1);
    assert_eq!(old.tiers[0].total_value, cny(900));
    // Recomputing the same as_of replaces it: same figures, no duplicates.
    let again = recompute(&app, t1).await;
    assert_eq!(again.customer_count, 102);
    assert_eq!(again.tier_changed_count, 5);

    // A changed configuration of cut points (VIP 3%: ⌊3.06⌋ = 3) on the
    // same data at t1: c0, c1 and c9 are VIP; MAJOR takes c8, c7, c6, c5.
    let wider = TestApp::spawn_with(|env| {
        env.insert("DATABASE_URL".into(), app.database_url.clone());
        env.insert("CK__INSIGHTS__VIP_SHARE".into(), "0.03".into());
    })
    .await;
    let run = recompute(&wider, t1).await;
    assert_eq!(
        tier_counts(run.summary.as_ref().unwrap()),
        vec![
            (Tier::Vip as i32, 3),
            (Tier::Major as i32, 4),
            (Tier::Ordinary as i32, 3),
            (Tier::Small as i32, 92),
        ]
    );
    assert_eq!(run.parameters.unwrap().vip_share, 0.03);
    // Against t0: c0 and c1 ORDINARY→VIP.
    assert_eq!(run.tier_changed_count, 2);
    assert_eq!(facts(&wider, &names[1]).await.tier, Tier::Vip as i32);
    assert_eq!(facts(&wider, &names[8]).await.tier, Tier::Major as i32);
}

#[tokio::test]
async fn only_admin_and_service_callers_recompute_and_reports_stay_in_reach() {
    let app = TestApp::spawn().await;
    let b01 = new_customer(&app, "Own", "B01").await;
    let _b02 = new_customer(&app, "Other", "B02").await;
    for caller in [Caller::rm("B01"), Caller::analyst(), Caller::compliance()] {
        let status = insights(&app, &caller)
            .await
            .recompute_segments(pb::RecomputeSegmentsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{caller:?}");
    }
    let run = recompute_as(
        &app,
        &Caller::service(),
        pb::RecomputeSegmentsRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(run.customer_count, 2);

    // A B01 relationship manager's summary counts B01 only; B02 is refused.
    let mut rm = insights(&app, &Caller::rm("B01")).await;
    let own = rm
        .get_segment_summary(pb::GetSegmentSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.customer_count, 1);
    let status = rm
        .get_segment_summary(pb::GetSegmentSummaryRequest {
            branch: "B02".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // By name (AIP-156): the same figures, the name echoed; the same
    // refusal for another branch; a disagreeing or malformed name refused.
    let by_branch = rm
        .get_segment_summary(pb::GetSegmentSummaryRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let named = rm
        .get_segment_summary(pb::GetSegmentSummaryRequest {
            name: "branches/B01/segmentSummary".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named, by_branch);
    assert_eq!(named.name, "branches/B01/segmentSummary");
    assert_eq!(named.customer_count, 1);
    let named = |name: &str, relationship_manager: &str| pb::GetSegmentSummaryRequest {
        name: name.into(),
        relationship_manager: relationship_manager.into(),
        ..Default::default()
    };
    let status = rm
        .get_segment_summary(named("branches/B02/segmentSummary", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = rm
        .get_segment_summary(named("branches/B01/employees/E1/segmentSummary", "E2"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["name", "relationship_manager"]);
    let status = rm
        .get_segment_summary(named("teams/T1/segmentSummary", ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["name"]);
    let status = rm
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            branch: "B02".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Another branch's customer: PERMISSION_DENIED, whether or not it exists.
    let mut other = insights(&app, &Caller::rm("B02")).await;
    for name in [b01.as_str(), "customers/does-not-exist"] {
        let status = other
            .get_customer360(pb::GetCustomer360Request { name: name.into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}");
        assert!(!status.message().contains("Own"));
    }
    // The view by its own name (AIP-156) is the same view; the answer
    // carries that name whichever way it was asked for.
    let view = format!("{b01}/view360");
    let mut admin = insights(&app, &Caller::admin()).await;
    let mut by_parent = admin
        .get_customer360(pb::GetCustomer360Request { name: b01.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut by_name = admin
        .get_customer360(pb::GetCustomer360Request { name: view.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_parent.name, view);
    // Only what is measured from the time of the call differs between two
    // calls: the assessment time, the satisfaction windows, action expiry.
    for v in [&mut by_parent, &mut by_name] {
        v.freshness.as_mut().unwrap().assess_time = None;
        v.satisfaction = None;
        for action in &mut v.next_best_actions {
            action.expire_time = None;
        }
    }
    assert_eq!(by_name, by_parent);
    let status = other
        .get_customer360(pb::GetCustomer360Request { name: view.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    for malformed in [
        format!("{b01}/view361"),
        format!("{b01}/view360/view360"),
        "view360".into(),
    ] {
        let status = admin
            .get_customer360(pb::GetCustomer360Request {
                name: malformed.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{malformed}");
        assert_eq!(violated_fields(&status), ["name"], "{malformed}");
    }

    // Bad input is INVALID_ARGUMENT with the field named.
    let status = insights(&app, &Caller::admin())
        .await
        .recompute_segments(pb::RecomputeSegmentsRequest {
            window_months: 61,
            as_of: ts(Utc::now() + Duration::days(2)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "INVALID_ARGUMENT");
}

fn answer(
    customer: &str,
    at: DateTime<Utc>,
    csat: Option<i32>,
    nps: Option<i32>,
) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: customer.into(),
        interaction: Some(pb::Interaction {
            channel: pb::interaction::Channel::Phone as i32,
            kind: pb::interaction::Kind::Survey as i32,
            occur_time: ts(at),
            summary: "survey".into(),
            satisfaction: csat,
            nps,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn complaint(customer: &str, at: DateTime<Utc>) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: customer.into(),
        interaction: Some(pb::Interaction {
            channel: pb::interaction::Channel::Branch as i32,
            kind: pb::interaction::Kind::Complaint as i32,
            occur_time: ts(at),
            summary: "fee charged twice".into(),
            complaint: Some(pb::Complaint {
                severity: pb::complaint::Severity::Medium as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Transactions every 10 days from 305 to 105 days ago (21 of them; 8 in
/// the 90 days before the last 90).
fn lapsed_history(
    customer: &str,
    now: DateTime<Utc>,
    products: &[&str],
) -> Vec<pb::LogInteractionRequest> {
    (0..21)
        .map(|k| {
            let mut t = transaction(
                customer,
                now - Duration::days(105 + 10 * k),
                100,
                "DEPOSIT-3M",
            );
            if k == 0 {
                t.interaction.as_mut().unwrap().products =
                    products.iter().map(|p| p.to_string()).collect();
            }
            t
        })
        .collect()
}

async fn set_consent(app: &TestApp, customer: &str, purpose: pb::ConsentPurpose, granted: bool) {
    app.customers(&Caller::admin())
        .await
        .update_consent(pb::UpdateConsentRequest {
            name: customer.into(),
            purpose: purpose as i32,
            granted: Some(granted),
            ..Default::default()
        })
        .await
        .expect("consent");
}

#[tokio::test]
async fn the_360_view_explains_churn_orders_knowledge_and_gates_offers() {
    use pb::knowledge_item::{Kind, Nature, Visibility};
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let mut admin = app.customers(&Caller::admin()).await;
    let x = admin
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "Lapsing Li".into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: "B01".into(),
                phone: "+86 138 0000 1234".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    // Y behaves as X but also bought FUND-B; Z is a small newcomer. X and Y
    // share a tier and RFM cell, so FUND-B is held by 1 of 2 peers against
    // 1 of 3 in the bank: lift 1.5.
    let y = new_customer(&app, "Peer Pan", "B01").await;
    let z = new_customer(&app, "Newcomer Niu", "B01").await;
    let mut requests = lapsed_history(&x, now, &["DEPOSIT-3M"]);
    requests.extend(lapsed_history(&y, now, &["DEPOSIT-3M", "FUND-B"]));
    requests.push(transaction(&z, now - Duration::days(3), 10, "DEPOSIT-3M"));
    // Two open complaints; CSAT 2 and 2; NPS answers 10, 9, 6, 3, 0 in the
    // last 90 days (2 promoters, 3 detractors: NPS −20) against 10 and 10
    // before (+100).
    requests.push(complaint(&x, now - Duration::days(20)));
    requests.push(complaint(&x, now - Duration::days(10)));
    requests.push(answer(&x, now - Duration::days(15), Some(2), Some(10)));
    requests.push(answer(&x, now - Duration::days(14), Some(2), Some(9)));
    requests.push(answer(&x, now - Duration::days(13), None, Some(6)));
    requests.push(answer(&x, now - Duration::days(12), None, Some(3)));
    requests.push(answer(&x, now - Duration::days(11), None, Some(0)));
    requests.push(answer(&x, now - Duration::days(120), None, Some(10)));
    requests.push(answer(&x, now - Duration::days(130), None, Some(10)));
    log_all(&app, requests).await;
    set_consent(&app, &x, pb::ConsentPurpose::Marketing, false).await;

    // Knowledge about X: verified, unverified, stale, and a private note of
    // someone else that nobody else sees.
    let author = Caller {
        team: Some("T1".into()),
        ..Caller::new("E1", Some("B01"), &["relationship_manager"])
    };
    let mut k = app.knowledge(&author).await;
    let mut create = async |title: &str, visibility: Visibility| {
        k.create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: title.into(),
                body: format!("{title}: worth knowing"),
                nature: Nature::Explicit as i32,
                kind: Kind::Preference as i32,
                visibility: visibility as i32,
                subjects: vec![x.clone()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    };
    let stale = create("stale", Visibility::Branch).await;
    let _unverified = create("unverified", Visibility::Branch).await;
    let verified = create("verified", Visibility::Branch).await;
    let _private = create("private", Visibility::Private).await;
    let mut verifier = app
        .knowledge(&Caller::new("E2", Some("B01"), &["relationship_manager"]))
        .await;
    for item in [&stale, &verified] {
        verifier
            .verify_knowledge_item(pb::VerifyKnowledgeItemRequest {
                name: item.name.clone(),
                review_interval: Some(prost_types::Duration {
                    seconds: 30 * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Its review date passed (set directly: no waiting in tests).
    sqlx::query(
        "UPDATE knowledge_items SET next_review_time = now() - interval '1 day' WHERE id = $1",
    )
    .bind(stale.name.trim_start_matches("knowledgeItems/"))
    .execute(&app.db)
    .await
    .unwrap();

    recompute_as(&app, &Caller::admin(), Default::default()).await;

    let rm = Caller::new("E3", Some("B01"), &["relationship_manager"]);
    let view = insights(&app, &rm)
        .await
        .get_customer360(pb::GetCustomer360Request { name: x.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.customer.as_ref().unwrap().phone, "+86 138 0000 1234");
    assert_eq!(view.recent_interactions.len(), 20);
    assert_eq!(view.open_complaints.len(), 2);

    // Churn: every signal, strongest first, with its value and threshold;
    // the weights add to 30 + 20 + 20 + 10 + 10 + 10 + 10 = 110 points,
    // capped at 100.
    let churn = view.churn_risk.as_ref().unwrap();
    assert_eq!(churn.score, 100.0);
    assert_eq!(churn.level, pb::churn_risk::Level::High as i32);
    let codes: Vec<&str> = churn.signals.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "long_inactivity",
            "declining_frequency",
            "unresolved_complaint",
            "repeated_complaints",
            "low_satisfaction",
            "low_nps",
            "withdrawn_consent"
        ]
    );
    let inactivity = &churn.signals[0];
    assert_eq!(
        (inactivity.value, inactivity.threshold, inactivity.weight),
        (105.0, 30.0, 30.0)
    );
    let declining = &churn.signals[1];
    assert_eq!(
        (declining.value, declining.threshold),
        (0.0, 4.0),
        "0 against 8 before"
    );
    assert_eq!(churn.signals[5].value, -20.0);
    assert!(!churn.model_version.is_empty());

    // NPS computed properly: % promoters − % detractors.
    let satisfaction = view.satisfaction.as_ref().unwrap();
    let current = satisfaction.current.as_ref().unwrap();
    assert_eq!(
        (current.promoters, current.passives, current.detractors),
        (2, 0, 3)
    );
    assert_eq!(current.nps, -20.0);
    assert_eq!(current.csat_average, 2.0);
    assert_eq!(satisfaction.previous.as_ref().unwrap().nps, 100.0);
    assert_eq!(satisfaction.nps_trend, -120.0);

    // Knowledge: verified, then unverified, then stale; the private note of
    // E1 is not E3's to see.
    let titles: Vec<&str> = view.knowledge.iter().map(|k| k.title.as_str()).collect();
    assert_eq!(titles, ["verified", "unverified", "stale"]);

    // Actions: retention first; no offer without CROSS_SELL or MARKETING
    // consent, and the view says why.
    let kinds: Vec<i32> = view.next_best_actions.iter().map(|a| a.kind).collect();
    use pb::next_best_action::Kind as A;
    assert_eq!(kinds[0], A::RetentionContact as i32);
    assert!(kinds.contains(&(A::ServiceRecovery as i32)));
    assert!(!kinds.contains(&(A::OfferProduct as i32)));
    assert!(
        view.offers_withheld_reason.contains("CROSS_SELL"),
        "{}",
        view.offers_withheld_reason
    );
    assert_eq!(
        view.relationship_type,
        pb::RelationshipType::Transactional as i32
    );

    // With CROSS_SELL consent the peers' product is offered, with its lift.
    set_consent(&app, &x, pb::ConsentPurpose::CrossSell, true).await;
    let view = insights(&app, &rm)
        .await
        .get_customer360(pb::GetCustomer360Request { name: x.clone() })
        .await
        .unwrap()
        .into_inner();
    let offer = view
        .next_best_actions
        .iter()
        .find(|a| a.kind == A::OfferProduct as i32)
        .expect("an offer");
    assert_eq!(offer.product, "FUND-B");
    assert_eq!(offer.consent_purpose, pb::ConsentPurpose::CrossSell as i32);
    assert!((offer.lift - 1.5).abs() < 1e-9, "{}", offer.lift);
    assert_eq!(offer.support, 1);
    assert!(view.offers_withheld_reason.is_empty());

    // Declined: recorded as an interaction, and not offered again.
    log_all(
        &app,
        vec![pb::LogInteractionRequest {
            parent: x.clone(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::Phone as i32,
                kind: pb::interaction::Kind::Promotion as i32,
                summary: "offered FUND-B".into(),
                campaign: format!("nba:{}", offer.id),
                outcome: "DECLINED".into(),
                products: vec!["FUND-B".into()],
                ..Default::default()
            }),
            ..Default::default()
        }],
    )
    .await;
    let view = insights(&app, &rm)
        .await
        .get_customer360(pb::GetCustomer360Request { name: x.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        view.next_best_actions
            .iter()
            .all(|a| a.kind != A::OfferProduct as i32)
    );

    // An analyst sees PII masked and BANK knowledge only; a calling system
    // without InsightService in its configuration is refused.
    let analyst_view = insights(&app, &Caller::analyst())
        .await
        .get_customer360(pb::GetCustomer360Request { name: x.clone() })
        .await
        .unwrap()
        .into_inner();
    let phone = &analyst_view.customer.as_ref().unwrap().phone;
    assert!(phone.ends_with("1234") && !phone.contains("138"), "{phone}");
    assert!(analyst_view.knowledge.is_empty());
    let status = insights(&app, &Caller::new("cards", None, &["service"]))
        .await
        .get_customer360(pb::GetCustomer360Request { name: x.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The worklist: X (score 100 × 2,100) before Y (50: inactivity and
    // declining frequency × 2,100), one per page; not Z (no signal). The
    // 360's score is the worklist's.
    let mut worklist = insights(&app, &rm).await;
    let page = async |client: &mut InsightClient, level: pb::churn_risk::Level, token: String| {
        client
            .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
                min_level: level as i32,
                page_size: 1,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    };
    let first = page(&mut worklist, pb::churn_risk::Level::Medium, String::new()).await;
    assert_eq!(first.customers.len(), 1);
    let entry = &first.customers[0];
    assert_eq!(entry.customer, x);
    assert_eq!(entry.churn_risk.as_ref().unwrap().score, churn.score);
    assert_eq!(entry.value, cny(2_100));
    assert_eq!(entry.priority, 100.0 * 2_100.0);
    let second = page(
        &mut worklist,
        pb::churn_risk::Level::Medium,
        first.next_page_token.clone(),
    )
    .await;
    assert_eq!(second.customers.len(), 1);
    assert_eq!(second.customers[0].customer, y);
    assert_eq!(second.customers[0].churn_risk.as_ref().unwrap().score, 50.0);
    if !second.next_page_token.is_empty() {
        let third = page(
            &mut worklist,
            pb::churn_risk::Level::Medium,
            second.next_page_token,
        )
        .await;
        assert!(third.customers.is_empty());
    }
    let high = page(&mut worklist, pb::churn_risk::Level::High, String::new()).await;
    assert_eq!(high.customers.len(), 1);
    assert!(high.next_page_token.is_empty());
    let _ = z;
}

fn inquiry(customer: &str, at: DateTime<Utc>) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: customer.into(),
        interaction: Some(pb::Interaction {
            channel: pb::interaction::Channel::Branch as i32,
            kind: pb::interaction::Kind::Inquiry as i32,
            occur_time: ts(at),
            summary: "asked about rates".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn relationship_types_follow_the_documented_rules() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let partner = new_customer(&app, "Partner", "B01").await;
    let household = new_customer(&app, "Household", "B01").await;
    let relational = new_customer(&app, "Relational", "B01").await;
    let transactional = new_customer(&app, "Transactional", "B01").await;
    let one_time = new_customer(&app, "One time", "B01").await;
    let none = new_customer(&app, "No transaction", "B01").await;
    app.customers(&Caller::admin())
        .await
        .link_customers(pb::LinkCustomersRequest {
            name: partner.clone(),
            linked_customer: household.clone(),
            relationship: pb::customer_link::Relationship::Household as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let day = Duration::days;
    log_all(
        &app,
        vec![
            transaction(&partner, now - day(5), 100, "DEPOSIT-3M"),
            // Tenure over a year, two products in the window, and contact in
            // three months besides transactions (35 days apart: three months).
            transaction(&relational, now - day(400), 100, "DEPOSIT-3M"),
            transaction(&relational, now - day(60), 100, "DEPOSIT-3M"),
            transaction(&relational, now - day(30), 100, "FUND-A"),
            inquiry(&relational, now - day(10)),
            inquiry(&relational, now - day(45)),
            inquiry(&relational, now - day(80)),
            // As deep in products and contact, but only 200 days of tenure.
            transaction(&transactional, now - day(200), 100, "DEPOSIT-3M"),
            transaction(&transactional, now - day(30), 100, "FUND-A"),
            inquiry(&transactional, now - day(10)),
            inquiry(&transactional, now - day(45)),
            inquiry(&transactional, now - day(80)),
            transaction(&one_time, now - day(3), 100, "DEPOSIT-3M"),
        ],
    )
    .await;
    recompute(&app, Utc::now()).await;
    use pb::RelationshipType as R;
    for (name, want) in [
        (&partner, R::Partner),
        (&household, R::Partner),
        (&relational, R::Relational),
        (&transactional, R::Transactional),
        (&one_time, R::OneTime),
        (&none, R::Unspecified),
    ] {
        let view = facts(&app, name).await;
        assert_eq!(
            view.relationship_type, want as i32,
            "{name}: {:?}",
            view.relationship_reasons
        );
        assert!(!view.relationship_reasons.is_empty(), "{name}");
    }
    let summary = insights(&app, &Caller::admin())
        .await
        .get_segment_summary(pb::GetSegmentSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let count = |kind: R| {
        summary
            .relationships
            .iter()
            .find(|r| r.relationship_type == kind as i32)
            .map_or(0, |r| r.customer_count)
    };
    assert_eq!(
        [
            R::Partner,
            R::Relational,
            R::Transactional,
            R::OneTime,
            R::Unspecified
        ]
        .map(count),
        [2, 1, 1, 1, 1]
    );
}

#[tokio::test]
async fn the_recompute_segments_job_scores_every_customer_and_replaces_its_run() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Nightly", "B01").await;
    log_all(
        &app,
        vec![transaction(
            &customer,
            Utc::now() - Duration::days(1),
            700,
            "DEPOSIT-3M",
        )],
    )
    .await;
    let as_of = Utc::now().to_rfc3339();
    let url = app.database_url.clone();
    let run = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_customer-knowledge"))
            .args([
                "recompute-segments",
                "--as-of",
                &as_of,
                "--window-months",
                "60",
            ])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DATABASE_URL", &url)
            .env("CK__LOG__LEVEL", "warn")
            .output()
            .expect("run the binary")
    };
    for _ in 0..2 {
        let output = tokio::task::spawn_blocking(run.clone()).await.unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("1 customers scored"), "{stdout}");
    }
    // Run twice for one as_of: one run stored, with the job's window.
    let runs: Vec<(i32,)> = sqlx::query_as("SELECT window_months FROM segment_runs")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(runs, [(60,)]);
    let view = facts(&app, &customer).await;
    assert_eq!(view.segment.unwrap().monetary_value, cny(700));
    // A bad flag is refused before anything runs; so is a future as_of.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_customer-knowledge"))
        .args(["recompute-segments", "--window-months", "61"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_customer-knowledge"))
        .args(["recompute-segments", "--as-of", "2099-01-01T00:00:00Z"])
        .env("DATABASE_URL", &app.database_url)
        .env("CK__LOG__LEVEL", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("as_of"));
}
