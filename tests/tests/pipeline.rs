//! Pins the walking skeleton end to end across the real services (in-process, private
//! nats-server, private PostgreSQL): alerts posted over HTTP become cases and runs whose
//! outcome the playbook decided, duplicates are recorded once, ingest answers 401/400/413/503
//! as documented, and a runner killed mid-run costs nothing but a redelivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tocsin_tests::{Options, TestStack};

const PLAYBOOKS: &str = r#"
import asyncio
from tocsin import playbook, action

@action
async def double(n: int) -> int:
    return n * 2

@action(retries=1, timeout="5s")
async def lookup(ip: str) -> dict:
    await asyncio.sleep(0.01)
    return {"ip": ip, "private": ip.startswith("10.")}

@playbook(when={"source": "wazuh", "severity": {"gte": "high"}})
async def enrich(alert, run):
    results = await asyncio.gather(*(lookup(ip) for ip in alert.observables.ips))
    run.log("enriched", count=len(results))
    return {
        "title": alert.title,
        "level": alert.raw["rule"]["level"],
        "doubled": await double(21),
        "lookups": list(results),
    }

@playbook(when={"source": ["suricata"]})
async def explode(alert, run):
    await double(1)
    raise ValueError(f"cannot handle {alert.source_ref}")
"#;

