//! Pins ingest's Splunk HTTP Event Collector compatibility against the real services: the
//! wire format of Splunk's documentation (concatenated events, `Authorization: Splunk`),
//! the answers and codes HEC clients branch on, a Suricata event normalized as its webhook
//! would, and curl sending the documented example unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_tests::TestStack;

/// The first `event_type: alert` record of the Suricata sample and its golden alert.
fn suricata_sample() -> (String, Value) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/tests");
    let name = "eve_apt-download-pcap_mixed-event-types.ndjson";
    let eve = std::fs::read_to_string(root.join("fixtures/suricata-eve").join(name)).unwrap();
    let line = eve
        .lines()
        .find(|l| l.contains("\"event_type\":\"alert\""))
        .unwrap()
        .to_owned();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(format!("golden/suricata-eve/{name}.json"))).unwrap(),
    )
    .unwrap();
    (line, golden["alerts"][0].clone())
}

async fn post_hec(
    stack: &TestStack,
    path: &str,
    authorization: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Option<String>, Value) {
    let mut request = stack
        .http
        .post(format!("{}{path}", stack.ingest_url))
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, retry_after, body)
}

/// The alerts of `source` once there are `count` of them, oldest first.
async fn alerts_of(stack: &TestStack, source: &str, count: usize) -> Vec<Value> {
    let page = stack
        .wait_for(&format!("/v1/alerts?source={source}"), |page| {
            page["alerts"].as_array().is_some_and(|a| a.len() >= count)
        })
        .await;
    let mut alerts = Vec::new();
    for summary in page["alerts"].as_array().unwrap().iter().rev() {
        let id = summary["id"].as_str().unwrap();
        alerts.push(stack.api(&format!("/v1/alerts/{id}")).await.unwrap());
    }
    assert_eq!(alerts.len(), count, "{alerts:#?}");
    alerts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concatenated_hec_events_become_alerts_and_builtin_sourcetypes_are_normalized() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let splunk = format!("Splunk {}", stack.ingest_key);

    // Splunk's batched example: events back to back, then one with metadata.
    let body = r#"{"event": "Pony 1 has left the barn"}{"event": "Pony 2 has left the barn"}
{"event": "Pony 3 has left the barn", "nested": {"key1": "value1"}}"#;
    let answer = post_hec(&stack, "/services/collector/event", Some(&splunk), body).await;
    assert_eq!(answer, (200, None, json!({"text": "Success", "code": 0})));
    let ponies = alerts_of(&stack, "splunk-hec.unknown", 3).await;
    let titles: Vec<&str> = ponies
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles.iter().filter(|t| t.starts_with("Pony ")).count(),
        3,
        "{titles:?}"
    );
    assert!(ponies.iter().all(|a| a["severity"] == "medium"));

    let structured = r#"{"time": 1437522387, "host": "dataserver992.example.com",
        "source": "testapp", "sourcetype": "_json", "fields": {"region": "us-west-1"},
        "event": {"message": "Something happened", "severity": "INFO"}}"#;
    let answer = post_hec(
        &stack,
        "/services/collector",
        Some(&format!("Bearer {}", stack.ingest_key)),
        structured,
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let alert = &alerts_of(&stack, "splunk-hec._json", 1).await[0];
    assert_eq!(alert["title"], "Something happened");
    assert_eq!(alert["severity"], "info");
    assert_eq!(alert["occurred_at"], "2015-07-21T23:46:27Z");
    assert_eq!(
        alert["observables"],
        json!([{"type": "host", "value": "dataserver992.example.com"}])
    );
    assert_eq!(alert["raw"]["fields"]["region"], "us-west-1");
    assert_eq!(alert["raw"]["event"]["message"], "Something happened");

    // A retried request is the same alert, recorded as a duplicate.
    let answer = post_hec(
        &stack,
        "/services/collector/event/1.0",
        Some(&splunk),
        structured,
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let id = alert["id"].as_str().unwrap();
    stack
        .wait_for(&format!("/v1/alerts/{id}"), |a| a["duplicate_count"] == 1)
        .await;

    // Sourcetype `suricata`: the EVE event is normalized as /v1/webhooks/suricata-eve does.
    let (eve, golden) = suricata_sample();
    let body = format!(
        r#"{{"time": "1485789156.066", "host": "ids-1", "sourcetype": "suricata", "event": {eve}}}"#
    );
    let answer = post_hec(&stack, "/services/collector/event", Some(&splunk), body).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let alert = &alerts_of(&stack, "suricata-eve", 1).await[0];
    for field in [
        "source",
        "source_ref",
        "title",
        "description",
        "severity",
        "observables",
        "tags",
    ] {
        assert_eq!(alert[field], golden[field], "{field}");
    }
    let occurred = |v: &Value| OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(
        occurred(&alert["occurred_at"]),
        occurred(&golden["occurred_at"])
    );
    assert_eq!(alert["raw"]["alert"], golden["raw"]["alert"]);
    assert_eq!(alert["raw"]["_hec"]["host"], "ids-1");
    let response = stack
        .http
        .post(format!("{}/v1/webhooks/suricata-eve", stack.ingest_url))
        .bearer_auth(&stack.ingest_key)
        .body(eve)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let webhook: Value = response.json().await.unwrap();
    assert_eq!(
        webhook["alert_ids"],
        json!([alert["id"]]),
        "the webhook's alert is the HEC one"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hec_errors_answer_splunk_codes() {
    let mut stack = TestStack::start(
        tocsin_tests::options!().configure(|c| c.ingest.max_body_bytes = 8 * 1024),
    )
    .await
    .unwrap();
    let splunk = format!("Splunk {}", stack.ingest_key);
    let url = "/services/collector/event";
    let ok = r#"{"event": "hello world"}"#;
    let hec = |text: &str, code: u16| json!({"text": text, "code": code});
    let at = |text: &str, code: u16, number: usize| {
        let mut answer = hec(text, code);
        answer["invalid-event-number"] = json!(number);
        answer
    };

    for (authorization, status, body) in [
        (None, 401, hec("Token is required", 2)),
        (Some("Splunk "), 401, hec("Token is required", 2)),
        (Some("Basic eDp5"), 401, hec("Invalid authorization", 3)),
        (
            Some("Splunk tsk_ingest_0000000000000000000000000000000000000000"),
            403,
            hec("Invalid token", 4),
        ),
        (
            Some(&*format!("Splunk {}", stack.api_key)),
            403,
            hec("Invalid token", 4),
        ),
    ] {
        let answer = post_hec(&stack, url, authorization, ok).await;
        assert_eq!((answer.0, answer.2), (status, body), "{authorization:?}");
    }

    for (body, status, answer) in [
        ("", 400, hec("No data", 5)),
        ("  \n", 400, hec("No data", 5)),
        (
            r#"{"event": "a"}{"event": "b"}{"event": "#,
            400,
            at("Invalid data format", 6, 2),
        ),
        (
            r#"{"event": "a"} ["b"]"#,
            400,
            at("Invalid data format", 6, 1),
        ),
        (
            r#"{"event": "a", "time": "yesterday"}"#,
            400,
            at("Invalid data format", 6, 0),
        ),
        (
            r#"{"event": "a"}{"host": "h", "fields": {}}"#,
            400,
            at("Event field is required", 12, 1),
        ),
        (
            r#"{"event": ""}"#,
            400,
            at("Event field cannot be blank", 13, 0),
        ),
        (
            r#"{"event": "a", "fields": "x"}"#,
            400,
            at("Error in handling indexed fields", 15, 0),
        ),
        (
            r#"{"sourcetype": "wazuh", "event": {"rule": {}}}"#,
            400,
            at("Invalid data format", 6, 0),
        ),
    ] {
        let got = post_hec(&stack, url, Some(&splunk), body).await;
        assert_eq!((got.0, got.2), (status, answer), "{body:?}");
    }
    let huge = format!(r#"{{"event": "{}"}}"#, "x".repeat(9 * 1024));
    assert_eq!(post_hec(&stack, url, Some(&splunk), huge).await.0, 413);
    let gzip = stack
        .http
        .post(format!("{}{url}", stack.ingest_url))
        .header("authorization", &splunk)
        .header("content-encoding", "gzip")
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.status(), 415);
    // All-or-nothing: the valid events of the refused requests were not published; once
    // an accepted request's alert is recorded, it is the only one.
    let answer = post_hec(&stack, url, Some(&splunk), ok).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let alerts = stack
        .wait_for("/v1/alerts", |page| {
            page["alerts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let titles: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["title"])
        .collect();
    assert_eq!(titles, [&json!("hello world")]);

    let health = |stack: &TestStack| {
        let request = stack
            .http
            .get(format!("{}/services/collector/health", stack.ingest_url))
            .send();
        async move {
            let response = request.await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(health(&stack).await, (200, hec("HEC is healthy", 17)));

    // NATS down: busy (retry later), and the health check says so.
    stack.nats.kill().await;
    let answer = post_hec(&stack, url, Some(&splunk), ok).await;
    assert_eq!((answer.0, &answer.2), (503, &hec("Server is busy", 9)));
    assert!(answer.1.is_some(), "503 carries Retry-After");
    assert_eq!(
        health(&stack).await,
        (503, hec("HEC is unhealthy, queues are full", 18))
    );
    stack.nats.restart().await.unwrap();
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn curl_sends_splunks_documented_example_unchanged() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    // The command of Splunk's HEC documentation, with Tocsin's address and ingest key.
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            &format!("Authorization: Splunk {}", stack.ingest_key),
            &format!("{}/services/collector/event", stack.ingest_url),
            "-d",
            r#"{"event": "hello world", "sourcetype": "manual"}"#,
        ])
        .output()
        .await
        .expect("curl runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        r#"{"text":"Success","code":0}"#
    );
    let alert = &alerts_of(&stack, "splunk-hec.manual", 1).await[0];
    assert_eq!(alert["title"], "hello world");
    assert_eq!(alert["severity"], "medium");
    assert_eq!(alert["raw"]["event"], "hello world");
    stack.stop().await.unwrap();
}
