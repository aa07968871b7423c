//! GetKnowledgeSharingMetrics on hand-built knowledge of one team: items per
//! nature, conversions per kind, a playbook's reach, the times to explicit
//! and to verification, the VERIFIED and STALE shares and each employee's
//! contributions, worked out here by hand; scoping to the caller's branch
//! and to what they may see.

use chrono::{DateTime, Duration, Utc};
use customer_knowledge::pb::v1::{
    self as pb,
    derivation::Conversion,
    knowledge_item::{Kind, Nature, Visibility},
};
use tonic::Code;

use crate::{
    helpers::{Caller, TestApp, new_customer},
    knowledge::{create, employee, item},
};

fn seconds(d: Duration) -> f64 {
    d.num_microseconds().unwrap() as f64 / 1e6
}

#[tokio::test]
async fn sharing_metrics_of_a_team_worked_by_hand() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let (e1, e2, e3, e4) = (
        employee("E1001", "B01", "T-WEALTH"),
        employee("E1002", "B01", "T-WEALTH"),
        employee("E1003", "B01", "T-WEALTH"),
        employee("E1004", "B01", "T-WEALTH"),
    );
    // The interaction the explicit item is written from, two days ago
    // (Postgres keeps microseconds).
    let met = DateTime::from_timestamp_micros((Utc::now() - Duration::days(2)).timestamp_micros())
        .unwrap();
    let interaction = app
        .interactions(&e1)
        .await
        .log_interaction(pb::LogInteractionRequest {
            parent: customer.clone(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::Branch as i32,
                kind: pb::interaction::Kind::Inquiry as i32,
                occur_time: Some(customer_knowledge::api::timestamp(met)),
                summary: "Asked about evening appointments".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let started = Utc::now();

    // E1001: a tacit item T, externalized (from T and the interaction) into X.
    let mut k1 = app.knowledge(&e1).await;
    let tacit = create(
        &mut k1,
        item(
            "Prefers evenings",
            Nature::Tacit,
            Visibility::Private,
            &[&customer],
        ),
    )
    .await;
    let before_x = Utc::now();
    let x = k1
        .externalize_knowledge(pb::ExternalizeKnowledgeRequest {
            source_items: vec![tacit.name.clone(), interaction.clone()],
            knowledge_item: Some(pb::KnowledgeItem {
                title: "Contact in the evening".into(),
                kind: Kind::Preference as i32,
                visibility: Visibility::Team as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let after_x = Utc::now();
    // E1002: a note N, combined with X into the playbook P.
    let mut k2 = app.knowledge(&e2).await;
    let note = create(
        &mut k2,
        item(
            "Saving for education",
            Nature::Explicit,
            Visibility::Team,
            &[&customer],
        ),
    )
    .await;
    let playbook = k2
        .combine_knowledge(pb::CombineKnowledgeRequest {
            source_items: vec![x.name.clone(), note.name.clone()],
            knowledge_item: Some(pb::KnowledgeItem {
                title: "Playbook: evening education talk".into(),
                kind: Kind::Playbook as i32,
                visibility: Visibility::Branch as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // E1003 and E1004 absorb the playbook.
    for who in [&e3, &e4] {
        app.knowledge(who)
            .await
            .internalize_knowledge(pb::InternalizeKnowledgeRequest {
                name: playbook.name.clone(),
                reflection: "Lead with the education plan in the evening.".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Each author's item is verified by the other; N's review is then made
    // overdue, so N reads as STALE.
    for (client, name) in [(&mut k2, &x.name), (&mut k1, &note.name)] {
        client
            .verify_knowledge_item(pb::VerifyKnowledgeItemRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let finished = Utc::now();
    sqlx::query(
        "UPDATE knowledge_items SET next_review_time = now() - interval '1 day' WHERE id = $1",
    )
    .bind(note.name.strip_prefix("knowledgeItems/").unwrap())
    .execute(&app.db)
    .await
    .unwrap();

    let metrics = app
        .knowledge(&Caller::compliance())
        .await
        .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // Items: T and the two reflections are tacit; X, N and P explicit.
    let natures: Vec<(i32, i64)> = metrics
        .items_by_nature
        .iter()
        .map(|n| (n.nature, n.count))
        .collect();
    assert_eq!(
        natures,
        [(Nature::Tacit as i32, 3), (Nature::Explicit as i32, 3)]
    );
    // The same report by its name (AIP-156), the period a parameter.
    assert_eq!(metrics.name, "branches/B01/knowledgeSharingMetrics");
    for (name, branch) in [
        ("branches/B01/knowledgeSharingMetrics", ""),
        ("branches/B01/knowledgeSharingMetrics", "B01"),
    ] {
        let named = app
            .knowledge(&Caller::compliance())
            .await
            .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
                name: name.into(),
                branch: branch.into(),
                start_time: metrics.start_time,
                end_time: metrics.end_time,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(named, metrics);
    }
    // Conversions: X by externalization, P by combination, the two
    // absorptions by internalization.
    let conversion = |c: Conversion| {
        metrics
            .conversions
            .iter()
            .find(|x| x.conversion == c as i32)
            .map(|x| x.count)
            .unwrap_or_default()
    };
    assert_eq!(conversion(Conversion::Externalization), 1);
    assert_eq!(conversion(Conversion::Combination), 1);
    assert_eq!(conversion(Conversion::Internalization), 2);
    assert_eq!(conversion(Conversion::Socialization), 0);
    // The playbook reached two employees.
    assert_eq!(metrics.playbooks.len(), 1);
    assert_eq!(metrics.playbooks[0].item, playbook.name);
    assert_eq!(metrics.playbooks[0].employee_count, 2);
    // Time to explicit: X only names a source interaction; X was created
    // between `before_x` and `after_x`, so the median lies between those
    // less the interaction's time.
    assert_eq!(metrics.explicit_with_source_count, 1);
    let median = metrics.median_seconds_to_explicit;
    assert!(
        seconds(before_x - met) <= median && median <= seconds(after_x - met),
        "{median}"
    );
    // Time to verification: two items verified, each after its creation and
    // before the last call returned.
    assert_eq!(metrics.verified_count, 2);
    let median = metrics.median_seconds_to_verification;
    assert!(
        0.0 < median && median <= seconds(finished - started),
        "{median}"
    );
    // Of three explicit items: X VERIFIED, N STALE, P unverified.
    assert_eq!(metrics.explicit_count, 3);
    assert!((metrics.verified_share - 1.0 / 3.0).abs() < 1e-9);
    assert!((metrics.stale_share - 1.0 / 3.0).abs() < 1e-9);
    // Contributions: (authored, conversions, verifications, internalizations).
    let contributions: Vec<(String, i64, i64, i64, i64)> = metrics
        .contributions
        .iter()
        .map(|c| {
            (
                c.employee.clone(),
                c.items_authored,
                c.conversions,
                c.verifications,
                c.internalizations,
            )
        })
        .collect();
    assert_eq!(
        contributions,
        [
            ("E1001".to_string(), 2, 1, 1, 0),
            ("E1002".to_string(), 2, 1, 1, 0),
            ("E1003".to_string(), 1, 1, 0, 1),
            ("E1004".to_string(), 1, 1, 0, 1),
        ]
    );

    // Scoping: branch staff report on their own branch only, and count only
    // what they may see (E1001's private tacit item is not E1002's to count).
    let status = app
        .knowledge(&employee("E2001", "B02", "T-SOUTH"))
        .await
        .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .knowledge(&employee("E2001", "B02", "T-SOUTH"))
        .await
        .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
            name: "branches/B01/knowledgeSharingMetrics".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let seen = app
        .knowledge(&e2)
        .await
        .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let tacit_seen = seen
        .items_by_nature
        .iter()
        .find(|n| n.nature == Nature::Tacit as i32)
        .map(|n| n.count)
        .unwrap_or_default();
    assert!(tacit_seen < 3, "{seen:?}");
    let explicit_seen = seen
        .items_by_nature
        .iter()
        .find(|n| n.nature == Nature::Explicit as i32)
        .map(|n| n.count);
    assert_eq!(explicit_seen, Some(3));
    // A period before anything happened counts nothing.
    let empty = app
        .knowledge(&Caller::compliance())
        .await
        .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
            branch: "B01".into(),
            start_time: Some(customer_knowledge::api::timestamp(
                started - Duration::days(60),
            )),
            end_time: Some(customer_knowledge::api::timestamp(
                started - Duration::days(30),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.items_by_nature.is_empty() && empty.contributions.is_empty());
}
