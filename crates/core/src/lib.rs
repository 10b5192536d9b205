//! Infrastructure that at least two Tocsin services share: configuration sections and
//! their layered loading, telemetry, the shutdown token and task tracker, NATS connection
//! and stream setup, and the error classification consumers map to JetStream acks.
//! No domain logic, no HTTP types, no SQL.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod error;
pub mod metrics;
pub mod nats;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use error::ErrorClass;
pub use shutdown::Shutdown;
