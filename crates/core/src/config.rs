//! Configuration sections shared by the services, and the layered loader.
//!
//! Layers, later wins: defaults in code → optional TOML file (`--config`) → environment.
//! Environment variables are `TOCSIN_<SECTION>__<FIELD>` (for example
//! `TOCSIN_WORKER__RUNNERS=4`), plus two conventional aliases: `TOCSIN_NATS_URL` for
//! `nats.url` and `TOCSIN_DATABASE_URL` for `postgres.url`. A variable for a section the
//! service does not have (another service's, or a client setting from `dev.env`) is ignored;
//! an unknown field in a section it has is an error.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A configuration that can be checked after extraction.
pub trait Validate {
    /// Appends one message per problem to `problems`, each naming the offending key.
    fn validate(&self, problems: &mut Vec<String>);
}

/// Configuration could not be loaded; every problem is listed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a value had the wrong type.
    #[error("invalid configuration: {0}")]
    Extract(Box<figment::Error>),
    /// Values were well-formed but violate a rule.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Loads `T` from defaults, the optional TOML `file`, and the process environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    load_from(file, Env::prefixed("TOCSIN_"))
}

fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    // The environment is shared by every service (and `dev.env` sets client variables too):
    // a variable for a section this service does not have is not an error, it is someone
    // else's. Within a known section, unknown fields are still rejected.
    let sections: Vec<String> = serde_json::to_value(T::default())
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    let env = env
        .filter(move |key| env_target(key.as_str(), &sections).is_some())
        .map(|key| {
            let lowered = key.as_str().to_ascii_lowercase();
            match lowered.as_str() {
                "nats_url" => "nats.url".into(),
                "database_url" => "postgres.url".into(),
                other => other.replace("__", ".").into(),
            }
        });
    let config: T = figment
        .merge(env)
        .extract()
        .map_err(|e| ConfigError::Extract(Box::new(e)))?;
    let mut problems = Vec::new();
    config.validate(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The section an environment key (without the `TOCSIN_` prefix) configures, when this
/// configuration has that section.
fn env_target<'a>(key: &str, sections: &'a [String]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    let section = match key.as_str() {
        "nats_url" => "nats",
        "database_url" => "postgres",
        other => other.split_once("__")?.0,
    };
    sections
        .iter()
        .find(|s| s.as_str() == section)
        .map(String::as_str)
}

/// A secret string (a URL with a password, a key): shown as `<redacted>` by `Debug` and by
/// [`to_redacted_json`] (`--print-config`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

thread_local! {
    static REDACTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Serializes a configuration for people: every [`Secret`] as `<redacted>`, and the password
/// of a URL with credentials (the NATS URL) as well. (Plain serialization stays exact: the
/// loader round-trips defaults through it.)
pub fn to_redacted_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REDACTING.with(|r| r.set(false));
        }
    }
    REDACTING.with(|r| r.set(true));
    let _reset = Reset;
    serde_json::to_string_pretty(value)
}

fn redacting() -> bool {
    REDACTING.with(std::cell::Cell::get)
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if redacting() {
            s.serialize_str("<redacted>")
        } else {
            s.serialize_str(&self.0)
        }
    }
}

/// A URL whose userinfo (`user:password@`) is hidden by [`to_redacted_json`].
#[allow(clippy::ptr_arg)] // serde's `serialize_with` passes `&String`.
fn serialize_url<S: serde::Serializer>(url: &String, s: S) -> Result<S::Ok, S::Error> {
    if redacting()
        && let Some((scheme, rest)) = url.split_once("://")
        && let Some((_, host)) = rest.rsplit_once('@')
    {
        return s.serialize_str(&format!("{scheme}://<redacted>@{host}"));
    }
    s.serialize_str(url)
}

#[allow(clippy::ref_option)] // serde's `serialize_with` passes `&Option<String>`.
fn serialize_optional_url<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serialize_url(url, s),
        None => s.serialize_none(),
    }
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// NATS connection and stream settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222` (credentials: `nats://user:password@host`).
    #[serde(serialize_with = "serialize_url")]
    pub url: String,
    /// How long to wait for the initial connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long to wait for a JetStream PubAck before the publish counts as failed.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Stream replicas (1 locally, 3 in production clusters).
    pub replicas: usize,
    /// How long ALERTS keeps alerts (the replayable log).
    #[serde(with = "humantime_serde")]
    pub alerts_max_age: Duration,
    /// Upper bound on the RUNS work queue; a full queue rejects new jobs (`discard: new`).
    pub runs_max_messages: i64,
    /// Broker-side dedup window for `Nats-Msg-Id`.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            replicas: 1,
            alerts_max_age: Duration::from_secs(7 * 24 * 3600),
            runs_max_messages: 1_000_000,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl Validate for NatsConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if !(self.url.starts_with("nats://") || self.url.starts_with("tls://")) {
            problems.push(format!(
                "nats.url must start with nats:// or tls://, got {:?}",
                self.url
            ));
        }
        if self.replicas == 0 || self.replicas > 5 {
            problems.push("nats.replicas must be between 1 and 5".to_owned());
        }
        if self.runs_max_messages <= 0 {
            problems.push("nats.runs_max_messages must be positive".to_owned());
        }
        if self.publish_timeout.is_zero() {
            problems.push("nats.publish_timeout must be positive".to_owned());
        }
    }
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://tocsin@127.0.0.1:5432/tocsin`.
    pub url: Secret,
    /// Pool size.
    pub max_connections: u32,
    /// How long a query waits for a pooled connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://tocsin@127.0.0.1:5432/tocsin"),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Validate for PostgresConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        let url = self.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push("postgres.url must start with postgres:// or postgresql://".to_owned());
        }
        if self.max_connections == 0 {
            problems.push("postgres.max_connections must be at least 1".to_owned());
        }
    }
}

