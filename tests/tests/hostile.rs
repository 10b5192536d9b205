//! Hostile input at the ingest door (issue 6): oversized bodies, deep nesting, huge numbers,
//! duplicate keys, invalid UTF-8, million-element arrays, slow clients and floods each get
//! their status — 413, 400, 408, 429 with `Retry-After` — without a panic, and the service
//! keeps accepting well-formed alerts, for every tenant, throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_store::keys::KeyKind;
use tocsin_tests::TestStack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(stack: &TestStack, key: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}/v1/alerts", stack.ingest_url))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body: Value = response.json().await.unwrap_or(Value::Null);
    if let Some(r) = retry_after {
        body["retry-after"] = json!(r);
    }
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_bodies_get_their_status_and_ingest_keeps_serving() {
    let stack = TestStack::start(tocsin_tests::options!().configure(|c| {
        c.ingest.max_body_bytes = 1024 * 1024;
        c.ingest.body_timeout = Duration::from_secs(1);
        c.ingest.rate_limit_per_sec = 1000.0;
        c.ingest.rate_limit_burst = 1000.0;
        c.ingest.tenant_rate_limits = HashMap::from([("flood".to_owned(), 5.0)]);
    }))
    .await
    .unwrap();
    let key = stack.ingest_key.clone();
    let ok = |title: &str| json!({"title": title, "severity": "low"}).to_string();

    // 3 MB: refused on its declared length, and when streamed without one.
    let big = format!(
        "{{\"title\":\"t\",\"severity\":\"low\",\"blob\":\"{}\"}}",
        "x".repeat(3 * 1024 * 1024)
    );
    assert_eq!(post(&stack, &key, big.clone()).await.0, 413);
    let addr = stack.ingest_url.trim_start_matches("http://").to_owned();
    let mut chunked = tokio::net::TcpStream::connect(&addr).await.unwrap();
    chunked
        .write_all(
            format!(
                "POST /v1/alerts HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for chunk in big.as_bytes().chunks(64 * 1024) {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and stop reading before the end.
        if chunked.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = chunked.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), chunked.read(&mut answer))
        .await
        .expect("no answer to a chunked body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Deep nesting and a million-element array: refused before parsing.
    let deep = format!(
        "{{\"title\":\"t\",\"severity\":\"low\",\"x\":{}}}",
        "[".repeat(100_000)
    );
    let (status, body) = post(&stack, &key, deep).await;
    assert_eq!(status, 400, "{body:#}");
    assert!(
        body["detail"].as_str().unwrap().contains("nested deeper"),
        "{body:#}"
    );
    let wide = format!(
        "{{\"title\":\"t\",\"severity\":\"low\",\"x\":[{}0]}}",
        "0,".repeat(499_999)
    );
    let (status, body) = post(&stack, &key, wide).await;
    assert_eq!(status, 400, "{body:#}");
    assert!(
        body["detail"].as_str().unwrap().contains("JSON values"),
        "{body:#}"
    );

    // Numbers beyond f64, invalid UTF-8: 400 with the line.
    let (status, body) = post(
        &stack,
        &key,
        "{\"title\":\"t\",\"severity\":\"low\",\"n\":1e400}".to_owned(),
    )
    .await;
    assert_eq!((status, body["line"].clone()), (400, json!(1)), "{body:#}");
    let mut invalid = b"{\"title\":\"caf".to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(b"\",\"severity\":\"low\"}");
    assert_eq!(post(&stack, &key, invalid).await.0, 400);
    // A big integer is only a number; duplicate keys: the last one wins, deterministically.
    let (status, body) = post(
        &stack,
        &key,
        "{\"title\":\"first\",\"title\":\"last\",\"severity\":\"low\",\"n\":123456789012345678901234567890}".to_owned(),
    )
    .await;
    assert_eq!(status, 202, "{body:#}");
    let id = body["alert_ids"][0].as_str().unwrap().to_owned();
    let alert = stack.wait_for(&format!("/v1/alerts/{id}"), |_| true).await;
    assert_eq!(alert["title"], "last");

    // A slow client: headers, one byte of a 100-byte body, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/alerts HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("no answer to a slow client")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A flood from one tenant: 429 with Retry-After for it, the others unaffected.
    stack.store.ensure_tenant("flood", "Flood").await.unwrap();
    let flood_key = stack
        .store
        .create_key("flood", KeyKind::Ingest, "flood")
        .await
        .unwrap()
        .secret;
    let batch: String = (0..5)
        .map(|i| format!("{}\n", ok(&format!("f{i}"))))
        .collect();
    assert_eq!(post(&stack, &flood_key, batch).await.0, 202);
    let (status, body) = post(&stack, &flood_key, ok("f6")).await;
    assert_eq!(status, 429, "{body:#}");
    let retry: u64 = body["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{body:#}");
    for i in 0..20 {
        assert_eq!(post(&stack, &key, ok(&format!("calm {i}"))).await.0, 202);
    }

    // Still healthy, still accepting.
    let health = stack
        .http
        .get(format!("{}/healthz", stack.ingest_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(post(&stack, &key, ok("after")).await.0, 202);
    stack.stop().await.unwrap();
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Memory stays steady under hostile bodies: after a first round of large, deep and wide
/// bodies, a second round of the same does not grow the ingest process further.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_memory_stays_steady_under_hostile_bodies() {
    let stack = tocsin_tests::procs::ProcStack::start(tocsin_tests::proc_options!().workers(0))
        .await
        .unwrap();
    let pid = stack.service_pid("ingest").unwrap();
    let bodies = [
        // Read whole (3 MB, under the 4 MiB limit), then refused by the shape check.
        format!("[{}0]", "0,".repeat(1_500_000)),
        format!(
            "{{\"title\":\"t\",\"severity\":\"low\",\"x\":{}}}",
            "[".repeat(1_000_000)
        ),
        // Read whole and parsed: a 3 MB string in a valid alert with a bad severity.
        format!(
            "{{\"title\":\"t\",\"severity\":\"urgent\",\"blob\":\"{}\"}}",
            "x".repeat(3_000_000)
        ),
    ];
    let round = || async {
        for _ in 0..8 {
            for body in &bodies {
                let status = stack
                    .http
                    .post(format!("{}/v1/alerts", stack.ingest_url))
                    .bearer_auth(&stack.ingest_key)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                assert_eq!(status, 400);
            }
        }
    };
    round().await;
    let after_first = rss_kib(pid);
    round().await;
    round().await;
    let after_third = rss_kib(pid);
    eprintln!("ingest RSS: {after_first} KiB after one round, {after_third} KiB after three");
    assert!(
        after_third < after_first + 32 * 1024,
        "ingest grew from {after_first} KiB to {after_third} KiB over two more rounds"
    );
    stack.stop().await;
}
