//! Publishing normalized alerts to the ALERTS stream.

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::future::try_join_all;
use prost::Message;
use tocsin_proto::{subjects, v1};

/// JetStream did not take an alert; the client should retry later.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// NATS is not connected.
    #[error("nats is not connected")]
    Disconnected,
    /// The publish or its acknowledgement failed (timeout, no stream, stream full).
    #[error("jetstream did not acknowledge the alert")]
    NotAcknowledged(#[source] async_nats::jetstream::context::PublishError),
}

/// Publishes every alert (all sent first, then all acks awaited) and returns once JetStream
/// has acknowledged every one of them. Each message carries the trace context of the
/// current span (the request's, or the NATS intake message's).
pub(crate) async fn publish_alerts(
    client: &async_nats::Client,
    js: &jetstream::Context,
    alerts: &[v1::Alert],
) -> Result<(), PublishError> {
    let span = tracing::Span::current();
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(PublishError::Disconnected);
    }
    let mut acks = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let mut headers = HeaderMap::new();
        headers.insert(subjects::MSG_ID_HEADER, alert.receipt_id.as_str());
        tocsin_core::trace::inject_nats(&span, &mut headers);
        let ack = js
            .publish_with_headers(
                subjects::alert_subject(&alert.tenant),
                headers,
                alert.encode_to_vec().into(),
            )
            .await
            .map_err(PublishError::NotAcknowledged)?;
        acks.push(ack.into_future());
    }
    try_join_all(acks)
        .await
        .map_err(PublishError::NotAcknowledged)?;
    Ok(())
}
