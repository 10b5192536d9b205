//! The scenarios and the load driver.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tocsin_core::Shutdown;
use tocsin_stack::dev::{DEV_TENANT, Dev, DevOptions};
use tocsin_stack::stack::StackConfig;
use tocsin_store::Store;

use crate::report::{Report, summarize};
use crate::{Options, fake};

/// The benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Alerts accepted per second by ingest (202 after PubAck), no playbook runs.
    Ingest,
    /// Alert posted → trivial one-action playbook finished, case written.
    E2e,
    /// A playbook doing 5 parallel lookups against a fake API answering in 100 ms.
    Enrichment,
    /// A 40-step sequential playbook, and the per-action journal overhead.
    Steps,
    /// Drain throughput of a deep backlog of queued alerts and runs, compared with a shallow one.
    Backlog,
    /// Drain throughput with 1, 2, 4 ... worker processes: what each added worker brings.
    ScaleOut,
}

impl Scenario {
    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::E2e => "e2e",
            Scenario::Enrichment => "enrichment",
            Scenario::Steps => "steps",
            Scenario::Backlog => "backlog",
            Scenario::ScaleOut => "scale-out",
        }
    }

    /// `--backlog` when not given: the runs `backlog` queues (its deep queue), the alerts
    /// each worker count of `scale-out` drains.
    pub fn default_backlog(self) -> usize {
        match self {
            Scenario::ScaleOut => 2_000,
            _ => 1_000_000,
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Scenario::Ingest),
            "e2e" => Ok(Scenario::E2e),
            "enrichment" => Ok(Scenario::Enrichment),
            "steps" => Ok(Scenario::Steps),
            "backlog" => Ok(Scenario::Backlog),
            "scale-out" => Ok(Scenario::ScaleOut),
            other => Err(format!(
                "unknown scenario {other:?}: expected ingest, e2e, enrichment, steps, backlog \
                 or scale-out"
            )),
        }
    }
}

const PLAYBOOKS: &str = r#"
import asyncio
from tocsin import playbook, action, http

@action(idempotent=True)
async def noop(n: int) -> int:
    return n

@playbook(when={"source": "bench-e2e"})
async def trivial(alert, run):
    return {"n": await noop(1)}

@action(idempotent=True, timeout="10s")
async def lookup(base: str, value: str) -> dict:
    response = await http.get(f"{base}/lookup/{value}", timeout=10)
    return response.json()

@playbook(when={"source": "bench-enrich"})
async def enrich(alert, run):
    base = alert.raw["fake_api"]
    results = await asyncio.gather(*(lookup(base, f"10.0.0.{i}") for i in range(5)))
    return {"lookups": len(results)}

@playbook(when={"source": "bench-steps"})
async def forty_steps(alert, run):
    total = 0
    for i in range(40):
        total += await noop(i)
    return {"total": total}

@playbook(when={"source": "bench-one-step"})
async def one_step(alert, run):
    return {"total": await noop(0)}
"#;

