//! A smoke run of every benchmark scenario through `tocsin bench --json`: the harness starts
//! its stack, drives load, and reports sane numbers. It checks the harness, not speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("bench")
        .args(args)
        .args(["--duration", "1", "--json", "--runners", "1"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("TOCSIN_TELEMETRY__FILTER", "warn")
        .env_remove("TOCSIN_NATS_URL")
        .env_remove("TOCSIN_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tocsin bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_scenario_runs_and_reports_percentiles() {
    let ingest = bench(&["ingest", "--concurrency", "4", "--batch", "10"]);
    assert_eq!(ingest["scenario"], "ingest");
    assert!(ingest["count"].as_u64().unwrap() >= 10);
    assert!(ingest["throughput_per_s"].as_f64().unwrap() > 0.0);

    let e2e = bench(&["e2e", "--rate", "20", "--concurrency", "4"]);
    assert!(e2e["count"].as_u64().unwrap() >= 5, "{e2e}");
    assert_eq!(e2e["extra"]["failed_runs"], 0.0);
    let (p50, p99) = (
        e2e["p50_ms"].as_f64().unwrap(),
        e2e["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{e2e}");

    let enrichment = bench(&["enrichment", "--rate", "5"]);
    assert_eq!(enrichment["extra"]["failed_runs"], 0.0, "{enrichment}");
    // Five 100 ms lookups run concurrently: a run takes at least 100 ms, not 500 ms.
    assert!(
        enrichment["p50_ms"].as_f64().unwrap() >= 100.0,
        "{enrichment}"
    );

    let backlog = bench(&["backlog", "--backlog", "200"]);
    assert_eq!(backlog["count"], 200, "{backlog}");
    assert!(
        backlog["extra"]["ratio_to_shallow"].as_f64().unwrap() > 0.0,
        "{backlog}"
    );
    assert!(
        backlog["extra"]["shallow_throughput_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    let steps = bench(&["steps"]);
    assert!(steps["count"].as_u64().unwrap() >= 1, "{steps}");
    assert!(steps["extra"]["per_action_overhead_ms"].as_f64().is_some());
}
