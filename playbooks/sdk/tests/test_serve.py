"""serve() end to end in a subprocess: fd 1 redirection, attach/submit from a
foreign thread, shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import SDK_DIR
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
