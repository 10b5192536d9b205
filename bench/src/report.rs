//! Benchmark reports: percentiles, a table for people and JSON for plots.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Measured operations (alerts accepted, runs finished, ...).
    pub count: usize,
    /// Operations per second over the measured window.
    pub throughput_per_s: f64,
    /// Latency percentiles of the scenario's main measure, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// What the latency measures.
    pub latency: String,
    /// Further figures (other percentiles, derived overheads), by name.
    pub extra: BTreeMap<String, f64>,
    /// One entry per worker count (`scale-out` only; omitted from the JSON otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<ScalePoint>,
    /// With `--profile-sql`: the statements that took the most database time during the
    /// load (omitted from the JSON otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql_profile: Vec<crate::SqlStat>,
}

/// What one worker count of the `scale-out` scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    /// Worker processes.
    pub workers: usize,
    /// Runner processes per worker.
    pub runners_per_worker: usize,
    /// Runs drained (one per alert posted).
    pub count: usize,
    /// Of them, runs that did not succeed.
    pub failed: usize,
    /// Runs per second, first run started → last run finished.
    pub throughput_per_s: f64,
    /// Alert accepted → run finished: median, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Run started → finished: median, in milliseconds.
    pub run_p50_ms: f64,
    /// 99th percentile.
    pub run_p99_ms: f64,
    /// Throughput per worker relative to the smallest worker count's: with 1 worker first,
    /// throughput(N) / (N × throughput(1)).
    pub efficiency: f64,
    /// Share of the machine's CPU time (all cores) that was busy while draining, 0-1.
    pub cpu_busy: f64,
    /// Share of that busy time spent in the worker processes and their runners.
    pub cpu_workers: f64,
    /// Share spent in the benchmark's own process (ingest, scheduler, API, load generator).
    pub cpu_stack: f64,
    /// Share spent in the private PostgreSQL and nats-server.
    pub cpu_servers: f64,
    /// The rest: processes outside the benchmark (other work on the machine).
    pub cpu_other: f64,
}

/// Percentile `p` (0-100) of sorted `values` (nearest rank); 0 when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50/p90/p99/max of unsorted milliseconds.
pub(crate) fn summarize(mut values: Vec<f64>) -> (f64, f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        percentile(&values, 50.0),
        percentile(&values, 90.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(0.0),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario      {}", self.scenario)?;
        writeln!(f, "count         {}", self.count)?;
        writeln!(f, "throughput    {:.1}/s", self.throughput_per_s)?;
        writeln!(f, "latency       {}", self.latency)?;
        writeln!(
            f,
            "  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )?;
        for (name, value) in &self.extra {
            writeln!(f, "{name:<14}{value:.3}")?;
        }
        if !self.points.is_empty() {
            writeln!(
                f,
                "workers  runners  runs   failed  runs/s   p50 ms    p99 ms    run p50  run p99  \
                 efficiency  cpu busy  workers/stack/servers/other"
            )?;
        }
        for p in &self.points {
            writeln!(
                f,
                "{:<8} {:<8} {:<6} {:<7} {:<8.1} {:<9.1} {:<9.1} {:<8.1} {:<8.1} {:<11.2} \
                 {:<9.2} {:.2}/{:.2}/{:.2}/{:.2}",
                p.workers,
                p.runners_per_worker,
                p.count,
                p.failed,
                p.throughput_per_s,
                p.p50_ms,
                p.p99_ms,
                p.run_p50_ms,
                p.run_p99_ms,
                p.efficiency,
                p.cpu_busy,
                p.cpu_workers,
                p.cpu_stack,
                p.cpu_servers,
                p.cpu_other
            )?;
        }
        if !self.sql_profile.is_empty() {
            writeln!(f, "database time by statement (pg_stat_statements):")?;
            writeln!(f, "share   calls/op  mean ms  statement")?;
        }
        for s in &self.sql_profile {
            writeln!(
                f,
                "{:<7.3} {:<9.2} {:<8.3} {}",
                s.share, s.calls_per_op, s.mean_ms, s.query
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 50.0) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 99.0) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 100.0) - 100.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 50.0).abs() < f64::EPSILON);
        assert_eq!(summarize(vec![3.0, 1.0, 2.0]), (2.0, 3.0, 3.0, 3.0));
    }
}