fn options() -> Options {
    tocsin_tests::options!().playbook("checks.py", PLAYBOOKS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_become_cases_and_runs_with_results_errors_and_no_match() {
    let stack = TestStack::start(options()).await.unwrap();
    let body = [
        json!({"title": "SSH brute force", "severity": "HIGH", "source": "wazuh", "source_ref": "w-1",
               "observables": [{"type": "ip", "value": "10.0.0.5"}, {"type": "ip", "value": "203.0.113.9"}],
               "rule": {"level": 12}}),
        json!({"title": "ET SCAN", "severity": 3, "source": "suricata", "source_ref": "s-1"}),
        json!({"title": "Login", "severity": "info", "source": "okta", "source_ref": "o-1"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let ids = stack.accept(body).await;
    assert_eq!(ids.len(), 3);

    let run = stack.wait_run(&ids[0], "enrich").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"]["title"], "SSH brute force");
    assert_eq!(run["result"]["level"], 12);
    assert_eq!(run["result"]["doubled"], 42);
    assert_eq!(
        run["result"]["lookups"][0],
        json!({"ip": "10.0.0.5", "private": true})
    );
    assert_eq!(run["attempts"], 1);
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "two lookups and one double: {steps:#?}");
    assert!(steps.iter().all(|s| s["state"] == "succeeded"));
    assert_eq!(steps[2]["action"], "double");
    assert_eq!(steps[2]["args"], json!({"n": 21}));
    assert!(
        run["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "enriched")
    );
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());

    let failed = stack.wait_run(&ids[1], "explode").await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "ValueError: cannot handle s-1");
    let traceback = failed["traceback"].as_str().unwrap();
    assert!(
        traceback.contains("Traceback") && traceback.contains("checks.py"),
        "{traceback}"
    );
    assert_eq!(failed["steps"][0]["state"], "succeeded");

    let unmatched = stack.wait_settled(&ids[2]).await;
    assert!(
        unmatched["case_id"].is_string(),
        "every alert opens a case: {unmatched:#}"
    );
    assert_eq!(unmatched["runs"], json!([]));
    assert_eq!(unmatched["severity"], "info");

    // Another tenant's key sees none of it.
    stack.store.ensure_tenant("other", "Other").await.unwrap();
    let other = stack
        .store
        .create_key("other", tocsin_store::keys::KeyKind::Api, "t")
        .await
        .unwrap();
    let response = stack
        .http
        .get(format!("{}/v1/alerts/{}", stack.api_url, ids[0]))
        .bearer_auth(&other.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_alert_posted_twice_is_one_alert_with_one_run_and_a_recorded_duplicate() {
    let stack = TestStack::start(options()).await.unwrap();
    let alert = json!({"title": "SSH brute force", "severity": "critical", "source": "wazuh",
                       "source_ref": "dup-1", "rule": {"level": 10}})
    .to_string();
    let first = stack.accept(alert.clone()).await;
    let settled = stack.wait_settled(&first[0]).await;
    assert_eq!(settled["runs"].as_array().unwrap().len(), 1);
    let second = stack.accept(alert).await;
    assert_eq!(
        first, second,
        "the alert id is derived from tenant, source and source_ref"
    );
    let alert = stack
        .wait_for(&format!("/v1/alerts/{}", first[0]), |a| {
            a["duplicate_count"] == 1
        })
        .await;
    assert_eq!(alert["runs"].as_array().unwrap().len(), 1, "{alert:#}");
    assert_eq!(alert["runs"][0]["status"], "succeeded");
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_answers_401_400_413_and_503_and_a_retry_after_503_is_the_same_alert() {
    let mut stack = TestStack::start(options().configure(|c| c.ingest.max_body_bytes = 8 * 1024))
        .await
        .unwrap();
    let url = format!("{}/v1/alerts", stack.ingest_url);
    let ok_alert = json!({"title": "t", "severity": "low"}).to_string();

    let no_key = stack
        .http
        .post(&url)
        .body(ok_alert.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(no_key.headers()["content-type"], "application/problem+json");
    let bad_key = stack
        .http
        .post(&url)
        .bearer_auth(format!("tsk_ingest_{}", "0".repeat(64)))
        .body(ok_alert.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 401);
    let api_key_at_ingest = stack
        .http
        .post(&url)
        .bearer_auth(&stack.api_key)
        .body(ok_alert.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        api_key_at_ingest.status(),
        401,
        "an API key is not an ingest key"
    );

    let malformed = stack
        .post_alerts(format!("{ok_alert}\n{{\"title\": \"x\",\n"))
        .await;
    assert_eq!(malformed.status(), 400);
    let problem: Value = malformed.json().await.unwrap();
    assert_eq!(problem["line"], 2, "{problem:#}");
    assert_eq!(problem["status"], 400);
    let invalid = stack
        .post_alerts(json!({"title": "t", "severity": "urgent"}).to_string())
        .await;
    assert_eq!(invalid.status(), 400);

    let huge = json!({"title": "t", "severity": "low", "blob": "x".repeat(9 * 1024)}).to_string();
    assert_eq!(stack.post_alerts(huge).await.status(), 413);

    stack.nats.kill().await;
    let unavailable = stack.post_alerts(ok_alert.clone()).await;
    assert_eq!(unavailable.status(), 503);
    assert!(unavailable.headers().contains_key("retry-after"));

    // Once NATS is back the same post is accepted, as the same alert.
    stack.nats.restart().await.unwrap();
    let start = std::time::Instant::now();
    let ids = loop {
        let response = stack.post_alerts(ok_alert.clone()).await;
        if response.status() == 202 {
            let v: Value = response.json().await.unwrap();
            break v["alert_ids"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ingest did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Ingest accepts again once NATS is back; the alert id is the same one the 503'd post
    // had (a retry is deduplicated into it), and the scheduler, whose consumer lost its
    // connection, records it (tests/tests/faults.rs restarts NATS under load).
    assert_eq!(ids.as_array().unwrap().len(), 1);
    let id = ids[0].as_str().unwrap().to_owned();
    stack.wait_for(&format!("/v1/alerts/{id}"), |_| true).await;
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_run_is_redelivered_and_the_run_completes() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("first-attempt");
    let playbook = format!(
        r#"
import asyncio, os
from tocsin import playbook

MARKER = {marker:?}

@playbook(when={{"source": "edr"}})
async def slow(alert, run):
    if not os.path.exists(MARKER):
        with open(MARKER + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(MARKER + ".tmp", MARKER)
        await asyncio.sleep(3600)
    return {{"attempt": run.attempt}}
"#,
        marker = marker.display().to_string()
    );
    let stack = TestStack::start(tocsin_tests::options!().playbook("slow.py", playbook))
        .await
        .unwrap();
    let ids = stack
        .accept(
            json!({"title": "beacon", "severity": "high", "source": "edr", "source_ref": "e-1"})
                .to_string(),
        )
        .await;

    let start = std::time::Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < tocsin_tests::WAIT,
            "the first attempt never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = std::fs::read_to_string(&marker).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());

    let run = stack.wait_run(&ids[0], "slow").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"], json!({"attempt": 2}));
    assert_eq!(run["attempts"], 2);
    assert_eq!(run["epoch"], 2);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vendor_webhooks_normalize_real_payloads_into_alerts() {
    let stack = TestStack::start(tocsin_tests::options!().playbook(
        "vendor.py",
        r#"
from tocsin import playbook

@playbook(when={"source": "aws-guardduty", "severity": {"gte": "medium"}})
async def guardduty(alert, run):
    return {"ips": list(alert.observables.ips), "title": alert.title}
"#,
    ))
    .await
    .unwrap();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/tests/fixtures");
    let post = |source: &str, body: Vec<u8>| {
        stack
            .http
            .post(format!("{}/v1/webhooks/{source}", stack.ingest_url))
            .bearer_auth(&stack.ingest_key)
            .body(body)
            .send()
    };

    let eve = std::fs::read(
        fixtures.join("suricata-eve").join(
            std::fs::read_dir(fixtures.join("suricata-eve"))
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".ndjson"))
                .unwrap()
                .file_name(),
        ),
    )
    .unwrap();
    let response = post("suricata", eve).await.unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["alert_ids"].as_array().unwrap().len(), 68);
    assert!(
        !answer["skipped"].as_array().unwrap().is_empty(),
        "flow/stats records are skipped"
    );

    let guardduty = std::fs::read(
        fixtures.join("aws-guardduty/finding_iam_recon-maliciousipcaller-custom.json"),
    )
    .unwrap();
    let response = post("guardduty", guardduty).await.unwrap();
    assert_eq!(response.status(), 202);
    let ids: Value = response.json().await.unwrap();
    let run = stack
        .wait_run(ids["alert_ids"][0].as_str().unwrap(), "guardduty")
        .await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert!(
        !run["result"]["ips"].as_array().unwrap().is_empty(),
        "{run:#}"
    );

    assert_eq!(
        post("no-such-product", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post("wazuh", b"{\"not\": ".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    stack.stop().await.unwrap();
}
