"""serve() end to end in a subprocess: fd 1 redirection, attach/submit from a
foreign thread, shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sdk_paths import SDK_DIR
from fakehost import make_bundle

SCRIPT = r'''
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from tocsin._runtime import serve

bundle_dir, out_path = sys.argv[2], sys.argv[3]
calls = []
finished = threading.Event()

class Host:
    def attach(self, submit):
        self.submit = submit
        def feed():
            submit("inspect", json.dumps({"request_id": "q1", "bundle_dir": bundle_dir, "bundle_hash": "feedface" * 8}))
            submit("start_run", json.dumps({
                "run_id": "r1", "tenant": "acme", "playbook": "hello", "bundle_dir": bundle_dir,
                "bundle_hash": "feedface" * 8, "attempt": 1,
                "alert": {"title": "t", "severity": "low", "source": "test"}}))
            finished.wait(10)
            submit("start_run", json.dumps({
                "run_id": "r2", "tenant": "acme", "playbook": "forever", "bundle_dir": bundle_dir,
                "bundle_hash": "feedface" * 8, "attempt": 1, "alert": {"title": "t", "severity": "low"}}))
            submit("shutdown", "{}")
        threading.Thread(target=feed, daemon=True).start()
    def step_intent(self, run_id, seq, action, args_json, idempotent):
        calls.append(["step_intent", run_id, seq, action, args_json, idempotent])
        self.submit("step_decision", json.dumps({"run_id": run_id, "seq": seq, "decision": "execute",
                                                 "result_json": None, "error": None, "status": "", "reason": ""}))
    def step_result(self, *args):
        calls.append(["step_result", *args[:6]])
    def run_log(self, *args):
        calls.append(["run_log", *args])
    def run_finished(self, *args):
        calls.append(["run_finished", *args[:4]])
        finished.set()
    def inspect_result(self, *args):
        calls.append(["inspect_result", *args])

serve(Host())
# after serve returns, late submissions are dropped silently
with open(out_path, "w") as fh:
    json.dump(calls, fh)
'''

BUNDLE = {
    "hello.py": """
        import asyncio
        from tocsin import playbook, action

        @action
        async def greet(name):
            return f"hello {name}"

        @playbook
        async def hello(alert, run):
            print("printed by the playbook")
            return {"greeting": await greet("world")}

        @playbook
        async def forever(alert, run):
            await asyncio.sleep(60)
    """,
}


def test_serve_end_to_end(tmp_path):
    bundle_dir = make_bundle(tmp_path / "bundle", BUNDLE)
    out_path = tmp_path / "calls.json"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, SDK_DIR, bundle_dir, str(out_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # fd 1 is reserved for protocol frames
    assert "printed by the playbook" in proc.stderr
    calls = json.loads(out_path.read_text())
    kinds = [c[0] for c in calls]
    assert kinds == ["inspect_result", "step_intent", "step_result", "run_finished"], calls
    assert json.loads(calls[0][2])[0]["name"] == "hello" and calls[0][3] is None
    assert calls[1] == ["step_intent", "r1", 0, "greet", '{"name":"world"}', False]
    assert calls[2] == ["step_result", "r1", 0, True, '"hello world"', None, 1]  # + attempts
    assert calls[3] == ["run_finished", "r1", "succeeded", '{"greeting": "hello world"}', None]
    # r2 was in flight at shutdown: cancelled, not reported
    assert not any(c[1] == "r2" for c in calls)


HTTP_SCRIPT = r'''
import base64, json, sys, threading
sys.path.insert(0, sys.argv[1])
from tocsin._runtime import serve

bundle_dir, out_path = sys.argv[2], sys.argv[3]
calls = []

class Host:
    def attach(self, submit):
        self.submit = submit
        submit("start_run", json.dumps({
            "run_id": "h1", "tenant": "acme", "playbook": "fetch_status", "bundle_dir": bundle_dir,
            "bundle_hash": "beefcafe" * 8, "attempt": 1, "alert": None, "trigger": "manual",
            "input": {"url": "https://status.example/api"}, "secrets": {"TOKEN": "t0k"}}))
    def step_intent(self, run_id, seq, action, args_json, idempotent):
        calls.append(["step_intent", action, args_json])
        self.submit("step_decision", json.dumps({"run_id": run_id, "seq": seq, "decision": "execute"}))
    def http_request(self, request_id, method, url, headers_json, body, timeout_s):
        calls.append(["http_request", method, url, json.loads(headers_json), body, timeout_s])
        def answer():  # from another thread, like the runner's reader thread
            self.submit("http_response", json.dumps({
                "request_id": request_id, "status": 200, "headers": [["Content-Type", "application/json"]],
                "body_b64": base64.b64encode(b'{"state": "green"}').decode(), "error": None}))
        threading.Thread(target=answer).start()
    def step_result(self, *args):
        calls.append(["step_result", *args[:6]])
    def run_log(self, *args):
        calls.append(["run_log", *args])
    def run_finished(self, *args):
        calls.append(["run_finished", *args[:4]])
        self.submit("shutdown", "{}")
    def inspect_result(self, *args):
        calls.append(["inspect_result", *args])

serve(Host())
with open(out_path, "w") as fh:
    json.dump(calls, fh)
'''

HTTP_BUNDLE = {
    "status.py": """
        from tocsin import playbook, action, http

        @action(idempotent=True)
        async def get_status(url, secrets):
            token = secrets["TOKEN"]
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=7)
            return response.raise_for_status().json()

        @playbook(trigger="manual")
        async def fetch_status(alert, run):
            # run.secrets is journaled as "<Secrets: ...>" (names only), never values
            return await get_status(run.input["url"], run.secrets)
    """,
}


def test_serve_routes_http_through_the_host(tmp_path):
    bundle_dir = make_bundle(tmp_path / "bundle", HTTP_BUNDLE)
    out_path = tmp_path / "calls.json"
    proc = subprocess.run(
        [sys.executable, "-c", HTTP_SCRIPT, SDK_DIR, bundle_dir, str(out_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    calls = json.loads(out_path.read_text())
    assert [c[0] for c in calls] == ["step_intent", "http_request", "step_result", "run_finished"], calls
    assert json.loads(calls[0][2]) == {"url": "https://status.example/api", "secrets": "<Secrets: 1 set (TOKEN)>"}
    _, method, url, headers, body, timeout_s = calls[1]
    assert (method, url, body, timeout_s) == ("GET", "https://status.example/api", None, 7.0)
    assert ["Authorization", "Bearer t0k"] in headers
    assert calls[3] == ["run_finished", "h1", "succeeded", '{"state": "green"}', None]
