//! Pins crash safety of side effects and the operator's controls, through the real
//! services: a worker dying mid-action leaves a non-idempotent step `uncertain` and the run
//! `needs_review` (never re-fired), while an idempotent one re-runs with the same key; an
//! operator resolves the uncertain step, cancels a running run, retries a failed run with
//! replay of its succeeded steps; a playbook past its timeout ends `timed_out`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tocsin_tests::TestStack;

const PLAYBOOKS: &str = r#"
import asyncio, os
from tocsin import playbook, action, idempotency_key

def note(ledger, line):
    with open(ledger, "a") as f:
        f.write(line + "\n")

@action
async def record(ledger: str, label: str) -> dict:
    note(ledger, label)
    return {"label": label}

@action(idempotent=False)
async def fire_once(ledger: str, marker: str) -> dict:
    # The effect happens, then the runner dies before the result is journaled.
    note(ledger, "fired")
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        await asyncio.sleep(3600)
    return {"fired": True}

@action(idempotent=True)
async def fire_idempotent(ledger: str, marker: str) -> dict:
    note(ledger, "fired " + idempotency_key())
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        await asyncio.sleep(3600)
    return {"fired": True}

@playbook(when={"source": "crash-plain"})
async def plain(alert, run):
    return await fire_once(alert.raw["ledger"], alert.raw["marker"])

@playbook(when={"source": "crash-idem"})
async def idem(alert, run):
    return await fire_idempotent(alert.raw["ledger"], alert.raw["marker"])

@playbook(when={"source": "flaky"})
async def flaky(alert, run):
    await record(alert.raw["ledger"], "first")
    if not os.path.exists(alert.raw["marker"]):
        open(alert.raw["marker"], "w").close()
        raise RuntimeError("upstream unavailable")
    return await record(alert.raw["ledger"], "second")

@playbook(when={"source": "forever"})
async def forever(alert, run):
    await asyncio.sleep(3600)

@playbook(when={"source": "slow"}, timeout="1s")
async def slow(alert, run):
    await asyncio.sleep(30)
"#;

async fn post(stack: &TestStack, source: &str, extra: Value) -> String {
    let mut alert =
        json!({"title": "t", "severity": "high", "source": source, "source_ref": source});
    alert
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let ids = stack.accept(alert.to_string()).await;
    let alert = stack
        .wait_for(&format!("/v1/alerts/{}", ids[0]), |a| {
            a["runs"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    alert["runs"][0]["id"].as_str().unwrap().to_owned()
}

async fn run_until(stack: &TestStack, run_id: &str, status: &str) -> Value {
    stack
        .wait_for(&format!("/v1/runs/{run_id}"), |r| r["status"] == status)
        .await
}

async fn kill_when_marked(marker: &Path) {
    let start = Instant::now();
    while !marker.exists()
        || std::fs::read_to_string(marker)
            .unwrap_or_default()
            .is_empty()
    {
        assert!(
            start.elapsed() < tocsin_tests::WAIT,
            "the action never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = std::fs::read_to_string(marker).unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
}

async fn call(stack: &TestStack, path: &str, body: Value) -> reqwest::Response {
    stack
        .http
        .post(format!("{}{path}", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_action_never_refires_a_non_idempotent_effect_and_an_operator_resolves_it() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("ops.py", PLAYBOOKS))
        .await
        .unwrap();
    let dir = stack.dir.path().to_owned();

    // Non-idempotent: the effect is not repeated; the run waits for a human.
    let (ledger, marker) = (dir.join("plain.log"), dir.join("plain.marker"));
    let run_id = post(
        &stack,
        "crash-plain",
        json!({"ledger": ledger, "marker": marker}),
    )
    .await;
    kill_when_marked(&marker).await;
    let review = run_until(&stack, &run_id, "needs_review").await;
    assert_eq!(review["steps"][0]["state"], "uncertain", "{review:#}");
    assert_eq!(lines(&ledger), ["fired"], "the effect must not fire twice");
    assert_eq!(
        call(
            &stack,
            &format!("/v1/runs/{run_id}/steps/5/resolve"),
            json!({"result": 1})
        )
        .await
        .status(),
        404
    );
    let resolved = call(
        &stack,
        &format!("/v1/runs/{run_id}/steps/0/resolve"),
        json!({"result": {"fired": "by hand"}}),
    )
    .await;
    assert_eq!(resolved.status(), 202);
    let done = run_until(&stack, &run_id, "succeeded").await;
    assert_eq!(done["result"], json!({"fired": "by hand"}));
    assert_eq!(lines(&ledger), ["fired"]);

    // Idempotent: re-run once, with the same idempotency key.
    let (ledger, marker) = (dir.join("idem.log"), dir.join("idem.marker"));
    let run_id = post(
        &stack,
        "crash-idem",
        json!({"ledger": ledger, "marker": marker}),
    )
    .await;
    kill_when_marked(&marker).await;
    let done = run_until(&stack, &run_id, "succeeded").await;
    let fired = lines(&ledger);
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(
        fired[0], fired[1],
        "both attempts carry the same idempotency key"
    );
    assert_eq!(fired[0], format!("fired {run_id}:0"));
    assert_eq!(done["attempts"], 2);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_cancel_running_runs_retry_failed_ones_and_timeouts_end_timed_out() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("ops.py", PLAYBOOKS))
        .await
        .unwrap();
    let dir = stack.dir.path().to_owned();

    let forever = post(&stack, "forever", json!({})).await;
    run_until(&stack, &forever, "running").await;
    let cancel = call(&stack, &format!("/v1/runs/{forever}/cancel"), json!({})).await;
    assert_eq!(cancel.status(), 202);
    let cancelled = run_until(&stack, &forever, "cancelled").await;
    assert!(
        cancelled["error"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by key:"),
        "{cancelled:#}"
    );
    assert_eq!(
        call(&stack, &format!("/v1/runs/{forever}/cancel"), json!({}))
            .await
            .status(),
        409
    );

    let (ledger, marker) = (dir.join("flaky.log"), dir.join("flaky.marker"));
    let flaky = post(&stack, "flaky", json!({"ledger": ledger, "marker": marker})).await;
    let failed = run_until(&stack, &flaky, "failed").await;
    assert_eq!(failed["error"], "RuntimeError: upstream unavailable");
    assert_eq!(
        call(&stack, &format!("/v1/runs/{flaky}/retry"), json!({}))
            .await
            .status(),
        202
    );
    let retried = run_until(&stack, &flaky, "succeeded").await;
    assert_eq!(retried["result"], json!({"label": "second"}));
    assert_eq!(
        lines(&ledger),
        ["first", "second"],
        "the succeeded step replayed instead of running again"
    );
    assert_eq!(
        call(&stack, &format!("/v1/runs/{flaky}/retry"), json!({}))
            .await
            .status(),
        409
    );

    let slow = post(&stack, "slow", json!({})).await;
    let timed_out = run_until(&stack, &slow, "timed_out").await;
    assert_eq!(timed_out["error"], "playbook timed out after 1s");
    stack.stop().await.unwrap();
}
