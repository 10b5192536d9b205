//! The Tocsin wire contract: protobuf messages exchanged over NATS JetStream and the
//! worker/runner pipe, the stream and subject names, and the shared domain types
//! (ids, severities, run states) that services map those messages onto.
#![forbid(unsafe_code)]

pub mod subjects;
pub mod types;

/// Generated protobuf types (`tocsin.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/tocsin.v1.rs"));
}

pub use prost::Message;
