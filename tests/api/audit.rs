//! The access audit through the real server: events for reads, changes and
//! denials with keyed customer pseudonyms; ListAccessEvents and who may call
//! it; VerifyAuditChain on an intact chain and after tampering in SQL; the
//! append-only table; the README's Python verifier; the flush on shutdown;
//! two replicas appending to one chain.

use std::{collections::HashMap, time::Duration};

use customer_knowledge::{
    config::Settings,
    domain::audit::{AccessEvent, Action},
    pb::v1::{self as pb, audit_service_client::AuditServiceClient},
    startup::Application,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{Connection, PgConnection, Row};
use tonic::{Code, Request, service::interceptor::InterceptedService, transport::Channel};

use crate::helpers::{Bearer, Caller, TestApp, new_customer, reason, test_env};

const KEY: &str = "audit-test-pseudonym-key-of-32+bytes";
const GET_CUSTOMER: &str = "/bank.customerknowledge.v1.CustomerService/GetCustomer";

type AuditClient = AuditServiceClient<InterceptedService<Channel, Bearer>>;

fn with_key(env: &mut HashMap<String, String>) {
    env.insert("CK__AUDIT__PSEUDONYM_KEY".into(), KEY.into());
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(with_key).await
}

async fn audit(app: &TestApp, caller: &Caller) -> AuditClient {
    AuditServiceClient::with_interceptor(app.channel().await, Bearer::of(caller))
}

/// HMAC-SHA256(key, customer id), as the README specifies it.
fn pseudonym(name: &str) -> String {
    let id = name.trim_start_matches("customers/");
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits until the writer has committed at least `n` events matching the
/// SQL condition `condition` (the writer is asynchronous).
async fn wait_for_events(app: &TestApp, condition: &str, n: i64) {
    let sql = format!("SELECT count(*) FROM access_events WHERE {condition}");
    let mut count = 0;
    for _ in 0..600 {
        count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&app.db)
            .await
            .unwrap();
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("after 30 s, {count} of {n} access events where {condition}");
}

async fn list(client: &mut AuditClient, filter: &str) -> Vec<pb::AccessEvent> {
    client
        .list_access_events(pb::ListAccessEventsRequest {
            filter: filter.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .access_events
}

fn get(name: &str) -> pb::GetCustomerRequest {
    pb::GetCustomerRequest {
        name: name.into(),
        ..Default::default()
    }
}

async fn verify(client: &mut AuditClient, start: i64, end: i64) -> pb::VerifyAuditChainResponse {
    client
        .verify_audit_chain(pb::VerifyAuditChainRequest {
            start_sequence: start,
            end_sequence: end,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Runs SQL as a superuser that bypasses the append-only trigger, as an
/// attacker with database access would.
async fn tamper(app: &TestApp, sql: &str) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .unwrap();
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
}

#[tokio::test]
async fn get_customer_by_a_relationship_manager_is_recorded_with_a_pseudonym() {
    let app = spawn().await;
    let name = new_customer(&app, "张伟", "B01").await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let mut request = Request::new(get(&name));
    request
        .metadata_mut()
        .insert("x-purpose", "KYC review".parse().unwrap());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    rm.get_customer(request).await.unwrap();

    wait_for_events(&app, "principal = 'E-rm-B01'", 1).await;
    let mut compliance = audit(&app, &Caller::compliance()).await;
    let events = list(&mut compliance, r#"principal = "E-rm-B01""#).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.method, GET_CUSTOMER);
    assert_eq!(event.outcome, "OK");
    assert_eq!(event.action, pb::access_event::Action::Read as i32);
    assert_eq!(event.roles, vec!["relationship_manager".to_string()]);
    assert_eq!(event.purpose, "KYC review");
    assert_eq!(event.trace_id, trace_id);
    assert_eq!(event.calling_system, "");
    assert_eq!(event.customer_pseudonyms, vec![pseudonym(&name)]);
    #[allow(deprecated)]
    let names = &event.customers;
    assert!(names.is_empty(), "customer names never leave the service");
    assert_eq!(event.hash.len(), 64);
    assert!(event.event_time.is_some());

    // The create before it was a WRITE by the admin, about the same customer.
    let by_customer = list(
        &mut compliance,
        &format!(r#"customers:"{name}" AND action = WRITE"#),
    )
    .await;
    assert_eq!(by_customer.len(), 1, "{by_customer:#?}");
    assert_eq!(by_customer[0].principal, "E-admin");
    assert!(by_customer[0].method.ends_with("/CreateCustomer"));
}

#[tokio::test]
async fn denied_and_unauthenticated_calls_are_recorded() {
    let app = spawn().await;
    let name = new_customer(&app, "李娜", "B01").await;
    let denied = app
        .customers(&Caller::rm("B02"))
        .await
        .get_customer(get(&name))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = app
        .anonymous_customers()
        .await
        .get_customer(get(&name))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    wait_for_events(
        &app,
        "outcome IN ('PERMISSION_DENIED', 'UNAUTHENTICATED')",
        2,
    )
    .await;
    let mut admin = audit(&app, &Caller::admin()).await;
    let denials = list(&mut admin, "outcome = PERMISSION_DENIED").await;
    assert_eq!(denials.len(), 1, "{denials:#?}");
    assert_eq!(denials[0].principal, "E-rm-B02");
    assert_eq!(denials[0].method, GET_CUSTOMER);
    assert_eq!(
        denials[0].customer_pseudonyms,
        vec![pseudonym(&name)],
        "the customer asked for is recorded even though access was denied"
    );
    let anonymous = list(&mut admin, "outcome = UNAUTHENTICATED").await;
    assert_eq!(anonymous.len(), 1, "{anonymous:#?}");
    assert_eq!(anonymous[0].principal, "");
    assert!(anonymous[0].roles.is_empty());
}

#[tokio::test]
async fn list_access_events_filters_by_customer_and_principal_for_auditors_only() {
    let app = spawn().await;
    let first = new_customer(&app, "王芳", "B01").await;
    let second = new_customer(&app, "刘洋", "B01").await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    rm.get_customer(get(&first)).await.unwrap();
    rm.get_customer(get(&second)).await.unwrap();
    let mut analyst = app.customers(&Caller::analyst()).await;
    analyst.get_customer(get(&first)).await.unwrap();
    let listed = rm
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers.len(), 2);
    wait_for_events(&app, &format!("method = '{GET_CUSTOMER}'"), 3).await;
    wait_for_events(&app, "method LIKE '%/ListCustomers'", 1).await;

    for caller in [Caller::compliance(), Caller::admin()] {
        let mut client = audit(&app, &caller).await;
        let about_first = list(
            &mut client,
            &format!(r#"customers:"{first}" AND method = "{GET_CUSTOMER}""#),
        )
        .await;
        let mut readers: Vec<&str> = about_first.iter().map(|e| e.principal.as_str()).collect();
        readers.sort();
        assert_eq!(readers, ["E-analyst", "E-rm-B01"]);
        assert!(
            about_first
                .windows(2)
                .all(|w| w[0].sequence > w[1].sequence),
            "newest first"
        );

        let by_rm = list(&mut client, r#"principal = "E-rm-B01""#).await;
        let methods: Vec<&str> = by_rm
            .iter()
            .map(|e| e.method.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(methods, ["ListCustomers", "GetCustomer", "GetCustomer"]);
        let list_event = &by_rm[0];
        let mut expected = vec![pseudonym(&first), pseudonym(&second)];
        expected.sort();
        assert_eq!(
            list_event.customer_pseudonyms, expected,
            "a list records every customer it returned"
        );

        let both = list(
            &mut client,
            &format!(r#"customers:"{first}" AND principal = "E-analyst""#),
        )
        .await;
        assert_eq!(both.len(), 1);

        // Paging: one event a page, the same events in the same order.
        let mut paged = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_access_events(pb::ListAccessEventsRequest {
                    filter: r#"principal = "E-rm-B01""#.into(),
                    page_size: 1,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            paged.extend(page.access_events.into_iter().map(|e| e.sequence));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(paged, by_rm.iter().map(|e| e.sequence).collect::<Vec<_>>());
    }

    for caller in [Caller::rm("B01"), Caller::analyst(), Caller::service()] {
        let status = audit(&app, &caller)
            .await
            .list_access_events(pb::ListAccessEventsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{caller:?}");
        assert_eq!(reason(&status), "PERMISSION_DENIED");
        let status = audit(&app, &caller)
            .await
            .verify_audit_chain(pb::VerifyAuditChainRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{caller:?}");
    }
    wait_for_events(
        &app,
        "method LIKE '%AuditService/%' AND outcome = 'PERMISSION_DENIED'",
        6,
    )
    .await;

    let bad = audit(&app, &Caller::compliance())
        .await
        .list_access_events(pb::ListAccessEventsRequest {
            filter: r#"customers:"cif-1""#.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

/// Some events to verify: a create, reads and a denial.
async fn some_events(app: &TestApp) -> i64 {
    let name = new_customer(app, "赵敏", "B01").await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    for _ in 0..4 {
        rm.get_customer(get(&name)).await.unwrap();
    }
    let _ = app
        .customers(&Caller::rm("B02"))
        .await
        .get_customer(get(&name))
        .await;
    wait_for_events(app, "true", 6).await;
    6
}

#[tokio::test]
async fn verify_audit_chain_is_ok_on_an_intact_chain() {
    let app = spawn().await;
    some_events(&app).await;
    let mut compliance = audit(&app, &Caller::compliance()).await;
    let result = verify(&mut compliance, 0, 0).await;
    assert!(result.ok, "{result:#?}");
    assert!(result.events_checked >= 6);
    assert!(result.first_broken_event.is_none());
    let (head, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT sequence, hash FROM access_events WHERE sequence = $1")
            .bind(result.events_checked)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(head, result.events_checked);
    assert_eq!(result.head_hash, hex(&hash));

    let range = verify(&mut compliance, 2, 4).await;
    assert!(range.ok);
    assert_eq!(range.events_checked, 3);
    let invalid = compliance
        .verify_audit_chain(pb::VerifyAuditChainRequest {
            start_sequence: 5,
            end_sequence: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn verify_audit_chain_reports_the_first_altered_event() {
    let app = spawn().await;
    some_events(&app).await;
    tamper(
        &app,
        "UPDATE access_events SET principal = 'someone-else' WHERE sequence = 3",
    )
    .await;
    let mut compliance = audit(&app, &Caller::compliance()).await;
    let result = verify(&mut compliance, 0, 0).await;
    assert!(!result.ok, "{result:#?}");
    let broken = result.first_broken_event.expect("the broken event");
    assert_eq!(broken.sequence, 3);
    assert_eq!(broken.principal, "someone-else");
    assert_eq!(result.events_checked, 3);

    // A range after the altered event trusts its stored hash, which the
    // next event was chained to: intact.
    assert!(verify(&mut compliance, 4, 0).await.ok);

    // Whoever also recomputes the altered event's hash (SHA-256 needs no
    // key) moves the break to the event after it.
    let previous = stored_hash(&app, 2).await;
    let altered = stored_event(&app, 3).await.chain_hash(&previous);
    tamper(
        &app,
        &format!(
            "UPDATE access_events SET hash = '\\x{}' WHERE sequence = 3",
            hex(&altered)
        ),
    )
    .await;
    let result = verify(&mut compliance, 0, 0).await;
    assert_eq!(result.first_broken_event.unwrap().sequence, 4);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn stored_hash(app: &TestApp, sequence: i64) -> [u8; 32] {
    let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM access_events WHERE sequence = $1")
        .bind(sequence)
        .fetch_one(&app.db)
        .await
        .unwrap();
    hash.try_into().unwrap()
}

/// An event as stored, in the library's type (to hash it as the writer does).
async fn stored_event(app: &TestApp, sequence: i64) -> AccessEvent {
    let row = sqlx::query(
        "SELECT sequence, event_time, principal, roles, calling_system, on_behalf_of, method, \
         action, outcome, customers, purpose, trace_id FROM access_events WHERE sequence = $1",
    )
    .bind(sequence)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let time: chrono::DateTime<chrono::Utc> = row.get("event_time");
    AccessEvent {
        sequence: row.get("sequence"),
        event_time_us: time.timestamp_micros(),
        principal: row.get("principal"),
        roles: row.get("roles"),
        calling_system: row.get("calling_system"),
        on_behalf_of: row.get("on_behalf_of"),
        method: row.get("method"),
        action: Action::parse(row.get("action")).unwrap(),
        outcome: row.get("outcome"),
        customers: row.get("customers"),
        purpose: row.get("purpose"),
        trace_id: row.get("trace_id"),
    }
}

#[tokio::test]
async fn verify_audit_chain_reports_the_event_after_a_deleted_one() {
    let app = spawn().await;
    some_events(&app).await;
    tamper(&app, "DELETE FROM access_events WHERE sequence = 4").await;
    let mut compliance = audit(&app, &Caller::compliance()).await;
    let result = verify(&mut compliance, 0, 0).await;
    assert!(!result.ok, "{result:#?}");
    assert_eq!(result.first_broken_event.unwrap().sequence, 5);
    assert_eq!(result.events_checked, 4, "1, 2, 3 intact, then 5");
    let from_five = verify(&mut compliance, 5, 0).await;
    assert_eq!(
        from_five.first_broken_event.unwrap().sequence,
        5,
        "nothing to anchor a range on when the event before it is gone"
    );
}

#[tokio::test]
async fn access_events_refuse_update_delete_and_truncate() {
    let app = spawn().await;
    some_events(&app).await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    for sql in [
        "UPDATE access_events SET purpose = 'x' WHERE sequence = 1",
        "DELETE FROM access_events WHERE sequence = 1",
        "TRUNCATE access_events",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM access_events WHERE sequence = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let mut compliance = audit(&app, &Caller::compliance()).await;
    assert!(verify(&mut compliance, 0, 0).await.ok);
}

/// The audit is partitioned by month of event_time: every event sits in its
/// own month's partition, the current and next months exist, a row no
/// monthly partition takes lands in the DEFAULT one (and keeps its month
/// from being created over it), and every partition, new ones included,
/// refuses UPDATE, DELETE and TRUNCATE as the parent does.
#[tokio::test]
async fn access_events_are_partitioned_by_month_and_every_partition_is_append_only() {
    let app = spawn().await;
    some_events(&app).await;
    let misplaced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_events
          WHERE tableoid::regclass::text
                <> 'access_events_' || to_char(event_time AT TIME ZONE 'UTC', 'YYYYMM')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(misplaced, 0, "every event is in its month's partition");
    let coming: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits
          WHERE inhparent = 'access_events'::regclass
            AND inhrelid::regclass::text IN (
                'access_events_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM'),
                'access_events_' || to_char((now() AT TIME ZONE 'UTC') + interval '1 month',
                                            'YYYYMM'))",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(coming, 2, "this month's and next month's partitions exist");

    // A clock far ahead: the row lands in the DEFAULT partition rather than
    // failing, and its month is then not created over it; the month after is.
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let (partition,): (String,) = sqlx::query_as(
        "INSERT INTO access_events (sequence, event_time, principal, roles, calling_system,
                                    on_behalf_of, method, action, outcome, customers, purpose,
                                    trace_id, hash)
         VALUES (1000000, '2090-05-05T00:00:00Z', 'p', '{}', '', '', 'm', 'READ', 'OK', '{}',
                 '', '', decode(repeat('00', 32), 'hex'))
         RETURNING tableoid::regclass::text",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(partition, "access_events_default");
    let created: bool =
        sqlx::query_scalar("SELECT ck_ensure_month_partition('access_events', '2090-05-20Z')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!created, "May 2090 stays in the DEFAULT partition");
    let created: bool =
        sqlx::query_scalar("SELECT ck_ensure_month_partition('access_events', '2090-06-20Z')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(created);
    let (month,): (String,) =
        sqlx::query_as("SELECT tableoid::regclass::text FROM access_events WHERE sequence = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    // Row triggers fire on rows: UPDATE and DELETE where there are some.
    for table in [month.as_str(), "access_events_default"] {
        for sql in [
            format!("UPDATE {table} SET purpose = 'x'"),
            format!("DELETE FROM {table}"),
        ] {
            let err = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }
    for table in [
        month.as_str(),
        "access_events_default",
        "access_events_209006",
    ] {
        let sql = format!("TRUNCATE {table}");
        let err = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

/// The fenced block that follows `marker` in README.md.
fn readme_block(marker: &str) -> String {
    let readme = include_str!("../../README.md");
    let after = &readme[readme.find(marker).expect("the marker is in README.md")..];
    let start = after.find("```").unwrap();
    let body = &after[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

async fn run_readme_verifier(app: &TestApp) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let export = readme_block("<!-- audit-export-sql");
    let lines: Vec<String> =
        sqlx::query_scalar::<_, serde_json::Value>(sqlx::AssertSqlSafe(export))
            .fetch_all(&app.db)
            .await
            .unwrap()
            .iter()
            .map(|row| row.to_string())
            .collect();
    let mut python = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(readme_block("<!-- audit-verifier"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = python.stdin.take().unwrap();
    stdin
        .write_all((lines.join("\n") + "\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    python.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn the_readme_python_verifier_recomputes_the_chain() {
    let app = spawn().await;
    some_events(&app).await;
    // Text that needs care: CJK, quotes, a backslash, an emoji and an
    // on_behalf_of pseudonym.
    let mobile = Caller::new("mobile-backend", None, &["service"]);
    let mut claims = mobile.claims();
    claims["on_behalf_of"] = "customers/cif-end-user".into();
    let token = crate::helpers::sign(&claims);
    let mut client = pb::customer_service_client::CustomerServiceClient::with_interceptor(
        app.channel().await,
        Bearer::token(&token),
    );
    let mut request = Request::new(get("customers/no-such-customer"));
    request.metadata_mut().insert(
        "x-purpose",
        tonic::metadata::MetadataValue::try_from(r#"开户 "KYC" \ check"#.as_bytes()).unwrap(),
    );
    let _ = client.get_customer(request).await;
    wait_for_events(&app, "principal = 'mobile-backend'", 1).await;
    let (on_behalf_of, calling_system, purpose): (String, String, String) = sqlx::query_as(
        "SELECT on_behalf_of, calling_system, purpose FROM access_events WHERE principal = 'mobile-backend'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(on_behalf_of, pseudonym("cif-end-user"));
    assert_eq!(calling_system, "mobile-backend");
    assert_eq!(purpose, r#"开户 "KYC" \ check"#);

    let output = run_readme_verifier(&app).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head: Vec<u8> =
        sqlx::query_scalar("SELECT hash FROM access_events ORDER BY sequence DESC LIMIT 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(stdout.contains(&format!("head {}", hex(&head))), "{stdout}");

    tamper(
        &app,
        "UPDATE access_events SET purpose = 'audit' WHERE sequence = 2",
    )
    .await;
    let output = run_readme_verifier(&app).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("chain broken at sequence 2"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_graceful_shutdown_writes_every_queued_event() {
    let mut app = spawn().await;
    let name = new_customer(&app, "陈静", "B01").await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    for _ in 0..20 {
        rm.get_customer(get(&name)).await.unwrap();
    }
    drop(rm);
    app.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(15), app.server.take().unwrap())
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    // No waiting: the server returned only after the writer flushed.
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_events WHERE method = $1 AND outcome = 'OK'",
    )
    .bind(GET_CUSTOMER)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(written, 20);
}

#[tokio::test]
async fn two_replicas_append_to_one_unbroken_chain() {
    let app = spawn().await;
    let name = new_customer(&app, "周杰", "B01").await;
    // A second server on the same database, as a second replica would be.
    let mut env = test_env(&app.database_url);
    with_key(&mut env);
    let settings = Settings::load_from(None, &env).unwrap();
    let replica = Application::build(settings).await.unwrap();
    let replica_addr = format!("http://127.0.0.1:{}", replica.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replica = tokio::spawn(replica.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let mut calls = Vec::new();
    for addr in [app.addr(), replica_addr] {
        for _ in 0..4 {
            let addr = addr.clone();
            let name = name.clone();
            calls.push(tokio::spawn(async move {
                let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
                let mut client =
                    pb::customer_service_client::CustomerServiceClient::with_interceptor(
                        channel,
                        Bearer::of(&Caller::rm("B01")),
                    );
                for _ in 0..25 {
                    client.get_customer(get(&name)).await.unwrap();
                }
            }));
        }
    }
    for call in calls {
        call.await.unwrap();
    }
    wait_for_events(&app, &format!("method = '{GET_CUSTOMER}'"), 200).await;
    let (count, max): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(sequence) FROM access_events")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(count, max, "sequences have no gaps");
    let result = verify(&mut audit(&app, &Caller::compliance()).await, 0, 0).await;
    assert!(result.ok, "{result:#?}");
    let _ = stop.send(());
    replica.await.unwrap().unwrap();
}
