//! Signed webhooks (issue 6, Standard Webhooks): a tenant's signing secrets come from the API
//! (shown once, several for rotation); ingest verifies `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` on every signed request, refuses bad HMACs, stale and future
//! timestamps, replayed ids and incomplete headers, and — once the tenant requires it —
//! unsigned requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tocsin_ingest::signature::sign;
use tocsin_tests::TestStack;

async fn admin(
    stack: &TestStack,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = stack
        .http
        .request(method, format!("{}{path}", stack.api_url))
        .bearer_auth(&stack.api_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn new_secret(stack: &TestStack) -> (String, Vec<u8>) {
    let created = admin(stack, reqwest::Method::POST, "/v1/webhook-secrets", None).await;
    let secret = created["secret"].as_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    (created["id"].as_str().unwrap().to_owned(), key)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Posts `body` to `/v1/alerts` with the given signature headers (`None`: unsigned).
async fn post(stack: &TestStack, body: &str, signed: Option<(&str, i64, String)>) -> (u16, Value) {
    let mut request = stack
        .http
        .post(format!("{}/v1/alerts", stack.ingest_url))
        .bearer_auth(&stack.ingest_key)
        .body(body.to_owned());
    if let Some((id, ts, signature)) = signed {
        request = request
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn alert(title: &str) -> String {
    json!({"title": title, "severity": "low"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_webhooks_are_verified_replays_refused_and_secrets_rotate() {
    let stack = TestStack::start(
        tocsin_tests::options!().configure(|c| c.ingest.key_cache_ttl = Duration::from_millis(1)),
    )
    .await
    .unwrap();
    let (old_id, old) = new_secret(&stack).await;

    // Not required yet: unsigned passes; a signed one is still verified.
    assert_eq!(post(&stack, &alert("unsigned"), None).await.0, 202);
    let body = alert("signed");
    let ts = now();
    let good = sign(&old, "msg_1", ts, body.as_bytes());
    let (status, answer) = post(&stack, &body, Some(("msg_1", ts, good.clone()))).await;
    assert_eq!(status, 202, "{answer:#}");
    // The same message again: a replay.
    let (status, answer) = post(&stack, &body, Some(("msg_1", ts, good))).await;
    assert_eq!(status, 409, "{answer:#}");
    // Wrong key, tampered body, stale and future timestamps.
    let bad = sign(b"not the secret", "msg_2", ts, body.as_bytes());
    assert_eq!(post(&stack, &body, Some(("msg_2", ts, bad))).await.0, 401);
    let signed_other = sign(&old, "msg_3", ts, alert("other").as_bytes());
    assert_eq!(
        post(&stack, &body, Some(("msg_3", ts, signed_other)))
            .await
            .0,
        401
    );
    for skew in [-400, 400] {
        let ts = now() + skew;
        let signature = sign(&old, "msg_4", ts, body.as_bytes());
        let (status, answer) = post(&stack, &body, Some(("msg_4", ts, signature))).await;
        assert_eq!(status, 401, "{answer:#}");
        assert!(
            answer["detail"].as_str().unwrap().contains("away from now"),
            "{answer:#}"
        );
    }
    // Incomplete headers.
    let response = stack
        .http
        .post(format!("{}/v1/alerts", stack.ingest_url))
        .bearer_auth(&stack.ingest_key)
        .header("webhook-id", "msg_5")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Required: unsigned refused, signed accepted (vendor webhooks too).
    admin(
        &stack,
        reqwest::Method::PUT,
        "/v1/webhook-settings",
        Some(json!({"require_signatures": true})),
    )
    .await;
    let (status, answer) = post(&stack, &alert("unsigned 2"), None).await;
    assert_eq!(status, 401, "{answer:#}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("requires signed"),
        "{answer:#}"
    );
    let eve = json!({"timestamp": "2024-01-01T00:00:00Z", "event_type": "alert", "src_ip": "10.0.0.1",
                     "dest_ip": "10.0.0.2", "alert": {"signature": "ET TEST", "severity": 1, "signature_id": 1}})
        .to_string();
    let ts = now();
    let response = stack
        .http
        .post(format!("{}/v1/webhooks/suricata-eve", stack.ingest_url))
        .bearer_auth(&stack.ingest_key)
        .header("webhook-id", "msg_6")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(&old, "msg_6", ts, eve.as_bytes()))
        .body(eve.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());

    // Rotation: both secrets verify until the old one is deleted.
    let (_new_id, new) = new_secret(&stack).await;
    let listed = admin(&stack, reqwest::Method::GET, "/v1/webhook-secrets", None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["require_signatures"], true);
    assert!(!listed.to_string().contains("whsec_"), "{listed:#}");
    for (i, key) in [&old, &new].into_iter().enumerate() {
        let body = alert(&format!("rotated {i}"));
        let id = format!("msg_rot_{i}");
        let ts = now();
        let signature = sign(key, &id, ts, body.as_bytes());
        assert_eq!(post(&stack, &body, Some((&id, ts, signature))).await.0, 202);
    }
    admin(
        &stack,
        reqwest::Method::DELETE,
        &format!("/v1/webhook-secrets/{old_id}"),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let body = alert("after rotation");
    let ts = now();
    let with_old = sign(&old, "msg_7", ts, body.as_bytes());
    assert_eq!(
        post(&stack, &body, Some(("msg_7", ts, with_old))).await.0,
        401
    );
    // Several signatures in one header: any match passes (as senders do mid-rotation).
    let both = format!(
        "{} {}",
        sign(&old, "msg_8", ts, body.as_bytes()),
        sign(&new, "msg_8", ts, body.as_bytes())
    );
    assert_eq!(post(&stack, &body, Some(("msg_8", ts, both))).await.0, 202);

    // Every change is in the audit log, with no secret value.
    let audit = admin(&stack, reqwest::Method::GET, "/v1/audit", None).await;
    let text = audit.to_string();
    assert!(
        text.contains("webhook-settings") && text.contains("webhook-secret:"),
        "{audit:#}"
    );
    assert!(!text.contains("whsec_"));
    stack.stop().await.unwrap();
}
