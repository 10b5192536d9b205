//! Benchmarks (`tocsin bench <scenario>`): each scenario starts a private stack exactly like
//! `tocsin dev` (private nats-server and PostgreSQL, durable settings), deploys its own
//! playbooks, drives load over HTTP with bounded concurrency (and an optional rate), and
//! reports throughput and latency percentiles. Latencies of the pipeline are read from the
//! timestamps Postgres recorded (alert accepted → run started → run finished), so the load
//! generator's own scheduling does not distort them.
#![forbid(unsafe_code)]

mod fake;
mod report;
mod scale_out;
mod scenarios;
mod sql_profile;

use std::path::PathBuf;
use std::time::Duration;

pub use report::{Report, ScalePoint};
pub use scenarios::Scenario;
pub use sql_profile::SqlStat;

/// How to run a benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which scenario.
    pub scenario: Scenario,
    /// How long to drive load.
    pub duration: Duration,
    /// Target alerts (or requests) per second; `None` = as fast as the concurrency allows.
    pub rate: Option<f64>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Alerts per request (1 = single-alert requests; more = NDJSON batches).
    pub batch: usize,
    /// State directory; a temporary one when `None`.
    pub data_dir: Option<PathBuf>,
    /// Runner processes per worker.
    pub runners: usize,
    /// Concurrent runs per runner.
    pub runs_per_runner: usize,
    /// Runs `backlog` queues (its deep queue); alerts `scale-out` posts for each worker
    /// count.
    pub backlog: usize,
    /// Worker process counts the `scale-out` scenario measures, in increasing order.
    pub workers: Vec<usize>,
    /// Load `pg_stat_statements` into the private PostgreSQL and report the statements that
    /// took the database's time during the load.
    pub profile_sql: bool,
    /// Unmeasured load at the same rate before `e2e` and `enrichment` measure (connections
    /// opened, runners warm); zero skips it.
    pub warmup: Duration,
    /// How `ingest`, `e2e` and `enrichment` deliver alerts.
    pub via: Via,
}

/// How the load generator delivers alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// `POST /v1/alerts` (a request is done at the 202, after JetStream's PubAck).
    #[default]
    Http,
    /// JetStream publish to `tocsin.ingest.<tenant>.alerts`, NATS intake (a publish is done at
    /// the INGEST stream's PubAck; ingest then normalizes it and acks).
    Nats,
}

impl std::str::FromStr for Via {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Via::Http),
            "nats" => Ok(Via::Nats),
            other => Err(format!("--via must be http or nats, not {other:?}")),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: Scenario::E2e,
            duration: Duration::from_secs(10),
            rate: None,
            concurrency: 32,
            batch: 1,
            data_dir: None,
            runners: 2,
            runs_per_runner: 32,
            backlog: 1_000_000,
            workers: vec![1, 2, 4],
            profile_sql: false,
            warmup: Duration::from_secs(2),
            via: Via::Http,
        }
    }
}

/// Runs a benchmark and returns its report.
pub async fn run(
    config: tocsin_stack::stack::StackConfig,
    options: &Options,
) -> anyhow::Result<Report> {
    scenarios::run(config, options).await
}
