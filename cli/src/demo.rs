//! `tocsin demo`: starts the dev stack, posts the demo alerts over HTTP, waits for their
//! playbooks, prints alerts → cases → runs, and stops.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tocsin_core::Shutdown;

use crate::dev::{Dev, DevOptions};
use crate::stack::StackConfig;

/// Runs the demo; `Ok` once every run reached a final state.
pub async fn demo(
    config: StackConfig,
    options: &DevOptions,
    alerts_file: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let body = std::fs::read(alerts_file)
        .with_context(|| format!("failed to read {}", alerts_file.display()))?;
    let shutdown = Shutdown::new();
    let dev = Dev::start(config, options, &shutdown).await?;
    let result = drive(&dev, body, timeout).await;
    let stopped = dev.stop().await;
    result?;
    stopped
}

async fn drive(dev: &Dev, body: Vec<u8>, timeout: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let posted: Value = http
        .post(format!("{}/v1/alerts", dev.env.ingest_url))
        .bearer_auth(&dev.env.ingest_key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .context("failed to post the demo alerts")?
        .error_for_status()
        .context("ingest refused the demo alerts")?
        .json()
        .await?;
    let ids: Vec<String> = posted["alert_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    println!("posted {} alerts to {}", ids.len(), dev.env.ingest_url);
    let unique: BTreeSet<&String> = ids.iter().collect();

    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", dev.env.api_url);
        let key = dev.env.api_key.clone();
        async move {
            let response = http.get(url).bearer_auth(key).send().await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok::<Option<Value>, anyhow::Error>(None);
            }
            Ok(Some(response.error_for_status()?.json::<Value>().await?))
        }
    };

    let start = Instant::now();
    let rows = loop {
        let mut rows = Vec::new();
        let mut settled = true;
        for id in &unique {
            let Some(alert) = get(format!("/v1/alerts/{id}")).await? else {
                settled = false;
                break;
            };
            let runs = alert["runs"].as_array().cloned().unwrap_or_default();
            if runs
                .iter()
                .any(|r| matches!(r["status"].as_str(), Some("queued" | "running")))
            {
                settled = false;
            }
            rows.push(alert);
        }
        if settled {
            break rows;
        }
        if start.elapsed() > timeout {
            bail!("runs did not finish within {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!();
    println!(
        "{:<38} {:<14} {:<9} {:<4} {:<38} {:<20} {:<10}",
        "ALERT", "SOURCE", "SEVERITY", "DUPS", "CASE", "PLAYBOOK", "RUN"
    );
    let mut failed = 0;
    for alert in &rows {
        let runs = alert["runs"].as_array().cloned().unwrap_or_default();
        let base = format!(
            "{:<38} {:<14} {:<9} {:<4} {:<38}",
            alert["id"].as_str().unwrap_or("?"),
            alert["source"].as_str().unwrap_or("?"),
            alert["severity"].as_str().unwrap_or("?"),
            alert["duplicate_count"].as_i64().unwrap_or(0),
            alert["case_id"].as_str().unwrap_or("-"),
        );
        if runs.is_empty() {
            println!("{base} {:<20} {:<10}", "(no match)", "-");
        }
        for run in runs {
            let status = run["status"].as_str().unwrap_or("?");
            if status == "failed" {
                failed += 1;
            }
            println!(
                "{base} {:<20} {:<10}",
                run["playbook"].as_str().unwrap_or("?"),
                status
            );
        }
    }
    println!();
    for alert in &rows {
        for run in alert["runs"].as_array().into_iter().flatten() {
            if let Some(id) = run["id"].as_str()
                && let Some(detail) = get(format!("/v1/runs/{id}")).await?
            {
                let result = detail["result"].to_string();
                let error = detail["error"].as_str().unwrap_or("");
                let outcome = if error.is_empty() {
                    result
                } else {
                    format!("error: {error}")
                };
                let outcome = if outcome.chars().count() > 160 {
                    let short: String = outcome.chars().take(157).collect();
                    format!("{short}...")
                } else {
                    outcome
                };
                let steps = detail["steps"].as_array().map_or(0, Vec::len);
                println!(
                    "run {id} {}: {outcome} ({steps} steps)",
                    detail["playbook"].as_str().unwrap_or("?"),
                );
            }
        }
    }
    if failed > 0 {
        bail!("{failed} demo runs failed");
    }
    Ok(())
}
