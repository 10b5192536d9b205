//! Distributed tracing (issue 7): a webhook that arrives with a caller's `traceparent` is
//! followed by one trace through ingest → scheduler → worker → the journaled action → the
//! HTTP call the action makes, which carries `traceparent` to the (fake) external API. The
//! services run as separate processes exporting OTLP/HTTP to a receiver in this test, and
//! the trace id is returned by the API on the alert, the run and each step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use tocsin_tests::procs::ProcStack;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Exported>>>);

async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> &'static str {
    assert_eq!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        "application/x-protobuf"
    );
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut spans = rx.0.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    kind: span.kind,
                });
            }
        }
    }
    "{}"
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Option<String>>>>);

async fn lookup(State(calls): State<Calls>, headers: HeaderMap) -> axum::Json<Value> {
    calls.0.lock().unwrap().push(
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    axum::Json(json!({"verdict": "malicious"}))
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn playbook(fake: &str) -> String {
    format!(
        r#"
from tocsin import playbook, action, http

@action(idempotent=True)
async def reputation(ip: str) -> dict:
    response = await http.post("{fake}/lookup", json={{"ip": ip}})
    response.raise_for_status()
    return response.json()

@playbook(when={{"source": "edr"}})
async def enrich(alert, run):
    return await reputation("203.0.113.7")
"#
    )
}

/// The caller's trace (as a SIEM that traces its own sends would pass it).
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_spans_ingest_scheduler_worker_action_and_http_call() {
    let receiver = Receiver::default();
    let otlp = serve(
        axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(receiver.clone()),
    )
    .await;
    let calls = Calls::default();
    let fake = serve(
        axum::Router::new()
            .route("/lookup", post(lookup))
            .with_state(calls.clone()),
    )
    .await;
    let stack = ProcStack::start(
        tocsin_tests::proc_options!()
            .playbook("enrich.py", playbook(&fake))
            .env("TOCSIN_TELEMETRY__TRACES__ENDPOINT", &otlp)
            .env("TOCSIN_TELEMETRY__TRACES__EXPORT_INTERVAL", "100ms"),
    )
    .await
    .unwrap();

    let response = stack
        .http
        .post(format!("{}/v1/alerts", stack.ingest_url))
        .bearer_auth(&stack.ingest_key)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"title": "beacon", "severity": "high", "source": "edr"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    let alert_id = answer["alert_ids"][0].as_str().unwrap().to_owned();

    // The run completes; the API shows the caller's trace on the alert, run and step.
    let start = Instant::now();
    let alert = loop {
        if let Some(alert) = stack.api(&format!("/v1/alerts/{alert_id}")).await
            && alert["runs"][0]["status"] == "succeeded"
        {
            break alert;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            stack.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        alert["trace_id"],
        CALLER_TRACE,
        "alert: {alert}\n{}",
        stack.all_logs()
    );
    let run_id = alert["runs"][0]["id"].as_str().unwrap();
    let run = stack.api(&format!("/v1/runs/{run_id}")).await.unwrap();
    assert_eq!(run["trace_id"], CALLER_TRACE, "run: {run}");
    let step = &run["steps"][0];
    assert_eq!(step["action"], "reputation");
    assert_eq!(step["trace_id"], CALLER_TRACE, "step: {step}");
    let step_span = step["span_id"].as_str().unwrap().to_owned();
    assert_eq!(step_span.len(), 16);

    // The external API got the trace, with the action's span as the parent.
    let seen = calls.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let header = seen[0].clone().expect("the call carried traceparent");
    assert_eq!(header, format!("00-{CALLER_TRACE}-{step_span}-01"));

    // Every service exported its part of the one trace, each span under the previous one.
    let wanted = [
        ("tocsin-ingest", "POST /v1/alerts"),
        ("tocsin-scheduler", "scheduler: match alert"),
        ("tocsin-worker", "run enrich"),
        ("tocsin-worker", "action reputation"),
    ];
    let start = Instant::now();
    let spans: HashMap<&str, Exported> = loop {
        let exported = receiver.0.lock().unwrap().clone();
        let found: HashMap<&str, Exported> = wanted
            .iter()
            .filter_map(|(service, name)| {
                exported
                    .iter()
                    .find(|s| s.service == *service && s.name == *name)
                    .map(|s| (*name, s.clone()))
            })
            .collect();
        if found.len() == wanted.len() {
            break found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spans missing; got {exported:#?}\n{}",
            stack.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for span in spans.values() {
        assert_eq!(span.trace_id, CALLER_TRACE, "{span:?}");
    }
    let ingest = &spans["POST /v1/alerts"];
    let scheduler = &spans["scheduler: match alert"];
    let run_span = &spans["run enrich"];
    let action = &spans["action reputation"];
    assert_eq!(ingest.parent, CALLER_SPAN, "ingest continues the caller");
    assert_eq!(ingest.kind, 2, "server span");
    assert_eq!(scheduler.parent, ingest.span_id);
    assert_eq!(run_span.parent, scheduler.span_id);
    assert_eq!(action.parent, run_span.span_id);
    assert_eq!(
        action.span_id, step_span,
        "the step's span id is the action span"
    );

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_caller_trace_each_alert_starts_its_own() {
    let calls = Calls::default();
    let fake = serve(
        axum::Router::new()
            .route("/lookup", post(lookup))
            .with_state(calls.clone()),
    )
    .await;
    // No exporter: trace context is still created, stored and propagated.
    let stack =
        ProcStack::start(tocsin_tests::proc_options!().playbook("enrich.py", playbook(&fake)))
            .await
            .unwrap();
    let mut traces = Vec::new();
    for title in ["one", "two"] {
        let ids = stack
            .post_alert(&json!({"title": title, "severity": "low", "source": "edr"}))
            .await
            .unwrap();
        let start = Instant::now();
        let alert = loop {
            if let Some(alert) = stack.api(&format!("/v1/alerts/{}", ids[0])).await
                && alert["runs"][0]["status"] == "succeeded"
            {
                break alert;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{}",
                stack.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let trace = alert["trace_id"].as_str().unwrap().to_owned();
        assert_eq!(trace.len(), 32);
        let run_id = alert["runs"][0]["id"].as_str().unwrap();
        let run = stack.api(&format!("/v1/runs/{run_id}")).await.unwrap();
        assert_eq!(run["trace_id"], trace.as_str());
        assert_eq!(run["steps"][0]["trace_id"], trace.as_str());
        traces.push(trace);
    }
    assert_ne!(traces[0], traces[1]);
    let seen = calls.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (header, trace) in seen.iter().zip(&traces) {
        let header = header.as_deref().unwrap();
        assert_eq!(
            tocsin_core::trace::trace_id_of(header),
            Some(trace.as_str())
        );
    }
    stack.stop().await;
}
