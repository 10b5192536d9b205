//! Fault tests (issue 4): the services as separate processes under a steady alert rate,
//! with a worker killed at each crash point of an action, a worker stalled past its ack wait,
//! nats-server and PostgreSQL restarted, and a poison playbook mixed with healthy traffic.
//!
//! A fake external API on loopback records every side effect with its idempotency key; a
//! checker over the history counts **lost** alerts (accepted with 202, no terminal run),
//! **duplicate effects** (the same effect applied twice), **uncertain** runs (surfaced as
//! `needs_review`) and **unexpected** outcomes, and prints one table row per scenario.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tocsin_tests::procs::ProcStack;
use tokio::sync::{mpsc, oneshot};

/// Where the fake kills the worker, relative to one action's side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashPoint {
    /// The intent is journaled; the effect never reaches the API.
    BeforeEffect,
    /// The API applied the effect; the worker dies before the result is journaled.
    AfterEffect,
    /// The result is journaled; the worker dies at the run's next step, before the ack.
    AfterResult,
}

impl CrashPoint {
    fn name(self) -> &'static str {
        match self {
            CrashPoint::BeforeEffect => "before effect",
            CrashPoint::AfterEffect => "after effect, before journal",
            CrashPoint::AfterResult => "after result, before ack",
        }
    }
}

struct Plan {
    point: CrashPoint,
    /// Crash on this effect call (1-based, counted over the phase).
    at_call: usize,
    calls: usize,
    /// Target of the effect that armed an after-result crash.
    armed_target: Option<String>,
    /// Target of the run the crash hit.
    hit: Option<String>,
}

#[derive(Default)]
struct FakeState {
    /// Every applied effect: target → idempotency keys (idempotent kind) or call count.
    applied: HashMap<String, Vec<Option<String>>>,
    plan: Option<Plan>,
    /// How long each effect takes (so that a stall catches runs mid-action).
    latency: Duration,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    /// Asks the test to crash the worker; the reply comes once it is dead.
    crash: mpsc::Sender<oneshot::Sender<()>>,
}

impl Fake {
    async fn crash_now(&self) {
        let (done, dead) = oneshot::channel();
        if self.crash.send(done).await.is_ok() {
            let _ = dead.await;
        }
    }
}