/// Secret storage settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Master key encrypting tenant secrets: 32 random bytes, base64
    /// (`openssl rand -base64 32`). Without it, playbooks see no secrets and `tocsin secret
    /// set` refuses to store any. `tocsin dev` generates one under its data dir.
    pub master_key: Option<Secret>,
}

impl Validate for SecretsConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Some(key) = &self.master_key {
            let ok = key.expose().trim().len() == 44 && key.expose().trim().ends_with('=');
            if !ok {
                problems.push(
                    "secrets.master_key must be 32 bytes, base64-encoded (44 characters)"
                        .to_owned(),
                );
            }
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when running in Kubernetes (`KUBERNETES_SERVICE_HOST` set), pretty otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Logging and tracing settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` EnvFilter directive; `RUST_LOG` overrides it when set.
    pub filter: String,
    /// The observability listener (e.g. `0.0.0.0:9090` in containers): `/healthz` (alive)
    /// and `/readyz` (NATS, PostgreSQL, and for the worker its runner pool), for the
    /// scheduler and the worker, which have no HTTP port otherwise. Off when unset.
    pub listen: Option<std::net::SocketAddr>,
    /// Distributed tracing (OpenTelemetry).
    pub traces: TracesConfig,
}

/// OpenTelemetry traces. Trace context is always created and propagated (NATS headers,
/// `traceparent` on outgoing HTTP) and trace ids are stored on alerts, runs and steps;
/// spans are exported only when `endpoint` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// OTLP/HTTP base URL of a collector (e.g. `http://otel-collector:4318`); spans are
    /// posted as protobuf to `<endpoint>/v1/traces`. Export is off when unset. Extra
    /// request headers (authentication) come from `OTEL_EXPORTER_OTLP_HEADERS`.
    #[serde(serialize_with = "serialize_optional_url")]
    pub endpoint: Option<String>,
    /// Share of new traces sampled (0.0–1.0); a trace continued from a caller follows the
    /// caller's sampling decision.
    pub sample_ratio: f64,
    /// `service.name` of the exported spans; `tocsin-<service>` when unset.
    pub service_name: Option<String>,
    /// Longest wait before buffered spans are exported.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Timeout of one export request.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            sample_ratio: 1.0,
            service_name: None,
            export_interval: Duration::from_secs(2),
            export_timeout: Duration::from_secs(10),
        }
    }
}

impl Validate for TracesConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "telemetry.traces.endpoint must be an http:// or https:// URL, got {endpoint:?}"
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push(format!(
                "telemetry.traces.sample_ratio must be between 0 and 1, got {}",
                self.sample_ratio
            ));
        }
        if self.export_interval.is_zero() || self.export_timeout.is_zero() {
            problems.push(
                "telemetry.traces.export_interval and export_timeout must be positive".to_owned(),
            );
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            filter: "info,async_nats=warn,sqlx=warn".to_owned(),
            listen: None,
            traces: TracesConfig::default(),
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.filter) {
            problems.push(format!("telemetry.filter is not a valid filter: {e}"));
        }
        self.traces.validate(problems);
    }
}

/// Shutdown settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long each drain step may take before it is abandoned.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(20),
        }
    }
}

impl Validate for ShutdownConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.grace.is_zero() {
            problems.push("shutdown.grace must be positive".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct TestConfig {
        nats: NatsConfig,
        postgres: PostgresConfig,
        shutdown: ShutdownConfig,
    }

    impl Validate for TestConfig {
        fn validate(&self, problems: &mut Vec<String>) {
            self.nats.validate(problems);
            self.postgres.validate(problems);
            self.shutdown.validate(problems);
        }
    }

    fn no_env() -> Env {
        // A prefix nothing uses: the test must not depend on (or mutate) the process env.
        Env::prefixed("TOCSIN_CONFIG_TEST_UNUSED_")
    }

    #[test]
    fn environment_keys_apply_only_to_sections_this_service_has() {
        let sections = vec!["nats".to_owned(), "shutdown".to_owned()];
        assert_eq!(env_target("NATS_URL", &sections), Some("nats"));
        assert_eq!(env_target("nats__url", &sections), Some("nats"));
        assert_eq!(env_target("SHUTDOWN__GRACE", &sections), Some("shutdown"));
        assert_eq!(
            env_target("DATABASE_URL", &sections),
            None,
            "no postgres section"
        );
        assert_eq!(
            env_target("WORKER__RUNNERS", &sections),
            None,
            "another service's"
        );
        assert_eq!(env_target("API_KEY", &sections), None, "a client variable");
    }

    #[test]
    fn file_layer_and_validation_report_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tocsin.toml");
        std::fs::write(
            &path,
            "[nats]\nurl = \"http://x\"\nreplicas = 0\n[shutdown]\ngrace = \"0s\"\n",
        )
        .unwrap();
        match load_from::<TestConfig>(Some(&path), no_env()) {
            Err(ConfigError::Invalid(problems)) => assert_eq!(problems.len(), 3, "{problems:?}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        std::fs::write(&path, "[nats]\nurl = \"nats://h:1\"\nbogus = 1\n").unwrap();
        assert!(matches!(
            load_from::<TestConfig>(Some(&path), no_env()),
            Err(ConfigError::Extract(_))
        ));
        std::fs::write(&path, "[shutdown]\ngrace = \"3s\"\n").unwrap();
        let config = load_from::<TestConfig>(Some(&path), no_env()).unwrap();
        assert_eq!(config.shutdown.grace, Duration::from_secs(3));
        assert_eq!(format!("{:?}", config.postgres.url), "<redacted>");
    }
}
