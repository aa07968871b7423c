//! Answers for gRPC methods no service handles: a contract method that a
//! later release implements authenticates the caller like every implemented
//! method (UNAUTHENTICATED without valid credentials, DESIGN §3), then gets
//! UNIMPLEMENTED naming it (`answer`); anything else gets UNIMPLEMENTED
//! saying the method is unknown (`unknown_method`, which the RPC layer
//! answers before any router). Both carry `google.rpc.ErrorInfo` like every other
//! error, with the contract's reason `UNIMPLEMENTED` (`api::status::layer_status`).

use std::collections::HashMap;

use axum::{body::Body, http::Request, response::Response};
use prost::Message;
use tonic::{Code, metadata::MetadataMap};

use crate::{
    api::status::layer_status, auth::Authenticator, error::ErrorReason, telemetry::rpc::MethodShape,
};

fn unimplemented(message: &str) -> Response {
    layer_status(
        Code::Unimplemented,
        ErrorReason::Unimplemented,
        message,
        None,
    )
    .into_http::<Body>()
}

/// Every method of a descriptor set by `/package.Service/Method` path, with
/// whether it streams requests or responses.
pub fn method_shapes(descriptor_set: &[u8]) -> anyhow::Result<HashMap<String, MethodShape>> {
    let set = prost_types::FileDescriptorSet::decode(descriptor_set)?;
    Ok(set
        .file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_string();
            file.service.iter().flat_map(move |service| {
                let prefix = format!("/{package}.{}/", service.name());
                service.method.iter().map(move |m| {
                    (
                        format!("{prefix}{}", m.name()),
                        MethodShape {
                            client_streaming: m.client_streaming(),
                            server_streaming: m.server_streaming(),
                        },
                    )
                })
            })
        })
        .collect())
}

/// The fallback route of the gRPC router. The RPC layer
/// (`telemetry::rpc`) answers every path outside the served descriptors
/// itself, and health and reflection implement all of theirs, so only a
/// contract method no service implements yet reaches it.
pub async fn answer(authenticator: Authenticator, request: Request<Body>) -> Response {
    let metadata = MetadataMap::from_headers(request.headers().clone());
    if let Err(e) = authenticator.authenticate(&metadata) {
        return tonic::Status::from(e).into_http::<Body>();
    }
    let method = request
        .uri()
        .path()
        .trim_start_matches('/')
        .replace('/', ".");
    unimplemented(&format!(
        "{method} is part of the contract but not implemented yet"
    ))
}

/// The answer to a path that is no method of the server, also under a
/// service it does serve (the RPC layer answers those before any router).
pub fn unknown_method() -> tonic::Status {
    layer_status(
        Code::Unimplemented,
        ErrorReason::Unimplemented,
        "unknown method: this server does not offer it",
        None,
    )
}