/// `POST /effect {"target": ..., "kind": "idempotent"|"plain"}`: applies a side effect.
/// An idempotent request carries `Idempotency-Key`; the fake applies each key once, like
/// APIs that honour such keys (a replay with the same key is not a second effect).
async fn effect(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let target = body["target"].as_str().unwrap_or_default().to_owned();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let crash = {
        let mut state = fake.state.lock().unwrap();
        match state.plan.as_mut() {
            Some(plan) if plan.hit.is_none() => {
                plan.calls += 1;
                if plan.calls == plan.at_call {
                    match plan.point {
                        CrashPoint::BeforeEffect | CrashPoint::AfterEffect => {
                            plan.hit = Some(target.clone());
                            Some(plan.point)
                        }
                        CrashPoint::AfterResult => {
                            plan.armed_target = Some(target.clone());
                            None
                        }
                    }
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    if crash == Some(CrashPoint::BeforeEffect) {
        fake.crash_now().await;
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let latency = fake.state.lock().unwrap().latency;
    tokio::time::sleep(latency).await;
    {
        let mut state = fake.state.lock().unwrap();
        let entry = state.applied.entry(target.clone()).or_default();
        if key.is_none() || !entry.contains(&key) {
            entry.push(key);
        }
    }
    if crash == Some(CrashPoint::AfterEffect) {
        fake.crash_now().await;
    }
    (
        StatusCode::OK,
        Json(json!({"target": target, "done": true})),
    )
}

/// `POST /checkpoint {"target": ...}`: the step after the effect; an armed after-result
/// crash fires here.
async fn checkpoint(State(fake): State<Fake>, Json(body): Json<Value>) -> Json<Value> {
    let target = body["target"].as_str().unwrap_or_default().to_owned();
    let fire = {
        let mut state = fake.state.lock().unwrap();
        match state.plan.as_mut() {
            Some(plan) if plan.hit.is_none() && plan.armed_target.as_deref() == Some(&target) => {
                plan.hit = Some(target.clone());
                true
            }
            _ => false,
        }
    };
    if fire {
        fake.crash_now().await;
    }
    Json(json!({"ok": true}))
}

async fn start_fake() -> (Fake, String, mpsc::Receiver<oneshot::Sender<()>>) {
    let (crash, requests) = mpsc::channel(1);
    let fake = Fake {
        state: Arc::default(),
        crash,
    };
    let app = axum::Router::new()
        .route("/effect", post(effect))
        .route("/checkpoint", post(checkpoint))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, url, requests)
}

fn playbook(fake: &str) -> String {
    format!(
        r#"
from tocsin import playbook, action, http, idempotency_key

FAKE = {fake:?}

@action(idempotent=True)
async def apply_idempotent(target: str) -> dict:
    r = await http.post(f"{{FAKE}}/effect", json={{"target": target, "kind": "idempotent"}},
                        headers={{"Idempotency-Key": idempotency_key()}}, timeout=30)
    r.raise_for_status()
    return r.json()

@action()
async def apply_plain(target: str) -> dict:
    r = await http.post(f"{{FAKE}}/effect", json={{"target": target, "kind": "plain"}}, timeout=30)
    r.raise_for_status()
    return r.json()

@action(idempotent=True)
async def checkpoint(target: str) -> dict:
    r = await http.post(f"{{FAKE}}/checkpoint", json={{"target": target}}, timeout=30)
    r.raise_for_status()
    return r.json()

@playbook(when={{"source": "fault-idempotent"}})
async def contain_idempotent(alert, run):
    done = await apply_idempotent(alert.source_ref)
    await checkpoint(alert.source_ref)
    return done

@playbook(when={{"source": "fault-plain"}})
async def contain_plain(alert, run):
    done = await apply_plain(alert.source_ref)
    await checkpoint(alert.source_ref)
    return done

@playbook(when={{"source": "poison"}})
async def poison(alert, run):
    raise RuntimeError("poison playbook: always raises")
"#
    )
}

/// What a phase expects of every run.
struct Expect {
    /// Statuses any run may end in.
    allowed: &'static [&'static str],
    /// The status the run hit by the crash must end in.
    hit: Option<&'static str>,
}

#[derive(Default)]
struct Row {
    scenario: String,
    accepted: usize,
    retried_posts: usize,
    succeeded: usize,
    failed: usize,
    uncertain: usize,
    lost: usize,
    duplicate_effects: usize,
    unexpected: Vec<String>,
    settle_s: f64,
}

impl Row {
    fn print_header() {
        eprintln!(
            "{:<52} {:>8} {:>7} {:>9} {:>6} {:>9} {:>5} {:>10} {:>10} {:>8}",
            "scenario",
            "accepted",
            "retried",
            "succeeded",
            "failed",
            "uncertain",
            "lost",
            "dup effect",
            "unexpected",
            "settle s"
        );
    }

    fn print(&self) {
        eprintln!(
            "{:<52} {:>8} {:>7} {:>9} {:>6} {:>9} {:>5} {:>10} {:>10} {:>8.1}",
            self.scenario,
            self.accepted,
            self.retried_posts,
            self.succeeded,
            self.failed,
            self.uncertain,
            self.lost,
            self.duplicate_effects,
            self.unexpected.len(),
            self.settle_s
        );
    }
}

/// Posts `count` alerts of `sources` (round robin) at `rate` per second, retrying each one
/// (like a SIEM with a retrying forwarder) until it is accepted, while `fault` runs
/// concurrently. Returns the accepted (alert id, source_ref) pairs and the number of alerts
/// whose post had to be retried.
async fn drive(
    stack: &ProcStack,
    phase: &str,
    sources: &[&str],
    count: usize,
    rate: f64,
    fault: impl std::future::Future<Output = ()>,
) -> (Vec<(String, String)>, usize) {
    let load = async {
        let mut posts = tokio::task::JoinSet::new();
        let url = format!("{}/v1/alerts", stack.ingest_url);
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        for i in 0..count {
            ticker.tick().await;
            let source_ref = format!("{phase}-{i}");
            let body = json!({
                "title": format!("fault test {phase}"),
                "severity": "high",
                "source": sources[i % sources.len()],
                "source_ref": source_ref,
                "observables": [{"type": "host", "value": format!("host-{i}")}],
            });
            let http = stack.http.clone();
            let url = url.clone();
            let key = stack.ingest_key.clone();
            posts.spawn(async move {
                let start = Instant::now();
                let mut attempts = 0usize;
                loop {
                    attempts += 1;
                    let answer = http
                        .post(&url)
                        .bearer_auth(&key)
                        .timeout(Duration::from_secs(10))
                        .json(&body)
                        .send()
                        .await;
                    if let Ok(response) = answer
                        && response.status() == 202
                        && let Ok(value) = response.json::<Value>().await
                        && let Some(id) = value["alert_ids"][0].as_str()
                    {
                        return Some((id.to_owned(), source_ref, attempts > 1));
                    }
                    if start.elapsed() > Duration::from_secs(90) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        let mut accepted = Vec::new();
        let mut retried = 0;
        while let Some(done) = posts.join_next().await {
            let (id, source_ref, was_retried) = done
                .expect("post task")
                .expect("an alert was never accepted within 90 s");
            accepted.push((id, source_ref));
            retried += usize::from(was_retried);
        }
        (accepted, retried)
    };
    let (result, ()) = tokio::join!(load, fault);
    result
}

/// A fault that starts `delay` into the load.
async fn after(delay: Duration, fault: impl std::future::Future<Output = ()>) {
    tokio::time::sleep(delay).await;
    fault.await;
}

const SETTLED: &[&str] = &[
    "succeeded",
    "failed",
    "skipped",
    "needs_review",
    "waiting_approval",
    "sleeping",
    "cancelled",
    "timed_out",
    "dead_lettered",
];

/// Waits (bounded) until every accepted alert has a settled run, then builds the row.
async fn check(
    stack: &ProcStack,
    fake: &Fake,
    scenario: &str,
    accepted: &[(String, String)],
    retried: usize,
    expect: &Expect,
) -> Row {
    let start = Instant::now();
    let deadline = Duration::from_secs(120);
    let mut settled: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut last_seen: HashMap<String, String> = HashMap::new();
    loop {
        for (id, source_ref) in accepted {
            if settled.contains_key(id) {
                continue;
            }
            let alert = stack.api(&format!("/v1/alerts/{id}")).await;
            let status = alert
                .as_ref()
                .and_then(|a| a["runs"].as_array().and_then(|r| r.first()).cloned())
                .and_then(|run| run["status"].as_str().map(str::to_owned));
            match status {
                Some(status) if SETTLED.contains(&status.as_str()) => {
                    settled.insert(id.clone(), (source_ref.clone(), status));
                }
                Some(status) => {
                    last_seen.insert(id.clone(), format!("run {status}"));
                }
                None if alert.is_some() => {
                    last_seen.insert(id.clone(), "alert recorded, no run".to_owned());
                }
                None => {
                    last_seen.insert(id.clone(), "no alert recorded".to_owned());
                }
            }
        }
        if settled.len() == accepted.len() || start.elapsed() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let state = fake.state.lock().unwrap();
    let hit = state.plan.as_ref().and_then(|p| p.hit.clone());
    let mut row = Row {
        scenario: scenario.to_owned(),
        accepted: accepted.len(),
        retried_posts: retried,
        settle_s: start.elapsed().as_secs_f64(),
        ..Row::default()
    };
    for (id, source_ref) in accepted {
        let Some((_, status)) = settled.get(id) else {
            row.lost += 1;
            let seen = last_seen.get(id).map_or("never seen", String::as_str);
            row.unexpected.push(format!(
                "{source_ref} ({id}): no settled run, lost ({seen})"
            ));
            continue;
        };
        match status.as_str() {
            "succeeded" => row.succeeded += 1,
            "needs_review" => row.uncertain += 1,
            "failed" => row.failed += 1,
            _ => {}
        }
        if !expect.allowed.contains(&status.as_str()) {
            row.unexpected.push(format!(
                "{source_ref}: {status} (allowed {:?})",
                expect.allowed
            ));
        }
        if hit.as_deref() == Some(source_ref.as_str())
            && let Some(want) = expect.hit
            && status != want
        {
            row.unexpected.push(format!(
                "{source_ref}: the crashed run ended {status}, expected {want}"
            ));
        }
        let applied = state.applied.get(source_ref).map_or(0, Vec::len);
        if applied > 1 {
            row.duplicate_effects += applied - 1;
        }
        if status == "succeeded" && applied == 0 && !source_ref.starts_with("poison") {
            row.unexpected.push(format!(
                "{source_ref}: succeeded but the effect was never applied"
            ));
        }
    }
    if expect.hit.is_some() && hit.is_none() {
        row.unexpected.push("the crash never fired".to_owned());
    }
    row
}

fn assert_row(stack: &ProcStack, row: &Row) {
    row.print();
    assert!(
        row.lost == 0 && row.duplicate_effects == 0 && row.unexpected.is_empty(),
        "{}: lost {}, duplicate effects {}, unexpected {:#?}\n{}",
        row.scenario,
        row.lost,
        row.duplicate_effects,
        row.unexpected,
        stack.all_logs()
    );
}

/// Settings that make recovery quick in tests: short ack waits and leases.
fn fault_options(fake: &str, workers: usize) -> tocsin_tests::procs::ProcOptions {
    tocsin_tests::proc_options!()
        .playbook("faults.py", playbook(fake))
        .workers(workers)
        .env("TOCSIN_WORKER__ACK_WAIT", "3s")
        .env("TOCSIN_SCHEDULER__ACK_WAIT", "5s")
        .env("TOCSIN_SCHEDULER__LEASE_GRACE", "1s")
        .env("TOCSIN_SCHEDULER__STALE_DISPATCH", "10s")
}

/// Kills the worker whenever the fake asks, and starts it again half a second later (as a
/// process supervisor would).
fn crash_service(
    stack: Arc<ProcStack>,
    mut requests: mpsc::Receiver<oneshot::Sender<()>>,
    name: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(done) = requests.recv().await {
            stack.kill(name).await;
            let _ = done.send(());
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.restart(name).expect("restart worker");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_at_each_crash_point_loses_nothing_and_repeats_no_effect() {
    let (fake, fake_url, requests) = start_fake().await;
    let stack = Arc::new(ProcStack::start(fault_options(&fake_url, 1)).await.unwrap());
    let crasher = crash_service(stack.clone(), requests, "worker-0");
    Row::print_header();
    let points = [
        CrashPoint::BeforeEffect,
        CrashPoint::AfterEffect,
        CrashPoint::AfterResult,
    ];
    for (kind, source) in [("idempotent", "fault-idempotent"), ("plain", "fault-plain")] {
        for point in points {
            let phase = format!("{kind}-{point:?}").to_lowercase();
            fake.state.lock().unwrap().plan = Some(Plan {
                point,
                at_call: 10,
                calls: 0,
                armed_target: None,
                hit: None,
            });
            let (accepted, retried) = drive(&stack, &phase, &[source], 30, 15.0, async {}).await;
            // Idempotent actions re-run with the same key; a non-idempotent step whose
            // intent has no result stops its run for review (other runs in flight at the
            // crash may be caught mid-action too).
            let expect = match (kind, point) {
                ("idempotent", _) | (_, CrashPoint::AfterResult) => Expect {
                    allowed: if kind == "idempotent" {
                        &["succeeded"]
                    } else {
                        &["succeeded", "needs_review"]
                    },
                    hit: Some("succeeded"),
                },
                _ => Expect {
                    allowed: &["succeeded", "needs_review"],
                    hit: Some("needs_review"),
                },
            };
            let row = check(
                &stack,
                &fake,
                &format!("kill -9 worker {kind}: {}", point.name()),
                &accepted,
                retried,
                &expect,
            )
            .await;
            assert_row(&stack, &row);
        }
    }
    crasher.abort();
    let _ = crasher.await;
    Arc::into_inner(stack).expect("one owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stalled_past_its_ack_wait_is_fenced_and_nothing_repeats() {
    let (fake, fake_url, _requests) = start_fake().await;
    fake.state.lock().unwrap().latency = Duration::from_millis(300);
    let stack = ProcStack::start(fault_options(&fake_url, 2)).await.unwrap();
    Row::print_header();
    let (accepted, retried) = drive(
        &stack,
        "stall",
        &["fault-idempotent"],
        90,
        15.0,
        after(Duration::from_secs(1), async {
            // Only once worker-0 holds runs (on a loaded machine it may not have any yet
            // after a second), so that the stall catches some mid-action.
            let start = std::time::Instant::now();
            while !stack.log("worker-0").contains("run claimed")
                && start.elapsed() < Duration::from_secs(20)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stack.signal("worker-0", "STOP").await;
            // Longer than the 3 s ack wait and lease (plus grace): its runs move on.
            tokio::time::sleep(Duration::from_secs(6)).await;
            stack.signal("worker-0", "CONT").await;
        }),
    )
    .await;
    let row = check(
        &stack,
        &fake,
        "SIGSTOP worker (of 2) 6 s, SIGCONT",
        &accepted,
        retried,
        &Expect {
            allowed: &["succeeded"],
            hit: None,
        },
    )
    .await;
    assert_row(&stack, &row);
    // The stall caught runs mid-action: the other worker took them over (a new epoch), and
    // the stalled one, once resumed, had its writes refused.
    let log = |name: &str| stack.log(name);
    assert!(
        log("worker-1").contains("epoch=2"),
        "no run was taken over from the stalled worker\n{}",
        stack.all_logs()
    );
    assert!(
        log("worker-0").contains("run claimed by another worker"),
        "the stalled worker was not fenced when it resumed\n{}",
        stack.all_logs()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_and_restarted_while_alerts_flow_loses_nothing() {
    let (fake, fake_url, _requests) = start_fake().await;
    let stack = ProcStack::start(fault_options(&fake_url, 1)).await.unwrap();
    Row::print_header();
    let (accepted, retried) = drive(
        &stack,
        "nats",
        &["fault-idempotent"],
        60,
        15.0,
        after(Duration::from_millis(1500), async {
            let mut nats = stack.nats.lock().await;
            nats.kill().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            nats.restart().await.expect("restart nats-server");
        }),
    )
    .await;
    let row = check(
        &stack,
        &fake,
        "kill -9 nats-server, restart on the same store",
        &accepted,
        retried,
        &Expect {
            allowed: &["succeeded"],
            hit: None,
        },
    )
    .await;
    assert_row(&stack, &row);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_while_alerts_flow_loses_nothing() {
    let (fake, fake_url, _requests) = start_fake().await;
    let stack = ProcStack::start(fault_options(&fake_url, 1)).await.unwrap();
    Row::print_header();
    let (accepted, retried) = drive(
        &stack,
        "postgres",
        &["fault-idempotent"],
        60,
        15.0,
        after(Duration::from_millis(1500), async {
            let mut pg = stack.pg.lock().await;
            pg.stop_immediate().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            pg.restart().await.expect("restart postgres");
        }),
    )
    .await;
    let row = check(
        &stack,
        &fake,
        "PostgreSQL immediate stop, start",
        &accepted,
        retried,
        &Expect {
            allowed: &["succeeded"],
            hit: None,
        },
    )
    .await;
    assert_row(&stack, &row);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_playbook_does_not_hold_up_healthy_runs() {
    let (fake, fake_url, _requests) = start_fake().await;
    let stack = ProcStack::start(fault_options(&fake_url, 1)).await.unwrap();
    Row::print_header();
    let (accepted, retried) = drive(
        &stack,
        "mixed",
        &["fault-idempotent", "poison"],
        60,
        15.0,
        async {},
    )
    .await;
    let row = check(
        &stack,
        &fake,
        "poison playbook mixed 1:1 with healthy",
        &accepted,
        retried,
        &Expect {
            allowed: &["succeeded", "failed"],
            hit: None,
        },
    )
    .await;
    assert_row(&stack, &row);
    assert_eq!(row.failed, 30, "every poison run fails, once");
    assert_eq!(row.succeeded, 30, "every healthy run succeeds");
    stack.stop().await;
}
