//! KnowledgeService through the real server: the four conversions and the
//! lineage they leave, visibility on every read path, sharing, search in
//! Chinese and English, verification, the flow matrix and the live stream.

use std::{collections::BTreeSet, time::Duration};

use customer_knowledge::pb::v1::{
    self as pb, ConsentPurpose,
    carrier::Type as CarrierType,
    derivation::Conversion,
    knowledge_item::{Kind, Nature, Sensitivity, Visibility},
    verification::State,
};
use futures::StreamExt;
use tonic::{Code, Streaming};

use crate::helpers::{Caller, KnowledgeClient, TestApp, new_customer, reason, violated_fields};

pub(crate) fn employee(sub: &str, branch: &str, team: &str) -> Caller {
    Caller {
        team: Some(team.into()),
        ..Caller::new(sub, Some(branch), &["relationship_manager"])
    }
}

pub(crate) fn item(
    title: &str,
    nature: Nature,
    visibility: Visibility,
    subjects: &[&str],
) -> pb::KnowledgeItem {
    pb::KnowledgeItem {
        title: title.into(),
        body: format!("{title}: details worth knowing"),
        nature: nature as i32,
        kind: Kind::Preference as i32,
        visibility: visibility as i32,
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub(crate) async fn create(
    client: &mut KnowledgeClient,
    item: pb::KnowledgeItem,
) -> pb::KnowledgeItem {
    client
        .create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(item),
            ..Default::default()
        })
        .await
        .expect("create knowledge item")
        .into_inner()
}

fn titles(items: &[pb::KnowledgeItem]) -> BTreeSet<String> {
    items.iter().map(|i| i.title.clone()).collect()
}

