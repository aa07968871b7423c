//! Code generated from `proto/` by build.rs, and the descriptor set that
//! server reflection serves.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod bank {
    pub mod customerknowledge {
        pub mod v1 {
            tonic::include_proto!("bank.customerknowledge.v1");
        }
    }
}

/// The Google API packages the contract imports (`third_party/googleapis`):
/// `google.longrunning` is served; `google.api` holds only annotations.
pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }
}

pub use bank::customerknowledge::v1;

/// The encoded `FileDescriptorSet` of the whole contract.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/customerknowledge_descriptor.bin"
));