pub(crate) struct Bench {
    pub(crate) dev: Dev,
    pub(crate) store: Store,
    pub(crate) http: reqwest::Client,
    /// State directory (playbooks, PostgreSQL and NATS data, worker logs).
    pub(crate) root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

async fn start(mut config: StackConfig, options: &Options) -> anyhow::Result<Bench> {
    let (tmp, root) = match &options.data_dir {
        Some(dir) => (None, dir.clone()),
        None => {
            let tmp = tempfile::tempdir()?;
            let root = tmp.path().to_owned();
            (Some(tmp), root)
        }
    };
    // PostgreSQL may run as the postgres user: it must reach the data dir.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
    let playbooks = root.join("playbooks");
    std::fs::create_dir_all(&playbooks)?;
    std::fs::write(playbooks.join("bench.py"), PLAYBOOKS)?;
    if config.worker.sdk_path.is_none() {
        let sdk = PathBuf::from("playbooks/sdk");
        if sdk.join("tocsin").is_dir() {
            config.worker.sdk_path = Some(std::path::absolute(sdk)?);
        }
    }
    config.worker.runners = options.runners;
    config.worker.runs_per_runner = options.runs_per_runner;
    config.scheduler.concurrency = 256;
    // The benchmark measures the pipeline, not the per-tenant rate limit.
    config.ingest.rate_limit_per_sec = 1e9;
    config.ingest.rate_limit_burst = 1e9;
    config.postgres.max_connections = 16;
    if options.scenario == Scenario::Backlog {
        // Room in RUNS for the whole backlog.
        let room = i64::try_from(options.backlog).unwrap_or(i64::MAX / 2) + 100_000;
        config.nats.runs_max_messages = config.nats.runs_max_messages.max(room);
    }
    let dev_options = DevOptions {
        data_dir: root.join("state"),
        playbooks,
        ingest_addr: "127.0.0.1:0".parse()?,
        api_addr: "127.0.0.1:0".parse()?,
        // scale-out starts its worker processes itself, so that their number is exact.
        worker: options.scenario != Scenario::ScaleOut,
        postgres_settings: if options.profile_sql {
            crate::sql_profile::server_settings()
        } else {
            Vec::new()
        },
    };
    let dev = Dev::start(config.clone(), &dev_options, &Shutdown::new()).await?;
    let mut db = config.postgres.clone();
    db.url = tocsin_core::config::Secret::new(dev.env.database_url.clone());
    let store = Store::connect(&db).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok(Bench {
        dev,
        store,
        http,
        root,
        _tmp: tmp,
    })
}

/// Where the load driver delivers alerts.
#[derive(Clone)]
enum Target {
    /// `POST` to this URL.
    Http(String),
    /// JetStream publish to this subject.
    Nats(Box<async_nats::jetstream::Context>, String),
}

/// What the load driver measured.
struct Driven {
    accepted: u64,
    elapsed: Duration,
    /// When the load ended.
    ended: Instant,
    request_ms: Vec<f64>,
}

/// Posts alerts for `options.duration` with `options.concurrency` requests in flight,
/// paced to `options.rate` alerts/s when set. `body(i)` builds the i-th request body.
async fn drive(
    bench: &Bench,
    options: &Options,
    body: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<Driven> {
    let body = Arc::new(body);
    let next = Arc::new(AtomicU64::new(0));
    let target = match options.via {
        crate::Via::Http => Target::Http(format!("{}/v1/alerts", bench.dev.env.ingest_url)),
        crate::Via::Nats => {
            let config = &bench.dev.config.nats;
            let nats = tocsin_core::nats::connect(config, "tocsin-bench")
                .await
                .context("failed to connect to NATS")?;
            Target::Nats(
                Box::new(tocsin_core::nats::jetstream(nats, config)),
                tocsin_proto::subjects::ingest_subject(DEV_TENANT, "alerts"),
            )
        }
    };
    let start = Instant::now();
    let deadline = start + options.duration;
    let per_request = options
        .rate
        .map(|r| Duration::from_secs_f64(options.batch as f64 / r));
    let mut tasks = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (http, target, key, body, next) = (
            bench.http.clone(),
            target.clone(),
            bench.dev.env.ingest_key.clone(),
            body.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Some(gap) = per_request {
                    let due = start + gap.mul_f64(i as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                } else if Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                match &target {
                    Target::Http(url) => {
                        let response = http.post(url).bearer_auth(&key).body(body(i)).send().await;
                        match response {
                            Ok(r) if r.status() == 202 => {}
                            Ok(r) => anyhow::bail!("ingest answered {}", r.status()),
                            Err(e) => return Err(anyhow::Error::new(e).context("post failed")),
                        }
                    }
                    Target::Nats(js, subject) => {
                        js.publish(subject.clone(), body(i).into())
                            .await
                            .context("publish failed")?
                            .await
                            .context("INGEST did not acknowledge")?;
                    }
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                accepted += 1;
            }
            Ok((accepted, latencies))
        }));
    }
    let mut request_ms = Vec::new();
    let mut accepted = 0;
    for task in tasks {
        let (n, l) = task.await.context("load task panicked")??;
        accepted += n;
        request_ms.extend(l);
    }
    Ok(Driven {
        accepted,
        elapsed: start.elapsed(),
        ended: Instant::now(),
        request_ms,
    })
}

