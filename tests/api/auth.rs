//! JWTs signed with RS256 and ES256 keys from the public keys file.

use customer_knowledge::pb::v1::{self as pb, customer_service_client::CustomerServiceClient};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use tonic::Code;

use crate::helpers::{Bearer, Caller, TestApp};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn signed(algorithm: Algorithm, private_key: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/{private_key}")).unwrap();
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => unreachable!(),
    };
    encode(&Header::new(algorithm), claims, &key).unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_the_public_keys_file() {
    let app = TestApp::spawn_with(|env| {
        env.remove("CK__AUTH__JWT__HS256_SECRET");
        env.insert(
            "CK__AUTH__JWT__PUBLIC_KEYS_FILE".into(),
            format!("{FIXTURES}/jwt-test-public-keys.pem"),
        );
    })
    .await;
    let claims = Caller::admin().claims();
    let get = || pb::GetCustomerRequest {
        name: "customers/nobody".into(),
        ..Default::default()
    };
    for (algorithm, key) in [
        (Algorithm::RS256, "rsa-test-private.pem"),
        (Algorithm::ES256, "ec-test-private.pem"),
    ] {
        let mut client = CustomerServiceClient::with_interceptor(
            app.channel().await,
            Bearer::token(&signed(algorithm, key, &claims)),
        );
        // Authenticated: the admin reaches the (missing) customer.
        let status = client.get_customer(get()).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "{algorithm:?}: {}",
            status.message()
        );
    }
    // HS256 is not accepted when no secret is configured, even if validly signed.
    let mut hs256 = app.customers(&Caller::admin()).await;
    let status = hs256.get_customer(get()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
