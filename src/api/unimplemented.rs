//! Answers for gRPC methods no service handles: a contract method that a
//! later release implements authenticates the caller like every implemented
//! method (UNAUTHENTICATED without valid credentials, DESIGN §3), then gets
//! UNIMPLEMENTED naming it; anything else gets UNIMPLEMENTED saying the
//! method is unknown.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use axum::{body::Body, http::Request, response::Response};
use prost::Message;
use tonic::metadata::MetadataMap;

use crate::{auth::Authenticator, telemetry::rpc::MethodShape};

/// `/package.Service/Method` paths of every method in a descriptor set.
pub fn contract_methods(descriptor_set: &[u8]) -> anyhow::Result<HashSet<String>> {
    Ok(method_shapes(descriptor_set)?.into_keys().collect())
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

/// The fallback route of the gRPC router.
pub async fn answer(
    methods: Arc<HashSet<String>>,
    authenticator: Authenticator,
    request: Request<Body>,
) -> Response {
    let path = request.uri().path();
    let message = if methods.contains(path) {
        let metadata = MetadataMap::from_headers(request.headers().clone());
        if let Err(e) = authenticator.authenticate(&metadata) {
            return tonic::Status::from(e).into_http::<Body>();
        }
        let method = path.trim_start_matches('/').replace('/', ".");
        format!("{method} is part of the contract but not implemented yet")
    } else {
        "unknown method: this server does not offer it".to_string()
    };
    tonic::Status::unimplemented(message).into_http::<Body>()
}
