//! polyhead's gRPC contract, generated from `proto/polyhead/v1/*.proto`.
//!
//! Servers implement [`v1::inference_server::Inference`] and
//! [`v1::registry_server::Registry`]; clients use [`v1::inference_client::InferenceClient`]
//! and [`v1::registry_client::RegistryClient`].
#![allow(missing_docs)]

/// Package `polyhead.v1`.
pub mod v1 {
    tonic::include_proto!("polyhead.v1");
}

/// The encoded `FileDescriptorSet` of every polyhead proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("polyhead_descriptor");
