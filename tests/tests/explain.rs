//! "Why hasn't it started?" (issue 7): an alert records which playbooks matched and why the
//! others did not (`match_report`); a run says where it is (`explain`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tocsin_tests::TestStack;

const PLAYBOOKS: &str = r#"
from tocsin import playbook, approval

@playbook(when={"source": "edr", "severity": {"gte": "high"}})
async def contain(alert, run):
    return {}

@playbook(trigger="manual")
async def report(alert, run):
    return {}

@playbook(when={"source": "edr"})
async def ask(alert, run):
    await approval("Isolate the host?", timeout="1h", default="deny")
    return {}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_say_why_playbooks_did_not_match_and_runs_say_where_they_are() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("pb.py", PLAYBOOKS))
        .await
        .unwrap();
    let ids = stack
        .accept(json!({"title": "t", "severity": "low", "source": "edr"}).to_string())
        .await;
    let alert = stack
        .wait_for(&format!("/v1/alerts/{}", ids[0]), |a| {
            a["runs"][0]["status"] == "waiting_approval"
        })
        .await;
    let report: Vec<Value> = alert["match_report"]["playbooks"]
        .as_array()
        .unwrap()
        .clone();
    let by = |name: &str| {
        report
            .iter()
            .find(|p| p["playbook"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("ask")["matched"], true);
    assert_eq!(by("ask")["reason"], Value::Null);
    assert_eq!(by("contain")["matched"], false);
    let why = by("contain")["reason"].as_str().unwrap().to_owned();
    assert!(
        why.contains("severity") && why.contains("gte") && why.contains("low"),
        "{why}"
    );
    assert_eq!(by("report")["reason"], "trigger is manual");

    let run_id = alert["runs"][0]["id"].as_str().unwrap();
    let run = stack.api(&format!("/v1/runs/{run_id}")).await.unwrap();
    let explain = run["explain"].as_str().unwrap();
    assert!(
        explain.contains("waiting for approval \"Isolate the host?\"") && explain.contains("deny"),
        "{explain}"
    );
    stack.stop().await.unwrap();
}

/// A run a worker handed back for a delayed retry says so, with the time and the reason,
/// until it is claimed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_handed_back_for_a_delayed_retry_says_until_when_and_why() {
    use std::time::Duration;
    use tocsin_store::runs::Claim;

    let store = tocsin_tests::fresh_store().await.unwrap();
    let tenant = tocsin_tests::TENANT;
    tocsin_tests::deploy_manual_playbook(&store).await.unwrap();
    let run_id = store
        .start_manual_run(tenant, "manual", None, None, None)
        .await
        .unwrap();
    let Claim::Claimed(run) = store
        .claim_run(tenant, run_id, Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    store
        .retry_run_later(
            run_id,
            run.epoch,
            Duration::from_secs(120),
            "bundle download failed",
        )
        .await
        .unwrap();
    let view = store.run_view(tenant, run_id).await.unwrap();
    assert_eq!(view.status, "queued");
    assert!(
        view.explain.starts_with("delayed by backoff until ")
            && view.explain.contains("bundle download failed")
            && view.explain.contains("attempt 1"),
        "{}",
        view.explain
    );
    // Claimed again: the backoff is over and forgotten.
    let Claim::Claimed(again) = store
        .claim_run(tenant, run_id, Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not claimed again");
    };
    store.release_run(run_id, again.epoch).await.unwrap();
    let view = store.run_view(tenant, run_id).await.unwrap();
    assert!(
        view.explain.starts_with("queued since "),
        "{}",
        view.explain
    );
}
