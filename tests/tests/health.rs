//! Health of every service (issue 7): ingest and the API serve `/healthz` and `/readyz` on
//! their own listener; the scheduler and the worker on `telemetry.listen`. Readiness names each
//! dependency (NATS, PostgreSQL, and the worker's runner pool) and turns 503 while one is
//! down, and back once it returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tocsin_tests::procs::ProcStack;

async fn probe(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn until(http: &reqwest::Client, url: &str, want: u16) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = probe(http, url).await;
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_reports_alive_and_ready_and_readiness_follows_nats() {
    let scheduler_port = tocsin_devstack::free_port().unwrap();
    let worker_port = tocsin_devstack::free_port().unwrap();
    let stack = ProcStack::start(
        tocsin_tests::proc_options!()
            .service_env(
                "scheduler",
                "TOCSIN_TELEMETRY__LISTEN",
                &format!("127.0.0.1:{scheduler_port}"),
            )
            .service_env(
                "worker-0",
                "TOCSIN_TELEMETRY__LISTEN",
                &format!("127.0.0.1:{worker_port}"),
            ),
    )
    .await
    .unwrap();
    let http = stack.http.clone();
    let scheduler = format!("http://127.0.0.1:{scheduler_port}");
    let worker = format!("http://127.0.0.1:{worker_port}");
    for base in [&stack.ingest_url, &stack.api_url, &scheduler, &worker] {
        until(&http, &format!("{base}/healthz"), 200).await;
    }
    assert_eq!(
        until(&http, &format!("{worker}/readyz"), 200).await,
        json!({"nats": true, "postgres": true, "runners": true})
    );
    assert_eq!(
        until(&http, &format!("{scheduler}/readyz"), 200).await,
        json!({"nats": true, "postgres": true})
    );

    stack.nats.lock().await.kill().await;
    for base in [&scheduler, &worker] {
        let body = until(&http, &format!("{base}/readyz"), 503).await;
        assert_eq!(body["nats"], false, "{body}");
        assert_eq!(body["postgres"], true, "{body}");
        // Alive all the same: an orchestrator must not restart it for NATS being away.
        assert_eq!(probe(&http, &format!("{base}/healthz")).await.0, 200);
    }
    stack.nats.lock().await.restart().await.unwrap();
    for base in [&scheduler, &worker] {
        until(&http, &format!("{base}/readyz"), 200).await;
    }
    stack.stop().await;
}