#[tokio::test]
async fn the_four_conversions_leave_lineage_and_a_flow_matrix() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let rm = employee("E1001", "B01", "T-WEALTH");
    let colleague = employee("E1002", "B01", "T-WEALTH");
    let new_hire = employee("E1003", "B01", "T-WEALTH");
    let mut k_rm = app.knowledge(&rm).await;

    // A relationship manager's tacit insight, then written down.
    let tacit = create(
        &mut k_rm,
        item(
            "Prefers calls after 6pm",
            Nature::Tacit,
            Visibility::Private,
            &[&customer],
        ),
    )
    .await;
    assert_eq!(
        tacit.carrier.as_ref().unwrap().r#type,
        CarrierType::Employee as i32
    );
    assert_eq!(tacit.carrier.as_ref().unwrap().id, "E1001");
    let explicit = k_rm
        .externalize_knowledge(pb::ExternalizeKnowledgeRequest {
            source_items: vec![tacit.name.clone()],
            knowledge_item: Some(pb::KnowledgeItem {
                title: "Contact 张伟 in the evening".into(),
                kind: Kind::Preference as i32,
                visibility: Visibility::Team as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explicit.nature, Nature::Explicit as i32);
    assert_eq!(
        explicit.subjects,
        std::slice::from_ref(&customer),
        "subjects follow the sources"
    );
    assert_eq!(explicit.derived_from.len(), 1);
    assert_eq!(explicit.derived_from[0].item, tacit.name);
    assert_eq!(
        explicit.derived_from[0].conversion,
        Conversion::Externalization as i32
    );

    // A colleague's note, combined into a team playbook.
    let mut k_colleague = app.knowledge(&colleague).await;
    let note = create(
        &mut k_colleague,
        item(
            "Interested in education savings",
            Nature::Explicit,
            Visibility::Team,
            &[&customer],
        ),
    )
    .await;
    let playbook = k_colleague
        .combine_knowledge(pb::CombineKnowledgeRequest {
            source_items: vec![explicit.name.clone(), note.name.clone()],
            knowledge_item: Some(pb::KnowledgeItem {
                title: "Playbook: 张伟".into(),
                kind: Kind::Playbook as i32,
                visibility: Visibility::Branch as i32,
                carrier: Some(pb::Carrier {
                    r#type: CarrierType::Team as i32,
                    id: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(playbook.carrier.as_ref().unwrap().id, "T-WEALTH");
    assert_eq!(playbook.derived_from.len(), 2);

    // A new hire absorbs it; the mentor shares tacit knowledge in person.
    let absorbed = app
        .knowledge(&new_hire)
        .await
        .internalize_knowledge(pb::InternalizeKnowledgeRequest {
            name: playbook.name.clone(),
            reflection: "Call in the evening and lead with the education plan.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reflection = absorbed.tacit_item.unwrap();
    assert_eq!(reflection.nature, Nature::Tacit as i32);
    assert_eq!(reflection.carrier.unwrap().id, "E1003");
    assert_eq!(absorbed.internalization.unwrap().item, playbook.name);
    let socialized = k_rm
        .socialize_knowledge(pb::SocializeKnowledgeRequest {
            name: tacit.name.clone(),
            recipients: vec!["E1003".into()],
            session_notes: "Shadowed the evening call".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(socialized.knowledge_items.len(), 1);
    let shadowed = &socialized.knowledge_items[0];
    assert_eq!(shadowed.carrier.as_ref().unwrap().id, "E1003");
    assert_eq!(
        shadowed.derived_from[0].conversion,
        Conversion::Socialization as i32
    );

    // Lineage of the playbook: two explicit parents, the tacit grandparent,
    // the internalized child.
    let lineage = k_colleague
        .get_knowledge_lineage(pb::GetKnowledgeLineageRequest {
            name: playbook.name.clone(),
            depth: 3,
        })
        .await
        .unwrap()
        .into_inner();
    let depth_of = |name: &str| {
        lineage
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.depth)
    };
    assert_eq!(depth_of(&playbook.name), Some(0));
    assert_eq!(depth_of(&explicit.name), Some(-1));
    assert_eq!(depth_of(&note.name), Some(-1));
    assert_eq!(depth_of(&tacit.name), Some(-2));
    assert_eq!(depth_of(&reflection.name), Some(1));
    // E1001's private tacit item is shown to E1002 only as a redacted node.
    let hidden = lineage.nodes.iter().find(|n| n.name == tacit.name).unwrap();
    assert!(hidden.redacted && hidden.item.is_none());
    assert_eq!(lineage.internalizations.len(), 1);
    assert_eq!(lineage.internalizations[0].employee, "E1003");
    assert_eq!(lineage.internalizations[0].tacit_item, reflection.name);
    assert!(lineage.edges.iter().any(|e| e.source == tacit.name
        && e.target == explicit.name
        && e.conversion == Conversion::Externalization as i32));

    // The flow matrix of branch B01, as its compliance officer sees it.
    let flow = app
        .knowledge(&Caller::compliance())
        .await
        .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The same reports by their names (AIP-156), the period a parameter.
    assert_eq!(flow.name, "branches/B01/knowledgeFlow");
    for (scope, name) in [
        (("B01", ""), "branches/B01/knowledgeFlow"),
        (("", "T-WEALTH"), "teams/T-WEALTH/knowledgeFlow"),
        (("", ""), "knowledgeFlow"),
    ] {
        let mut k = app.knowledge(&Caller::compliance()).await;
        let by_fields = k
            .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
                branch: scope.0.into(),
                team: scope.1.into(),
                start_time: flow.start_time,
                end_time: flow.end_time,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let by_name = k
            .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
                name: name.into(),
                start_time: flow.start_time,
                end_time: flow.end_time,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_name, by_fields, "{name}");
        assert_eq!(by_name.name, name);
        assert_eq!(by_name.conversion_count, flow.conversion_count, "{name}");
    }
    let total = |c: Conversion| {
        flow.conversion_totals
            .iter()
            .find(|t| t.conversion == c as i32)
            .unwrap()
            .count
    };
    assert_eq!(total(Conversion::Externalization), 1);
    assert_eq!(total(Conversion::Combination), 1);
    assert_eq!(total(Conversion::Internalization), 1);
    assert_eq!(total(Conversion::Socialization), 1);
    assert_eq!(flow.conversion_count, 4);
    assert!(
        flow.cells
            .iter()
            .any(|c| c.conversion == Conversion::Combination as i32
                && c.from_carrier == CarrierType::Employee as i32
                && c.to_carrier == CarrierType::Team as i32
                && c.count == 1
                && (c.fraction - 0.25).abs() < 1e-9)
    );
    // Externalization and socialization stay with employees; the playbook
    // moved knowledge to a team, the new hire took it back to a person.
    let transition = |from: CarrierType, to: CarrierType| {
        flow.transition_totals
            .iter()
            .find(|t| t.from_carrier == from as i32 && t.to_carrier == to as i32)
            .map(|t| t.count)
    };
    assert_eq!(
        transition(CarrierType::Employee, CarrierType::Employee),
        Some(2)
    );
    assert_eq!(
        transition(CarrierType::Employee, CarrierType::Team),
        Some(1)
    );
    assert_eq!(
        transition(CarrierType::Team, CarrierType::Employee),
        Some(1)
    );
}

#[tokio::test]
async fn conversions_refuse_the_wrong_nature_and_name_the_item() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut k = app.knowledge(&employee("E1", "B01", "T1")).await;
    let tacit = create(
        &mut k,
        item(
            "gut feeling",
            Nature::Tacit,
            Visibility::Private,
            &[&customer],
        ),
    )
    .await;
    let explicit = create(
        &mut k,
        item(
            "written",
            Nature::Explicit,
            Visibility::Private,
            &[&customer],
        ),
    )
    .await;
    let new = || {
        Some(pb::KnowledgeItem {
            title: "new".into(),
            kind: Kind::Other as i32,
            ..Default::default()
        })
    };
    let combine = k
        .combine_knowledge(pb::CombineKnowledgeRequest {
            source_items: vec![explicit.name.clone(), tacit.name.clone()],
            knowledge_item: new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(combine.code(), Code::FailedPrecondition);
    assert_eq!(reason(&combine), "WRONG_NATURE");
    assert!(
        combine.message().contains(&tacit.name),
        "{}",
        combine.message()
    );
    let externalize = k
        .externalize_knowledge(pb::ExternalizeKnowledgeRequest {
            source_items: vec![explicit.name.clone()],
            knowledge_item: new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(externalize.code(), Code::FailedPrecondition);
    assert!(externalize.message().contains(&explicit.name));
    let internalize = k
        .internalize_knowledge(pb::InternalizeKnowledgeRequest {
            name: tacit.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(internalize.code(), Code::FailedPrecondition);
    let socialize = k
        .socialize_knowledge(pb::SocializeKnowledgeRequest {
            name: explicit.name.clone(),
            recipients: vec!["E2".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(socialize.code(), Code::FailedPrecondition);
    let one_source = k
        .combine_knowledge(pb::CombineKnowledgeRequest {
            source_items: vec![explicit.name.clone()],
            knowledge_item: new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&one_source), ["source_items"]);
    let tacit_by_team = k
        .create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                carrier: Some(pb::Carrier {
                    r#type: CarrierType::Team as i32,
                    id: "T1".into(),
                }),
                ..item("x", Nature::Tacit, Visibility::Private, &[])
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&tacit_by_team),
        ["knowledge_item.carrier.type"]
    );
}

/// What a caller sees of one set of items, on every read path.
async fn seen_by(app: &TestApp, caller: &Caller, names: &[(String, String)]) -> BTreeSet<String> {
    let mut k = app.knowledge(caller).await;
    let listed = titles(
        &k.list_knowledge_items(pb::ListKnowledgeItemsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .knowledge_items,
    );
    let searched = titles(
        &k.search_knowledge_items(pb::SearchKnowledgeItemsRequest {
            query: "matrix".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .knowledge_items,
    );
    let mut got = BTreeSet::new();
    for (name, title) in names {
        match k
            .get_knowledge_item(pb::GetKnowledgeItemRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(item) => {
                assert_eq!(&item.into_inner().title, title);
                got.insert(title.clone());
            }
            Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{title}"),
        }
    }
    assert_eq!(listed, got, "List agrees with Get for {}", caller.sub);
    assert_eq!(searched, got, "Search agrees with Get for {}", caller.sub);
    got
}

#[tokio::test]
async fn every_read_path_agrees_with_the_visibility_rules() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    // A bank-wide item about the customer needs their consent.
    app.customers(&Caller::admin())
        .await
        .grant_consent(pb::GrantConsentRequest {
            name: customer.clone(),
            purpose: ConsentPurpose::KnowledgeSharing as i32,
            channel: "BRANCH_FORM".into(),
            policy_version: "2026.1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let author = employee("E1", "B01", "T1");
    let mut k = app.knowledge(&author).await;
    let mut names = Vec::new();
    for (title, visibility, subjects) in [
        (
            "matrix private",
            Visibility::Private,
            vec![customer.as_str()],
        ),
        ("matrix team", Visibility::Team, vec![customer.as_str()]),
        ("matrix branch", Visibility::Branch, vec![customer.as_str()]),
        ("matrix bank", Visibility::Bank, vec![customer.as_str()]),
        ("matrix bank general", Visibility::Bank, vec![]),
    ] {
        let created = create(&mut k, item(title, Nature::Explicit, visibility, &subjects)).await;
        names.push((created.name, title.to_string()));
    }
    let set = |titles: &[&str]| {
        titles
            .iter()
            .map(|t| t.to_string())
            .collect::<BTreeSet<_>>()
    };
    let all = set(&[
        "matrix private",
        "matrix team",
        "matrix branch",
        "matrix bank",
        "matrix bank general",
    ]);
    let cases = [
        (author.clone(), all.clone()),
        (
            employee("E2", "B01", "T1"),
            set(&[
                "matrix team",
                "matrix branch",
                "matrix bank",
                "matrix bank general",
            ]),
        ),
        (
            employee("E3", "B01", "T2"),
            set(&["matrix branch", "matrix bank", "matrix bank general"]),
        ),
        // Another branch cannot read the customer, so not even BANK items about them.
        (employee("E4", "B02", "T3"), set(&["matrix bank general"])),
        (
            Caller::analyst(),
            set(&["matrix bank", "matrix bank general"]),
        ),
        (Caller::compliance(), all.clone()),
    ];
    for (caller, expected) in &cases {
        assert_eq!(
            &seen_by(&app, caller, &names).await,
            expected,
            "{}",
            caller.sub
        );
    }

    // Lineage: a playbook combining the team and bank items shows the team
    // item redacted to a caller of another team.
    let playbook = k
        .combine_knowledge(pb::CombineKnowledgeRequest {
            source_items: vec![names[1].0.clone(), names[3].0.clone()],
            knowledge_item: Some(item(
                "matrix playbook",
                Nature::Explicit,
                Visibility::Branch,
                &[],
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lineage = app
        .knowledge(&employee("E3", "B01", "T2"))
        .await
        .get_knowledge_lineage(pb::GetKnowledgeLineageRequest {
            name: playbook.name.clone(),
            depth: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let redacted: BTreeSet<&str> = lineage
        .nodes
        .iter()
        .filter(|n| n.redacted)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(redacted, BTreeSet::from([names[1].0.as_str()]));
    let status = app
        .knowledge(&employee("E4", "B02", "T3"))
        .await
        .get_knowledge_lineage(pb::GetKnowledgeLineageRequest {
            name: names[0].0.clone(),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Flow counts only what the caller sees: the combination lands in a
    // BRANCH item, invisible to the analyst.
    let flow = |caller: Caller| {
        let app = &app;
        async move {
            app.knowledge(&caller)
                .await
                .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
                    branch: "B01".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .conversion_count
        }
    };
    assert_eq!(flow(Caller::compliance()).await, 1);
    assert_eq!(flow(Caller::analyst()).await, 0);
    assert_eq!(flow(employee("E3", "B01", "T2")).await, 1);
    let status = app
        .knowledge(&employee("E4", "B02", "T3"))
        .await
        .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
            branch: "B01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // By name: the same refusal; a disagreeing or malformed name is
    // INVALID_ARGUMENT.
    let mut k = app.knowledge(&employee("E4", "B02", "T3")).await;
    let flow_named = |name: &str, branch: &str, team: &str| pb::GetKnowledgeFlowRequest {
        name: name.into(),
        branch: branch.into(),
        team: team.into(),
        ..Default::default()
    };
    let status = k
        .get_knowledge_flow(flow_named("branches/B01/knowledgeFlow", "", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = k
        .get_knowledge_flow(flow_named("branches/B02/knowledgeFlow", "", "T3"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["name", "team"]);
    let status = k
        .get_knowledge_flow(flow_named("employees/E4/knowledgeFlow", "", ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["name"]);
    let status = k
        .get_knowledge_sharing_metrics(pb::GetKnowledgeSharingMetricsRequest {
            name: "teams/T3/knowledgeSharingMetrics".into(),
            team: "T4".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["name", "team"]);
}

#[tokio::test]
async fn sharing_widens_or_grants_with_consent_and_expiry() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let author = employee("E1", "B01", "T1");
    let mut k = app.knowledge(&author).await;
    let about = create(
        &mut k,
        item(
            "about him",
            Nature::Explicit,
            Visibility::Team,
            &[&customer],
        ),
    )
    .await;
    let share = |name: &str, visibility: Visibility| pb::ShareKnowledgeItemRequest {
        name: name.into(),
        visibility: visibility as i32,
        purpose: "branch onboarding".into(),
        ..Default::default()
    };

    let narrower = k
        .share_knowledge_item(share(&about.name, Visibility::Private))
        .await
        .unwrap_err();
    assert_eq!(reason(&narrower), "NOT_WIDER");
    let widened = k
        .share_knowledge_item(share(&about.name, Visibility::Branch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        widened.knowledge_item.unwrap().visibility,
        Visibility::Branch as i32
    );
    let recorded = widened.share.unwrap();
    assert_eq!(
        recorded.from_carrier.unwrap().r#type,
        CarrierType::Employee as i32
    );
    assert_eq!(
        recorded.to_carrier.unwrap().r#type,
        CarrierType::Branch as i32
    );

    // Beyond the branch the customer must have consented.
    let status = k
        .share_knowledge_item(share(&about.name, Visibility::Bank))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "CONSENT_REQUIRED");
    app.customers(&Caller::admin())
        .await
        .update_consent(pb::UpdateConsentRequest {
            name: customer.clone(),
            purpose: ConsentPurpose::KnowledgeSharing as i32,
            granted: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    k.share_knowledge_item(share(&about.name, Visibility::Bank))
        .await
        .unwrap();

    let status = app
        .knowledge(&employee("E2", "B01", "T1"))
        .await
        .share_knowledge_item(share(&about.name, Visibility::Bank))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "only the author shares"
    );
    let mut restricted = item("restricted", Nature::Explicit, Visibility::Private, &[]);
    restricted.sensitivity = Sensitivity::Restricted as i32;
    let restricted = create(&mut k, restricted).await;
    let status = k
        .share_knowledge_item(share(&restricted.name, Visibility::Bank))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "RESTRICTED");

    // A grant to a named team, live until it expires.
    let general = create(
        &mut k,
        item(
            "general know-how",
            Nature::Explicit,
            Visibility::Private,
            &[],
        ),
    )
    .await;
    let outsider = employee("E9", "B02", "T9");
    let get = |name: String| pb::GetKnowledgeItemRequest {
        name,
        ..Default::default()
    };
    let mut k_out = app.knowledge(&outsider).await;
    assert_eq!(
        k_out
            .get_knowledge_item(get(general.name.clone()))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let granted = k
        .share_knowledge_item(pb::ShareKnowledgeItemRequest {
            name: general.name.clone(),
            grantee: Some(pb::Carrier {
                r#type: CarrierType::Team as i32,
                id: "T9".into(),
            }),
            purpose: "joint campaign".into(),
            expire_time: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(granted.share.unwrap().grant);
    assert_eq!(
        k_out
            .get_knowledge_item(get(general.name.clone()))
            .await
            .unwrap()
            .into_inner()
            .grants
            .len(),
        1
    );
    sqlx::query("UPDATE knowledge_shares SET expire_time = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        k_out
            .get_knowledge_item(get(general.name.clone()))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied,
        "an expired grant shows nothing"
    );
    let status = k
        .share_knowledge_item(pb::ShareKnowledgeItemRequest {
            name: general.name.clone(),
            purpose: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["purpose", "visibility"]);
}

#[tokio::test]
async fn search_finds_chinese_and_english_ranked_without_leaks() {
    let app = TestApp::spawn().await;
    let mut k = app.knowledge(&employee("E1", "B01", "T1")).await;
    for (title, body, visibility) in [
        (
            "客户偏好稳健型理财产品",
            "风险承受能力较低",
            Visibility::Bank,
        ),
        (
            "Pension planning",
            "Talk about retirement early",
            Visibility::Bank,
        ),
        (
            "Family notes",
            "She asked about pension transfers and investments",
            Visibility::Bank,
        ),
        (
            "Private pension hunch",
            "not for others",
            Visibility::Private,
        ),
    ] {
        create(
            &mut k,
            pb::KnowledgeItem {
                body: body.into(),
                ..item(title, Nature::Explicit, visibility, &[])
            },
        )
        .await;
    }
    let search = |client: &mut KnowledgeClient, query: &str| {
        let mut client = client.clone();
        let query = query.to_string();
        async move {
            client
                .search_knowledge_items(pb::SearchKnowledgeItemsRequest {
                    query,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .knowledge_items
                .into_iter()
                .map(|i| i.title)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search(&mut k, "理财").await, ["客户偏好稳健型理财产品"]);
    assert_eq!(search(&mut k, "风险").await, ["客户偏好稳健型理财产品"]);
    // English stemming: "investment" finds "investments".
    assert_eq!(search(&mut k, "investment").await, ["Family notes"]);
    // A title hit ranks above a body hit.
    let pension = search(&mut k, "pension").await;
    assert_eq!(pension[0], "Pension planning", "{pension:?}");
    assert!(pension.contains(&"Family notes".to_string()));
    assert!(
        pension.contains(&"Private pension hunch".to_string()),
        "the author sees their own"
    );
    let mut other = app.knowledge(&employee("E2", "B01", "T2")).await;
    let pension = search(&mut other, "pension").await;
    assert_eq!(pension.len(), 2, "no leak of a private item: {pension:?}");

    let status = k
        .search_knowledge_items(pb::SearchKnowledgeItemsRequest {
            query: "  ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["query"]);
}

#[tokio::test]
async fn verification_is_by_someone_else_and_goes_stale() {
    let app = TestApp::spawn().await;
    let mut author = app.knowledge(&employee("E1", "B01", "T1")).await;
    let created = create(
        &mut author,
        item("verify me", Nature::Explicit, Visibility::Branch, &[]),
    )
    .await;
    assert_eq!(
        created.verification.as_ref().unwrap().state,
        State::Unverified as i32
    );
    let verify = pb::VerifyKnowledgeItemRequest {
        name: created.name.clone(),
        review_interval: Some(prost_types::Duration {
            seconds: 30 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    let status = author
        .verify_knowledge_item(verify.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut peer = app.knowledge(&employee("E2", "B01", "T2")).await;
    let verified = peer
        .verify_knowledge_item(verify)
        .await
        .unwrap()
        .into_inner();
    let v = verified.verification.unwrap();
    assert_eq!(v.state, State::Verified as i32);
    assert_eq!(v.verifier, "E2");

    let list = |filter: &str| pb::ListKnowledgeItemsRequest {
        filter: filter.into(),
        ..Default::default()
    };
    assert_eq!(
        peer.list_knowledge_items(list("verification.state = VERIFIED"))
            .await
            .unwrap()
            .into_inner()
            .knowledge_items
            .len(),
        1
    );
    sqlx::query("UPDATE knowledge_items SET next_review_time = now() - interval '1 day'")
        .execute(&app.db)
        .await
        .unwrap();
    let stale = peer
        .get_knowledge_item(pb::GetKnowledgeItemRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stale.verification.unwrap().state, State::Stale as i32);
    assert_eq!(
        peer.list_knowledge_items(list("verification.state = STALE"))
            .await
            .unwrap()
            .into_inner()
            .knowledge_items
            .len(),
        1
    );
    assert!(
        peer.list_knowledge_items(list("verification.state = VERIFIED"))
            .await
            .unwrap()
            .into_inner()
            .knowledge_items
            .is_empty()
    );

    // Changing what the item says resets its verification.
    let updated = author
        .update_knowledge_item(pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                name: created.name.clone(),
                body: "new facts".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["body".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.verification.clone().unwrap().state,
        State::Unverified as i32
    );
    // `*` replaces every field an update may change: unset tags are cleared.
    let replaced = author
        .update_knowledge_item(pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                tags: Vec::new(),
                ..updated.clone()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["*".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(replaced.tags.is_empty());
    assert_eq!(replaced.body, "new facts");
    let status = peer
        .update_knowledge_item(pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                name: created.name.clone(),
                title: "hijack".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = author
        .update_knowledge_item(pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                name: created.name.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["nature".into(), "author".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["update_mask.paths[0]", "update_mask.paths[1]"]
    );
}

/// `caller`'s WatchKnowledge of the items about `subjects` (none: every
/// item it may see).
pub(crate) async fn watch(
    app: &TestApp,
    caller: &Caller,
    subjects: &[String],
) -> Streaming<pb::WatchKnowledgeResponse> {
    app.knowledge(caller)
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects: subjects.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn next(
    stream: &mut Streaming<pb::WatchKnowledgeResponse>,
) -> pb::WatchKnowledgeResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives")
        .expect("the stream is open")
        .expect("not an error")
}

#[tokio::test]
async fn watchers_see_what_becomes_visible_to_them() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let other = new_customer(&app, "李娜", "B01").await;
    let mut author = app.knowledge(&employee("E1", "B01", "T1")).await;
    let mut stream = watch(
        &app,
        &employee("E3", "B01", "T2"),
        std::slice::from_ref(&customer),
    )
    .await;

    let private = create(
        &mut author,
        item(
            "watch private",
            Nature::Explicit,
            Visibility::Private,
            &[&customer],
        ),
    )
    .await;
    create(
        &mut author,
        item(
            "watch other customer",
            Nature::Explicit,
            Visibility::Branch,
            &[&other],
        ),
    )
    .await;
    create(
        &mut author,
        item(
            "watch branch",
            Nature::Explicit,
            Visibility::Branch,
            &[&customer],
        ),
    )
    .await;
    let event = next(&mut stream).await;
    assert_eq!(event.knowledge_item.unwrap().title, "watch branch");
    assert_eq!(
        event.change,
        pb::watch_knowledge_response::Change::Created as i32
    );

    // Shared to the branch later: now it is news to the watcher.
    author
        .share_knowledge_item(pb::ShareKnowledgeItemRequest {
            name: private.name.clone(),
            visibility: Visibility::Branch as i32,
            purpose: "useful for the branch".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let event = next(&mut stream).await;
    assert_eq!(event.knowledge_item.unwrap().title, "watch private");
    assert_eq!(
        event.change,
        pb::watch_knowledge_response::Change::Shared as i32
    );
    let more = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await;
    assert!(more.is_err(), "nothing else: {more:?}");

    let status = app
        .knowledge(&employee("E4", "B02", "T3"))
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects: vec![customer.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_watch_follows_every_one_of_its_hundred_subjects() {
    let app = TestApp::spawn().await;
    let mut customers = Vec::new();
    for i in 0..100 {
        customers.push(new_customer(&app, &format!("客户{i}"), "B01").await);
    }
    let mut author = app.knowledge(&employee("E1", "B01", "T1")).await;
    let mut stream = watch(&app, &employee("E3", "B01", "T2"), &customers).await;
    // About the last subject named, then the first: both are news.
    for (title, subject) in [("the last", &customers[99]), ("the first", &customers[0])] {
        create(
            &mut author,
            item(title, Nature::Explicit, Visibility::Branch, &[subject]),
        )
        .await;
    }
    let mut titles = Vec::new();
    while titles.len() < 2 {
        let event = next(&mut stream).await;
        if let Some(item) = event.knowledge_item {
            titles.push(item.title);
        }
    }
    assert_eq!(titles, ["the last", "the first"]);
    // A hundred and one is refused, not cut short.
    customers.push(new_customer(&app, "客户100", "B01").await);
    let status = app
        .knowledge(&employee("E3", "B01", "T2"))
        .await
        .watch_knowledge(pb::WatchKnowledgeRequest {
            subjects: customers,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["subjects"]);
}
