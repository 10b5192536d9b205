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

    // Over NATS intake: published to INGEST, then turned into alerts by ingest.
    let nats = bench(&[
        "ingest",
        "--via",
        "nats",
        "--rate",
        "100",
        "--concurrency",
        "2",
        "--batch",
        "10",
    ]);
    assert!(
        nats["latency"].as_str().unwrap().contains("INGEST"),
        "{nats}"
    );
    assert!(nats["count"].as_u64().unwrap() >= 10, "{nats}");
    assert_eq!(
        nats["extra"]["recorded"].as_f64().unwrap(),
        nats["count"].as_f64().unwrap(),
        "{nats}"
    );

    let e2e = bench(&["e2e", "--rate", "20", "--concurrency", "4"]);
    assert!(e2e["count"].as_u64().unwrap() >= 5, "{e2e}");
    let e2e_nats = bench(&["e2e", "--via", "nats", "--rate", "20", "--concurrency", "2"]);
    assert!(e2e_nats["count"].as_u64().unwrap() >= 5, "{e2e_nats}");
    assert_eq!(e2e_nats["extra"]["failed_runs"], 0.0, "{e2e_nats}");
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

    // 2,000 runs queued through the outbox after a baseline of 200: every one is published
    // before the window opens, and some finish in it.
    let backlog = bench(&["backlog", "--backlog", "2000"]);
    assert_eq!(backlog["extra"]["backlog"], 2000.0, "{backlog}");
    assert_eq!(backlog["extra"]["shallow_backlog"], 200.0, "{backlog}");
    assert!(backlog["count"].as_u64().unwrap() > 0, "{backlog}");
    assert_eq!(backlog["extra"]["failed_runs"], 0.0, "{backlog}");
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

    // Separate worker processes: one point per count, every run of each count finished.
    let scale = bench(&["scale-out", "--workers", "2,1", "--backlog", "60"]);
    assert_eq!(scale["scenario"], "scale-out");
    let points = scale["points"].as_array().unwrap();
    let counts: Vec<u64> = points
        .iter()
        .map(|p| p["workers"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2], "{scale}");
    for p in points {
        assert_eq!(p["count"], 60, "{scale}");
        assert_eq!(p["failed"], 0, "{scale}");
        assert_eq!(p["runners_per_worker"], 1, "{scale}");
        assert!(p["throughput_per_s"].as_f64().unwrap() > 0.0, "{scale}");
        let (p50, p99) = (p["p50_ms"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{scale}");
        let busy = p["cpu_busy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&busy), "{scale}");
        // The runs ran in the worker processes (the stack's own worker is off).
        assert!(p["cpu_workers"].as_f64().unwrap() > 0.0, "{scale}");
    }
    assert!((points[0]["efficiency"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    // The top level is the largest count.
    assert_eq!(scale["count"], 60);
    assert_eq!(scale["throughput_per_s"], points[1]["throughput_per_s"]);
    assert_eq!(scale["extra"]["workers"], 2.0);
}
