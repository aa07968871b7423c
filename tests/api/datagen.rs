//! `generate-data` at a tiny scale against the real server: every record
//! lands through the API, and a rerun with the same seed adds nothing.

use customer_knowledge::datagen::{
    Spec,
    load::{Counts, Credential, Target, load},
};

use crate::helpers::{Caller, TestApp};

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn generated_data_lands_once_and_a_rerun_adds_nothing() {
    let app = TestApp::spawn().await;
    let spec = Spec {
        seed: 2026,
        customers: 20,
        branches: 5,
        interactions: 200,
        knowledge: 10,
    };
    let credential = Credential::bearer(&Caller::admin().token()).unwrap();
    let target = Target::connect(&app.addr(), credential, 2).await.unwrap();

    let first = load(&spec, &target, 4, true).await.unwrap();
    let created = |n| Counts {
        created: n,
        existing: 0,
        rejected: 0,
    };
    assert_eq!(first.customers, created(20));
    assert_eq!(first.interactions, created(200));
    assert_eq!(first.knowledge, created(10));
    let tables = ["customers", "interactions", "knowledge_items"];
    let mut before = Vec::new();
    for table in tables {
        before.push(count(&app, table).await);
    }
    assert_eq!(before, [20, 200, 10]);
    let name: String = sqlx::query_scalar("SELECT display_name FROM customers WHERE id = $1")
        .bind(spec.customer_id(3))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        Some(name.as_str()),
        spec.customer(3)
            .customer
            .as_ref()
            .map(|c| c.display_name.as_str())
    );

    let again = load(&spec, &target, 4, true).await.unwrap();
    let existing = |n| Counts {
        created: 0,
        existing: n,
        rejected: 0,
    };
    assert_eq!(again.customers, existing(20));
    assert_eq!(again.interactions, existing(200));
    assert_eq!(again.knowledge, existing(10));
    for (table, n) in tables.into_iter().zip(before) {
        assert_eq!(count(&app, table).await, n, "{table} after the rerun");
    }
}
