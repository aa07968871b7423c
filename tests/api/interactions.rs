//! InteractionService through the real server: logging, batches, the
//! timeline, complaints and follow-ups, with their errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use customer_knowledge::{
    pb::v1::{
        self as pb, complaint::Severity, complaint::State, interaction::Channel, interaction::Kind,
    },
    store::interactions::{CHANGES_SQL, TIMELINE_SQL},
};
use prost_types::Timestamp;
use tonic::Code;

use crate::helpers::{Caller, TestApp, new_customer, reason, violated_fields};

fn ago(duration: Duration) -> Timestamp {
    let t = SystemTime::now() - duration;
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn visit(summary: &str) -> pb::Interaction {
    pb::Interaction {
        channel: Channel::Branch as i32,
        kind: Kind::Inquiry as i32,
        summary: summary.into(),
        notes: "Asked about wealth products for her daughter's education.".into(),
        products: vec!["WM-EDU-01".into()],
        satisfaction: Some(5),
        nps: Some(9),
        ..Default::default()
    }
}

fn log(parent: &str, interaction: pb::Interaction) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: parent.into(),
        interaction: Some(interaction),
        ..Default::default()
    }
}

#[tokio::test]
async fn log_then_get_an_interaction_recorded_by_the_caller() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app
        .interactions(&Caller {
            team: Some("T-WEALTH".into()),
            ..Caller::rm("B01")
        })
        .await;
    let mut input = visit("Branch visit");
    input.recorded_by = Some(pb::RecordedBy {
        employee: "E-someone-else".into(),
        ..Default::default()
    });
    input.amount = Some(pb::Money {
        currency_code: "CNY".into(),
        units: 5000,
        nanos: 500_000_000,
    });
    let logged = rm
        .log_interaction(log(&customer, input))
        .await
        .unwrap()
        .into_inner();
    assert!(
        logged
            .name
            .starts_with(&format!("{customer}/interactions/"))
    );
    let recorded_by = logged.recorded_by.clone().unwrap();
    assert_eq!(
        recorded_by.employee, "E-rm-B01",
        "employees cannot state recorded_by"
    );
    assert_eq!(recorded_by.team, "T-WEALTH");
    assert_eq!(recorded_by.branch, "B01");
    assert_eq!(logged.satisfaction, Some(5));
    assert_eq!(
        logged.source_system, "staff:E-rm-B01",
        "staff entries have their own source"
    );
    assert!(logged.complaint.is_none());

    let got = rm
        .get_interaction(pb::GetInteractionRequest {
            name: logged.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, logged);

    // A service may state who recorded it.
    let mut service = app.interactions(&Caller::service()).await;
    let mut input = visit("Phone call");
    input.recorded_by = Some(pb::RecordedBy {
        employee: "E1001".into(),
        team: "T-CALL".into(),
        branch: "B01".into(),
    });
    let logged = service
        .log_interaction(log(&customer, input))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logged.recorded_by.unwrap().employee, "E1001");

    let status = rm
        .get_interaction(pb::GetInteractionRequest {
            name: format!("{customer}/interactions/nope"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_interactions_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let input = pb::Interaction {
        channel: 0,
        kind: 0,
        occur_time: Some(ago(Duration::from_secs(0)).tap_add(600)),
        summary: "x".repeat(501),
        satisfaction: Some(6),
        nps: Some(11),
        amount: Some(pb::Money {
            currency_code: "usd".into(),
            units: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let status = rm.log_interaction(log(&customer, input)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "interaction.amount.currency_code",
            "interaction.channel",
            "interaction.kind",
            "interaction.nps",
            "interaction.occur_time",
            "interaction.satisfaction",
            "interaction.summary",
        ]
    );
    let mut input = visit("x");
    input.amount = Some(pb::Money {
        currency_code: "CNY".into(),
        units: 1,
        nanos: -5,
    });
    let status = rm.log_interaction(log(&customer, input)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["interaction.amount.nanos"]);
    let status = rm
        .log_interaction(log("customers/", visit("x")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["parent"]);
}

trait TapAdd {
    fn tap_add(self, seconds: i64) -> Self;
}

impl TapAdd for Timestamp {
    fn tap_add(mut self, seconds: i64) -> Self {
        self.seconds += seconds;
        self
    }
}

#[tokio::test]
async fn access_rules_apply_to_interactions() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut other_branch = app.interactions(&Caller::teller("B02")).await;
    for parent in [customer.as_str(), "customers/does-not-exist"] {
        let status = other_branch
            .log_interaction(log(parent, visit("x")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{parent}");
        let status = other_branch
            .list_interactions(pb::ListInteractionsRequest {
                parent: parent.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let mut admin = app.interactions(&Caller::admin()).await;
    let status = admin
        .log_interaction(log("customers/does-not-exist", visit("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = app
        .interactions(&Caller::analyst())
        .await
        .log_interaction(log(&customer, visit("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let analyst_reads = app
        .interactions(&Caller::analyst())
        .await
        .list_interactions(pb::ListInteractionsRequest {
            parent: customer.clone(),
            ..Default::default()
        })
        .await;
    assert!(analyst_reads.is_ok());
}

#[tokio::test]
async fn fifty_concurrent_retries_log_one_interaction() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let client = app.interactions(&Caller::service()).await;
    let request = pb::LogInteractionRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        ..log(&customer, visit("ATM withdrawal"))
    };
    // Each caller retries as the contract tells it to: UNAVAILABLE and
    // RESOURCE_EXHAUSTED (a busy pool on a loaded machine) are safe to retry
    // with the same request_id. Whatever the retries, one interaction lands.
    let calls = (0..50).map(|_| {
        let mut client = client.clone();
        let request = request.clone();
        tokio::spawn(async move {
            let mut attempts = 0;
            loop {
                match client.log_interaction(request.clone()).await {
                    Err(status)
                        if attempts < 100
                            && matches!(
                                status.code(),
                                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                            ) =>
                    {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    other => return other,
                }
            }
        })
    });
    let replies: Vec<pb::Interaction> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().into_inner())
        .collect();
    assert!(replies.iter().all(|r| *r == replies[0]));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let outbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE aggregate_type = 'interaction'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(outbox, 1);
}

#[tokio::test]
async fn an_external_ref_is_stored_once_per_source_system() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let transaction = pb::Interaction {
        channel: Channel::OnlineBanking as i32,
        kind: Kind::Transaction as i32,
        amount: Some(pb::Money {
            currency_code: "CNY".into(),
            units: 120,
            nanos: 0,
        }),
        external_ref: "TXN-2026-000001".into(),
        ..Default::default()
    };
    // Each calling system writes under its own name.
    let mut core = app.interactions(&Caller::service()).await;
    let first = core
        .log_interaction(log(&customer, transaction.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = core
        .log_interaction(log(&customer, transaction.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let mut cards = app
        .interactions(&Caller::new("cards", None, &["service"]))
        .await;
    let other = cards
        .log_interaction(log(&customer, transaction))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.name, first.name);
    assert_eq!(other.source_system, "cards");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn batches_are_all_or_nothing_and_name_the_failing_index() {
    let app = TestApp::spawn().await;
    let a = new_customer(&app, "张伟", "B01").await;
    let b = new_customer(&app, "李娜", "B01").await;
    let elsewhere = new_customer(&app, "王芳", "B02").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let batch = |parents: &[&str]| pb::BatchLogInteractionsRequest {
        requests: parents.iter().map(|p| log(p, visit("batch"))).collect(),
        ..Default::default()
    };
    let response = rm
        .batch_log_interactions(batch(&[&a, &b, &a]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.interactions.len(), 3);
    assert!(response.interactions[1].name.starts_with(&b));

    let mut bad = batch(&[&a, &b, &a]);
    bad.requests[1].interaction.as_mut().unwrap().amount = Some(pb::Money {
        currency_code: "RMB1".into(),
        units: 1,
        nanos: 0,
    });
    let status = rm.batch_log_interactions(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["requests[1].interaction.amount.currency_code"]
    );

    let status = rm
        .batch_log_interactions(batch(&[&a, &elsewhere]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 3, "the refused batch wrote nothing");

    let too_many = batch(&vec![a.as_str(); 1001]);
    let status = rm.batch_log_interactions(too_many).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["requests"]);
}

#[tokio::test]
async fn the_timeline_is_newest_first_filtered_and_paged() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    for hours in 0..12u64 {
        let mut input = visit(&format!("{hours} hours ago"));
        input.occur_time = Some(ago(Duration::from_secs(hours * 3600 + 60)));
        if hours % 3 == 0 {
            input.channel = Channel::MobileApp as i32;
        }
        rm.log_interaction(log(&customer, input)).await.unwrap();
    }
    let list = |filter: &str, page_size: i32, page_token: String| pb::ListInteractionsRequest {
        parent: customer.clone(),
        filter: filter.into(),
        page_size,
        page_token,
        ..Default::default()
    };
    let mut summaries = Vec::new();
    let mut token = String::new();
    loop {
        let page = rm
            .list_interactions(list("", 5, token))
            .await
            .unwrap()
            .into_inner();
        summaries.extend(page.interactions.into_iter().map(|i| i.summary));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let expected: Vec<String> = (0..12).map(|h| format!("{h} hours ago")).collect();
    assert_eq!(summaries, expected);

    let mobile = rm
        .list_interactions(list("channel = MOBILE_APP", 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mobile.interactions.len(), 4);
    let since = chrono::Utc::now() - chrono::Duration::hours(5);
    let recent = rm
        .list_interactions(list(
            &format!(
                "occur_time >= \"{}\" AND kind = INQUIRY",
                since.to_rfc3339()
            ),
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recent.interactions.len(), 5);
    for filter in [
        "amount > 3",
        "channel = PIGEON",
        "occur_time = \"2026-01-01T00:00:00Z\"",
    ] {
        let status = rm
            .list_interactions(list(filter, 0, String::new()))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["filter"], "{filter}");
    }
}

/// The timeline is partitioned by year of occur_time: a page is an ordered
/// Append over the partitions, newest first, whose index scans stop once the
/// page is full, so it reads one page of rows however long the history and
/// however many partitions it spans.
#[tokio::test]
async fn reading_a_timeline_page_costs_the_same_however_long_the_history() {
    let app = TestApp::spawn().await;
    let long = new_customer(&app, "张伟", "B01").await;
    let short = new_customer(&app, "李娜", "B01").await;
    let long_id = long.trim_start_matches("customers/").to_string();
    let short_id = short.trim_start_matches("customers/").to_string();
    // Fill the histories directly: this test is about the query plan. The
    // long one reaches back 20,000 × 5 hours (over eleven years: every
    // yearly partition and the one before them), the short one 30 minutes.
    for (id, count, step) in [(&long_id, 20_000, "5 hours"), (&short_id, 30, "1 minute")] {
        sqlx::query(
            "INSERT INTO interactions (customer_id, id, channel, kind, occur_time)
             SELECT $1, 'i-' || g, 'BRANCH', 'INQUIRY', now() - g * $3::interval
             FROM generate_series(1, $2) g",
        )
        .bind(id)
        .bind(count)
        .bind(step)
        .execute(&app.db)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE interactions")
        .execute(&app.db)
        .await
        .unwrap();
    let spanned: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT tableoid) FROM interactions WHERE customer_id = $1",
    )
    .bind(&long_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(spanned >= 4, "the long history spans {spanned} partitions");
    let timeline_indexes = partition_indexes(&app, "interactions_timeline").await;

    let mut rows_read = Vec::new();
    for id in [&long_id, &short_id] {
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) {TIMELINE_SQL}"
        )))
        .bind(id)
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .bind("\u{10FFFF}")
        .bind(21i64)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .fetch_one(&app.db)
        .await
        .unwrap();
        let text = plan.to_string();
        assert!(!text.contains("\"Sort\""), "no sort: {text}");
        assert!(!text.contains("Merge Append"), "an ordered Append: {text}");
        assert!(text.contains("\"Append\""), "an ordered Append: {text}");
        // The customer's row is read by its key; the rest are partitions.
        let scans: Vec<_> = index_scans(&plan[0]["Plan"])
            .into_iter()
            .filter(|(relation, _, _)| relation != "customers")
            .collect();
        assert!(!scans.is_empty(), "{text}");
        for (relation, index, _) in &scans {
            assert!(relation.starts_with("interactions_"), "{relation}: {text}");
            assert!(timeline_indexes.contains(index), "{index}: {text}");
        }
        rows_read.push(scans.iter().map(|(_, _, rows)| rows).sum::<i64>());
    }
    // The long history reads exactly one page, like the short one.
    assert_eq!(rows_read, [21, 21]);

    // Paging by update_time (a cache following changes) reads its own index:
    // a Merge Append (update_time is not the partition key) that reads the
    // page plus at most one row from each other partition, on the first
    // page and after a cursor.
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'interactions'::regclass",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let update_time_indexes = partition_indexes(&app, "interactions_by_update_time").await;
    for after in [None, Some("i-5000")] {
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) {CHANGES_SQL}"
        )))
        .bind(&long_id)
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(after.map(|_| chrono::Utc::now() - chrono::Duration::days(1)))
        .bind(after.unwrap_or_default())
        .bind(21i64)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .fetch_one(&app.db)
        .await
        .unwrap();
        let text = plan.to_string();
        assert!(!text.contains("\"Sort\""), "no sort: {text}");
        let scans: Vec<_> = index_scans(&plan[0]["Plan"])
            .into_iter()
            .filter(|(relation, _, _)| relation != "customers")
            .collect();
        for (_, index, _) in &scans {
            assert!(update_time_indexes.contains(index), "{index}: {text}");
        }
        let read: i64 = scans.iter().map(|(_, _, rows)| rows).sum();
        assert!((21..21 + partitions).contains(&read), "{read} rows: {text}");
    }
}

/// Interactions outside the yearly partitions land in the catch-alls and
/// read back like any other (1905 through the API; a year far ahead only a
/// skewed clock or SQL could write), creating a year splits it off the
/// future catch-all without losing the row, and an external ref is stored
/// once across partitions.
#[tokio::test]
async fn interactions_of_any_year_land_read_back_and_dedupe_across_partitions() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let customer_id = customer.trim_start_matches("customers/").to_string();
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let mut old = visit("A visit in 1905");
    old.occur_time = Some(Timestamp {
        seconds: -2_051_222_400, // 1905-01-01T00:00:00Z
        nanos: 0,
    });
    let logged = rm
        .log_interaction(log(&customer, old))
        .await
        .unwrap()
        .into_inner();
    let got = rm
        .get_interaction(pb::GetInteractionRequest {
            name: logged.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, logged);
    let id = logged.name.rsplit('/').next().unwrap().to_string();
    let partition: String = sqlx::query_scalar(
        "SELECT tableoid::regclass::text FROM interactions WHERE customer_id = $1 AND id = $2",
    )
    .bind(&customer_id)
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(partition, "interactions_past");

    // Sixty years ahead: the future catch-all; then the years up to it are
    // created (as the upkeep does a year ahead), and the row moves to its
    // year, still readable.
    sqlx::query(
        "INSERT INTO interactions (customer_id, id, channel, kind, occur_time)
         VALUES ($1, 'far-ahead', 'BRANCH', 'INQUIRY', now() + interval '60 years')",
    )
    .bind(&customer_id)
    .execute(&app.db)
    .await
    .unwrap();
    // (partition, the partition its year's name would be)
    let located = || {
        sqlx::query_as::<_, (String, String)>(
            "SELECT tableoid::regclass::text,
                    'interactions_' || to_char(occur_time AT TIME ZONE 'UTC', 'YYYY')
               FROM interactions WHERE customer_id = $1 AND id = 'far-ahead'",
        )
        .bind(&customer_id)
        .fetch_one(&app.db)
    };
    let (partition, _) = located().await.unwrap();
    assert_eq!(partition, "interactions_future");
    sqlx::query("SELECT ck_ensure_partitions(now() + interval '60 years')")
        .execute(&app.db)
        .await
        .unwrap();
    let (partition, its_year) = located().await.unwrap();
    assert_eq!(partition, its_year);
    let timeline: Vec<String> = rm
        .list_interactions(pb::ListInteractionsRequest {
            parent: customer.clone(),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .interactions
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(
        timeline,
        [
            format!("{customer}/interactions/far-ahead"),
            logged.name.clone()
        ],
        "newest first: sixty years ahead, then 1905"
    );

    // The same external ref a year apart: two partitions, one row.
    let mut core = app.interactions(&Caller::service()).await;
    let mut transaction = pb::Interaction {
        channel: Channel::OnlineBanking as i32,
        kind: Kind::Transaction as i32,
        external_ref: "TXN-ACROSS-YEARS".into(),
        occur_time: Some(ago(Duration::from_secs(400 * 86_400))),
        ..Default::default()
    };
    let first = core
        .log_interaction(log(&customer, transaction.clone()))
        .await
        .unwrap()
        .into_inner();
    transaction.occur_time = Some(ago(Duration::from_secs(60)));
    let status = core
        .log_interaction(log(&customer, transaction))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(reason(&status), "EXTERNAL_REF_CONFLICT");
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT 'customers/' || customer_id || '/interactions/' || id FROM interactions
          WHERE external_ref = 'TXN-ACROSS-YEARS'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, [first.name]);
}

/// The partitions' indexes of the partitioned index `parent`.
async fn partition_indexes(app: &TestApp, parent: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1::regclass",
    )
    .bind(parent)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Every index scan node of an EXPLAIN JSON plan: the relation, the index
/// and the rows it returned over all its loops (0 when never executed).
fn index_scans(node: &serde_json::Value) -> Vec<(String, String, i64)> {
    let mut found = Vec::new();
    if node["Node Type"]
        .as_str()
        .is_some_and(|t| t.starts_with("Index"))
    {
        let rows = node["Actual Rows"].as_f64().unwrap_or(0.0);
        let loops = node["Actual Loops"].as_f64().unwrap_or(0.0);
        found.push((
            node["Relation Name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            node["Index Name"].as_str().unwrap_or_default().to_string(),
            (rows * loops) as i64,
        ));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        found.extend(index_scans(child));
    }
    found
}

#[tokio::test]
async fn complaints_open_with_an_sla_and_move_one_step_at_a_time() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let complaint = |severity: Severity, hours_ago: u64| {
        let mut input = visit("Card blocked abroad");
        input.kind = Kind::Complaint as i32;
        input.occur_time = Some(ago(Duration::from_secs(hours_ago * 3600)));
        input.complaint = Some(pb::Complaint {
            severity: severity as i32,
            ..Default::default()
        });
        input
    };
    let open = rm
        .log_interaction(log(&customer, complaint(Severity::High, 0)))
        .await
        .unwrap()
        .into_inner();
    let c = open.complaint.clone().unwrap();
    assert_eq!(c.state, State::Open as i32);
    assert_eq!(c.severity, Severity::High as i32);
    let occur = open.occur_time.unwrap().seconds;
    assert_eq!(c.due_time.unwrap().seconds - occur, 24 * 3600);
    assert!(!c.overdue);
    let overdue = rm
        .log_interaction(log(&customer, complaint(Severity::Critical, 10)))
        .await
        .unwrap()
        .into_inner();
    assert!(overdue.complaint.unwrap().overdue);

    let update = |state: State, resolution: &str, etag: &str| pb::UpdateComplaintRequest {
        name: open.name.clone(),
        state: state as i32,
        resolution: resolution.into(),
        etag: etag.into(),
        ..Default::default()
    };
    let status = rm
        .update_complaint(update(State::Resolved, "x", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "ILLEGAL_COMPLAINT_TRANSITION");
    let in_progress = rm
        .update_complaint(update(State::InProgress, "", &open.etag))
        .await
        .unwrap()
        .into_inner();
    let status = rm
        .update_complaint(update(State::Resolved, "Card unblocked", &open.etag))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let status = rm
        .update_complaint(update(State::Resolved, "", &in_progress.etag))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["resolution"]);
    let resolved = rm
        .update_complaint(update(State::Resolved, "Card unblocked", &in_progress.etag))
        .await
        .unwrap()
        .into_inner();
    let c = resolved.complaint.unwrap();
    assert_eq!(c.resolution, "Card unblocked");
    assert!(c.resolve_time.is_some());
    let closed = rm
        .update_complaint(update(State::Closed, "", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(closed.complaint.unwrap().close_time.is_some());
    let status = rm
        .update_complaint(update(State::Closed, "", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let plain = rm
        .log_interaction(log(&customer, visit("hello")))
        .await
        .unwrap()
        .into_inner();
    let status = rm
        .update_complaint(pb::UpdateComplaintRequest {
            name: plain.name,
            state: State::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "NOT_A_COMPLAINT");

    // Lists: by branch, by state, overdue; and nothing of another branch.
    let other = new_customer(&app, "李娜", "B02").await;
    app.interactions(&Caller::admin())
        .await
        .log_interaction(log(&other, complaint(Severity::Low, 0)))
        .await
        .unwrap();
    let list = |filter: &str| pb::ListComplaintsRequest {
        parent: "customers/-".into(),
        filter: filter.into(),
        ..Default::default()
    };
    let mine = rm.list_complaints(list("")).await.unwrap().into_inner();
    assert_eq!(mine.interactions.len(), 2);
    let late = rm
        .list_complaints(list("overdue = true"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.interactions.len(), 1);
    assert_eq!(late.interactions[0].name, overdue.name);
    let mut admin = app.interactions(&Caller::admin()).await;
    let b02 = admin
        .list_complaints(list("home_branch = \"B02\" AND state = OPEN"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b02.interactions.len(), 1);
    let all = admin.list_complaints(list("")).await.unwrap().into_inner();
    assert_eq!(all.interactions.len(), 3);
}

#[tokio::test]
async fn follow_ups_are_scheduled_listed_and_completed_with_their_interaction() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let schedule = |assignee: &str, due: Timestamp| pb::ScheduleFollowUpRequest {
        parent: customer.clone(),
        follow_up: Some(pb::FollowUp {
            assignee: assignee.into(),
            due_time: Some(due),
            purpose: "回访: check the new wealth product suits her".into(),
            channel: Channel::Phone as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let due_tomorrow = ago(Duration::ZERO).tap_add(86_400);
    let task = rm
        .schedule_follow_up(schedule("E1001", due_tomorrow))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.branch, "B01");
    assert_eq!(task.state, pb::follow_up::State::Scheduled as i32);
    let late = rm
        .schedule_follow_up(schedule("E1002", ago(Duration::from_secs(3600))))
        .await
        .unwrap()
        .into_inner();
    assert!(late.overdue);

    let list = |filter: &str| pb::ListFollowUpsRequest {
        parent: "customers/-".into(),
        filter: filter.into(),
        ..Default::default()
    };
    let mine = rm
        .list_follow_ups(list("assignee = \"E1001\" AND state = SCHEDULED"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.follow_ups.len(), 1);
    assert_eq!(mine.follow_ups[0].name, task.name);
    let branch = rm
        .list_follow_ups(list("branch = \"B01\""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(branch.follow_ups.len(), 2);
    assert_eq!(branch.follow_ups[0].name, late.name, "earliest due first");
    let overdue = rm
        .list_follow_ups(list("overdue = true"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overdue.follow_ups.len(), 1);

    let complete = pb::CompleteFollowUpRequest {
        name: task.name.clone(),
        interaction: Some(pb::Interaction {
            channel: Channel::Phone as i32,
            summary: "Called back; she is happy with the product".into(),
            satisfaction: Some(5),
            ..Default::default()
        }),
        etag: task.etag.clone(),
        ..Default::default()
    };
    let done = rm
        .complete_follow_up(complete.clone())
        .await
        .unwrap()
        .into_inner();
    let follow_up = done.follow_up.unwrap();
    let interaction = done.interaction.unwrap();
    assert_eq!(follow_up.state, pb::follow_up::State::Completed as i32);
    assert_eq!(follow_up.completion_interaction, interaction.name);
    assert_eq!(interaction.kind, Kind::FollowUp as i32);
    let status = rm
        .complete_follow_up(pb::CompleteFollowUpRequest {
            etag: String::new(),
            ..complete
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "FOLLOW_UP_ALREADY_COMPLETED");

    let status = rm
        .schedule_follow_up(pb::ScheduleFollowUpRequest {
            parent: customer.clone(),
            follow_up: Some(pb::FollowUp::default()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["follow_up.assignee", "follow_up.due_time"]);
    let status = app
        .interactions(&Caller::rm("B02"))
        .await
        .schedule_follow_up(schedule("E9", due_tomorrow))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn erasure_removes_interaction_text_and_later_reads_are_not_found() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.interactions(&Caller::rm("B01")).await;
    let logged = rm
        .log_interaction(log(&customer, visit("Talked about her divorce settlement")))
        .await
        .unwrap()
        .into_inner();
    app.customers(&Caller::rm("B01"))
        .await
        .delete_customer(pb::DeleteCustomerRequest {
            name: customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = rm
        .get_interaction(pb::GetInteractionRequest {
            name: logged.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let (summary, notes): (String, String) =
        sqlx::query_as("SELECT summary, notes FROM interactions")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((summary.as_str(), notes.as_str()), ("", ""));
}
