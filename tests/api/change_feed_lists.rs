//! The change feed on the lists of rows of every customer and on campaigns:
//! ListFollowUps, ListServiceRequests, ListComplaints and ListCampaigns take
//! an `update_time` filter and `order_by: "update_time"`, page through every
//! change once (a row changed between pages comes again at the end), keep
//! the branch scoping of their natural order, and bind a page token to its
//! order.
//!
//! Each test makes the same four rows in this order: a, b and c in branch
//! B01 with x (branch B02) between a and b, then changes a after the first
//! page was read. So, by hand: B01's relationship manager reads [a, b], then
//! [c, a]; `update_time > c` is [a]; an admin in update_time order reads
//! [x, b, c, a].

use chrono::{DateTime, Duration, Utc};
use customer_knowledge::pb::v1::{
    self as pb,
    campaign_service_client::CampaignServiceClient,
    complaint::{Category, Severity, State},
    interaction::{Channel, Kind},
};
use prost_types::Timestamp;
use tonic::{Code, Status};

use crate::helpers::{Bearer, Caller, TestApp, move_to_branch, new_customer, violated_fields};

/// What a list request asks, whatever the list.
struct Args {
    filter: String,
    order_by: &'static str,
    page_token: String,
    page_size: i32,
}

fn args(order_by: &'static str, page_token: &str, page_size: i32) -> Args {
    Args {
        filter: String::new(),
        order_by,
        page_token: page_token.into(),
        page_size,
    }
}

/// One page of a list: the rows' names and update times, the next token.
#[derive(Debug)]
struct Page {
    names: Vec<String>,
    times: Vec<Timestamp>,
    next: String,
}

fn page<T>(
    rows: &[T],
    next: String,
    name: impl Fn(&T) -> &str,
    time: impl Fn(&T) -> Option<Timestamp>,
) -> Page {
    Page {
        names: rows.iter().map(|r| name(r).to_string()).collect(),
        times: rows
            .iter()
            .map(|r| time(r).expect("update_time is set"))
            .collect(),
        next,
    }
}

