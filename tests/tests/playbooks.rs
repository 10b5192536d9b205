//! Pins the playbook switches through the real services: `GET /v1/playbooks` shows the live
//! bundle; disabling a playbook stops it matching the next alert at once (the scheduler's
//! cache is dropped by a Postgres notification, not by its TTL, which is an hour here),
//! refuses manual starts, survives a redeploy, and enabling it brings it back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tocsin_tests::{TENANT, TestStack};

const PLAYBOOKS: &str = r#"
from tocsin import playbook

@playbook(when={"source": "edr"})
async def contain(alert, run):
    return {"contained": alert.title}

@playbook(trigger="manual")
async def report(alert, run):
    return {"ok": True}
"#;

async fn post(stack: &TestStack, path: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}{path}", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn alert_runs(stack: &TestStack, title: &str) -> Vec<Value> {
    let body = json!({"title": title, "severity": "high", "source": "edr"}).to_string();
    let ids = stack.accept(body).await;
    let alert = stack.wait_settled(&ids[0]).await;
    alert["runs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_a_playbook_applies_to_the_next_alert_and_outlives_a_redeploy() {
    let stack = TestStack::start(
        tocsin_tests::options!()
            .playbook("pb.py", PLAYBOOKS)
            .configure(|c| c.scheduler.playbook_cache_ttl = Duration::from_secs(3600)),
    )
    .await
    .unwrap();

    let listed = stack.api("/v1/playbooks").await.unwrap();
    let hash = listed["deployment"]["bundle_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(listed["deployment"]["deployed_by"], "test");
    let names: Vec<_> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].clone(),
                p["enabled"].clone(),
                p["trigger"].clone(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (json!("contain"), json!(true), json!("alert")),
            (json!("report"), json!(true), json!("manual")),
        ]
    );

    // Warm the scheduler's cache with the enabled playbook.
    let runs = alert_runs(&stack, "first").await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["status"], "succeeded");

    let (status, body) = post(&stack, "/v1/playbooks/contain/disable").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["enabled"], false);
    assert!(alert_runs(&stack, "second").await.is_empty());

    let (status, _) = post(&stack, "/v1/playbooks/report/disable").await;
    assert_eq!(status, 200);
    let (status, body) = stack_start_run(&stack, "report").await;
    assert_eq!(status, 400, "{body:#}");
    assert!(
        body["detail"].as_str().unwrap().contains("disabled"),
        "{body:#}"
    );
    let (status, _) = post(&stack, "/v1/playbooks/nope/disable").await;
    assert_eq!(status, 404);

    // A new bundle (different content) keeps the switch.
    let dir = stack.dir.path().join("v2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pb.py"), format!("{PLAYBOOKS}\n# v2\n")).unwrap();
    let worker = tocsin_worker::WorkerSection {
        sdk_path: Some(tocsin_tests::sdk_path()),
        runner_program: Some(std::path::PathBuf::from(env!(
            "CARGO_BIN_EXE_tocsin-test-runner"
        ))),
        runner_args: Vec::new(),
        bundle_dir: stack.dir.path().join("bundles"),
        ..Default::default()
    };
    let deployed = tocsin_stack::stack::deploy_playbooks(&stack.store, &worker, TENANT, &dir, "v2")
        .await
        .unwrap();
    assert_ne!(deployed.hash, hash);
    let listed = stack.api("/v1/playbooks").await.unwrap();
    assert_eq!(listed["deployment"]["bundle_hash"], deployed.hash.as_str());
    assert_eq!(listed["items"][0]["enabled"], false);
    assert!(alert_runs(&stack, "third").await.is_empty());

    let (status, body) = post(&stack, "/v1/playbooks/contain/enable").await;
    assert_eq!(status, 200, "{body:#}");
    let runs = alert_runs(&stack, "fourth").await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["status"], "succeeded");

    // Both switches are in the audit log with who and what changed.
    let audit = stack.api("/v1/audit").await.unwrap();
    let switches: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("playbook:"))
        })
        .collect();
    assert_eq!(switches.len(), 3, "{audit:#}");
    stack.stop().await.unwrap();
}

async fn stack_start_run(stack: &TestStack, playbook: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}/v1/runs", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({"playbook": playbook}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
