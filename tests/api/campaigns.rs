//! CampaignService over real gRPC and Postgres: one campaign through its
//! cycle (plan, budget, activities, execution, responses, results) with the
//! uplift and cost per conversion worked out here by hand; consent gating of
//! contacts; a control group that is never contacted and is reproducible
//! from the stored seed; illegal steps refused naming the state; branch
//! scoping of every read and write.

use chrono::{DateTime, Duration, Utc};
use customer_knowledge::pb::v1::{
    self as pb, campaign_service_client::CampaignServiceClient, customer::Tier,
};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};
use tonic_types::StatusExt;

use crate::helpers::{Bearer, Caller, TestApp, new_customer, reason, violated_fields};

type CampaignClient = CampaignServiceClient<InterceptedService<Channel, Bearer>>;

async fn campaigns(app: &TestApp, caller: &Caller) -> CampaignClient {
    CampaignServiceClient::with_interceptor(app.channel().await, Bearer::of(caller))
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

async fn tagged_customer(app: &TestApp, name: &str, branch: &str, tag: &str) -> String {
    app.customers(&Caller::admin())
        .await
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: name.into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: branch.into(),
                tags: vec![tag.into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create customer")
        .into_inner()
        .name
}

async fn set_marketing(app: &TestApp, customer: &str, granted: bool) {
    app.customers(&Caller::admin())
        .await
        .update_consent(pb::UpdateConsentRequest {
            name: customer.into(),
            purpose: pb::ConsentPurpose::Marketing as i32,
            granted: Some(granted),
            ..Default::default()
        })
        .await
        .expect("set MARKETING consent");
}

async fn log_transaction(app: &TestApp, customer: &str, at: DateTime<Utc>, product: &str) {
    app.interactions(&Caller::admin())
        .await
        .log_interaction(pb::LogInteractionRequest {
            parent: customer.into(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::OnlineBanking as i32,
                kind: pb::interaction::Kind::Transaction as i32,
                occur_time: ts(at),
                summary: "purchase".into(),
                amount: cny(10_000),
                products: vec![product.into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("log a transaction");
}

/// The PROMOTION interactions of `campaign` on a customer's timeline.
async fn promotions(app: &TestApp, customer: &str, campaign: &str) -> Vec<pb::Interaction> {
    app.interactions(&Caller::admin())
        .await
        .list_interactions(pb::ListInteractionsRequest {
            parent: customer.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list the timeline")
        .into_inner()
        .interactions
        .into_iter()
        .filter(|i| i.kind == pb::interaction::Kind::Promotion as i32 && i.campaign == campaign)
        .collect()
}

fn plan(
    display_name: &str,
    branch: &str,
    tag: &str,
    control: i32,
    now: DateTime<Utc>,
) -> pb::Campaign {
    pb::Campaign {
        display_name: display_name.into(),
        objective: "Grow one-year deposits".into(),
        products: vec!["DEPOSIT-1Y".into()],
        budget: cny(5000),
        start_time: ts(now - Duration::days(20)),
        end_time: ts(now + Duration::days(10)),
        target: Some(pb::CampaignTarget {
            branch: branch.into(),
            tags: vec![tag.into()],
            ..Default::default()
        }),
        control_group_percent: control,
        conversion_window_days: 7,
        ..Default::default()
    }
}

fn activity(
    title: &str,
    channel: pb::interaction::Channel,
    units: i64,
    at: DateTime<Utc>,
) -> pb::CampaignActivity {
    pb::CampaignActivity {
        title: title.into(),
        channel: channel as i32,
        cost: cny(units),
        schedule_time: ts(at),
    }
}

/// A refusal as FAILED_PRECONDITION with `reason`; the state it names, if any.
fn refused(status: &tonic::Status, expected: &str) -> String {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(status), expected, "{status:?}");
    let info = status.get_error_details().error_info().cloned().unwrap();
    let state = info.metadata.get("state").cloned().unwrap_or_default();
    assert!(status.message().contains(&state), "{}", status.message());
    state
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn one_campaign_from_plan_to_uplift_and_cost_per_conversion() {
    let app = TestApp::spawn().await;
    // Postgres keeps microseconds.
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let tag = "deposit-drive";
    // 20 consenting target customers, 3 target customers without consent
    // (one withdrew it, two never gave it), 2 consenting customers without
    // the tag (outside the target) and 2 consenting B02 customers with it
    // (outside the branch).
    let mut consenting = Vec::new();
    for i in 0..20 {
        let c = tagged_customer(&app, &format!("Target {i}"), "B01", tag).await;
        set_marketing(&app, &c, true).await;
        consenting.push(c);
    }
    let withdrew = tagged_customer(&app, "Withdrew", "B01", tag).await;
    set_marketing(&app, &withdrew, false).await;
    let never_a = tagged_customer(&app, "Never A", "B01", tag).await;
    let never_b = tagged_customer(&app, "Never B", "B01", tag).await;
    let untagged = tagged_customer(&app, "Untagged", "B01", "other").await;
    set_marketing(&app, &untagged, true).await;
    let elsewhere = tagged_customer(&app, "Elsewhere", "B02", tag).await;
    set_marketing(&app, &elsewhere, true).await;
    // Tiers as a segmentation run would have left them: Target 0..9 MAJOR,
    // Target 10..19 SMALL.
    for (i, c) in consenting.iter().enumerate() {
        let tier = if i < 10 { "MAJOR" } else { "SMALL" };
        sqlx::query("UPDATE customers SET tier = $1 WHERE id = $2")
            .bind(tier)
            .bind(c.strip_prefix("customers/").unwrap())
            .execute(&app.db)
            .await
            .unwrap();
    }

    // Plan: a relationship manager of B01 plans for B01.
    let rm = Caller::rm("B01");
    let mut client = campaigns(&app, &rm).await;
    let campaign = client
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(plan("Spring deposit drive", "B01", tag, 25, now)),
            request_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .expect("create the campaign")
        .into_inner();
    assert_eq!(campaign.state, pb::campaign::State::Planned as i32);
    assert_eq!(campaign.conversion_window_days, 7);
    assert_eq!(campaign.created_by, rm.sub);
    let name = campaign.name.clone();

    // Execute: refused without an activity.
    let contact_time = now - Duration::days(10);
    let generate = |request_id: String| pb::GenerateCampaignContactsRequest {
        name: name.clone(),
        channel: pb::interaction::Channel::Phone as i32,
        contact_time: ts(contact_time),
        request_id,
    };
    let status = client
        .generate_campaign_contacts(generate(String::new()))
        .await
        .unwrap_err();
    refused(&status, "CAMPAIGN_WITHOUT_ACTIVITY");

    // Budget → activities: 1800 + 1200 = 3000 of 5000; 2500 more is over.
    for (title, channel, units) in [
        ("Phone calls", pb::interaction::Channel::Phone, 1800),
        ("Email wave", pb::interaction::Channel::Email, 1200),
    ] {
        client
            .add_campaign_activity(pb::AddCampaignActivityRequest {
                name: name.clone(),
                activity: Some(activity(title, channel, units, now - Duration::days(10))),
                ..Default::default()
            })
            .await
            .expect("add an activity");
    }
    let status = client
        .add_campaign_activity(pb::AddCampaignActivityRequest {
            name: name.clone(),
            activity: Some(activity(
                "Branch posters",
                pb::interaction::Channel::Branch,
                2500,
                now,
            )),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&status, "CAMPAIGN_OVER_BUDGET");
    let got = client
        .get_campaign(pb::GetCampaignRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.activities.len(), 2);
    assert_eq!(got.planned_cost, cny(3000));

    // Execute: 23 match the target, 3 lack consent; of the 20 consenting,
    // ⌊20 × 25%⌋ = 5 are held back and 15 contacted. A retry with the same
    // request_id answers the same.
    let request_id = uuid::Uuid::now_v7().to_string();
    let executed = client
        .generate_campaign_contacts(generate(request_id.clone()))
        .await
        .expect("generate contacts")
        .into_inner();
    let expected = pb::GenerateCampaignContactsResponse {
        campaign: name.clone(),
        target_count: 23,
        without_consent_count: 3,
        control_count: 5,
        contacted_count: 15,
    };
    assert_eq!(executed, expected);
    let replayed = client
        .generate_campaign_contacts(generate(request_id))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replayed, expected);
    let status = client
        .generate_campaign_contacts(generate(String::new()))
        .await
        .unwrap_err();
    assert_eq!(refused(&status, "CAMPAIGN_STATE"), "EXECUTING");
    let status = client
        .add_campaign_activity(pb::AddCampaignActivityRequest {
            name: name.clone(),
            activity: Some(activity("Late", pb::interaction::Channel::Email, 1, now)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused(&status, "CAMPAIGN_STATE"), "EXECUTING");

    // Contacts: exactly one PROMOTION per contacted customer, none for the
    // control group, none for anyone without consent or outside the target.
    let mut contacted = Vec::new();
    let mut control = Vec::new();
    for c in &consenting {
        let found = promotions(&app, c, &name).await;
        match found.as_slice() {
            [] => control.push(c.clone()),
            [one] => {
                assert_eq!(one.products, ["DEPOSIT-1Y"]);
                assert_eq!(one.channel, pb::interaction::Channel::Phone as i32);
                assert_eq!(one.occur_time, ts(contact_time));
                assert_eq!(one.recorded_by.as_ref().unwrap().employee, rm.sub);
                contacted.push(c.clone());
            }
            many => panic!("{c} was contacted {} times", many.len()),
        }
    }
    assert_eq!((contacted.len(), control.len()), (15, 5));
    for c in [&withdrew, &never_a, &never_b, &untagged, &elsewhere] {
        assert!(
            promotions(&app, c, &name).await.is_empty(),
            "{c} was contacted"
        );
    }
    // The control group is the one the stored seed draws.
    let ids: Vec<String> = consenting
        .iter()
        .map(|c| c.strip_prefix("customers/").unwrap().to_string())
        .collect();
    let (drawn, _) =
        customer_knowledge::domain::campaign::draw_control(got.seed, 25, ids, |s| s.as_str());
    let mut observed: Vec<String> = control
        .iter()
        .map(|c| c.strip_prefix("customers/").unwrap().to_string())
        .collect();
    observed.sort();
    let mut drawn = drawn;
    drawn.sort();
    assert_eq!(observed, drawn);

    // Conversions (window: 7 days from the contact):
    // contacted[0..6] buy DEPOSIT-1Y 2 days after → 6 converted;
    // contacted[6] buys it 8 days after (outside), contacted[7] buys
    // CARD_GOLD (not promoted), contacted[8] bought it the day before →
    // none of these; control[0] buys it 3 days after → 1 control
    // conversion; control[1] 9 days after → none.
    for c in &contacted[0..6] {
        log_transaction(&app, c, contact_time + Duration::days(2), "DEPOSIT-1Y").await;
    }
    log_transaction(
        &app,
        &contacted[6],
        contact_time + Duration::days(8),
        "DEPOSIT-1Y",
    )
    .await;
    log_transaction(
        &app,
        &contacted[7],
        contact_time + Duration::days(1),
        "CARD_GOLD",
    )
    .await;
    log_transaction(
        &app,
        &contacted[8],
        contact_time - Duration::days(1),
        "DEPOSIT-1Y",
    )
    .await;
    log_transaction(
        &app,
        &control[0],
        contact_time + Duration::days(3),
        "DEPOSIT-1Y",
    )
    .await;
    log_transaction(
        &app,
        &control[1],
        contact_time + Duration::days(9),
        "DEPOSIT-1Y",
    )
    .await;

    // Responses: 5 contacted customers answer; the control group and those
    // never contacted cannot.
    use pb::CampaignResponseOutcome as O;
    let responses = [
        (&contacted[0], O::Accepted),
        (&contacted[1], O::Interested),
        (&contacted[9], O::Declined),
        (&contacted[10], O::OptedOut),
        (&contacted[11], O::Interested),
    ];
    for (c, outcome) in responses {
        let contact = client
            .record_campaign_response(pb::RecordCampaignResponseRequest {
                name: name.clone(),
                customer: c.clone(),
                outcome: outcome as i32,
                ..Default::default()
            })
            .await
            .expect("record a response")
            .into_inner();
        assert_eq!(contact.outcome, outcome as i32);
        assert!(
            contact
                .interaction
                .starts_with(&format!("{c}/interactions/"))
        );
    }
    for c in [&control[0], &withdrew, &untagged] {
        let status = client
            .record_campaign_response(pb::RecordCampaignResponseRequest {
                name: name.clone(),
                customer: c.clone(),
                outcome: O::Interested as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        refused(&status, "NOT_CAMPAIGN_CONTACT");
    }

    // The 360 view shows the campaign among the customer's promotional
    // data, with the response; a control customer's shows no campaign.
    let mut insights = crate::insights::insights(&app, &rm).await;
    let view = insights
        .get_customer360(pb::GetCustomer360Request {
            name: contacted[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.campaign_contacts.len(), 1);
    let shown = &view.campaign_contacts[0];
    assert_eq!(shown.campaign, name);
    assert_eq!(shown.outcome, O::Accepted as i32);
    assert_eq!(shown.contact_time, ts(contact_time));
    let view = insights
        .get_customer360(pb::GetCustomer360Request {
            name: control[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(view.campaign_contacts.is_empty());

    // Results, by hand: contacted 15, responded 5, converted 6; control 5,
    // converted 1. Response rate 5/15, conversion 6/15 = 0.4, control 1/5 =
    // 0.2, uplift 0.4 − 0.2 = 0.2. Cost 1800 + 1200 = 3000 CNY over 6
    // conversions = 500 CNY each.
    let results = client
        .get_campaign_results(pb::GetCampaignResultsRequest { name: name.clone() })
        .await
        .expect("results")
        .into_inner();
    let total = results.total.unwrap();
    assert_eq!(
        (
            total.contacted_count,
            total.responded_count,
            total.converted_count,
            total.control_count,
            total.control_converted_count
        ),
        (15, 5, 6, 5, 1)
    );
    assert!(close(total.response_rate, 5.0 / 15.0));
    assert!(close(total.conversion_rate, 0.4));
    assert!(close(total.control_conversion_rate, 0.2));
    assert!(close(total.uplift, 0.2), "{}", total.uplift);
    assert_eq!(results.cost, cny(3000));
    assert_eq!(results.cost_per_conversion, cny(500));
    assert_eq!(results.conversion_window_days, 7);

    // By tier, counted from the groups above: Target 0..9 are MAJOR.
    let is_major = |c: &String| consenting[..10].contains(c);
    let count = |list: &[String], pred: &dyn Fn(&String) -> bool| {
        list.iter().filter(|c| pred(c)).count() as i64
    };
    let converted: Vec<String> = contacted[0..6].to_vec();
    let responded: Vec<String> = [0, 1, 9, 10, 11]
        .iter()
        .map(|i| contacted[*i].clone())
        .collect();
    let control_converted = vec![control[0].clone()];
    for (tier, pred) in [
        (Tier::Major, &is_major as &dyn Fn(&String) -> bool),
        (Tier::Small, &|c: &String| !is_major(c)),
    ] {
        let expected = (
            count(&contacted, pred),
            count(&responded, pred),
            count(&converted, pred),
            count(&control, pred),
            count(&control_converted, pred),
        );
        let row = results
            .by_tier
            .iter()
            .find(|t| t.tier == tier as i32)
            .map(|t| t.figures.unwrap());
        let got = row
            .map(|f| {
                (
                    f.contacted_count,
                    f.responded_count,
                    f.converted_count,
                    f.control_count,
                    f.control_converted_count,
                )
            })
            .unwrap_or_default();
        assert_eq!(got, expected, "{tier:?}");
    }
    assert_eq!(results.by_tier.len(), 2);
    assert_eq!(results.by_branch.len(), 1);
    assert_eq!(results.by_branch[0].branch, "B01");
    assert_eq!(results.by_branch[0].figures, results.total);

    // An analyst reads the same figures; a B02 manager cannot reach them.
    let analyst = campaigns(&app, &Caller::analyst())
        .await
        .get_campaign_results(pb::GetCampaignResultsRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(analyst, results);
    // The results by their own name (AIP-156): the same figures; every
    // answer carries that name.
    assert_eq!(results.name, format!("{name}/results"));
    let named = campaigns(&app, &Caller::analyst())
        .await
        .get_campaign_results(pb::GetCampaignResultsRequest {
            name: format!("{name}/results"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named, results);
    for malformed in [format!("{name}/result"), format!("{name}/results/results")] {
        let status = campaigns(&app, &Caller::analyst())
            .await
            .get_campaign_results(pb::GetCampaignResultsRequest {
                name: malformed.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{malformed}");
    }
    let mut b02 = campaigns(&app, &Caller::rm("B02")).await;
    for status in [
        b02.get_campaign_results(pb::GetCampaignResultsRequest { name: name.clone() })
            .await
            .unwrap_err(),
        b02.get_campaign(pb::GetCampaignRequest { name: name.clone() })
            .await
            .unwrap_err(),
        b02.get_campaign(pb::GetCampaignRequest {
            name: "campaigns/does-not-exist".into(),
        })
        .await
        .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let status = campaigns(&app, &Caller::admin())
        .await
        .get_campaign(pb::GetCampaignRequest {
            name: "campaigns/does-not-exist".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn bank_wide_campaigns_are_scoped_to_the_readers_branch() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let tag = "bank-wide";
    let mut b01 = Vec::new();
    let mut b02 = Vec::new();
    for i in 0..4 {
        let c = tagged_customer(&app, &format!("North {i}"), "B01", tag).await;
        set_marketing(&app, &c, true).await;
        b01.push(c);
        let c = tagged_customer(&app, &format!("South {i}"), "B02", tag).await;
        set_marketing(&app, &c, true).await;
        b02.push(c);
    }
    let plain_b01 = new_customer(&app, "Plain", "B01").await;

    // Who may plan what: a branch manager only for their own branch, never
    // bank-wide; analysts and compliance not at all.
    for (caller, branch) in [
        (Caller::rm("B02"), "B01"),
        (Caller::rm("B02"), ""),
        (Caller::teller("B01"), ""),
        (Caller::analyst(), "B01"),
        (Caller::compliance(), "B01"),
    ] {
        let status = campaigns(&app, &caller)
            .await
            .create_campaign(pb::CreateCampaignRequest {
                campaign: Some(plan("Nope", branch, tag, 0, now)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{caller:?} {branch}");
    }

    let mut admin = campaigns(&app, &Caller::admin()).await;
    let bank_wide = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(plan("Bank-wide drive", "", tag, 0, now)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let b01_only = campaigns(&app, &Caller::rm("B01"))
        .await
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(plan("North only", "B01", tag, 0, now)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    // A bank-wide campaign is the bank's: a branch manager cannot change it.
    let status = campaigns(&app, &Caller::rm("B01"))
        .await
        .add_campaign_activity(pb::AddCampaignActivityRequest {
            name: bank_wide.clone(),
            activity: Some(activity("Calls", pb::interaction::Channel::Phone, 800, now)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    admin
        .add_campaign_activity(pb::AddCampaignActivityRequest {
            name: bank_wide.clone(),
            activity: Some(activity("Calls", pb::interaction::Channel::Phone, 800, now)),
            ..Default::default()
        })
        .await
        .unwrap();
    let executed = admin
        .generate_campaign_contacts(pb::GenerateCampaignContactsRequest {
            name: bank_wide.clone(),
            channel: pb::interaction::Channel::Phone as i32,
            contact_time: ts(now - Duration::days(1)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((executed.contacted_count, executed.control_count), (8, 0));
    log_transaction(&app, &b01[0], now - Duration::hours(2), "DEPOSIT-1Y").await;

    // Listing: B02 sees the bank-wide campaign only; B01 both; asking for
    // another branch's campaigns is refused.
    let list = |branch: &str| pb::ListCampaignsRequest {
        branch: branch.into(),
        ..Default::default()
    };
    let names =
        |r: pb::ListCampaignsResponse| r.campaigns.into_iter().map(|c| c.name).collect::<Vec<_>>();
    let mut rm_b02 = campaigns(&app, &Caller::rm("B02")).await;
    assert_eq!(
        names(rm_b02.list_campaigns(list("")).await.unwrap().into_inner()),
        [bank_wide.as_str()]
    );
    let status = rm_b02.list_campaigns(list("B01")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut rm_b01 = campaigns(&app, &Caller::rm("B01")).await;
    assert_eq!(
        names(rm_b01.list_campaigns(list("")).await.unwrap().into_inner()),
        [b01_only.clone(), bank_wide.clone()]
    );
    // One per page, newest first, with a token.
    let first = admin
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(first.clone()), [b01_only.as_str()]);
    let second = admin
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(second.clone()), [bank_wide.as_str()]);
    assert!(second.next_page_token.is_empty());

    // Results: B02's manager sees B02's 4 contacts and no cost (a branch's
    // share of a bank-wide budget is not defined); the admin all 8, the
    // 800 CNY and, with 1 conversion, 800 CNY per conversion.
    let results = rm_b02
        .get_campaign_results(pb::GetCampaignResultsRequest {
            name: bank_wide.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let total = results.total.unwrap();
    assert_eq!((total.contacted_count, total.converted_count), (4, 0));
    assert_eq!(results.cost, None);
    assert_eq!(results.cost_per_conversion, None);
    let branches: Vec<&str> = results
        .by_branch
        .iter()
        .map(|b| b.branch.as_str())
        .collect();
    assert_eq!(branches, ["B02"]);
    let results = admin
        .get_campaign_results(pb::GetCampaignResultsRequest {
            name: bank_wide.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let total = results.total.unwrap();
    assert_eq!((total.contacted_count, total.converted_count), (8, 1));
    assert!(close(total.conversion_rate, 1.0 / 8.0));
    assert!(
        close(total.uplift, 1.0 / 8.0),
        "no control group: uplift is the rate"
    );
    assert_eq!(results.cost, cny(800));
    assert_eq!(results.cost_per_conversion, cny(800));
    let branches: Vec<(&str, i64)> = results
        .by_branch
        .iter()
        .map(|b| {
            (
                b.branch.as_str(),
                b.figures.as_ref().unwrap().contacted_count,
            )
        })
        .collect();
    assert_eq!(branches, [("B01", 4), ("B02", 4)]);

    // Responses: only for customers the caller may write, and only for
    // customers contacted.
    let status = rm_b02
        .record_campaign_response(pb::RecordCampaignResponseRequest {
            name: bank_wide.clone(),
            customer: b01[1].clone(),
            outcome: pb::CampaignResponseOutcome::Interested as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    rm_b02
        .record_campaign_response(pb::RecordCampaignResponseRequest {
            name: bank_wide.clone(),
            customer: b02[1].clone(),
            outcome: pb::CampaignResponseOutcome::Interested as i32,
            ..Default::default()
        })
        .await
        .expect("a B02 manager records a B02 response");
    let status = rm_b01
        .record_campaign_response(pb::RecordCampaignResponseRequest {
            name: bank_wide.clone(),
            customer: plain_b01.clone(),
            outcome: pb::CampaignResponseOutcome::Interested as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&status, "NOT_CAMPAIGN_CONTACT");
    // A PLANNED campaign takes no responses.
    let status = rm_b01
        .record_campaign_response(pb::RecordCampaignResponseRequest {
            name: b01_only.clone(),
            customer: b01[0].clone(),
            outcome: pb::CampaignResponseOutcome::Interested as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused(&status, "CAMPAIGN_STATE"), "PLANNED");
}

#[tokio::test]
async fn campaign_requests_are_checked_field_by_field() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let mut admin = campaigns(&app, &Caller::admin()).await;
    let mut bad = plan("", "B01", "Not A Tag!", 60, now);
    bad.end_time = ts(now - Duration::days(30));
    bad.products = vec![];
    bad.budget = Some(pb::Money {
        currency_code: "CNY".into(),
        units: -1,
        nanos: 0,
    });
    bad.conversion_window_days = 400;
    let status = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "campaign.budget",
            "campaign.control_group_percent",
            "campaign.conversion_window_days",
            "campaign.display_name",
            "campaign.end_time",
            "campaign.products",
            "campaign.target.tags[0]",
        ]
    );
    // An activity in another currency, or outside the period.
    let name = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(plan("Checked", "B01", "t", 10, now)),
            campaign_id: "checked-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    assert_eq!(name, "campaigns/checked-1");
    let status = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(plan("Checked", "B01", "t", 10, now)),
            campaign_id: "checked-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status), "CAMPAIGN_ALREADY_EXISTS");
    let mut usd = activity(
        "Abroad",
        pb::interaction::Channel::Email,
        10,
        now + Duration::days(60),
    );
    usd.cost = Some(pb::Money {
        currency_code: "USD".into(),
        units: 10,
        nanos: 0,
    });
    let status = admin
        .add_campaign_activity(pb::AddCampaignActivityRequest {
            name: name.clone(),
            activity: Some(usd),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        ["activity.cost.currency_code", "activity.schedule_time"]
    );
}