fn rfc3339(t: &Timestamp) -> String {
    DateTime::from_timestamp(t.seconds, t.nanos as u32)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The checks every list passes, given how to list as a caller and how to
/// change row a; `rows` are [a, x, b, c] in the order they were made.
async fn follows_changes(
    list: impl AsyncFn(&Caller, Args) -> Result<Page, Status>,
    rows: [String; 4],
    change_a: impl AsyncFnOnce(),
) {
    let [a, x, b, c] = rows;
    let rm = Caller::rm("B01");
    let admin = Caller::admin();

    // Least recently changed first, two to a page, B01's rows only.
    let first = list(&rm, args("update_time", "", 2)).await.unwrap();
    assert_eq!(first.names, [a.clone(), b.clone()]);
    assert!(!first.next.is_empty());

    // a changes after the first page was read: it comes again at the end.
    change_a().await;
    let second = list(&rm, args("update_time", &first.next, 2))
        .await
        .unwrap();
    assert_eq!(second.names, [c.clone(), a.clone()]);
    assert!(second.next.is_empty(), "every change read once");
    assert!(
        second.times[1] != first.times[0],
        "a comes again as it is now"
    );

    // From c's update time: only what changed after it.
    let after_c = list(
        &rm,
        Args {
            filter: format!("update_time > \"{}\"", rfc3339(&second.times[0])),
            ..args("update_time", "", 10)
        },
    )
    .await
    .unwrap();
    assert_eq!(after_c.names, std::slice::from_ref(&a));
    let before_c = list(
        &rm,
        Args {
            filter: format!(
                "update_time >= \"{}\" AND update_time < \"{}\"",
                rfc3339(&first.times[1]),
                rfc3339(&second.times[0])
            ),
            ..args("update_time", "", 10)
        },
    )
    .await
    .unwrap();
    assert_eq!(before_c.names, std::slice::from_ref(&b));

    // Branch scoping holds in this order: the admin sees x where it falls.
    let everything = list(&admin, args("update_time", "", 10)).await.unwrap();
    assert_eq!(
        everything.names,
        [x.clone(), b.clone(), c.clone(), a.clone()]
    );
    let mut natural = list(&rm, args("", "", 10)).await.unwrap().names;
    natural.sort();
    let mut expected = vec![a.clone(), b.clone(), c.clone()];
    expected.sort();
    assert_eq!(natural, expected, "the natural order, scoped alike");

    // An unknown order names order_by; a token is bound to its order.
    let status = list(&rm, args("due_time desc", "", 2)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["order_by"]);
    let status = list(&rm, args("", &first.next, 2)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
    let natural_first = list(&rm, args("", "", 1)).await.unwrap();
    assert!(!natural_first.next.is_empty());
    let status = list(&rm, args("update_time", &natural_first.next, 1))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
}

fn in_a_day() -> Timestamp {
    customer_knowledge::api::timestamp(Utc::now() + Duration::days(1))
}

#[tokio::test]
async fn follow_ups_follow_changes_by_update_time() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let li = new_customer(&app, "李娜", "B02").await;
    let schedule = |parent: &str| pb::ScheduleFollowUpRequest {
        parent: parent.into(),
        follow_up: Some(pb::FollowUp {
            assignee: "E1001".into(),
            due_time: Some(in_a_day()),
            purpose: "回访".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let mut rows = Vec::new();
    for parent in [&zhang, &li, &zhang, &zhang] {
        let made = app
            .interactions(&Caller::admin())
            .await
            .schedule_follow_up(schedule(parent))
            .await
            .unwrap()
            .into_inner();
        rows.push(made.name);
    }
    let list = async |caller: &Caller, args: Args| {
        let reply = app
            .interactions(caller)
            .await
            .list_follow_ups(pb::ListFollowUpsRequest {
                parent: "customers/-".into(),
                page_size: args.page_size,
                page_token: args.page_token,
                filter: args.filter,
                order_by: args.order_by.into(),
            })
            .await?
            .into_inner();
        Ok(page(
            &reply.follow_ups,
            reply.next_page_token,
            |f| &f.name,
            |f| f.update_time,
        ))
    };
    let a = rows[0].clone();
    let rows: [String; 4] = rows.try_into().unwrap();
    follows_changes(&list, rows.clone(), async || {
        rm.reassign_follow_up(pb::ReassignFollowUpRequest {
            name: a.clone(),
            assignee: "E1002".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    })
    .await;

    // Cancelling b and completing c stamp them too: after the last change
    // seen, [b, c] in that order.
    let seen = list(&Caller::admin(), args("update_time", "", 10))
        .await
        .unwrap();
    let last_seen = rfc3339(seen.times.last().unwrap());
    rm.cancel_follow_up(pb::CancelFollowUpRequest {
        name: rows[2].clone(),
        reason: "customer moved abroad".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    rm.complete_follow_up(pb::CompleteFollowUpRequest {
        name: rows[3].clone(),
        interaction: Some(pb::Interaction {
            channel: Channel::Phone as i32,
            summary: "Called back".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let changed = list(
        &Caller::rm("B01"),
        Args {
            filter: format!("update_time > \"{last_seen}\""),
            ..args("update_time", "", 10)
        },
    )
    .await
    .unwrap();
    assert_eq!(changed.names, [rows[2].clone(), rows[3].clone()]);
}

#[tokio::test]
async fn complaints_follow_changes_by_update_time() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let li = new_customer(&app, "李娜", "B02").await;
    let mut rows = Vec::new();
    for parent in [&zhang, &li, &zhang, &zhang] {
        let made = app
            .interactions(&Caller::admin())
            .await
            .log_interaction(pb::LogInteractionRequest {
                parent: parent.to_string(),
                interaction: Some(pb::Interaction {
                    channel: Channel::Phone as i32,
                    kind: Kind::Complaint as i32,
                    summary: "Card fee charged twice".into(),
                    complaint: Some(pb::Complaint {
                        severity: Severity::Medium as i32,
                        category: Category::Fees as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        rows.push(made.name);
    }
    // An inquiry of the same customer is no complaint: never listed.
    app.interactions(&Caller::admin())
        .await
        .log_interaction(pb::LogInteractionRequest {
            parent: zhang.clone(),
            interaction: Some(pb::Interaction {
                channel: Channel::Branch as i32,
                kind: Kind::Inquiry as i32,
                summary: "Asked about deposits".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = async |caller: &Caller, args: Args| {
        let reply = app
            .interactions(caller)
            .await
            .list_complaints(pb::ListComplaintsRequest {
                parent: "customers/-".into(),
                page_size: args.page_size,
                page_token: args.page_token,
                filter: args.filter,
                order_by: args.order_by.into(),
            })
            .await?
            .into_inner();
        Ok(page(
            &reply.interactions,
            reply.next_page_token,
            |i| &i.name,
            |i| i.update_time,
        ))
    };
    let a = rows[0].clone();
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    follows_changes(&list, rows.try_into().unwrap(), async || {
        rm.update_complaint(pb::UpdateComplaintRequest {
            name: a.clone(),
            state: State::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn service_requests_follow_changes_by_update_time() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let li = new_customer(&app, "李娜", "B02").await;
    let mut rows = Vec::new();
    for parent in [&zhang, &li, &zhang, &zhang] {
        let made = app
            .interactions(&Caller::admin())
            .await
            .log_interaction(pb::LogInteractionRequest {
                parent: parent.to_string(),
                interaction: Some(pb::Interaction {
                    channel: Channel::Branch as i32,
                    kind: Kind::ServiceRequest as i32,
                    summary: "Replace a damaged debit card".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        rows.push(made.name.replace("/interactions/", "/serviceRequests/"));
    }
    let list = async |caller: &Caller, args: Args| {
        let reply = app
            .interactions(caller)
            .await
            .list_service_requests(pb::ListServiceRequestsRequest {
                parent: "customers/-".into(),
                page_size: args.page_size,
                page_token: args.page_token,
                filter: args.filter,
                order_by: args.order_by.into(),
            })
            .await?
            .into_inner();
        Ok(page(
            &reply.service_requests,
            reply.next_page_token,
            |r| &r.name,
            |r| r.update_time,
        ))
    };
    let a = rows[0].clone();
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    follows_changes(&list, rows.try_into().unwrap(), async || {
        rm.confirm_service_request(pb::ConfirmServiceRequestRequest {
            name: a.clone(),
            need: "A replacement card".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn campaigns_follow_changes_by_update_time() {
    let app = TestApp::spawn().await;
    let campaigns = async |caller: &Caller| {
        CampaignServiceClient::with_interceptor(app.channel().await, Bearer::of(caller))
    };
    let now = Utc::now();
    let plan = |branch: &str| pb::Campaign {
        display_name: "Spring deposit drive".into(),
        products: vec!["DEPOSIT-1Y".into()],
        budget: Some(pb::Money {
            currency_code: "CNY".into(),
            units: 5000,
            nanos: 0,
        }),
        start_time: Some(customer_knowledge::api::timestamp(now - Duration::days(1))),
        end_time: Some(customer_knowledge::api::timestamp(now + Duration::days(30))),
        target: Some(pb::CampaignTarget {
            branch: branch.into(),
            ..Default::default()
        }),
        conversion_window_days: 7,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for branch in ["B01", "B02", "B01", "B01"] {
        let made = campaigns(&Caller::rm(branch))
            .await
            .create_campaign(pb::CreateCampaignRequest {
                campaign: Some(plan(branch)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        rows.push(made.name);
    }
    let list = async |caller: &Caller, args: Args| {
        let reply = campaigns(caller)
            .await
            .list_campaigns(pb::ListCampaignsRequest {
                page_size: args.page_size,
                page_token: args.page_token,
                branch: String::new(),
                filter: args.filter,
                order_by: args.order_by.into(),
            })
            .await?
            .into_inner();
        Ok(page(
            &reply.campaigns,
            reply.next_page_token,
            |c| &c.name,
            |c| c.update_time,
        ))
    };
    let a = rows[0].clone();
    let mut rm = campaigns(&Caller::rm("B01")).await;
    follows_changes(&list, rows.try_into().unwrap(), async || {
        let changed = rm
            .add_campaign_activity(pb::AddCampaignActivityRequest {
                name: a.clone(),
                activity: Some(pb::CampaignActivity {
                    title: "Branch posters".into(),
                    channel: Channel::Branch as i32,
                    cost: Some(pb::Money {
                        currency_code: "CNY".into(),
                        units: 100,
                        nanos: 0,
                    }),
                    schedule_time: Some(customer_knowledge::api::timestamp(now)),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let micros = |t: Option<Timestamp>| {
            let t = t.unwrap();
            t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
        };
        assert!(
            micros(changed.update_time) > micros(changed.create_time),
            "an activity changes the campaign: {changed:?}"
        );
    })
    .await;

    // The filter is update_time only.
    let status = list(
        &Caller::rm("B01"),
        Args {
            filter: "state = PLANNED".into(),
            ..args("", "", 10)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&status), ["filter"]);
}

/// Rows read, over all loops, from the indexes `names` in an EXPLAIN JSON
/// plan; None if the plan reads none of them.
fn rows_from(node: &serde_json::Value, names: &[String]) -> Option<i64> {
    let own = names
        .iter()
        .any(|n| node["Index Name"].as_str() == Some(n))
        .then(|| {
            let rows = node["Actual Rows"].as_f64().unwrap_or(0.0);
            let loops = node["Actual Loops"].as_f64().unwrap_or(0.0);
            (rows * loops) as i64
        });
    let below = node["Plans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| rows_from(n, names))
        .reduce(|a, b| a + b);
    match (own, below) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

type Time = Option<DateTime<Utc>>;

/// EXPLAIN ANALYZE of a list's update_time query on its first page and after
/// a cursor: its own index, no Sort, one page (21 rows) read from the index.
async fn reads_one_page(
    app: &TestApp,
    sql: &str,
    index: &str,
    bind: impl Fn(
        sqlx::query::QueryScalar<'_, sqlx::Postgres, serde_json::Value, sqlx::postgres::PgArguments>,
        Time,
    ) -> sqlx::query::QueryScalar<
        '_,
        sqlx::Postgres,
        serde_json::Value,
        sqlx::postgres::PgArguments,
    >,
) {
    // On a partitioned table (interactions, by year) the index is one per
    // partition: a page reads its rows plus at most one more from each
    // partition whose scan the merge started.
    let mut names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1::regclass",
    )
    .bind(index)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let partitions = names.len() as i64;
    names.push(index.to_string());
    for after in [None, Some(Utc::now() - Duration::days(1))] {
        let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
        let query = sqlx::query_scalar(sqlx::AssertSqlSafe(explain));
        let plan: serde_json::Value = bind(query, after).fetch_one(&app.db).await.unwrap();
        let text = plan.to_string();
        assert!(!text.contains("\"Sort\""), "no sort: {text}");
        let rows = rows_from(&plan[0]["Plan"], &names).expect(&text);
        assert!(
            (21..=21 + partitions).contains(&rows),
            "{rows} rows: {text}"
        );
    }
}

#[tokio::test]
async fn reading_a_page_of_changes_costs_one_page_on_every_list() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let li = new_customer(&app, "李娜", "B02").await;
    let ids = [&zhang, &li].map(|c| c.trim_start_matches("customers/").to_string());
    // A few thousand rows of each, changed a second apart, straight into
    // the tables: this test is about the query plans.
    for (n, id) in ids.iter().enumerate() {
        let statements = [
            "INSERT INTO follow_ups (customer_id, id, assignee, branch, due_time, state,
                                     created_by, update_time)
             SELECT $1, 'f-' || g, 'E1', 'B01', now() + g * interval '1 minute', 'SCHEDULED',
                    'E1', now() - (2 * g + $2) * interval '1 second'
             FROM generate_series(1, 2000) g",
            "INSERT INTO interactions (customer_id, id, channel, kind, occur_time,
                                       complaint_state, complaint_severity, complaint_category,
                                       complaint_due_time, update_time)
             SELECT $1, 'c-' || g, 'PHONE', 'COMPLAINT', now(), 'OPEN', 'MEDIUM', 'FEES',
                    now() + g * interval '1 minute', now() - (2 * g + $2) * interval '1 second'
             FROM generate_series(1, 2000) g",
            "INSERT INTO interactions (customer_id, id, channel, kind, occur_time, update_time)
             SELECT $1, 's-' || g, 'BRANCH', 'SERVICE_REQUEST', now(),
                    now() - (2 * g + $2) * interval '1 second'
             FROM generate_series(1, 2000) g",
            // Their ids and dedupe keys, which service_requests refers to.
            "INSERT INTO interaction_keys (customer_id, id)
             SELECT $1, 's-' || g FROM generate_series(1, 2000 + 0 * $2) g",
            "INSERT INTO service_requests (customer_id, interaction_id, state, priority,
                                           key_customer, receive_time, response_due_time,
                                           resolution_due_time, update_time)
             SELECT $1, 's-' || g, 'RECEIVED', 'MEDIUM', false, now(), now() + interval '1 hour',
                    now() + g * interval '1 minute', now() - (2 * g + $2) * interval '1 second'
             FROM generate_series(1, 2000) g",
            "INSERT INTO campaigns (id, display_name, products, budget_currency, budget_units,
                                    budget_nanos, start_time, end_time, target_branch,
                                    control_group_percent, conversion_window_days, seed, state,
                                    created_by, update_time)
             SELECT $1 || '-k-' || g, 'Drive', '{}', 'CNY', 0, 0, now(), now() + interval '1 day',
                    CASE WHEN $2 = 0 THEN 'B01' ELSE 'B02' END, 0, 30, g, 'PLANNED', 'E1',
                    now() - (2 * g + $2) * interval '1 second'
             FROM generate_series(1, 2000) g",
        ];
        for statement in statements {
            sqlx::query(statement)
                .bind(id)
                .bind(n as i32)
                .execute(&app.db)
                .await
                .unwrap();
        }
    }
    for table in [
        "follow_ups",
        "interactions",
        "service_requests",
        "campaigns",
        "customers",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(&app.db)
            .await
            .unwrap();
    }

    use customer_knowledge::store::{campaigns, interactions, service_requests};
    let none = None::<String>;
    let no_time = None::<DateTime<Utc>>;
    reads_one_page(
        &app,
        interactions::FOLLOW_UP_CHANGES_SQL,
        "follow_ups_by_update_time",
        |q, after| {
            q.bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(None::<bool>)
                .bind(no_time)
                .bind(no_time)
                .bind(after)
                .bind("")
                .bind("")
                .bind(21i64)
                .bind(no_time)
                .bind(no_time)
        },
    )
    .await;
    reads_one_page(
        &app,
        interactions::COMPLAINT_CHANGES_SQL,
        "complaints_by_update_time",
        |q, after| {
            q.bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(None::<bool>)
                .bind(after)
                .bind("")
                .bind("")
                .bind(21i64)
                .bind(no_time)
                .bind(no_time)
        },
    )
    .await;
    reads_one_page(
        &app,
        service_requests::REQUEST_CHANGES_SQL,
        "service_requests_by_update_time",
        |q, after| {
            q.bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(none.clone())
                .bind(None::<bool>)
                .bind(after)
                .bind("")
                .bind("")
                .bind(21i64)
                .bind(no_time)
                .bind(no_time)
        },
    )
    .await;
    let campaigns_sql = format!(
        "SELECT {} {}",
        campaigns::CAMPAIGN_COLUMNS,
        campaigns::CAMPAIGN_CHANGES_SQL
    );
    reads_one_page(
        &app,
        &campaigns_sql,
        "campaigns_by_update_time",
        |q, after| {
            q.bind(none.clone())
                .bind(false)
                .bind(none.clone())
                .bind(after)
                .bind("")
                .bind(21i64)
                .bind(no_time)
                .bind(no_time)
        },
    )
    .await;
}

/// A customer moved to another branch brings its follow-ups, complaints and
/// service requests into that branch's feeds: a branch that follows
/// `update_time > t` sees them as changed after the move, though they were
/// made before `t`.
#[tokio::test]
async fn a_customer_moved_to_another_branch_reaches_that_branchs_feeds() {
    let app = TestApp::spawn().await;
    let zhang = new_customer(&app, "张伟", "B01").await;
    let mut admin = app.interactions(&Caller::admin()).await;
    let follow_up = admin
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: zhang.clone(),
            follow_up: Some(pb::FollowUp {
                assignee: "E1001".into(),
                due_time: Some(in_a_day()),
                purpose: "回访".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let logged = async |kind: Kind, complaint: Option<pb::Complaint>| {
        app.interactions(&Caller::admin())
            .await
            .log_interaction(pb::LogInteractionRequest {
                parent: zhang.clone(),
                interaction: Some(pb::Interaction {
                    channel: Channel::Branch as i32,
                    kind: kind as i32,
                    summary: "At the counter".into(),
                    complaint,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .name
    };
    let complaint = logged(
        Kind::Complaint,
        Some(pb::Complaint {
            severity: Severity::Medium as i32,
            category: Category::Fees as i32,
            ..Default::default()
        }),
    )
    .await;
    let service_request = logged(Kind::ServiceRequest, None)
        .await
        .replace("/interactions/", "/serviceRequests/");

    // B02 has read its feeds up to now.
    let since: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let filter = format!(
        "update_time > \"{}\"",
        since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let feeds = async || {
        let mut b02 = app.interactions(&Caller::rm("B02")).await;
        let follow_ups = b02
            .list_follow_ups(pb::ListFollowUpsRequest {
                parent: "customers/-".into(),
                filter: filter.clone(),
                order_by: "update_time".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .follow_ups
            .into_iter()
            .map(|f| f.name);
        let complaints = b02
            .list_complaints(pb::ListComplaintsRequest {
                parent: "customers/-".into(),
                filter: filter.clone(),
                order_by: "update_time".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .interactions
            .into_iter()
            .map(|i| i.name);
        let service_requests = b02
            .list_service_requests(pb::ListServiceRequestsRequest {
                parent: "customers/-".into(),
                filter: filter.clone(),
                order_by: "update_time".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .service_requests
            .into_iter()
            .map(|r| r.name);
        follow_ups
            .chain(complaints)
            .chain(service_requests)
            .collect::<Vec<_>>()
    };
    assert!(feeds().await.is_empty());

    move_to_branch(&app, &zhang, "B02").await;
    assert_eq!(feeds().await, [follow_up, complaint, service_request]);
}