fn alerts(source: &str, i: u64, batch: usize, extra: &serde_json::Value) -> String {
    (0..batch)
        .map(|j| {
            // Distinct titles: alerts with the same fingerprint would be grouped into one
            // case and, by the default policy, start no further runs.
            let mut alert = serde_json::json!({
                "title": format!("benchmark alert {i}-{j}"), "severity": "high", "source": source,
                "source_ref": format!("{source}-{i}-{j}"),
                "observables": [{"type": "ip", "value": "203.0.113.10"}],
            });
            if let (Some(a), Some(e)) = (alert.as_object_mut(), extra.as_object()) {
                a.extend(e.clone());
            }
            alert.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Warm-up alerts' numbers start here, so that their source refs never collide with the
/// measured ones.
const WARMUP_OFFSET: u64 = 1 << 40;

/// Waits until `expected` alerts are recorded and no run is unfinished.
pub(crate) async fn settle(bench: &Bench, expected: i64) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let alerts = bench.store.alert_count(DEV_TENANT).await?;
        let unfinished = bench.store.unfinished_runs(DEV_TENANT).await?;
        if alerts >= expected && unfinished == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!(
                "the pipeline did not settle: {alerts}/{expected} alerts, {unfinished} runs unfinished"
            );
        }
        // Not more often: each poll counts the tenant's alerts and runs, load on the database
        // being measured.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// First start and last finish of `timings` (both `now` when empty).
fn span(timings: &[tocsin_store::runs::RunTiming]) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    let first = timings
        .iter()
        .filter_map(|t| t.started_at)
        .min()
        .unwrap_or(now);
    let last = timings
        .iter()
        .filter_map(|t| t.finished_at)
        .max()
        .unwrap_or(now);
    (first, last)
}

fn ms(d: time::Duration) -> f64 {
    d.as_seconds_f64() * 1000.0
}

pub(crate) async fn run(config: StackConfig, options: &Options) -> anyhow::Result<Report> {
    let bench = start(config, options).await?;
    // `e2e` and `enrichment` reset the statistics themselves, after their warm-up.
    if options.profile_sql
        && !matches!(options.scenario, Scenario::E2e | Scenario::Enrichment)
        && let Err(e) = crate::sql_profile::reset(&bench.dev.env.database_url).await
    {
        bench.dev.stop().await?;
        return Err(e);
    }
    let result = match options.scenario {
        Scenario::Ingest => ingest(&bench, options).await,
        Scenario::E2e => {
            pipeline(
                &bench,
                options,
                "bench-e2e",
                serde_json::json!({}),
                "trivial",
            )
            .await
        }
        Scenario::Enrichment => {
            let api = fake::start(Duration::from_millis(100)).await?;
            let mut options = options.clone();
            options.rate.get_or_insert(20.0);
            pipeline(
                &bench,
                &options,
                "bench-enrich",
                serde_json::json!({ "fake_api": api }),
                "enrich",
            )
            .await
        }
        Scenario::Steps => steps(&bench, options).await,
        Scenario::Backlog => backlog(&bench, options).await,
        Scenario::ScaleOut => crate::scale_out::run(&bench, options).await,
    };
    let result = match result {
        Ok(mut report) if options.profile_sql => {
            match crate::sql_profile::read(&bench.dev.env.database_url, report.count).await {
                Ok((stats, statements)) => {
                    #[allow(clippy::cast_precision_loss)]
                    report.extra.insert(
                        "sql_statements_per_op".to_owned(),
                        statements as f64 / report.count.max(1) as f64,
                    );
                    report.sql_profile = stats;
                    Ok(report)
                }
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    let stopped = bench.dev.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

async fn ingest(bench: &Bench, options: &Options) -> anyhow::Result<Report> {
    let batch = options.batch;
    let driven = drive(bench, options, move |i| {
        alerts("bench-ingest", i, batch, &serde_json::json!({}))
    })
    .await?;
    let (p50, p90, p99, max) = summarize(driven.request_ms);
    let alerts = driven.accepted * batch as u64;
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("batch".to_owned(), batch as f64);
    extra.insert("requests".to_owned(), driven.accepted as f64);
    if options.via == crate::Via::Nats {
        // A PubAck only means INGEST has the event: also count how many ingest turned into
        // alerts (recorded by the scheduler) by the end of the load plus up to 30 s.
        let expected = i64::try_from(alerts).unwrap_or(i64::MAX);
        let mut recorded = bench.store.alert_count(DEV_TENANT).await?;
        while recorded < expected && driven.ended.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            recorded = bench.store.alert_count(DEV_TENANT).await?;
        }
        let seconds = driven.elapsed.as_secs_f64() + driven.ended.elapsed().as_secs_f64();
        extra.insert("recorded".to_owned(), recorded as f64);
        extra.insert(
            "recorded_per_s".to_owned(),
            recorded as f64 / seconds.max(0.001),
        );
    }
    Ok(Report {
        scenario: "ingest".to_owned(),
        count: alerts as usize,
        throughput_per_s: alerts as f64 / driven.elapsed.as_secs_f64(),
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        max_ms: max,
        latency: match options.via {
            crate::Via::Http => format!("HTTP request (batch of {batch}) until 202"),
            crate::Via::Nats => format!("NATS publish (batch of {batch}) until INGEST's PubAck"),
        },
        extra,
        points: Vec::new(),
        sql_profile: Vec::new(),
    })
}

async fn pipeline(
    bench: &Bench,
    options: &Options,
    source: &'static str,
    extra_fields: serde_json::Value,
    playbook: &str,
) -> anyhow::Result<Report> {
    let batch = options.batch;
    // Warm-up, not measured: the first runs pay for opening database connections, the
    // runners' first imports of the bundle and cold caches.
    let mut warmed = 0;
    if !options.warmup.is_zero() {
        let mut warm = options.clone();
        warm.duration = options.warmup;
        let fields = extra_fields.clone();
        let driven = drive(bench, &warm, move |i| {
            alerts(source, WARMUP_OFFSET + i, batch, &fields)
        })
        .await?;
        warmed = driven.accepted * batch as u64;
        settle(bench, i64::try_from(warmed).unwrap_or(i64::MAX)).await?;
    }
    if options.profile_sql {
        crate::sql_profile::reset(&bench.dev.env.database_url).await?;
    }
    let measured_from = time::OffsetDateTime::now_utc();
    let fields = extra_fields.clone();
    let driven = drive(bench, options, move |i| alerts(source, i, batch, &fields)).await?;
    let expected = i64::try_from(warmed + driven.accepted * batch as u64).unwrap_or(i64::MAX);
    settle(bench, expected).await?;
    let timings: Vec<_> = bench
        .store
        .run_timings(DEV_TENANT)
        .await?
        .into_iter()
        .filter(|t| t.playbook == playbook)
        .filter(|t| t.received_at.is_some_and(|r| r >= measured_from))
        .collect();
    let failed = timings.iter().filter(|t| t.status != "succeeded").count();
    let mut to_start = Vec::new();
    let mut to_finish = Vec::new();
    let mut run_time = Vec::new();
    let (mut first, mut last) = (None, None);
    for t in &timings {
        if let (Some(r), Some(s), Some(f)) = (t.received_at, t.started_at, t.finished_at) {
            to_start.push(ms(s - r));
            to_finish.push(ms(f - r));
            run_time.push(ms(f - s));
            first = Some(first.map_or(r, |x: time::OffsetDateTime| x.min(r)));
            last = Some(last.map_or(f, |x: time::OffsetDateTime| x.max(f)));
        }
    }
    let window = match (first, last) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64().max(0.001),
        _ => 1.0,
    };
    let (s50, s90, s99, smax) = summarize(to_start);
    let (f50, f90, f99, fmax) = summarize(to_finish.clone());
    let (r50, r90, r99, rmax) = summarize(run_time);
    let mut extra = std::collections::BTreeMap::new();
    for (k, v) in [
        ("started_p50_ms", s50),
        ("started_p90_ms", s90),
        ("started_p99_ms", s99),
        ("started_max_ms", smax),
        ("run_p50_ms", r50),
        ("run_p90_ms", r90),
        ("run_p99_ms", r99),
        ("run_max_ms", rmax),
        ("failed_runs", failed as f64),
        ("offered_rate", options.rate.unwrap_or(0.0)),
    ] {
        extra.insert(k.to_owned(), v);
    }
    let enrichment = playbook == "enrich";
    Ok(Report {
        scenario: if enrichment { "enrichment" } else { "e2e" }.to_owned(),
        count: timings.len(),
        throughput_per_s: timings.len() as f64 / window,
        p50_ms: if enrichment { r50 } else { f50 },
        p90_ms: if enrichment { r90 } else { f90 },
        p99_ms: if enrichment { r99 } else { f99 },
        max_ms: if enrichment { rmax } else { fmax },
        latency: if enrichment {
            "run started → finished (5 parallel 100 ms lookups)".to_owned()
        } else {
            "alert accepted → run finished".to_owned()
        },
        extra,
        points: Vec::new(),
        sql_profile: Vec::new(),
    })
}

async fn steps(bench: &Bench, options: &Options) -> anyhow::Result<Report> {
    // Sequential runs, one at a time: this measures latency, not throughput.
    let count = options.duration.as_secs().max(2) * 2;
    let mut sequential = options.clone();
    sequential.concurrency = 1;
    sequential.batch = 1;
    sequential.rate = Some(2.0);
    sequential.duration = Duration::from_secs(count / 2);
    drive(bench, &sequential, |i| {
        alerts("bench-steps", i, 1, &serde_json::json!({}))
    })
    .await?;
    drive(bench, &sequential, |i| {
        alerts("bench-one-step", i, 1, &serde_json::json!({}))
    })
    .await?;
    let expected = bench.store.alert_count(DEV_TENANT).await?;
    settle(bench, expected).await?;
    let timings = bench.store.run_timings(DEV_TENANT).await?;
    let durations = |name: &str| -> Vec<f64> {
        timings
            .iter()
            .filter(|t| t.playbook == name && t.status == "succeeded")
            .filter_map(|t| Some(ms(t.finished_at? - t.started_at?)))
            .collect()
    };
    let forty = durations("forty_steps");
    let one = durations("one_step");
    let n = forty.len();
    let (p50, p90, p99, max) = summarize(forty);
    let (o50, _, _, _) = summarize(one);
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("one_step_p50_ms".to_owned(), o50);
    extra.insert(
        "per_action_overhead_ms".to_owned(),
        ((p50 - o50) / 39.0).max(0.0),
    );
    Ok(Report {
        scenario: "steps".to_owned(),
        count: n,
        throughput_per_s: 0.0,
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        max_ms: max,
        latency: "40-step playbook, run started → finished".to_owned(),
        extra,
        points: Vec::new(),
        sql_profile: Vec::new(),
    })
}

/// What [`drain`] measured, over the runs of the alerts it posted.
pub(crate) struct Drained {
    /// Runs per second from the first start to the last finish.
    pub(crate) throughput: f64,
    /// Runs.
    pub(crate) count: usize,
    /// Runs that did not succeed.
    pub(crate) failed: usize,
    /// Run started → finished, in milliseconds.
    pub(crate) run_ms: Vec<f64>,
    /// Alert accepted → run finished, in milliseconds.
    pub(crate) finished_ms: Vec<f64>,
}

/// Posts `count` alerts (ids from `offset`) as fast as ingest takes them, in NDJSON batches,
/// waits until every run finished, and returns the drain throughput (runs / time from the
/// first start to the last finish) and the latencies, for the runs of alerts received since
/// this call began.
pub(crate) async fn drain(bench: &Bench, offset: u64, count: u64) -> anyhow::Result<Drained> {
    const BATCH: u64 = 500;
    let since = time::OffsetDateTime::now_utc();
    let url = format!("{}/v1/alerts", bench.dev.env.ingest_url);
    let mut i = 0;
    while i < count {
        let n = BATCH.min(count - i);
        let body = (0..n)
            .map(|j| alerts("bench-e2e", offset + i + j, 1, &serde_json::json!({})))
            .collect::<Vec<_>>()
            .join("\n");
        let response = bench
            .http
            .post(&url)
            .bearer_auth(&bench.dev.env.ingest_key)
            .body(body)
            .send()
            .await
            .context("post failed")?;
        if response.status() != 202 {
            bail!("ingest answered {}", response.status());
        }
        i += n;
    }
    let expected = i64::try_from(offset + count).unwrap_or(i64::MAX);
    settle(bench, expected).await?;
    let timings: Vec<_> = bench
        .store
        .run_timings(DEV_TENANT)
        .await?
        .into_iter()
        .filter(|t| t.playbook == "trivial" && t.received_at.is_some_and(|r| r >= since))
        .collect();
    let mut first = None;
    let mut last = None;
    let mut run_ms = Vec::new();
    let mut finished_ms = Vec::new();
    for t in &timings {
        if let (Some(s), Some(f)) = (t.started_at, t.finished_at) {
            first = Some(first.map_or(s, |x: time::OffsetDateTime| x.min(s)));
            last = Some(last.map_or(f, |x: time::OffsetDateTime| x.max(f)));
            run_ms.push(ms(f - s));
            if let Some(r) = t.received_at {
                finished_ms.push(ms(f - r));
            }
        }
    }
    let window = match (first, last) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64().max(0.001),
        _ => 1.0,
    };
    #[allow(clippy::cast_precision_loss)]
    Ok(Drained {
        throughput: timings.len() as f64 / window,
        count: timings.len(),
        failed: timings.iter().filter(|t| t.status != "succeeded").count(),
        run_ms,
        finished_ms,
    })
}

/// Drain throughput with `--backlog` runs queued (default 1,000,000) against an empty queue.
///
/// Runs are queued straight into PostgreSQL's outbox (`Store::queue_runs_in_bulk`), as manual
/// runs of the trivial playbook, and the scheduler's dispatcher publishes them to RUNS, so
/// the deep case has both the runs table and the RUNS stream full. First a sample (a tenth
/// of the backlog, 100 to 5,000 runs) is queued on the empty queue and drained completely:
/// the baseline. Then the backlog is queued; once every run of it is published, the runs
/// finished over a window (the time the baseline took for its sample, 5 to 60 s) give the
/// deep throughput. The rest of the backlog is discarded with the stack.
async fn backlog(bench: &Bench, options: &Options) -> anyhow::Result<Report> {
    let deep = options.backlog.max(10) as u64;
    let sample = (deep / 10).clamp(100, 5_000);
    let started = time::OffsetDateTime::now_utc();
    bench
        .store
        .queue_runs_in_bulk(DEV_TENANT, "trivial", sample)
        .await?;
    let expected = bench.store.alert_count(DEV_TENANT).await?;
    settle(bench, expected).await?;
    let baseline = bench
        .store
        .runs_finished_between(DEV_TENANT, started, time::OffsetDateTime::now_utc())
        .await?;
    let (first, last) = span(&baseline);
    let base = baseline.len() as f64 / (last - first).as_seconds_f64().max(0.001);

    let loading = Instant::now();
    bench
        .store
        .queue_runs_in_bulk(DEV_TENANT, "trivial", deep)
        .await?;
    let inserted_s = loading.elapsed().as_secs_f64();
    // Wait until the dispatcher has published every run of the backlog.
    let limit = Duration::from_secs(300 + deep / 1_000);
    let depth = loop {
        let (queued, unpublished) = bench.store.run_queue_depth(DEV_TENANT).await?;
        if unpublished == 0 {
            break queued;
        }
        if loading.elapsed() > limit {
            bail!("the dispatcher did not publish the backlog: {unpublished} runs left");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let loaded_s = loading.elapsed().as_secs_f64();
    let window = Duration::from_secs_f64((sample as f64 / base.max(0.001)).clamp(5.0, 60.0));
    let from = time::OffsetDateTime::now_utc();
    let measuring = Instant::now();
    // The window, or until the queue is empty (small backlogs). Counting a deep queue
    // scans it, which would load the database being measured: only a short one is watched.
    if depth > 50_000 {
        tokio::time::sleep(window).await;
    } else {
        while measuring.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if bench.store.unfinished_runs(DEV_TENANT).await? == 0 {
                break;
            }
        }
    }
    let to = time::OffsetDateTime::now_utc();
    let (queued_after, _) = bench.store.run_queue_depth(DEV_TENANT).await?;
    let finished = bench
        .store
        .runs_finished_between(DEV_TENANT, from, to)
        .await?;
    let throughput = finished.len() as f64 / (to - from).as_seconds_f64().max(0.001);
    let count = finished.len();
    let run_ms: Vec<f64> = finished
        .iter()
        .filter_map(|t| Some(ms(t.finished_at? - t.started_at?)))
        .collect();
    let (p50, p90, p99, max) = summarize(run_ms);
    let mut extra = std::collections::BTreeMap::new();
    #[allow(clippy::cast_precision_loss)]
    for (k, v) in [
        ("backlog", deep as f64),
        ("queued_at_start", depth as f64),
        ("queued_at_end", queued_after as f64),
        ("insert_s", inserted_s),
        ("load_s", loaded_s),
        ("window_s", (to - from).as_seconds_f64()),
        ("shallow_backlog", sample as f64),
        ("shallow_throughput_per_s", base),
        ("ratio_to_shallow", throughput / base.max(0.001)),
        (
            "failed_runs",
            finished.iter().filter(|t| t.status != "succeeded").count() as f64,
        ),
    ] {
        extra.insert(k.to_owned(), v);
    }
    Ok(Report {
        scenario: "backlog".to_owned(),
        count,
        throughput_per_s: throughput,
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        max_ms: max,
        latency: "run started → finished, runs finished in the window over the deep backlog"
            .to_owned(),
        extra,
        points: Vec::new(),
        sql_profile: Vec::new(),
    })
}
