//! Pins `tocsin dev` as a process: it comes up with private NATS and PostgreSQL and writes
//! dev.env, serves alerts end to end, stops cleanly on SIGTERM with its child processes,
//! resumes on the same data dir with its state and keys, and recovers from being killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills `tocsin dev` if the test fails half-way, so no server outlives the test.
struct DevProcess(Child);

impl Drop for DevProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start_dev(data_dir: &Path, ports: (u16, u16)) -> DevProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("dev")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--playbooks")
        .arg(repo().join("playbooks"))
        .args(["--ingest-addr", &format!("127.0.0.1:{}", ports.0)])
        .args(["--api-addr", &format!("127.0.0.1:{}", ports.1)])
        .env_remove("TOCSIN_NATS_URL")
        .env_remove("TOCSIN_DATABASE_URL")
        .env("TOCSIN_TELEMETRY__FILTER", "warn")
        .env("TOCSIN_WORKER__RUNNERS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    DevProcess(child)
}

/// Waits for a dev.env written by this start (a crashed run leaves a stale one behind,
/// which `tocsin dev` removes as it starts).
fn wait_env(data_dir: &Path, DevProcess(child): &mut DevProcess) -> HashMap<String, String> {
    let file = data_dir.join("dev.env");
    let start = Instant::now();
    let spawned = std::time::SystemTime::now() - Duration::from_millis(10);
    loop {
        let fresh = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= spawned);
        if let (true, Ok(text)) = (fresh, std::fs::read_to_string(&file)) {
            return text
                .lines()
                .filter_map(|l| l.strip_prefix("export "))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                .collect();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "tocsin dev exited early; see {}",
            data_dir.with_extension("log").display()
        );
        assert!(start.elapsed() < WAIT, "dev.env never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pids of processes (other than tocsin itself) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains(needle) && !c.starts_with(env!("CARGO_BIN_EXE_tocsin"))
                })
                .unwrap_or(false)
        })
        .collect()
}

