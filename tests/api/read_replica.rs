//! Reads that tolerate staleness on a hot standby (`CK__DATABASE__READ_URL`):
//! a real streaming replica (scripts/standby.sh: pg_basebackup -R) serves
//! lists while the caller that just wrote reads its own write, and the
//! primary takes over when the standby stops.

use std::{process::Command, time::Duration};

use customer_knowledge::pb::v1 as pb;
use sqlx::{Connection, PgConnection};

use crate::helpers::{Caller, TestApp, sample};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/standby.sh");

/// A private primary and its standby, stopped and deleted when dropped.
struct Pair {
    name: String,
    primary: String,
    standby: String,
}

fn standby_sh(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run scripts/standby.sh");
    assert!(
        out.status.success(),
        "scripts/standby.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

impl Pair {
    async fn up() -> Pair {
        let name = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let up = name.clone();
        let out = tokio::task::spawn_blocking(move || standby_sh(&["up", &up]))
            .await
            .unwrap();
        let mut urls = out.lines().map(str::to_string);
        Pair {
            name,
            primary: urls.next().expect("the primary's URL"),
            standby: urls.next().expect("the standby's URL"),
        }
    }

    async fn stop_standby(&self) {
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || standby_sh(&["stop-standby", &name]))
            .await
            .unwrap();
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .args(["down", &self.name])
            .output();
    }
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(url).await
}

/// Polls `probe` every 100 ms until it holds; the bound is for a machine busy
/// with other builds, not a figure under test.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut probe: F) {
    for _ in 0..600 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within a minute");
}

async fn create(app: &TestApp, caller: &Caller, display_name: &str) -> String {
    app.customers(caller)
        .await
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: display_name.into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: "B01".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("CreateCustomer")
        .into_inner()
        .name
}

/// The names ListCustomers gives `caller` (one page holds them all).
async fn listed(app: &TestApp, caller: &Caller) -> Vec<String> {
    app.customers(caller)
        .await
        .list_customers(pb::ListCustomersRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListCustomers")
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn counted(app: &TestApp, series: &str) -> f64 {
    sample(&app.metrics.render(), series)
}

#[tokio::test]
async fn stale_tolerant_reads_use_the_standby_and_a_writer_reads_its_own_writes() {
    let pair = Pair::up().await;
    let database = format!("ck_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = connect(&format!("{}postgres", pair.primary)).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let standby_url = format!("{}{database}", pair.standby);
    eventually("the standby has the new database", async || {
        connect(&standby_url).await.is_ok()
    })
    .await;
    let app = TestApp::spawn_on(&format!("{}{database}", pair.primary), |env| {
        env.insert("CK__DATABASE__READ_URL".into(), standby_url.clone());
        env.insert(
            "CK__DATABASE__READ_YOUR_WRITES_WAIT_MS".into(),
            "100".into(),
        );
    })
    .await;
    let mut standby = connect(&format!("{}postgres", pair.standby)).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut standby)
        .await
        .unwrap();
    assert!(in_recovery, "read_url is a hot standby");

    let writer = Caller::rm("B01");
    let reader = Caller::teller("B01");

    // Replay running: the writer sees its customer at once, the reader once
    // the standby has replayed it, and the standby answered.
    let first = create(&app, &writer, "甲").await;
    assert!(listed(&app, &writer).await.contains(&first));
    eventually("the reader sees the first customer", async || {
        listed(&app, &reader).await.contains(&first)
    })
    .await;
    assert!(counted(&app, "ck_db_stale_tolerant_reads_total{server=\"standby\"}") >= 1.0);

    // Replay paused: the standby stays where it is.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut standby)
        .await
        .unwrap();
    eventually("replay is paused", async || {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(&mut standby)
            .await
            .unwrap();
        state == "paused"
    })
    .await;
    let lagging_before = counted(&app, "ck_db_standby_fallbacks_total{reason=\"lagging\"}");
    let second = create(&app, &writer, "乙").await;
    // The writer's list waits for the standby, which cannot replay the
    // write, and is then answered by the primary: it shows the write.
    let by_writer = listed(&app, &writer).await;
    assert!(by_writer.contains(&first) && by_writer.contains(&second));
    assert!(
        counted(&app, "ck_db_standby_fallbacks_total{reason=\"lagging\"}") >= lagging_before + 1.0
    );
    // Another caller, who wrote nothing, is answered by the paused standby:
    // the second customer is not there yet.
    let by_reader = listed(&app, &reader).await;
    assert!(by_reader.contains(&first));
    assert!(
        !by_reader.contains(&second),
        "the reader's list came from the standby"
    );
    // A point read is not stale-tolerant: it reads the primary.
    app.customers(&reader)
        .await
        .get_customer(pb::GetCustomerRequest {
            name: second.clone(),
            ..Default::default()
        })
        .await
        .expect("GetCustomer reads the primary");

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut standby)
        .await
        .unwrap();
    eventually("the reader sees the second customer", async || {
        listed(&app, &reader).await.contains(&second)
    })
    .await;
    drop(standby);

    // The standby stops: reads go to the primary, health stays SERVING.
    pair.stop_standby().await;
    let third = create(&app, &writer, "丙").await;
    let unavailable_before = counted(
        &app,
        "ck_db_standby_fallbacks_total{reason=\"unavailable\"}",
    );
    let by_reader = listed(&app, &reader).await;
    assert!(
        [&first, &second, &third]
            .iter()
            .all(|c| by_reader.contains(c))
    );
    assert!(
        counted(
            &app,
            "ck_db_standby_fallbacks_total{reason=\"unavailable\"}"
        ) >= unavailable_before + 1.0
    );
    let (status, _) = app.admin_get("/readyz").await;
    assert_eq!(
        status, 200,
        "a standby outage does not take the service out"
    );
    let (status, _) = app.admin_get("/readyz").await;
    assert_eq!(status, 200);
}
