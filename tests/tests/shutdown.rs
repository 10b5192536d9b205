//! Graceful shutdown of a worker (issue 7): SIGTERM in the middle of a run either lets the
//! run finish within the grace period, or hands it back (nak) and a worker started later
//! finishes it from its journal — either way the run completes once and the external effect
//! happens once (by idempotency key), and the worker exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use tocsin_tests::procs::ProcStack;

#[derive(Clone, Default)]
struct Effects(Arc<Mutex<Vec<String>>>);

async fn effect(State(effects): State<Effects>, Json(body): Json<Value>) -> Json<Value> {
    let key = body["key"].as_str().unwrap_or_default().to_owned();
    effects.0.lock().unwrap().push(key);
    Json(json!({"ok": true}))
}

fn playbook(fake: &str, seconds: f64) -> String {
    format!(
        r#"
import asyncio
from tocsin import playbook, action, http, idempotency_key

@action(idempotent=True, timeout="30s")
async def slow_effect(label: str) -> dict:
    await asyncio.sleep({seconds})
    response = await http.post("{fake}/effect", json={{"key": idempotency_key(), "label": label}})
    response.raise_for_status()
    return response.json()

@playbook(when={{"source": "edr"}})
async def contain(alert, run):
    return await slow_effect(alert.title)
"#
    )
}

async fn fake_api() -> (String, Effects) {
    let effects = Effects::default();
    let app = axum::Router::new()
        .route("/effect", post(effect))
        .with_state(effects.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, effects)
}

async fn run_of(stack: &ProcStack, alert_id: &str, done: impl Fn(&str) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(alert) = stack.api(&format!("/v1/alerts/{alert_id}")).await
            && let Some(status) = alert["runs"][0]["status"].as_str()
            && done(status)
        {
            let id = alert["runs"][0]["id"].as_str().unwrap().to_owned();
            return stack.api(&format!("/v1/runs/{id}")).await.unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run never got there; logs:\n{}",
            stack.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn distinct(effects: &Effects) -> (usize, usize) {
    let calls = effects.0.lock().unwrap().clone();
    let mut keys = calls.clone();
    keys.sort();
    keys.dedup();
    (calls.len(), keys.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_run_drains_it_within_the_grace_period() {
    let (fake, effects) = fake_api().await;
    let stack = ProcStack::start(
        tocsin_tests::proc_options!()
            .playbook("contain.py", playbook(&fake, 1.5))
            .env("TOCSIN_SHUTDOWN__GRACE", "10s"),
    )
    .await
    .unwrap();
    let ids = stack
        .post_alert(&json!({"title": "drain", "severity": "high", "source": "edr"}))
        .await
        .unwrap();
    run_of(&stack, &ids[0], |s| s == "running").await;
    let exit = stack.terminate("worker-0", Duration::from_secs(30)).await;
    assert!(exit.success(), "worker exited with {exit}");
    // The drain let the run finish before the worker exited.
    let run = run_of(&stack, &ids[0], |s| s != "running" && s != "queued").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(distinct(&effects).await, (1, 1));
    let log = stack.log("worker-0");
    assert!(log.contains("worker stopped"), "{log}");
    assert!(!log.contains("handing in-flight runs back"), "{log}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_past_the_grace_period_hands_the_run_back_and_it_completes_once() {
    let (fake, effects) = fake_api().await;
    let stack = ProcStack::start(
        tocsin_tests::proc_options!()
            .playbook("contain.py", playbook(&fake, 3.0))
            .env("TOCSIN_SHUTDOWN__GRACE", "1s")
            .env("TOCSIN_WORKER__ACK_WAIT", "3s"),
    )
    .await
    .unwrap();
    let ids = stack
        .post_alert(&json!({"title": "hand back", "severity": "high", "source": "edr"}))
        .await
        .unwrap();
    run_of(&stack, &ids[0], |s| s == "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exit = stack.terminate("worker-0", Duration::from_secs(30)).await;
    assert!(exit.success(), "worker exited with {exit}");
    let alert = stack.api(&format!("/v1/alerts/{}", ids[0])).await.unwrap();
    assert_ne!(
        alert["runs"][0]["status"], "succeeded",
        "the run was handed back unfinished"
    );
    // Another worker (the same, restarted) finishes it from its journal.
    stack.restart("worker-0").unwrap();
    let run = run_of(&stack, &ids[0], |s| {
        s == "succeeded" || s == "failed" || s == "needs_review"
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run:#}\n{}", stack.all_logs());
    let (_calls, keys) = distinct(&effects).await;
    assert_eq!(keys, 1, "one effect, by idempotency key");
    assert_eq!(run["steps"].as_array().unwrap().len(), 1, "{run:#}");
    stack.stop().await;
}
