"""The runtime driven by a fake host on a real event loop."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fakehost import FakeHost, Harness, make_bundle, new_hash

PLAYBOOKS = '''
import asyncio
from tocsin import playbook, action, ActionFailed

CALLS = []

@action
async def double(x):
    CALLS.append(("double", x))
    return x * 2

@action(retries=2, backoff=0)
async def flaky(key):
    CALLS.append(("flaky", key))
    if sum(1 for c in CALLS if c == ("flaky", key)) < 3:
        raise ConnectionError("reset by peer")
    return {"key": key}

@action(retries=1, backoff=0)
async def always_fails():
    raise RuntimeError("nope")

@action
async def nap(i, delay=0.2):
    await asyncio.sleep(delay)
    return i

@action
async def returns_set():
    return {1, 2}

@action
async def outer(x):
    return await double(x) + 1

@playbook
async def ok(alert, run):
    run.log("starting", ips=list(alert.ips))
    value = await double(21)
    return {"value": value, "run": [run.id, run.playbook, run.tenant, run.attempt], "ips": list(alert.ips)}

@playbook
async def returns_none(alert, run):
    return None

@playbook
async def boom(alert, run):
    raise ValueError("boom")

@playbook
async def skipper(alert, run):
    run.skip("nothing to do")

@playbook(timeout="100ms")
async def sleepy(alert, run):
    await asyncio.sleep(5)

@playbook
async def returns_list(alert, run):
    return [1, 2]

@playbook
async def returns_unserializable(alert, run):
    return {"x": object()}

@playbook
async def uses_flaky(alert, run):
    return await flaky("k")

@playbook
async def catches_failure(alert, run):
    try:
        await always_fails()
    except RuntimeError as exc:
        return {"caught": str(exc)}

@playbook
async def swallow_everything(alert, run):
    try:
        await double(1)
    except Exception:
        return {"swallowed": True}
    return {"swallowed": False}

@playbook
async def replayed(alert, run):
    try:
        value = await double(5)
    except ActionFailed as exc:
        return {"failed": exc.error}
    return {"value": value}

@playbook
async def concurrent(alert, run):
    results = await asyncio.gather(nap(0), nap(1), nap(2))
    return {"results": results}

@playbook
async def partial_failure(alert, run):
    try:
        await asyncio.gather(always_fails(), nap(1, delay=2))
    except RuntimeError:
        return {"handled": True}

@playbook
async def bad_result(alert, run):
    try:
        await returns_set()
    except TypeError as exc:
        return {"error": str(exc)}

@playbook
async def nested(alert, run):
    return {"value": await outer(4)}

@playbook(trigger="manual")
async def manual_report(alert, run):
    return {"alert": alert, "tenant": run.tenant}

@playbook
async def long_runner(alert, run):
    await asyncio.sleep(0.3)
    return {"done": True}
'''


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, {"flows.py": PLAYBOOKS}), new_hash()


def run_one(bundle, playbook, host=None, **kwargs):
    host = host or FakeHost()

    async def main():
        async with Harness(host) as h:
            run_id = h.start(*bundle, playbook, **kwargs)
            return await h.wait_finished(run_id), run_id

    finished, run_id = asyncio.run(main())
    return finished, host, run_id


def test_success_with_step_and_log(bundle):
    finished, host, run_id = run_one(bundle, "ok", attempt=2)
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"value": 42, "run": [run_id, "ok", "acme", 2], "ips": ["10.0.0.1"]}
    assert finished["error"] is None and finished["traceback"] is None
    assert host.of("step_intent") == [("step_intent", run_id, 0, "double", '{"x":21}', False)]
    (result,) = host.of("step_result")
    assert result[1:7] == (run_id, 0, True, "42", None, 1)
    assert result[7] >= 0
    assert ("run_log", run_id, "info", "starting", '{"ips":["10.0.0.1"]}') in host.calls
    order = [c[0] for c in host.calls if c[0] != "run_log"]
    assert order == ["attach", "step_intent", "step_result", "run_finished"]


def test_none_result(bundle):
    finished, _, _ = run_one(bundle, "returns_none")
    assert finished == {"status": "succeeded", "result": None, "result_json": None, "error": None, "traceback": None}


def test_failure_with_traceback(bundle):
    finished, _, _ = run_one(bundle, "boom")
    assert finished["status"] == "failed"
    assert finished["error"] == "ValueError: boom"
    assert finished["traceback"].startswith("Traceback")
    assert "flows.py" in finished["traceback"] and 'raise ValueError("boom")' in finished["traceback"]


def test_skip(bundle):
    finished, _, _ = run_one(bundle, "skipper")
    assert (finished["status"], finished["error"], finished["result_json"]) == ("skipped", "nothing to do", None)


def test_timeout(bundle):
    started = time.monotonic()
    finished, _, _ = run_one(bundle, "sleepy")
    assert finished["status"] == "timed_out"
    assert finished["error"] == "playbook timed out after 0.1s"
    assert time.monotonic() - started < 2


def test_non_dict_result(bundle):
    finished, _, _ = run_one(bundle, "returns_list")
    assert finished["status"] == "failed"
    assert finished["error"] == "playbook must return a dict or None, got list"


def test_non_serializable_result(bundle):
    finished, _, _ = run_one(bundle, "returns_unserializable")
    assert finished["status"] == "failed"
    assert "non-JSON-serializable" in finished["error"]


def test_unknown_playbook(bundle):
    finished, _, _ = run_one(bundle, "no_such_playbook")
    assert finished["status"] == "failed"
    assert "unknown playbook 'no_such_playbook'" in finished["error"]


def test_invalid_alert(bundle):
    finished, _, _ = run_one(bundle, "ok", alert={"severity": "urgent"})
    assert finished["status"] == "failed" and "invalid alert" in finished["error"]


def test_manual_run_without_alert(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            h.send("start_run", run_id="n1", tenant="acme", playbook="manual_report", bundle_dir=bundle[0],
                   bundle_hash=bundle[1], attempt=1, alert=None)
            h.send("start_run", run_id="n2", tenant="acme", playbook="manual_report", bundle_dir=bundle[0],
                   bundle_hash=bundle[1], attempt=1, alert=[1])
            return await h.wait_finished("n1"), await h.wait_finished("n2")

    manual, invalid = asyncio.run(main())
    assert manual["status"] == "succeeded" and manual["result"] == {"alert": None, "tenant": "acme"}
    assert invalid["status"] == "failed" and "invalid 'alert'" in invalid["error"]


def test_retries_inside_run(bundle):
    finished, host, run_id = run_one(bundle, "uses_flaky")
    assert finished["result"] == {"key": "k"}
    (result,) = host.of("step_result")
    assert result[1:7] == (run_id, 0, True, '{"key": "k"}', None, 3)


def test_failed_step_is_reported_and_reraised(bundle):
    finished, host, run_id = run_one(bundle, "catches_failure")
    assert finished["result"] == {"caught": "nope"}
    (result,) = host.of("step_result")
    assert result[1:7] == (run_id, 0, False, None, "RuntimeError: nope", 2)


def test_non_serializable_action_result(bundle):
    finished, host, _ = run_one(bundle, "bad_result")
    assert "non-JSON-serializable" in finished["result"]["error"]
    (result,) = host.of("step_result")
    assert result[3] is False and result[4] is None
    assert result[5].startswith("TypeError: action 'returns_set' returned a non-JSON-serializable result")


def test_replay_returns_recorded_result_without_running_body(bundle, tmp_path):
    host = FakeHost(decide=lambda *a: {"decision": "replay", "result_json": "1234"})
    finished, host, run_id = run_one(bundle, "replayed", host=host)
    assert finished["result"] == {"value": 1234}
    assert host.of("step_result") == []
    import sys

    module = sys.modules[f"_tocsin_bundle_{bundle[1][:16]}.flows"]
    assert module.CALLS == []  # body never ran


def test_replay_of_failed_step_raises_action_failed(bundle):
    host = FakeHost(decide=lambda *a: {"decision": "replay", "error": "RuntimeError: remote said no"})
    finished, _, _ = run_one(bundle, "replayed", host=host)
    assert finished["result"] == {"failed": "RuntimeError: remote said no"}


def test_abort_cannot_be_swallowed(bundle):
    host = FakeHost(decide=lambda *a: {"decision": "abort", "status": "needs_review", "reason": "side effect uncertain"})
    finished, host, _ = run_one(bundle, "swallow_everything", host=host)
    assert finished["status"] == "needs_review"
    assert finished["error"] == "side effect uncertain"
    assert finished["result_json"] is None


def test_abort_inside_gather(bundle):
    def decide(run_id, seq, action, args_json, idempotent):
        if seq == 1:
            return {"decision": "abort", "status": "failed", "reason": "run deadline exceeded"}
        return {"decision": "execute"}

    started = time.monotonic()
    finished, host, run_id = run_one(bundle, "concurrent", host=FakeHost(decide=decide))
    assert (finished["status"], finished["error"]) == ("failed", "run deadline exceeded")
    assert time.monotonic() - started < 0.5  # the sleeping siblings were cancelled
    assert host.calls[-1][0] == "run_finished" and host.of("step_result") == []


def test_abort_without_status_defaults_to_failed(bundle):
    host = FakeHost(decide=lambda *a: {"decision": "abort", "status": "", "reason": ""})
    finished, _, _ = run_one(bundle, "swallow_everything", host=host)
    assert (finished["status"], finished["error"]) == ("failed", "")


def test_unknown_decision_fails_run(bundle):
    host = FakeHost(decide=lambda *a: {"decision": "maybe"})
    finished, _, _ = run_one(bundle, "swallow_everything", host=host)
    assert finished["status"] == "failed" and "unknown decision 'maybe'" in finished["error"]


def test_gather_runs_actions_concurrently_with_deterministic_seqs(bundle):
    started = time.monotonic()
    finished, host, run_id = run_one(bundle, "concurrent")
    elapsed = time.monotonic() - started
    assert finished["result"] == {"results": [0, 1, 2]}
    assert elapsed < 0.5, elapsed
    intents = [(c[2], json.loads(c[4])["i"]) for c in host.of("step_intent")]
    assert intents == [(0, 0), (1, 1), (2, 2)]
    assert json.loads(host.of("step_intent")[0][4]) == {"delay": 0.2, "i": 0}  # defaults applied
    assert sorted(c[2] for c in host.of("step_result")) == [0, 1, 2]


def test_stragglers_are_cancelled_before_run_finished(bundle):
    started = time.monotonic()
    finished, host, run_id = run_one(bundle, "partial_failure")
    assert finished["result"] == {"handled": True}
    assert time.monotonic() - started < 1.5
    assert host.calls[-1][0] == "run_finished"
    # the sleeping sibling (seq 1) never reported a result
    assert [c[2] for c in host.of("step_result")] == [0]


def test_nested_action_is_not_journaled(bundle):
    finished, host, _ = run_one(bundle, "nested")
    assert finished["result"] == {"value": 9}
    assert [c[3] for c in host.of("step_intent")] == ["outer"]


def test_waiting_step_and_out_of_band_decision(bundle):
    host = FakeHost(decide=lambda *a: None)  # leave steps waiting

    async def main():
        async with Harness(host) as h:
            run_id = h.start(*bundle, "ok")
            while not host.of("step_intent"):
                await asyncio.sleep(0.002)
            assert host.finished(run_id) is None
            h.send("step_decision", run_id=run_id, seq=7, decision="execute")  # nobody waits for seq 7
            h.send("step_decision", run_id="other", seq=0, decision="execute")  # unknown run
            h.send("step_decision", run_id=run_id, seq=0, decision="replay", result_json="5")
            return await h.wait_finished(run_id), run_id

    finished, run_id = asyncio.run(main())
    assert finished["result"]["value"] == 5
    warnings = [c for c in host.of("run_log") if c[2] == "warning"]
    assert any("step 7" in c[3] for c in warnings) and any(c[1] == "other" for c in warnings)


def test_duplicate_start_run_is_ignored(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            h.start(*bundle, "long_runner", run_id="dup")
            h.start(*bundle, "long_runner", run_id="dup")
            await h.wait_finished("dup")
            await asyncio.sleep(0.05)

    asyncio.run(main())
    assert len(host.of("run_finished")) == 1
    assert any("duplicate start_run" in c[3] for c in host.of("run_log"))


def test_cancel_run_reports_nothing_and_allows_restart(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            h.start(*bundle, "long_runner", run_id="c1")
            await asyncio.sleep(0.05)
            h.send("cancel_run", run_id="c1")
            await asyncio.sleep(0.4)
            assert host.finished("c1") is None
            h.start(*bundle, "returns_none", run_id="c1", attempt=2)
            return await h.wait_finished("c1")

    assert asyncio.run(main())["status"] == "succeeded"


def test_shutdown_cancels_in_flight_runs_without_report(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            h.start(*bundle, "long_runner", run_id="s1")
            await asyncio.sleep(0.02)
            h.send("shutdown")
            await asyncio.wait_for(h.runtime.run_until_shutdown(), 1)
            await h.runtime.aclose()
            h.start(*bundle, "returns_none", run_id="s2")  # ignored while shutting down
            await asyncio.sleep(0.35)

    asyncio.run(main())
    assert host.of("run_finished") == []


def test_bad_messages_never_kill_the_loop(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            h.runtime._dispatch("start_run", "{not json")
            h.runtime._dispatch("start_run", "[1, 2]")
            h.send("no_such_kind", run_id="x")
            h.send("start_run", playbook="ok")  # no run_id
            h.send("start_run", run_id="r-missing-bundle", playbook="ok")
            h.send("step_decision", run_id="r", seq="zero", decision="execute")
            h.send("inspect", bundle_dir="/nonexistent")  # no request_id
            h.send("inspect", request_id="q1", bundle_dir="/nonexistent", bundle_hash="ffff")
            h.send("inspect", request_id="q2", bundle_dir="/nonexistent")
            finished_missing = await h.wait_finished("r-missing-bundle")
            run_id = h.start(*bundle, "ok")
            return finished_missing, await h.wait_finished(run_id)

    finished_missing, finished = asyncio.run(main())
    assert finished["status"] == "succeeded"
    assert finished_missing["status"] == "failed" and "bundle_hash" in finished_missing["error"]
    errors = [c for c in host.of("run_log") if c[2] == "error"]
    assert len(errors) == 6
    assert any("unknown message kind 'no_such_kind'" in c[3] for c in errors)
    q1, q2 = host.of("inspect_result")
    assert q1[1:3] == ("q1", None) and "does not exist" in q1[3]
    assert q2[1:] == ("q2", None, "inspect: missing or invalid 'bundle_hash' (expected a non-empty string)")


def test_bundle_is_cached_per_hash(tmp_path):
    bundle_dir = make_bundle(tmp_path, {"pb.py": '''
        from tocsin import playbook
        LOADS = __import__("itertools").count(1)
        LOADED = next(LOADS)

        @playbook
        async def count(alert, run):
            import sys
            return {"module_id": id(sys.modules[__name__])}
    '''})
    bundle_hash = new_hash()
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            first = await h.wait_finished(h.start(bundle_dir, bundle_hash, "count"))
            second = await h.wait_finished(h.start(bundle_dir, bundle_hash, "count"))
            return first, second

    first, second = asyncio.run(main())
    assert first["result"] == second["result"]


def test_host_failure_on_step_intent_fails_run(bundle):
    class BrokenHost(FakeHost):
        def step_intent(self, *args):
            raise OSError("pipe closed")

    finished, _, _ = run_one(bundle, "swallow_everything", host=BrokenHost())
    assert finished["status"] == "failed" and "pipe closed" in finished["error"]


def test_inspect_success(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            return await h.inspect(*bundle)

    playbooks, error = asyncio.run(main())
    assert error is None
    names = [p["name"] for p in playbooks]
    assert names[:3] == ["ok", "returns_none", "boom"]
    first = playbooks[0]
    assert first == {
        "name": "ok",
        "module": "flows",
        "function": "ok",
        "trigger": "alert",
        "when": None,
        "tenants": "*",
        "enabled": True,
        "priority": "normal",
        "timeout_s": 300.0,
        "file": "flows.py",
        "line": first["line"],
    }
    assert PLAYBOOKS.lstrip("\n").splitlines()[first["line"] - 1] == "@playbook"
    assert next(p for p in playbooks if p["name"] == "sleepy")["timeout_s"] == 0.1


def _inspect_error(tmp_path, files):
    bundle_dir = make_bundle(tmp_path, files)
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            return await h.inspect(bundle_dir, new_hash())

    return asyncio.run(main())


def test_inspect_syntax_error_has_file_and_line(tmp_path):
    playbooks, error = _inspect_error(tmp_path, {
        "good.py": "from tocsin import playbook\n",
        "sub/bad.py": "from tocsin import playbook\n\nx = (1,\ndef broken(:\n",
    })
    assert playbooks is None
    assert error.startswith("sub/bad.py:4: SyntaxError: "), error


def test_inspect_import_error_points_into_bundle(tmp_path):
    playbooks, error = _inspect_error(tmp_path, {
        "a.py": "from . import helper\n",
        "helper.py": "import json\n\nvalue = json.loads('{')\n",
    })
    assert playbooks is None
    assert error.startswith("helper.py:3: JSONDecodeError: "), error


def test_inspect_invalid_when_has_file_and_line(tmp_path):
    playbooks, error = _inspect_error(tmp_path, {"pb.py": '''
        from tocsin import playbook


        @playbook(when={"severity": {"gte": "urgent"}})
        async def pb(alert, run):
            return None
    '''})
    assert playbooks is None
    assert error.startswith("pb.py:4: ValueError: when['severity']['gte']: invalid severity 'urgent'"), error


def test_inspect_duplicate_name(tmp_path):
    playbooks, error = _inspect_error(tmp_path, {
        "a.py": "from tocsin import playbook\n\n@playbook(name='same')\nasync def one(alert, run):\n    return None\n",
        "b/c.py": "from tocsin import playbook\n\n\n@playbook(name='same')\nasync def two(alert, run):\n    return None\n",
    })
    assert playbooks is None
    assert error == "b/c.py:4: duplicate playbook name 'same' (also defined at a.py:3)"
