//! The `scale-out` scenario: for each worker count N (`--workers`, default 1,2,4), N
//! `tocsin worker` processes (this executable, `--runners` runner processes each) run
//! against the bench's stack, whose own in-process worker is off so that N is exact. Each
//! count drains `--backlog` alerts' runs through [`drain`]; then its workers get SIGTERM and
//! must exit cleanly, and the run queue (Postgres and the JetStream consumer) must be empty
//! before the next count starts.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tocsin_devstack::ServiceProcess;
use tocsin_stack::dev::DEV_TENANT;

use crate::Options;
use crate::report::{Report, ScalePoint, summarize};
use crate::scenarios::{Bench, Drained, drain};

/// The most worker processes one count may start.
const MAX_WORKERS: usize = 64;

/// How long the workers of one count may take to report ready (runners started).
const READY_WITHIN: Duration = Duration::from_secs(120);

/// How long the run consumer may take to show nothing pending once the runs finished.
const QUEUE_EMPTY_WITHIN: Duration = Duration::from_secs(30);

/// One worker process.
struct Worker {
    name: String,
    process: ServiceProcess,
    log: PathBuf,
    ready_url: String,
}

pub(crate) async fn run(bench: &Bench, options: &Options) -> anyhow::Result<Report> {
    let counts = worker_counts(&options.workers)?;
    let per_count = options.backlog.max(1) as u64;
    let program = std::env::current_exe().context("failed to locate the tocsin executable")?;
    let config_file = write_worker_config(bench)?;
    let config = &bench.dev.config;
    let nats = tocsin_core::nats::connect(&config.nats, "tocsin-bench")
        .await
        .context("failed to connect to NATS")?;
    let js = tocsin_core::nats::jetstream(nats, &config.nats);
    let grace = config.shutdown.grace + Duration::from_secs(10);
    let mut points = Vec::new();
    let mut offset = 0;
    for &n in &counts {
        let mut workers = start_workers(bench, &program, &config_file, n).await?;
        let measured = measure(bench, &js, &workers, offset, per_count).await;
        let stopped = stop_workers(&mut workers, grace).await;
        let (drained, cpu) = measured.with_context(|| format!("with {n} worker processes"))?;
        stopped?;
        ensure_idle(bench, &js)
            .await
            .with_context(|| format!("after stopping {n} worker processes"))?;
        offset += per_count;
        points.push(point(n, options.runners, drained, cpu));
    }
    if let Some(base) = points
        .first()
        .map(|p| p.throughput_per_s / p.workers as f64)
    {
        for p in &mut points {
            p.efficiency = p.throughput_per_s / p.workers as f64 / base.max(f64::MIN_POSITIVE);
        }
    }
    report(points, options.runners, per_count)
}

/// The worker counts in increasing order, each once.
fn worker_counts(requested: &[usize]) -> anyhow::Result<Vec<usize>> {
    let mut counts = requested.to_vec();
    counts.sort_unstable();
    counts.dedup();
    match (counts.first(), counts.last()) {
        (None, _) => bail!("--workers needs at least one worker count"),
        (Some(0), _) => bail!("--workers: a worker count must be at least 1"),
        (_, Some(&max)) if max > MAX_WORKERS => {
            bail!("--workers: at most {MAX_WORKERS} worker processes")
        }
        _ => Ok(counts),
    }
}

