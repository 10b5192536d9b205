//! Worker configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_core::config::{
    NatsConfig, PostgresConfig, SecretsConfig, ShutdownConfig, TelemetryConfig, Validate,
};

/// Worker configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Execution settings.
    pub worker: WorkerSection,
    /// NATS.
    pub nats: NatsConfig,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
    /// Tenant secrets handed to runs.
    pub secrets: SecretsConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Draining.
    pub shutdown: ShutdownConfig,
}

/// The `[worker]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// Runner processes this worker supervises.
    pub runners: usize,
    /// Runs one runner executes concurrently (on its asyncio loop).
    pub runs_per_runner: usize,
    /// How long JetStream waits for an ack (or an in-progress ack) before redelivering a
    /// job; also the run lease in Postgres. In-progress acks go out every third of it.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Durable consumer name; worker pools with different filters need different names.
    pub consumer: String,
    /// Subject filter of this pool, e.g. `tocsin.runs.acme.>` to dedicate it to a tenant.
    pub filter_subject: String,
    /// Program started as a runner process; default: this executable.
    pub runner_program: Option<PathBuf>,
    /// Arguments given to the runner program.
    pub runner_args: Vec<String>,
    /// Directory put first on the runner's `sys.path` (the SDK checkout); unset when the
    /// `tocsin` package is installed in the interpreter.
    pub sdk_path: Option<PathBuf>,
    /// Where fetched bundles are unpacked.
    pub bundle_dir: PathBuf,
    /// How long a runner may take to start and report ready.
    #[serde(with = "humantime_serde")]
    pub runner_start_timeout: Duration,
    /// Extra time past a playbook's own timeout before its runner is killed.
    #[serde(with = "humantime_serde")]
    pub hard_deadline_margin: Duration,
    /// Deliveries of a job that keeps failing for infrastructure reasons before it is
    /// dead-lettered (recorded in Postgres, never silently dropped).
    pub max_deliver: i64,
    /// Jobs in flight across the whole pool (all workers sharing `consumer`): the durable
    /// consumer's `max_ack_pending`. Each worker takes at most runners × runs_per_runner.
    pub pool_max_ack_pending: i64,
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            runners: 2,
            runs_per_runner: 16,
            ack_wait: Duration::from_secs(30),
            consumer: tocsin_proto::subjects::WORKER_CONSUMER.to_owned(),
            filter_subject: tocsin_proto::subjects::RUNS_SUBJECTS.to_owned(),
            runner_program: None,
            runner_args: vec!["runner".to_owned()],
            sdk_path: None,
            bundle_dir: std::env::temp_dir().join("tocsin-bundles"),
            runner_start_timeout: Duration::from_secs(30),
            hard_deadline_margin: Duration::from_secs(30),
            max_deliver: 20,
            pool_max_ack_pending: 10_000,
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        let w = &self.worker;
        if w.runners == 0 || w.runners > 256 {
            problems.push("worker.runners must be between 1 and 256".to_owned());
        }
        if w.runs_per_runner == 0 || w.runs_per_runner > 10_000 {
            problems.push("worker.runs_per_runner must be between 1 and 10000".to_owned());
        }
        if w.pool_max_ack_pending < 1 {
            problems.push("worker.pool_max_ack_pending must be at least 1".to_owned());
        }
        if w.max_deliver < 2 {
            problems.push("worker.max_deliver must be at least 2".to_owned());
        }
        if w.ack_wait < Duration::from_secs(3) {
            problems.push("worker.ack_wait must be at least 3s".to_owned());
        }
        if w.consumer.is_empty()
            || !w
                .consumer
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push("worker.consumer must be a non-empty name of [A-Za-z0-9_-]".to_owned());
        }
        if !w.filter_subject.starts_with("tocsin.runs.") {
            problems.push("worker.filter_subject must start with tocsin.runs.".to_owned());
        }
        self.nats.validate(problems);
        self.postgres.validate(problems);
        self.secrets.validate(problems);
        self.telemetry.validate(problems);
        self.shutdown.validate(problems);
    }
}
