//! Answers for gRPC paths no service handles. Every method of the contract
//! is served, so what is left is a path the server does not offer: the RPC
//! layer answers it UNIMPLEMENTED (`unknown_method`) before any router, with
//! `google.rpc.ErrorInfo` like every other error and the contract's reason
//! `UNIMPLEMENTED` (`api::status::layer_status`). `method_shapes` tells the
//! RPC layer which paths are served and how they stream.

use std::collections::HashMap;

use prost::Message;
use tonic::Code;

use crate::{api::status::layer_status, error::ErrorReason, telemetry::rpc::MethodShape};

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
