//! The errors an operator meets first: a misspelt role, and a method that is
//! not built (or does not exist). Both must say what is wrong and carry
//! `google.rpc.ErrorInfo` like every other error.

use std::collections::HashMap;

use customer_knowledge::{
    api::status::ERROR_DOMAIN,
    pb::v1::{self as pb, insight_service_client::InsightServiceClient},
};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::helpers::{Caller, TestApp, new_customer, reason};

const KNOWN: &str =
    "known roles: relationship_manager, teller, analyst, compliance, admin, service";

fn error_info(status: &Status) -> (String, String, HashMap<String, String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (info.reason, info.domain, info.metadata)
}

fn get(name: &str) -> pb::GetCustomerRequest {
    pb::GetCustomerRequest {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_unknown_role_in_a_token_is_named_with_the_known_roles() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "张伟", "B01").await;

    for roles in [&["tellr"][..], &["teller", "tellr"]] {
        let caller = Caller::new("E1001", Some("B01"), roles);
        let status = app
            .customers(&caller)
            .await
            .get_customer(get(&customer))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{roles:?}");
        assert!(
            status
                .message()
                .contains(&format!(r#"role "tellr" is unknown; {KNOWN}"#)),
            "{roles:?}: {}",
            status.message()
        );
        assert_eq!(reason(&status), "PERMISSION_DENIED");
        // Nothing of the customer in the refusal.
        assert!(!status.message().contains("张伟"));
    }

    let status = app
        .customers(&Caller::new("E1001", Some("B01"), &["tellr", "cashier"]))
        .await
        .get_customer(get(&customer))
        .await
        .unwrap_err();
    assert!(
        status
            .message()
            .contains(r#"roles "tellr", "cashier" are unknown"#),
        "{}",
        status.message()
    );

    // The spelling that is known still works.
    let got = app
        .customers(&Caller::teller("B01"))
        .await
        .get_customer(get(&customer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, customer);
}

#[tokio::test]
async fn an_unknown_role_in_trusted_headers_is_named_and_blank_entries_are_skipped() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CK__AUTH__MODE".into(), "trusted_headers".into());
    })
    .await;
    let customer = new_customer_as_headers(&app).await;
    let call = |roles: &'static str| {
        let mut request = Request::new(get(&customer));
        let metadata = request.metadata_mut();
        metadata.insert("x-employee-id", "E1001".parse().unwrap());
        metadata.insert("x-branch", "B01".parse().unwrap());
        metadata.insert("x-roles", roles.parse().unwrap());
        request
    };
    let mut client = pb::customer_service_client::CustomerServiceClient::new(app.channel().await);

    let status = client
        .get_customer(call("relationship_manager,tellr"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains(&format!(r#"role "tellr" is unknown; {KNOWN}"#)),
        "{}",
        status.message()
    );

    // A trailing comma is no role at all, not an unknown one.
    client
        .get_customer(call("relationship_manager, "))
        .await
        .expect("a blank entry in x-roles is skipped");
}

/// A customer of B01, created through trusted headers as an admin.
async fn new_customer_as_headers(app: &TestApp) -> String {
    let mut request = Request::new(pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: "张伟".into(),
            kind: pb::customer::Kind::Individual as i32,
            home_branch: "B01".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-employee-id", "E-admin".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-roles", "admin".parse().unwrap());
    pb::customer_service_client::CustomerServiceClient::new(app.channel().await)
        .create_customer(request)
        .await
        .expect("create customer")
        .into_inner()
        .name
}

#[tokio::test]
async fn unimplemented_answers_carry_error_info() {
    let app = TestApp::spawn().await;

    // Without credentials a contract method is UNAUTHENTICATED, with
    // ErrorInfo.
    let status = InsightServiceClient::new(app.channel().await)
        .get_customer360(pb::GetCustomer360Request {
            name: "customers/x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(error_info(&status).0, "UNAUTHENTICATED");

    // A path that is no method of the contract, under an unknown service or
    // under one the server serves.
    for path in [
        "/no.such.Service/Steal",
        "/bank.customerknowledge.v1.CustomerService/Nope",
    ] {
        let mut grpc = tonic::client::Grpc::new(app.channel().await);
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<(), (), _>(
                Request::new(()),
                path.parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        assert!(
            status.message().contains("unknown method"),
            "{path}: {}",
            status.message()
        );
        let (reason, domain, _) = error_info(&status);
        assert_eq!(reason, "UNIMPLEMENTED");
        assert_eq!(domain, ERROR_DOMAIN);
    }
}
