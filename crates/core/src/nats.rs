//! NATS connection and JetStream stream setup.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tocsin_proto::subjects;

use crate::config::NatsConfig;

/// Connecting to NATS or preparing streams failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsSetupError {
    /// The server could not be reached.
    #[error("failed to connect to nats at {url}")]
    Connect {
        /// Server URL.
        url: String,
        /// Cause.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A stream could not be created or updated.
    #[error("failed to prepare stream {stream}")]
    Stream {
        /// Stream name.
        stream: &'static str,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Connects to NATS, failing if the first connection cannot be made within
/// `connect_timeout`; afterwards the client reconnects on its own, forever. Credentials in
/// the URL (`nats://user:password@host:4222`, or `nats://token@host:4222`) are used.
pub async fn connect(
    config: &NatsConfig,
    name: &str,
) -> Result<async_nats::Client, NatsSetupError> {
    // async-nats ignores credentials in the URL; take them from it here.
    let options = match config.url.parse::<async_nats::ServerAddr>() {
        Ok(addr) => match (addr.username(), addr.password()) {
            (Some(user), Some(password)) => async_nats::ConnectOptions::with_user_and_password(
                percent_decode(user),
                percent_decode(password),
            ),
            (Some(token), None) => async_nats::ConnectOptions::with_token(percent_decode(token)),
            _ => async_nats::ConnectOptions::new(),
        },
        // The connect below reports the bad URL.
        Err(_) => async_nats::ConnectOptions::new(),
    };
    let client = options
        .name(name)
        .connection_timeout(config.connect_timeout)
        .max_reconnects(None)
        .connect(&config.url)
        .await
        .map_err(|source| NatsSetupError::Connect {
            url: config.url.clone(),
            source,
        })?;
    Ok(client)
}

/// Decodes `%XX` escapes of URL userinfo (a password may hold `@`, `:` or `/`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JetStream context whose requests (publish acks included) time out after
/// `publish_timeout`.
pub fn jetstream(client: async_nats::Client, config: &NatsConfig) -> jetstream::Context {
    let mut context = jetstream::new(client);
    context.set_timeout(config.publish_timeout);
    context
}

/// Creates or updates the ALERTS, RUNS and INGEST streams.
pub async fn ensure_streams(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<(), NatsSetupError> {
    let alerts = stream::Config {
        name: subjects::ALERTS_STREAM.to_owned(),
        subjects: vec![subjects::ALERTS_SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        max_age: config.alerts_max_age,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    let runs = stream::Config {
        name: subjects::RUNS_STREAM.to_owned(),
        subjects: vec![subjects::RUNS_SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_messages: config.runs_max_messages,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    // Raw events SIEMs publish; kept like alerts, so a fixed normalizer can replay them.
    let ingest = stream::Config {
        name: subjects::INGEST_STREAM.to_owned(),
        subjects: vec![subjects::INGEST_SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        max_age: config.alerts_max_age,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    for (name, cfg) in [
        (subjects::ALERTS_STREAM, alerts),
        (subjects::RUNS_STREAM, runs),
        (subjects::INGEST_STREAM, ingest),
    ] {
        ensure_stream(js, name, cfg).await?;
    }
    Ok(())
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &'static str,
    cfg: stream::Config,
) -> Result<(), NatsSetupError> {
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| NatsSetupError::Stream {
        stream: name,
        source: e,
    };
    match js.get_stream(name).await {
        Ok(_) => {
            js.update_stream(&cfg)
                .await
                .map_err(|e| wrap(Box::new(e)))?;
        }
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                js.create_stream(cfg).await.map_err(|e| wrap(Box::new(e)))?;
            }
            _ => return Err(wrap(Box::new(e))),
        },
    }
    Ok(())
}

/// Retries `ensure_streams` until it succeeds or `deadline` passes; JetStream may still be
/// recovering its store right after a server start.
pub async fn ensure_streams_with_retry(
    js: &jetstream::Context,
    config: &NatsConfig,
    deadline: Duration,
) -> Result<(), NatsSetupError> {
    let start = tokio::time::Instant::now();
    loop {
        match ensure_streams(js, config).await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() < deadline => {
                tracing::debug!(error = %e, "streams not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Any error of opening a consumer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The messages of a durable pull consumer, surviving broker restarts and an unreachable
/// broker at start: the pull stream is opened on first use and reopened (with the stream and
/// consumer created again, as a restarted server may have lost them) after it ends or fails
/// three times in a row; failed opens are retried every second until shutdown. A service
/// therefore never stops because NATS was briefly away — it logs and waits.
pub struct DurablePull<F> {
    open: F,
    what: &'static str,
    messages: Option<jetstream::consumer::pull::Stream>,
    consecutive_errors: u32,
}

impl<F, Fut> DurablePull<F>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<jetstream::consumer::pull::Stream, BoxError>>,
{
    /// `open` creates the consumer and its pull stream; `what` names it in logs.
    pub fn new(what: &'static str, open: F) -> Self {
        Self {
            open,
            what,
            messages: None,
            consecutive_errors: 0,
        }
    }

    /// The next message, or `None` once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &crate::Shutdown) -> Option<jetstream::Message> {
        use futures::StreamExt;
        loop {
            let messages = match self.messages.as_mut() {
                Some(m) => m,
                None => match (self.open)().await {
                    Ok(stream) => {
                        self.consecutive_errors = 0;
                        self.messages.insert(stream)
                    }
                    Err(error) => {
                        tracing::warn!(%error, consumer = self.what, "failed to open the consumer; retrying in 1 s");
                        tokio::select! {
                            () = shutdown.cancelled() => return None,
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    self.consecutive_errors = 0;
                    return Some(message);
                }
                Some(Err(error)) => {
                    // Missed heartbeats and the like are transient and the stream goes on;
                    // several in a row mean the consumer is gone (server restarted).
                    self.consecutive_errors += 1;
                    tracing::warn!(%error, consumer = self.what, consecutive_errors = self.consecutive_errors, "consumer error");
                    if self.consecutive_errors >= 3 {
                        self.messages = None;
                    }
                }
                None => {
                    tracing::warn!(consumer = self.what, "consumer stream ended; reopening");
                    self.messages = None;
                }
            }
        }
    }
}