/// Writes the configuration the stack's own worker would have run with (private servers'
/// URLs, master key, SDK path, runners) for `tocsin worker --config`; readable by us only,
/// as it holds the database password and the master key.
fn write_worker_config(bench: &Bench) -> anyhow::Result<PathBuf> {
    let config = bench.dev.config.worker();
    let text = toml::to_string(&config).context("failed to render the worker configuration")?;
    let path = bench.root.join("worker.toml");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Starts `n` worker processes, each with its own bundle directory, log and health port,
/// and waits until every one reports ready (its runners are up).
async fn start_workers(
    bench: &Bench,
    program: &Path,
    config_file: &Path,
    n: usize,
) -> anyhow::Result<Vec<Worker>> {
    let logs = bench.root.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("failed to create {}", logs.display()))?;
    let args = [
        "worker".to_owned(),
        "--config".to_owned(),
        config_file.display().to_string(),
    ];
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("worker-{n}-{i}");
        let port = tocsin_devstack::free_port()?;
        let env = [
            (
                "TOCSIN_WORKER__BUNDLE_DIR".to_owned(),
                bench.root.join("bundles").join(&name).display().to_string(),
            ),
            (
                "TOCSIN_TELEMETRY__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
        ];
        let log = logs.join(format!("{name}.log"));
        let process = ServiceProcess::start(program, &args, &env, &log)
            .await
            .with_context(|| format!("failed to start {name}"))?;
        workers.push(Worker {
            name,
            process,
            log,
            ready_url: format!("http://127.0.0.1:{port}/readyz"),
        });
    }
    let start = Instant::now();
    let mut ready = vec![false; n];
    while ready.iter().any(|r| !r) {
        for (worker, ready) in workers.iter_mut().zip(ready.iter_mut()) {
            if *ready {
                continue;
            }
            if !worker.process.is_running() {
                bail!(
                    "{} exited during start-up:\n{}",
                    worker.name,
                    tail(&worker.log)
                );
            }
            *ready = bench
                .http
                .get(&worker.ready_url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
        }
        if start.elapsed() > READY_WITHIN {
            let late: Vec<_> = workers
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(w, _)| format!("{}:\n{}", w.name, tail(&w.log)))
                .collect();
            bail!(
                "worker processes not ready within {READY_WITHIN:?}: {}",
                late.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(workers = n, "worker processes ready");
    Ok(workers)
}

/// Drains `count` runs with the workers running, waits until the run consumer has nothing
/// pending or unacknowledged, and samples CPU time over that window.
async fn measure(
    bench: &Bench,
    js: &async_nats::jetstream::Context,
    workers: &[Worker],
    offset: u64,
    count: u64,
) -> anyhow::Result<(Drained, CpuShares)> {
    let before = CpuSample::take(workers)?;
    let drained = drain(bench, offset, count).await?;
    wait_queue_empty(bench, js).await?;
    let after = CpuSample::take(workers)?;
    Ok((drained, after.since(&before)))
}

/// SIGTERM to every worker at once; each must drain and exit with success within `grace`.
async fn stop_workers(workers: &mut [Worker], grace: Duration) -> anyhow::Result<()> {
    let statuses =
        futures::future::join_all(workers.iter_mut().map(|w| w.process.stop(grace))).await;
    let mut problems = Vec::new();
    for (worker, status) in workers.iter().zip(statuses) {
        match status {
            Some(status) if status.success() => {}
            Some(status) => problems.push(format!(
                "{} exited with {status} after SIGTERM:\n{}",
                worker.name,
                tail(&worker.log)
            )),
            None => problems.push(format!(
                "{} did not exit within {grace:?} of SIGTERM and was killed:\n{}",
                worker.name,
                tail(&worker.log)
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// Messages of the run consumer not yet delivered, and delivered but not acknowledged.
async fn run_queue(
    bench: &Bench,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<(u64, usize)> {
    let stream = js
        .get_stream(tocsin_proto::subjects::RUNS_STREAM)
        .await
        .context("failed to look up the run stream")?;
    let info = stream
        .consumer_info(&bench.dev.config.worker.consumer)
        .await
        .context("failed to read the worker consumer")?;
    Ok((info.num_pending, info.num_ack_pending))
}

async fn wait_queue_empty(
    bench: &Bench,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let (pending, unacked) = run_queue(bench, js).await?;
        if pending == 0 && unacked == 0 {
            return Ok(());
        }
        if start.elapsed() > QUEUE_EMPTY_WITHIN {
            bail!("the run queue did not empty: {pending} jobs pending, {unacked} unacknowledged");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With no worker running: no run unfinished in Postgres, no job left in the run consumer.
async fn ensure_idle(bench: &Bench, js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let unfinished = bench.store.unfinished_runs(DEV_TENANT).await?;
    let (pending, unacked) = run_queue(bench, js).await?;
    if unfinished != 0 || pending != 0 || unacked != 0 {
        bail!(
            "the run queue is not empty: {unfinished} runs unfinished, {pending} jobs \
             pending, {unacked} unacknowledged"
        );
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn point(workers: usize, runners: usize, drained: Drained, cpu: CpuShares) -> ScalePoint {
    let (p50, p90, p99, max) = summarize(drained.finished_ms);
    let (r50, _, r99, _) = summarize(drained.run_ms);
    ScalePoint {
        workers,
        runners_per_worker: runners,
        count: drained.count,
        failed: drained.failed,
        throughput_per_s: drained.throughput,
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        max_ms: max,
        run_p50_ms: r50,
        run_p99_ms: r99,
        efficiency: 1.0,
        cpu_busy: cpu.busy,
        cpu_workers: cpu.workers,
        cpu_stack: cpu.stack,
        cpu_servers: cpu.servers,
        cpu_other: cpu.other,
    }
}

/// The report: top-level figures are those of the largest worker count; every count is in
/// `points`.
#[allow(clippy::cast_precision_loss)]
fn report(points: Vec<ScalePoint>, runners: usize, per_count: u64) -> anyhow::Result<Report> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        bail!("no worker count was measured");
    };
    let mut extra = std::collections::BTreeMap::new();
    for (k, v) in [
        ("workers", last.workers as f64),
        ("runners_per_worker", runners as f64),
        ("runs_per_count", per_count as f64),
        ("efficiency", last.efficiency),
        (
            "speedup",
            last.throughput_per_s / first.throughput_per_s.max(f64::MIN_POSITIVE),
        ),
        ("run_p50_ms", last.run_p50_ms),
        ("run_p99_ms", last.run_p99_ms),
        (
            "failed_runs",
            points.iter().map(|p| p.failed).sum::<usize>() as f64,
        ),
    ] {
        extra.insert(k.to_owned(), v);
    }
    Ok(Report {
        scenario: "scale-out".to_owned(),
        count: last.count,
        throughput_per_s: last.throughput_per_s,
        p50_ms: last.p50_ms,
        p90_ms: last.p90_ms,
        p99_ms: last.p99_ms,
        max_ms: last.max_ms,
        latency: format!(
            "alert accepted → run finished with {} worker processes (every count in points)",
            last.workers
        ),
        extra,
        points,
        sql_profile: Vec::new(),
    })
}

/// The last lines of a log, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Where the machine's CPU time went between two samples, as shares.
struct CpuShares {
    busy: f64,
    workers: f64,
    stack: f64,
    servers: f64,
    other: f64,
}

/// CPU time so far, in clock ticks (`/proc`): the machine's busy and total time over all
/// cores, the worker processes' with their runners, this process's, and that of the other
/// processes below this one (the private PostgreSQL and nats-server).
struct CpuSample {
    busy: u64,
    total: u64,
    workers: u64,
    stack: u64,
    servers: u64,
}

impl CpuSample {
    fn take(workers: &[Worker]) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("failed to read /proc/stat")?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal (guest time is counted in user).
        if ticks.len() < 8 {
            bail!("unexpected /proc/stat: {:?}", stat.lines().next());
        }
        let total: u64 = ticks[..8].iter().sum();
        let idle = ticks[3] + ticks[4];
        let mut worker_pids = Vec::new();
        for worker in workers {
            let pid = worker.process.pid();
            worker_pids.push(pid);
            worker_pids.extend(tocsin_devstack::descendants(pid));
        }
        let me = std::process::id();
        let servers = tocsin_devstack::descendants(me)
            .into_iter()
            .filter(|pid| !worker_pids.contains(pid))
            .map(process_ticks)
            .sum();
        Ok(Self {
            busy: total - idle,
            total,
            workers: worker_pids.into_iter().map(process_ticks).sum(),
            stack: process_ticks(me),
            servers,
        })
    }

    #[allow(clippy::cast_precision_loss)]
    fn since(&self, before: &Self) -> CpuShares {
        let busy = self.busy.saturating_sub(before.busy) as f64;
        let total = self.total.saturating_sub(before.total) as f64;
        let share = |ticks: f64| {
            if busy > 0.0 {
                (ticks / busy).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let workers = share(self.workers.saturating_sub(before.workers) as f64);
        let stack = share(self.stack.saturating_sub(before.stack) as f64);
        let servers = share(self.servers.saturating_sub(before.servers) as f64);
        CpuShares {
            busy: if total > 0.0 { busy / total } else { 0.0 },
            workers,
            stack,
            servers,
            other: (1.0 - workers - stack - servers).max(0.0),
        }
    }
}

/// User and system time of `pid` (all its threads) in clock ticks; 0 once it is gone.
fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start at field 3, the state;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    field(14) + field(15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_are_sorted_distinct_and_bounded() {
        assert_eq!(worker_counts(&[4, 1, 2, 2]).unwrap(), [1, 2, 4]);
        assert!(worker_counts(&[]).is_err());
        assert!(worker_counts(&[0, 1]).is_err());
        assert!(worker_counts(&[1, MAX_WORKERS + 1]).is_err());
    }

    #[test]
    fn cpu_time_of_this_process_is_read_from_proc() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(process_ticks(std::process::id()) > 0);
        assert_eq!(process_ticks(u32::MAX), 0);
        let sample = CpuSample::take(&[]).unwrap();
        assert!(sample.total >= sample.busy && sample.total > 0);
    }
}
