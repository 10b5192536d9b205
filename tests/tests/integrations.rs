//! Pins the outbound path of playbooks through the real services: a playbook reads a tenant
//! secret, calls an external API through `tocsin.http` (performed by the runner's Rust
//! client), passes its step's idempotency key, and records on the case; the fake API on
//! loopback sees exactly one call with the right credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use tocsin_tests::TestStack;

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

async fn block(
    State(calls): State<Recorded>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut calls = calls.0.lock().unwrap();
    calls.push((headers, body.clone()));
    Json(json!({"id": format!("blk-{}", calls.len()), "value": body["value"]}))
}

const PLAYBOOK: &str = r#"
from tocsin import playbook, action, http, idempotency_key

@action(idempotent=True, retries=2)
async def block_ip(secrets, ip: str) -> dict:
    # Secrets are passed as the mapping (journaled by name only), never as values.
    response = await http.post(
        f"{secrets['firewall_base_url']}/api/v1/blocks",
        json={"type": "ip", "value": ip, "reason": "tocsin"},
        headers={"Authorization": f"Bearer {secrets['firewall_token']}",
                 "Idempotency-Key": idempotency_key()},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()

@playbook(when={"source": "edr"})
async def contain(alert, run):
    result = await block_ip(run.secrets, alert.observables.ips[0])
    await run.case.comment(f"blocked {alert.observables.ips[0]} ({result['id']})")
    await run.case.add_tag("contained")
    return {"block": result}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_playbook_calls_an_external_api_with_a_secret_and_an_idempotency_key() {
    let calls = Recorded::default();
    let app = axum::Router::new()
        .route("/api/v1/blocks", post(block))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = TestStack::start(
        tocsin_tests::options!()
            .playbook("contain.py", PLAYBOOK)
            .secret("firewall_base_url", &fake)
            .secret("firewall_token", "fw-token-123"),
    )
    .await
    .unwrap();
    let ids = stack
        .accept(
            json!({"title": "beacon", "severity": "high", "source": "edr", "source_ref": "x-1",
                   "observables": [{"type": "ip", "value": "203.0.113.66"}]})
            .to_string(),
        )
        .await;
    let run = stack.wait_run(&ids[0], "contain").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(
        run["result"]["block"],
        json!({"id": "blk-1", "value": "203.0.113.66"})
    );

    let calls = calls.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (headers, body) = &calls[0];
    assert_eq!(headers["authorization"], "Bearer fw-token-123");
    assert_eq!(
        headers["idempotency-key"],
        format!("{}:0", run["id"].as_str().unwrap())
    );
    assert_eq!(body["value"], "203.0.113.66");
    assert!(
        !run.to_string().contains("fw-token-123"),
        "secret values never reach the journal"
    );
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps[1]["action"], "tocsin.case.comment");
    assert_eq!(steps[2]["result"], json!({"tags": ["contained"]}));
    stack.stop().await.unwrap();
}
