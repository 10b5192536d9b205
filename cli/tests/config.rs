//! Pins the configuration surface of every service command: `--print-config` shows the
//! effective configuration with secrets (and URL passwords) redacted; unknown keys and bad
//! values are all reported at once with exit status 64.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn tocsin(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    command.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TOCSIN_") {
            command.env_remove(k);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

const KEY: &str = "c2VjcmV0LW1hc3Rlci1rZXktMzItYnl0ZXMtbG9uZyE=";

#[test]
fn print_config_redacts_secrets_and_bad_config_exits_64_listing_every_problem() {
    for service in ["ingest", "scheduler", "worker", "api"] {
        let output = tocsin(
            &[service, "--print-config"],
            &[
                (
                    "TOCSIN_DATABASE_URL",
                    "postgres://tocsin:pg-s3cret@db:5432/tocsin",
                ),
                ("TOCSIN_NATS_URL", "nats://svc:nats-s3cret@nats:4222"),
                ("TOCSIN_SECRETS__MASTER_KEY", KEY),
            ],
        );
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{service}: {out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let config: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(config.is_object(), "{out}");
        for secret in ["pg-s3cret", "nats-s3cret", KEY] {
            assert!(
                !out.contains(secret),
                "{service} --print-config shows a secret: {out}"
            );
        }
        assert!(out.contains("<redacted>"), "{out}");
    }
    // The NATS URL keeps its host, only the credentials are hidden.
    let ingest = tocsin(
        &["ingest", "--print-config"],
        &[("TOCSIN_NATS_URL", "nats://svc:nats-s3cret@nats:4222")],
    );
    let config: serde_json::Value = serde_json::from_slice(&ingest.stdout).unwrap();
    assert_eq!(config["nats"]["url"], "nats://<redacted>@nats:4222");

    let bad = tocsin(
        &["ingest", "--check-config"],
        &[
            ("TOCSIN_INGEST__NO_SUCH_KEY", "1"),
            ("TOCSIN_INGEST__MAX_BATCH", "0"),
        ],
    );
    assert_eq!(bad.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("no_such_key"), "{stderr}");
    let invalid = tocsin(
        &["ingest", "--check-config"],
        &[
            ("TOCSIN_INGEST__MAX_BATCH", "0"),
            ("TOCSIN_INGEST__MAX_DEPTH", "1"),
        ],
    );
    assert_eq!(invalid.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr.contains("max_batch") && stderr.contains("max_depth"),
        "both problems at once: {stderr}"
    );
}
