//! The caller's mistakes answer INVALID_ARGUMENT, never INTERNAL or a
//! handler panic (which a client sees as CANCELLED): NUL characters,
//! timestamps outside the protobuf range, durations no clock can hold.

use customer_knowledge::pb::v1::{
    self as pb,
    knowledge_item::{Kind, Nature, Visibility},
};
use tonic::Code;

use crate::helpers::{Caller, TestApp, new_customer};

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

#[tokio::test]
async fn a_nul_byte_in_a_filter_value_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let status = app
        .customers(&Caller::admin())
        .await
        .list_customers(pb::ListCustomersRequest {
            filter: "home_branch = \"B\u{0}\"".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn timestamps_outside_the_protobuf_range_are_invalid_argument() {
    let app = TestApp::spawn().await;
    let customer = new_customer(&app, "Out Of Range", "B01").await;
    let mut interactions = app.interactions(&Caller::rm("B01")).await;
    let now = chrono::Utc::now().timestamp();
    for due_time in [
        ts(now + 86_400, 1_000_000_000),
        ts(now + 86_400, -1),
        ts(253_402_300_800, 0),
        ts(i64::MAX, 0),
    ] {
        let status = interactions
            .schedule_follow_up(pb::ScheduleFollowUpRequest {
                parent: customer.clone(),
                follow_up: Some(pb::FollowUp {
                    assignee: "E-rm-B01".into(),
                    due_time,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{due_time:?}: {status:?}"
        );
    }
    let mut knowledge = app.knowledge(&Caller::compliance()).await;
    for end_time in [ts(-62_135_596_800, 0), ts(i64::MIN, 0)] {
        let status = knowledge
            .get_knowledge_flow(pb::GetKnowledgeFlowRequest {
                end_time,
                ..Default::default()
            })
            .await;
        if let Err(status) = status {
            assert!(
                !matches!(
                    status.code(),
                    Code::Internal | Code::Cancelled | Code::Unknown
                ),
                "{end_time:?}: {status:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_review_interval_no_clock_can_hold_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let author = Caller {
        team: Some("T1".into()),
        ..Caller::rm("B01")
    };
    let item = app
        .knowledge(&author)
        .await
        .create_knowledge_item(pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: "to verify".into(),
                nature: Nature::Explicit as i32,
                kind: Kind::Playbook as i32,
                visibility: Visibility::Branch as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut verifier = app
        .knowledge(&Caller::new(
            "E-verifier",
            Some("B01"),
            &["relationship_manager"],
        ))
        .await;
    for seconds in [i64::MAX, i64::MIN] {
        let status = verifier
            .verify_knowledge_item(pb::VerifyKnowledgeItemRequest {
                name: item.name.clone(),
                review_interval: Some(prost_types::Duration { seconds, nanos: 0 }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{seconds}: {status:?}"
        );
    }
}

/// Sends raw bytes as the request message, to reach the server's decoder
/// with what no generated client would produce.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[tokio::test]
async fn malformed_protobuf_and_invalid_utf8_are_invalid_argument() {
    let app = TestApp::spawn().await;
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    for (case, bytes) in [
        // Field 1 (name, a string) holding bytes that are not UTF-8.
        ("invalid UTF-8", vec![0x0a, 0x03, 0xff, 0xfe, 0xfd]),
        // Field 1 announcing 16 bytes and ending after none.
        ("truncated", vec![0x0a, 0x10]),
        // A field number 0, which no message has.
        ("field 0", vec![0x00, 0x01]),
    ] {
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(bytes);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", Caller::admin().token())
                .parse()
                .unwrap(),
        );
        let status = grpc
            .unary(
                request,
                http::uri::PathAndQuery::from_static(
                    "/bank.customerknowledge.v1.CustomerService/GetCustomer",
                ),
                RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert_eq!(crate::helpers::reason(&status), "INVALID_ARGUMENT");
    }
}
