//! Pins durable suspension and platform steps end to end: a playbook that comments on its
//! case, asks for an approval and sleeps is suspended (its worker slot freed), resumed by
//! the decision or the approval timeout and by the timer, replays its journal so completed
//! actions do not run again, and finishes; manual runs start through the API with an input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tocsin_tests::TestStack;

const PLAYBOOKS: &str = r#"
from tocsin import playbook, action, approval, sleep

@action
async def effect(label: str, ledger: str) -> dict:
    # A side effect the test can count: one line per real execution.
    with open(ledger, "a") as f:
        f.write(label + "\n")
    return {"did": label}

@playbook(when={"source": "gate"})
async def gated(alert, run):
    ledger = alert.raw["ledger"]
    await run.case.comment("containment requested")
    before = await effect("before", ledger)
    ok = await approval("Block 203.0.113.7?", details={"ip": "203.0.113.7"},
                        timeout=alert.raw.get("approval_timeout", "1h"), default="deny")
    await sleep("1s")
    after = await effect("after", ledger) if ok else None
    await run.case.set_status("in_progress")
    return {"approved": ok, "before": before, "after": after}

@playbook(trigger="manual")
async def by_hand(alert, run):
    return {"input": run.input, "alert": alert.id if alert else None}
"#;

async fn wait_status(stack: &TestStack, run_id: &str, status: &str) -> Value {
    stack
        .wait_for(&format!("/v1/runs/{run_id}"), |r| r["status"] == status)
        .await
}

async fn run_of(stack: &TestStack, alert_id: &str) -> String {
    let alert = stack
        .wait_for(&format!("/v1/alerts/{alert_id}"), |a| {
            a["runs"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    alert["runs"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_and_sleep_suspend_and_resume_without_repeating_actions() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("gate.py", PLAYBOOKS))
        .await
        .unwrap();
    let ledger = stack.dir.path().join("ledger.txt");
    let ids = stack
        .accept(
            json!({"title": "scanner", "severity": "high", "source": "gate", "source_ref": "g-1",
                   "ledger": ledger.display().to_string()})
            .to_string(),
        )
        .await;
    let run_id = run_of(&stack, &ids[0]).await;
    let waiting = wait_status(&stack, &run_id, "waiting_approval").await;
    assert_eq!(waiting["error"], "waiting for approval: Block 203.0.113.7?");

    let pending = stack.api("/v1/approvals?status=pending").await.unwrap();
    let approvals = pending["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{pending:#}");
    assert_eq!(approvals[0]["details"], json!({"ip": "203.0.113.7"}));
    let approval_id = approvals[0]["id"].as_str().unwrap().to_owned();

    let decide = |decision: &'static str| {
        let http = stack.http.clone();
        let url = format!("{}/v1/approvals/{approval_id}", stack.api_url);
        let key = stack.api_key.clone();
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"decision": decision, "comment": "confirmed scanner"}))
                .send()
                .await
                .unwrap()
        }
    };
    let decided = decide("approve").await;
    assert_eq!(decided.status(), 200);
    let decided: Value = decided.json().await.unwrap();
    assert_eq!(decided["status"], "approved");
    assert!(
        decided["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("key:tsk_api_")
    );
    assert_eq!(decide("deny").await.status(), 409, "a decision is final");

    let done = wait_status(&stack, &run_id, "succeeded").await;
    assert_eq!(done["result"]["approved"], true);
    assert_eq!(done["result"]["after"], json!({"did": "after"}));
    assert!(
        done["attempts"].as_i64().unwrap() >= 3,
        "ran, resumed after approval, after sleep"
    );
    let actions: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tocsin.case.comment",
            "effect",
            "tocsin.approval",
            "tocsin.sleep",
            "effect",
            "tocsin.case.set_status"
        ]
    );
    assert!(
        done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "succeeded")
    );
    assert_eq!(
        done["steps"][2]["result"]["decided_by"],
        decided["decided_by"]
    );
    let ledger_lines = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(
        ledger_lines, "before\nafter\n",
        "each action ran exactly once across three executions"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_approval_times_out_to_its_default_and_manual_runs_take_input() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("gate.py", PLAYBOOKS))
        .await
        .unwrap();
    let ledger = stack.dir.path().join("ledger.txt");
    let ids = stack
        .accept(
            json!({"title": "scanner", "severity": "high", "source": "gate", "source_ref": "g-2",
                   "ledger": ledger.display().to_string(), "approval_timeout": "1s"})
            .to_string(),
        )
        .await;
    let run_id = run_of(&stack, &ids[0]).await;
    let done = wait_status(&stack, &run_id, "succeeded").await;
    assert_eq!(
        done["result"]["approved"], false,
        "the default (deny) applies: {done:#}"
    );
    assert_eq!(done["steps"][2]["result"]["timed_out"], true);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "before\n");

    let started = stack
        .http
        .post(format!("{}/v1/runs", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({"playbook": "by_hand", "alert_id": ids[0], "input": {"ticket": 42}}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let manual_id = started.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let manual = wait_status(&stack, &manual_id, "succeeded").await;
    assert_eq!(
        manual["result"],
        json!({"input": {"ticket": 42}, "alert": ids[0]})
    );
    assert_eq!(manual["trigger"], "manual");

    let unknown = stack
        .http
        .post(format!("{}/v1/runs", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({"playbook": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    stack.stop().await.unwrap();
}