fn signal(DevProcess(child): &DevProcess, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_exit(DevProcess(child): &mut DevProcess) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < WAIT, "tocsin dev did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(needle: &str) {
    let start = Instant::now();
    while !processes_mentioning(needle).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child processes outlived tocsin dev: {:?}",
            processes_mentioning(needle)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn settled_alert(env: &HashMap<String, String>, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let response = http()
            .get(format!("{}/v1/alerts/{id}", env["TOCSIN_API_URL"]))
            .bearer_auth(&env["TOCSIN_API_KEY"])
            .send()
            .unwrap();
        if response.status() == 200 {
            let alert: Value = response.json().unwrap();
            let done = alert["runs"].as_array().is_some_and(|runs| {
                !runs.is_empty()
                    && runs
                        .iter()
                        .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")))
            });
            if done {
                return alert;
            }
        }
        assert!(start.elapsed() < WAIT, "alert {id} never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a client verb against the dev stack; returns its standard output.
fn tocsin(env: &HashMap<String, String>, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .env("TOCSIN_API_URL", &env["TOCSIN_API_URL"])
        .env("TOCSIN_API_KEY", &env["TOCSIN_API_KEY"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "tocsin {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The grouping and case verbs, end to end through the API.
fn client_verbs_work(env: &HashMap<String, String>, case_id: &str) {
    let set = tocsin(
        env,
        &[
            "grouping",
            "set",
            "--window",
            "30m",
            "--max-group-size",
            "7",
        ],
    );
    assert!(set.contains("version                 1"), "{set}");
    let show = tocsin(env, &["grouping", "show"]);
    assert!(show.contains("window                  30m"), "{show}");
    assert!(show.contains("max group size          7"), "{show}");
    assert!(tocsin(env, &["case", "list", "--status", "new"]).contains(case_id));
    let updated = tocsin(
        env,
        &[
            "case",
            "update",
            case_id,
            "--status",
            "in_progress",
            "--assignee",
            "alice",
        ],
    );
    assert!(updated.contains("in_progress"), "{updated}");
    tocsin(env, &["case", "comment", case_id, "looking"]);
    let shown = tocsin(env, &["case", "show", case_id]);
    assert!(
        shown.contains("assignee_changed") && shown.contains("looking"),
        "{shown}"
    );

    // The playbook verbs: list what is live, switch one off and on again.
    let state = |name: &str| {
        let listed = tocsin(env, &["playbook", "list"]);
        assert!(listed.starts_with("bundle "), "{listed}");
        listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
    };
    assert_eq!(state("phishing_report"), "enabled");
    let disabled = tocsin(env, &["playbook", "disable", "phishing_report"]);
    assert!(disabled.contains("disabled"), "{disabled}");
    assert_eq!(state("phishing_report"), "disabled");
    tocsin(env, &["playbook", "enable", "phishing_report"]);
    assert_eq!(state("phishing_report"), "enabled");
}

/// The admin verbs (database and master key from dev.env) work and are audited: a tenant, an
/// admin key for it (printed alone on stdout), a secret read from stdin and deleted again;
/// the new key then reads its tenant's audit log over the API.
fn admin_verbs_are_audited(env: &HashMap<String, String>) {
    let admin = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .envs(env.iter().filter(|(k, _)| k.starts_with("TOCSIN_")))
            .env("TOCSIN_TELEMETRY__FILTER", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "tocsin {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    admin(&["tenant", "create", "acme", "--name", "Acme"], None);
    let key = admin(
        &["key", "create", "--tenant", "acme", "--role", "admin"],
        None,
    );
    let key = key.trim();
    assert!(
        key.starts_with("tsk_api_") && !key.contains('\n'),
        "{key:?}"
    );
    admin(
        &["secret", "set", "vt_key", "--tenant", "acme"],
        Some("v3ry-s3cret\n"),
    );
    admin(&["secret", "delete", "vt_key", "--tenant", "acme"], None);
    let audit: Value = http()
        .get(format!("{}/v1/audit", env["TOCSIN_API_URL"]))
        .bearer_auth(key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "tocsin tenant create",
        "tocsin key create",
        "tocsin secret set",
        "tocsin secret delete",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} not audited: {audit:#}"
        );
    }
    assert!(!audit.to_string().contains("v3ry-s3cret"), "{audit:#}");
}

/// `tocsin playbook test` runs a directory's pytest suite with the SDK importable and exits
/// with pytest's status.
#[test]
fn playbook_test_runs_pytest_with_the_sdk_and_passes_its_status_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bundle")).unwrap();
    std::fs::write(
        dir.path().join("bundle/pb.py"),
        "from tocsin import playbook\n\n@playbook()\nasync def triage(alert, run):\n    return {'title': alert.title}\n",
    )
    .unwrap();
    let test = |assertion: &str| {
        std::fs::write(
            dir.path().join("test_pb.py"),
            format!(
                "import asyncio\nfrom tocsin.testing import mock_alert, run_playbook\nfrom bundle.pb import triage\n\n\
                 def test_triage():\n    result = asyncio.run(run_playbook(triage, mock_alert(title='x')))\n    assert {assertion}\n"
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["playbook", "test"])
            .arg(dir.path())
            .arg("--sdk")
            .arg(repo().join("playbooks/sdk"))
            .args(["--", "-q"])
            .output()
            .unwrap()
    };
    let passed = test("result.result == {'title': 'x'}");
    assert!(
        passed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&passed.stdout),
        String::from_utf8_lossy(&passed.stderr)
    );
    assert!(String::from_utf8_lossy(&passed.stdout).contains("1 passed"));
    let failed = test("result.result == {'title': 'y'}");
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("1 failed"));

    let missing = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["playbook", "test", "/nonexistent/dir"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn dev_serves_stops_cleanly_resumes_and_recovers_from_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    // PostgreSQL runs as the postgres user when we are root; it must reach the data dir.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = tmp.path().join("state");
    let needle = data_dir.display().to_string();
    let ports = (free_port(), free_port());

    let mut dev = start_dev(&data_dir, ports);
    let env = wait_env(&data_dir, &mut dev);
    assert_eq!(
        env["TOCSIN_INGEST_URL"],
        format!("http://127.0.0.1:{}", ports.0)
    );
    assert!(env["TOCSIN_DATABASE_URL"].starts_with("postgres://"));
    let mode = std::fs::metadata(data_dir.join("dev.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "dev.env holds keys and must be private");
    assert!(
        !processes_mentioning(&needle).is_empty(),
        "private servers should run"
    );

    let alert = json!({"title": "Shellshock attempt", "severity": "high", "source": "wazuh",
                       "source_ref": "dev-1", "observables": [{"type": "ip", "value": "198.51.100.7"}]});
    let response = http()
        .post(format!("{}/v1/alerts", env["TOCSIN_INGEST_URL"]))
        .bearer_auth(&env["TOCSIN_INGEST_KEY"])
        .body(alert.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().unwrap()["alert_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let first = settled_alert(&env, &id);
    assert_eq!(first["runs"][0]["status"], "succeeded", "{first:#}");
    client_verbs_work(&env, first["case_id"].as_str().unwrap());
    admin_verbs_are_audited(&env);

    // SIGTERM: clean exit, children gone, dev.env removed.
    signal(&dev, "-TERM");
    assert!(wait_exit(&mut dev).success());
    wait_gone(&needle);
    assert!(!data_dir.join("dev.env").exists());

    // Same data dir again: same keys, same state.
    let mut dev = start_dev(&data_dir, ports);
    let env2 = wait_env(&data_dir, &mut dev);
    assert_eq!(env2["TOCSIN_INGEST_KEY"], env["TOCSIN_INGEST_KEY"]);
    assert_eq!(env2["TOCSIN_API_KEY"], env["TOCSIN_API_KEY"]);
    let again = settled_alert(&env2, &id);
    assert_eq!(again["runs"], first["runs"]);

    // A crash (SIGKILL) must not leave servers behind, nor block the next start.
    signal(&dev, "-KILL");
    wait_exit(&mut dev);
    wait_gone(&needle);
    let mut dev = start_dev(&data_dir, ports);
    let env3 = wait_env(&data_dir, &mut dev);
    let after_crash = settled_alert(&env3, &id);
    assert_eq!(after_crash["id"], first["id"]);
    signal(&dev, "-TERM");
    assert!(wait_exit(&mut dev).success());
    wait_gone(&needle);
}
