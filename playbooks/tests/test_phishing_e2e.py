"""End to end: the phishing playbook through the real services.

``tocsin dev`` runs ingest, scheduler, worker and API on a private NATS and
PostgreSQL; the integrations' secrets point at the local fake services; the
reported e-mail goes in through the ingest HTTP endpoint exactly as a mail
gateway would send it. The test checks the run, the case timeline and what the
fakes received (each copy quarantined once, the URL blocked once, Slack told).
Needs the ``tocsin`` binary (``make test`` builds it; ``TOCSIN_BIN`` overrides).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from fakes import Fakes
from playbook_support import DEMO_ALERTS, PLAYBOOKS_DIR

REPO = os.path.dirname(PLAYBOOKS_DIR)
TOCSIN = os.environ.get("TOCSIN_BIN") or os.path.join(REPO, "target", "debug", "tocsin")
SENDER = "user.abc@mail.contoso.co.in"
SUBJECT = "[EXTERNAL] Attention"
LURE_URL = "https://login.contoso-verify.example/owa/auth/logon.aspx?replaceCurrent=1"
WAIT = 120.0


def call(method: str, url: str, key: str, body: Any = None, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def wait_env(data_dir: str, proc: subprocess.Popen, log: str) -> dict[str, str]:
    path = os.path.join(data_dir, "dev.env")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tocsin dev exited early:\n{open(log).read()[-4000:]}"
        if os.path.exists(path):
            env = {}
            for line in open(path, encoding="utf-8"):
                if line.startswith("export ") and "=" in line:
                    name, value = line[len("export ") :].strip().split("=", 1)
                    env[name] = value.strip("'")
            return env
        time.sleep(0.1)
    raise AssertionError("dev.env never appeared")


def wait_run(env: dict[str, str], alert_id: str, playbook: str) -> dict:
    api, key = env["TOCSIN_API_URL"], env["TOCSIN_API_KEY"]
    deadline = time.monotonic() + WAIT
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = call("GET", f"{api}/v1/alerts/{alert_id}", key)
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            last = None
        runs = [r for r in (last or {}).get("runs", []) if r["playbook"] == playbook]
        if runs and runs[0]["status"] not in ("queued", "running"):
            return call("GET", f"{api}/v1/runs/{runs[0]['id']}", key)
        time.sleep(0.2)
    raise AssertionError(f"run of {playbook} never finished; last alert: {last}")


def test_phishing_report_is_contained_through_the_real_services():
    assert os.path.exists(TOCSIN), f"{TOCSIN} is missing: build it (make test does) or set TOCSIN_BIN"
    # Not pytest's tmp_path: when tests run as root, `tocsin dev` runs PostgreSQL as the
    # postgres user, which must be able to reach the data directory.
    work = tempfile.mkdtemp(prefix="tocsin-e2e-")
    try:
        os.chmod(work, 0o755)
        run_e2e(os.path.join(work, "dev"), os.path.join(work, "dev.log"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_e2e(data_dir: str, log: str) -> None:
    with Fakes() as fakes:
        fakes.virustotal.add_url(LURE_URL, malicious=11, harmless=50)
        fakes.virustotal.add_domain("login.contoso-verify.example", malicious=4)
        gateway = fakes.mailgateway
        ids = [
            gateway.add_message(SENDER, r, SUBJECT, "2020-09-06T12:01:10Z")
            for r in ("test.User4@contoso.com", "testUser3@contoso.com", "ceo@contoso.com")
        ]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        child_env["TOCSIN_TELEMETRY__FILTER"] = "warn"
        child_env["TOCSIN_WORKER__RUNNERS"] = "1"
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [TOCSIN, "dev", "--data-dir", data_dir, "--playbooks", PLAYBOOKS_DIR,
                 "--ingest-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"],
                env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
            )
        try:
            env = wait_env(data_dir, proc, log)
            api, key = env["TOCSIN_API_URL"], env["TOCSIN_API_KEY"]
            for name, value in fakes.secrets().items():
                call("PUT", f"{api}/v1/secrets/{name}", key, {"value": value})

            with open(DEMO_ALERTS, encoding="utf-8") as fh:
                report = [line for line in fh if line.strip()][4]
            accepted = call("POST", f"{env['TOCSIN_INGEST_URL']}/v1/alerts", env["TOCSIN_INGEST_KEY"],
                            raw=report.encode())
            [alert_id] = accepted["alert_ids"]

            run = wait_run(env, alert_id, "phishing_report")
            assert run["status"] == "succeeded", json.dumps(run, indent=1)[-4000:]
            assert run["result"]["verdict"] == "phishing"
            steps = [s["action"] for s in run["steps"]]
            assert steps.count("mail_quarantine") == 3, steps
            assert all(s["state"] == "succeeded" for s in run["steps"]), run["steps"]

            # What the outside world saw: every copy quarantined once, with the step's key.
            assert sorted(gateway.quarantined) == sorted(ids)
            keys = [r.idempotency_key for r in gateway.requests
                    if r.method == "POST" and r.path.endswith("/quarantine")]
            assert len(keys) == 3 and len(set(keys)) == 3
            assert all(k.startswith(f"{run['id']}:") for k in keys), keys
            [block] = fakes.firewall.blocks.values()
            assert (block["type"], block["value"]) == ("url", LURE_URL)
            [posted] = fakes.slack.posted
            assert "Quarantined 3/3 copies" in posted["text"]
            assert all(r.header("x-apikey") == fakes.virustotal.api_key for r in fakes.virustotal.requests)

            # The case: tagged, in progress, the other recipients added, what was done commented.
            alert = call("GET", f"{api}/v1/alerts/{alert_id}", key)
            case = call("GET", f"{api}/v1/cases/{alert['case_id']}", key)
            assert case["status"] == "in_progress", case
            assert "phishing" in case["tags"], case
            timeline = call("GET", f"{api}/v1/cases/{alert['case_id']}/timeline", key)
            events = timeline["events"]
            comments = [e for e in events if e["kind"] == "comment"]
            assert any("ceo@contoso.com" in json.dumps(e) for e in comments), events
            assert all(e["actor"].startswith("run:") for e in comments), comments
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, open(log).read()[-4000:]
