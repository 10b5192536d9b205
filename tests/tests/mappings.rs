//! Custom field mappings (issue 6): a tenant maps a source without a built-in format through
//! the API (validated with every problem listed, versioned); events posted to its webhook or
//! published to its ingest subject become alerts by the newest version, and each alert names
//! the version that produced it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tocsin_proto::subjects;
use tocsin_tests::{TENANT, TestStack};

async fn put(stack: &TestStack, source: &str, doc: Value) -> (u16, Value) {
    let response = stack
        .http
        .put(format!("{}/v1/mappings/{source}", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&doc)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn webhook(stack: &TestStack, source: &str, body: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}/v1/webhooks/{source}", stack.ingest_url))
        .bearer_auth(&stack.ingest_key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_custom_mapping_turns_a_tenants_own_events_into_alerts() {
    let stack = TestStack::start(
        tocsin_tests::options!().configure(|c| c.ingest.key_cache_ttl = Duration::from_millis(1)),
    )
    .await
    .unwrap();
    let event = json!({"detection": {"name": "Credential dumping", "id": "d-42"}, "risk": "4",
                       "at": "2026-11-30T10:00:00Z", "host": {"name": "ws-7", "ip": "10.1.2.3"},
                       "users": ["alice", "bob"], "kind": "edr"});

    // Without a mapping the source is unknown.
    assert_eq!(webhook(&stack, "acme-edr", &event.to_string()).await.0, 404);
    // Validation lists every problem; built-in names are not mappable.
    let (status, body) = put(
        &stack,
        "acme-edr",
        json!({"severity": {"path": "risk", "map": {"4": "severe"}}, "observables": [{"type": "mac", "path": "$.m"}]}),
    )
    .await;
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    for expected in [
        "title is required",
        "must start with $",
        "severity.map",
        "observables[0].type",
    ] {
        assert!(
            detail.contains(expected),
            "{expected} missing from {detail}"
        );
    }
    assert_eq!(
        put(
            &stack,
            "suricata-eve",
            json!({"title": "$.a", "severity": "$.b"})
        )
        .await
        .0,
        400
    );

    let v1 = json!({"title": "$.detection.name", "severity": {"value": "low"}, "source_ref": "$.detection.id"});
    let (status, saved) = put(&stack, "acme-edr", v1).await;
    assert_eq!(
        (status, saved["version"].clone()),
        (200, json!(1)),
        "{saved:#}"
    );
    let v2 = json!({
        "title": "$.detection.name",
        "severity": {"path": "$.risk", "map": {"1": "low", "2": "medium", "3": "high", "4": "critical"}, "default": "medium"},
        "source_ref": "$.detection.id",
        "occurred_at": "$.at",
        "observables": [{"type": "host", "path": "$.host.name"}, {"type": "ip", "path": "$.host.ip"},
                        {"type": "user", "path": "$.users"}],
        "tags": ["$.kind", {"value": "custom"}]
    });
    let (status, saved) = put(&stack, "acme-edr", v2).await;
    assert_eq!(
        (status, saved["version"].clone()),
        (200, json!(2)),
        "{saved:#}"
    );

    let (status, answer) = webhook(&stack, "acme-edr", &event.to_string()).await;
    assert_eq!(status, 202, "{answer:#}");
    assert_eq!(answer["mapping"], "acme-edr@v2");
    let id = answer["alert_ids"][0].as_str().unwrap().to_owned();
    let alert = stack.wait_for(&format!("/v1/alerts/{id}"), |_| true).await;
    assert_eq!(alert["title"], "Credential dumping");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["source"], "acme-edr");
    assert_eq!(alert["source_ref"], "d-42");
    assert_eq!(alert["mapping"], "acme-edr@v2");
    assert!(
        alert["occurred_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-30T10:00:00")
    );
    assert_eq!(alert["tags"], json!(["edr", "custom"]));
    let observables: Vec<(String, String)> = alert["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_owned(),
                o["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("host", "ws-7"),
        ("ip", "10.1.2.3"),
        ("user", "alice"),
        ("user", "bob"),
    ] {
        assert!(
            observables.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {observables:?}"
        );
    }
    assert_eq!(alert["raw"]["detection"]["id"], "d-42");

    // An event the mapping cannot map: 400 with the line.
    let (status, answer) = webhook(
        &stack,
        "acme-edr",
        &format!("{event}\n{{\"risk\": \"1\"}}\n"),
    )
    .await;
    assert_eq!(
        (status, answer["line"].clone()),
        (400, json!(2)),
        "{answer:#}"
    );

    // The same mapping serves the NATS intake.
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let from_nats = json!({"detection": {"name": "Via NATS", "id": "d-43"}, "risk": "1"});
    js.publish(
        subjects::ingest_subject(TENANT, "acme-edr"),
        from_nats.to_string().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let alerts = stack
        .wait_for("/v1/alerts?limit=10", |v| {
            v["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["title"] == "Via NATS"))
        })
        .await;
    let via = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["title"] == "Via NATS")
        .unwrap();
    assert_eq!(via["severity"], "low");

    // History and the audit log.
    let history = stack.api("/v1/mappings/acme-edr").await.unwrap();
    assert_eq!(history["current"]["version"], 2);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    let audit = stack.api("/v1/audit").await.unwrap();
    assert!(audit.to_string().contains("mapping:acme-edr"));
    stack.stop().await.unwrap();
}
