//! Code generated from `proto/` by build.rs, and the descriptor set that
//! server reflection serves.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod bank {
    pub mod customerknowledge {
        pub mod v1 {
            tonic::include_proto!("bank.customerknowledge.v1");

            // The contract's standard types: amounts are google.type.Money
            // (they were a local message of the same fields and numbers),
            // dates google.type.Date, periods google.type.Interval. Named
            // here so code writes `pb::Money`, `pb::Date`, `pb::Interval`.
            pub use super::super::super::google::r#type::{Date, Interval, Money};
        }
    }
}

/// The Google API packages the contract imports (`third_party/googleapis`):
/// `google.longrunning` is served; `google.api` holds only annotations;
/// `google.type` holds the standard Money, Date and Interval.
pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
    pub mod r#type {
        tonic::include_proto!("google.r#type");
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
