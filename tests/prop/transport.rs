//! A rejected request's status must reach the client: the real server
//! (`Application`, no database: its pool points at a closed port) and a
//! tonic client over loopback HTTP/2. A status whose message and details do
//! not fit in the 16 KiB of headers an HTTP/2 client accepts by default
//! (hyper's, so tonic's) never arrives: the client sees INTERNAL or
//! RESOURCE_EXHAUSTED "h2 protocol error" instead of INVALID_ARGUMENT.

use std::collections::{BTreeMap, HashMap};

use customer_knowledge::{
    config::Settings,
    pb::v1::{
        self as pb, customer_service_client::CustomerServiceClient,
        interaction_service_client::InteractionServiceClient,
        knowledge_service_client::KnowledgeServiceClient,
    },
    startup::Application,
};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

struct Server {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        let env: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("CK__DATABASE__MIGRATE", "false"),
            ("CK__SERVER__GRPC_ADDR", "127.0.0.1:0"),
            ("CK__SERVER__ADMIN_ADDR", "127.0.0.1:0"),
            ("CK__AUTH__MODE", "trusted_headers"),
            ("CK__AUDIT__ENABLED", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings::load_from(None, &env).expect("settings");
        let app = Application::build(settings).await.expect("the app builds");
        let port = app.port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Server {
            port,
            stop: Some(stop),
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.task.await;
    }
}

/// A request as an admin of branch B01 (trusted_headers mode).
fn as_admin<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-employee-id", MetadataValue::from_static("E1001"));
    metadata.insert("x-roles", MetadataValue::from_static("admin"));
    metadata.insert("x-branch", MetadataValue::from_static("B01"));
    request
}

fn interaction_without_channel() -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        parent: "customers/c-1".into(),
        interaction: Some(pb::Interaction {
            kind: pb::interaction::Kind::Inquiry as i32,
            summary: "no channel".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Invalid requests whose violations add up to more than a client takes:
/// each answers INVALID_ARGUMENT at the handler (see `services.rs`), and
/// must arrive as INVALID_ARGUMENT.
#[tokio::test]
async fn invalid_requests_answer_invalid_argument_over_http2() {
    let server = Server::start().await;
    let mut found = Vec::new();
    let mut check = |what: &str, answer: Result<(), tonic::Status>| match answer {
        Err(status) if status.code() == Code::InvalidArgument => {}
        Err(status) => found.push(format!(
            "{what}: the client got {:?} \"{}\" instead of INVALID_ARGUMENT",
            status.code(),
            status.message()
        )),
        Ok(()) => found.push(format!("{what}: answered OK")),
    };

    // Ten unknown update_mask paths of 1000 characters (a 10 KB request):
    // every path is quoted back, in the message and in BadRequest.
    let mut customers = CustomerServiceClient::new(server.channel().await);
    let paths = (0..10)
        .map(|i| format!("{i}{}", "x".repeat(1000)))
        .collect();
    let answer = customers
        .update_customer(as_admin(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: "customers/c-1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
            request_id: String::new(),
        }))
        .await;
    check(
        "UpdateCustomer, 10 unknown paths of 1000 characters",
        answer.map(drop),
    );

    // 25 unknown paths of 100 CJK characters: quoted paths are cut to 200
    // characters, but `grpc-message` percent-encodes each of their bytes.
    let paths = (0..25)
        .map(|i| format!("{i}{}", "偏".repeat(100)))
        .collect();
    let answer = customers
        .update_customer(as_admin(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: "customers/c-1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
            request_id: String::new(),
        }))
        .await;
    check(
        "UpdateCustomer, 25 unknown paths of 100 CJK characters",
        answer.map(drop),
    );

    // The same for a knowledge item.
    let mut knowledge = KnowledgeServiceClient::new(server.channel().await);
    let paths = (0..10)
        .map(|i| format!("{i}{}", "x".repeat(1000)))
        .collect();
    let answer = knowledge
        .update_knowledge_item(as_admin(pb::UpdateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                name: "knowledgeItems/k-1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
            request_id: String::new(),
        }))
        .await;
    check(
        "UpdateKnowledgeItem, 10 unknown paths of 1000 characters",
        answer.map(drop),
    );

    // Twenty preference keys of 1000 characters: each key is quoted in
    // its violation's field path.
    let mut customers = CustomerServiceClient::new(server.channel().await);
    let preferences: BTreeMap<String, String> = (0..20)
        .map(|i| (format!("K{i}{}", "y".repeat(1000)), "v".to_string()))
        .collect();
    let answer = customers
        .create_customer(as_admin(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "Probe".into(),
                kind: pb::customer::Kind::Individual as i32,
                home_branch: "B01".into(),
                preferences,
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await;
    check(
        "CreateCustomer, 20 invalid preference keys",
        answer.map(drop),
    );

    // A batch of 200 interactions without a channel: no caller text is
    // quoted, but 200 violations of ~150 bytes add up to 30 KB.
    let mut interactions = InteractionServiceClient::new(server.channel().await);
    let answer = interactions
        .batch_log_interactions(as_admin(pb::BatchLogInteractionsRequest {
            requests: vec![interaction_without_channel(); 200],
            request_id: String::new(),
        }))
        .await;
    check(
        "BatchLogInteractions, 200 interactions without a channel",
        answer.map(drop),
    );

    server.stop().await;
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The control: a small invalid request arrives as INVALID_ARGUMENT, and a
/// valid one as UNAVAILABLE (no database), so the server under test serves.
#[tokio::test]
async fn the_server_without_a_database_answers() {
    let server = Server::start().await;
    let mut interactions = InteractionServiceClient::new(server.channel().await);
    let small = interactions
        .batch_log_interactions(as_admin(pb::BatchLogInteractionsRequest {
            requests: vec![interaction_without_channel(); 2],
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(small.code(), Code::InvalidArgument, "{small:?}");
    let mut customers = CustomerServiceClient::new(server.channel().await);
    let valid = customers
        .get_customer(as_admin(pb::GetCustomerRequest {
            name: "customers/c-1".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(valid.code(), Code::Unavailable, "{valid:?}");
    server.stop().await;
}
