//! Metrics (issue 7): every service serves `GET /metrics` on its observability listener
//! (`telemetry.listen`, never on the public ports), in a text format `promtool check metrics`
//! accepts, with the pipeline's counters moving as an alert flows through a playbook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tocsin_tests::procs::ProcStack;

const PLAYBOOK: &str = r#"
from tocsin import playbook, action

@action()
async def look(x: str) -> dict:
    return {"x": x}

@action()
async def broken(x: str) -> dict:
    raise RuntimeError("no")

@playbook(when={"source": "edr"})
async def triage(alert, run):
    await look(alert.title)
    try:
        await broken(alert.title)
    except Exception:
        pass
    return {"ok": True}
"#;

fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (deploy/bootstrap.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool refused the exposition:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_exposes_valid_metrics_that_follow_the_pipeline() {
    let ports: Vec<u16> = (0..4)
        .map(|_| tocsin_devstack::free_port().unwrap())
        .collect();
    let services = ["ingest", "api", "scheduler", "worker-0"];
    let mut options = tocsin_tests::proc_options!().playbook("triage.py", PLAYBOOK);
    for (service, port) in services.iter().zip(&ports) {
        options = options.service_env(
            service,
            "TOCSIN_TELEMETRY__LISTEN",
            &format!("127.0.0.1:{port}"),
        );
    }
    let stack = ProcStack::start(options).await.unwrap();

    let ids = stack
        .post_alert(&json!({"title": "beacon", "severity": "high", "source": "edr"}))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let alert = stack.api(&format!("/v1/alerts/{}", ids[0])).await;
        if alert.is_some_and(|a| a["runs"][0]["status"] == "succeeded") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            stack.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The public ports do not serve metrics (they would name tenants).
    for base in [&stack.ingest_url, &stack.api_url] {
        let status = stack
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, 200, "{base}/metrics");
    }

    let scrape = |port: u16| {
        let http = stack.http.clone();
        async move {
            let response = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain; version=0.0.4")
            );
            response.text().await.unwrap()
        }
    };
    let expected: [(&str, &[&str]); 4] = [
        (
            "ingest",
            &[
                "tocsin_ingest_alerts_total{tenant=\"default\",source=\"edr\",outcome=\"accepted\"} 1",
                "tocsin_ingest_requests_total{route=\"/v1/alerts\",code=\"202\"} 1",
                "tocsin_ingest_request_duration_seconds_bucket{route=\"/v1/alerts\",le=\"+Inf\"} 1",
                "tocsin_pg_pool_connections{service=\"ingest\",state=\"idle\"}",
            ],
        ),
        ("api", &["tocsin_pg_pool_connections{service=\"api\""]),
        (
            "scheduler",
            &[
                "tocsin_scheduler_alerts_total{tenant=\"default\",outcome=\"new_case\"} 1",
                "tocsin_runs_queued_total{tenant=\"default\"} 1",
                "tocsin_stream_messages{stream=\"ALERTS\"}",
                "tocsin_stream_messages{stream=\"RUNS\"}",
            ],
        ),
        (
            "worker-0",
            &[
                "tocsin_runs_finished_total{tenant=\"default\",playbook=\"triage\",status=\"succeeded\"} 1",
                "tocsin_action_duration_seconds_count 2",
                "tocsin_action_errors_total 1",
                "tocsin_runners{state=\"ready\"} 2",
                "tocsin_run_wait_seconds_count{tenant=\"default\"} 1",
                "tocsin_run_execution_seconds_count{playbook=\"triage\"} 1",
            ],
        ),
    ];
    for ((service, lines), port) in expected.iter().zip(&ports) {
        let text = scrape(*port).await;
        for line in *lines {
            assert!(
                text.contains(line),
                "{service}: {line:?} missing from\n{text}"
            );
        }
        assert!(!text.contains(&ids[0]), "{service}: an alert id in a label");
        promtool_check(&text);
    }
    stack.stop().await;
}
