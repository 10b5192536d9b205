//! Error classification shared by every message consumer.

use std::time::Duration;

/// What a consumer should do with a message whose handling failed. Each service error type
/// exposes `class()`, and the consumer maps it once onto a JetStream ack kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (database or broker unavailable): redeliver after `delay`.
    Retryable {
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Will never succeed (malformed message): record it and stop redelivering.
    Permanent,
    /// The service is shutting down: hand the message back for immediate redelivery.
    Shutdown,
}

impl ErrorClass {
    /// The default retry class used for transient infrastructure errors.
    pub const RETRY_SOON: ErrorClass = ErrorClass::Retryable {
        delay: Duration::from_secs(1),
    };

    /// The JetStream ack that implements this class.
    pub fn ack_kind(self) -> async_nats::jetstream::AckKind {
        use async_nats::jetstream::AckKind;
        match self {
            ErrorClass::Retryable { delay } => AckKind::Nak(Some(delay)),
            ErrorClass::Permanent => AckKind::Term,
            ErrorClass::Shutdown => AckKind::Nak(None),
        }
    }
}
