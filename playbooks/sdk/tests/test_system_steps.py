"""System steps (run.case, approval, sleep) and run suspension, through the runtime."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fakehost import FakeHost, Harness, execute_all, make_bundle, new_hash, platform, run_one
from tocsin import Run, action, approval, sleep

PLAYBOOKS = '''
import asyncio
from tocsin import playbook, action, approval, sleep, ActionFailed

CALLS = []

@action
async def double(x):
    CALLS.append(("double", x))
    return x * 2

@action
async def nap(i, delay=1.0):
    await asyncio.sleep(delay)
    return i

@action
async def sleeps_inside():
    await sleep(1)

@playbook
async def case_ops(alert, run):
    results = [
        await run.case.comment("**triaged** by the playbook"),
        await run.case.set_status("in_progress"),
        await run.case.set_severity("HIGH"),
        await run.case.add_tag(" phishing "),
        await run.case.add_observable("IP", "203.0.113.7"),
        await run.case.set_status("resolved", determination="benign"),
    ]
    return {"results": results}

@playbook
async def catches_refusal(alert, run):
    try:
        await run.case.comment("x")
    except RuntimeError as exc:
        return {"error": str(exc)}

@playbook
async def catches_failed_replay(alert, run):
    try:
        await run.case.add_tag("x")
    except ActionFailed as exc:
        return {"failed": exc.error}

@playbook
async def approve_then_act(alert, run):
    ok = await approval("Block 203.0.113.7?", details={"ip": "203.0.113.7"}, approvers=["soc-leads"],
                        timeout="30m", default="approve")
    if ok:
        return {"approved": True, "value": await double(2)}
    return {"approved": False}

@playbook
async def sleeper(alert, run):
    before = await double(1)
    slept = await sleep("10m")
    after = await double(2)
    return {"before": before, "after": after, "slept": slept}

@playbook
async def gathered(alert, run):
    results = await asyncio.gather(nap(0), approval("first?"), nap(2))
    return {"results": results}

@playbook
async def gathered_return_exceptions(alert, run):
    results = await asyncio.gather(approval("q?"), double(3), return_exceptions=True)
    return {"results": [type(r).__name__ for r in results]}

@playbook
async def swallows_suspension(alert, run):
    try:
        await sleep(60)
    except BaseException:
        pass
    await double(1)
    return {"continued": True}

@playbook
async def system_step_in_action(alert, run):
    await sleeps_inside()
'''


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, {"flows.py": PLAYBOOKS}), new_hash()


def intents(host):
    return [(c[2], c[3], json.loads(c[4]), c[5]) for c in host.of("step_intent")]


def test_case_operations_are_journaled_system_steps(bundle):
    host = FakeHost(decide=platform({"tocsin.case.comment": {"comment_id": "c-1"},
                                     "tocsin.case.set_status": {"status": "in_progress"}}))
    finished, host, _ = run_one(bundle, "case_ops", host=host)
    assert finished["status"] == "succeeded", finished
    status = {"status": "in_progress"}
    assert finished["result"] == {"results": [{"comment_id": "c-1"}, status, None, None, None, status]}
    assert intents(host) == [
        (0, "tocsin.case.comment", {"text": "**triaged** by the playbook"}, True),
        (1, "tocsin.case.set_status", {"status": "in_progress", "determination": None}, True),
        (2, "tocsin.case.set_severity", {"severity": "high"}, True),
        (3, "tocsin.case.add_tag", {"tag": "phishing"}, True),
        (4, "tocsin.case.add_observable", {"type": "ip", "value": "203.0.113.7"}, True),
        (5, "tocsin.case.set_status", {"status": "resolved", "determination": "benign"}, True),
    ]
    assert host.of("step_intent")[0][4] == '{"text":"**triaged** by the playbook"}'  # canonical JSON
    assert host.of("step_result") == []  # the platform performs (and records) system steps


def test_execute_decision_for_a_system_step_is_refused(bundle):
    finished, host, run_id = run_one(bundle, "catches_refusal", host=FakeHost(decide=execute_all))
    message = "system step tocsin.case.comment must be performed by the platform"
    assert finished["result"] == {"error": message}
    assert host.of("step_result") == [("step_result", run_id, 0, False, None, message, 0, 0)]

    finished, _, _ = run_one(bundle, "case_ops", host=FakeHost(decide=execute_all))
    assert finished["status"] == "failed" and finished["error"] == f"RuntimeError: {message}"


def test_replayed_system_step_error_raises_action_failed(bundle):
    host = FakeHost(decide=lambda *a: {"decision": "replay", "error": "case is closed"})
    finished, _, _ = run_one(bundle, "catches_failed_replay", host=host)
    assert finished["result"] == {"failed": "case is closed"}


@pytest.mark.parametrize("approved", [True, False])
def test_approval_replays_the_decision(bundle, approved):
    decision = {"approved": approved, "decided_by": "alice", "comment": "ok", "timed_out": False}
    finished, host, _ = run_one(bundle, "approve_then_act", host=FakeHost(decide=platform({"tocsin.approval": decision})))
    assert finished["result"] == ({"approved": True, "value": 4} if approved else {"approved": False})
    seq, name, args, idempotent = intents(host)[0]
    assert (seq, name, idempotent) == (0, "tocsin.approval", True)
    assert args == {"title": "Block 203.0.113.7?", "details": {"ip": "203.0.113.7"}, "approvers": ["soc-leads"],
                    "timeout_s": 1800.0, "default": "approve"}


def test_invalid_approval_result_fails_the_run(bundle):
    finished, _, _ = run_one(bundle, "approve_then_act", host=FakeHost(decide=platform({"tocsin.approval": {"x": 1}})))
    assert finished["status"] == "failed" and "protocol error: invalid result for tocsin.approval" in finished["error"]


def _waiting(args):
    return {"decision": "abort", "status": "waiting_approval", "reason": f"waiting for approval {args['title']!r}"}


def test_pending_approval_suspends_the_run_then_it_resumes(bundle):
    asked = []

    def decide(run_id, seq, action, args_json, idempotent):
        asked.append((seq, action))
        if action == "tocsin.approval":
            if len(asked) == 1:  # first attempt: nobody decided yet
                return _waiting(json.loads(args_json))
            return {"decision": "replay", "result_json": json.dumps({"approved": True, "decided_by": "bob",
                                                                    "comment": None, "timed_out": False})}
        return {"decision": "execute"}

    host = FakeHost(decide=decide)

    async def main():
        async with Harness(host) as h:
            h.start(*bundle, "approve_then_act", run_id="susp")
            first = await h.wait_finished("susp")
            host.calls.clear()  # the slot is free: the platform re-dispatches the run later
            h.start(*bundle, "approve_then_act", run_id="susp", attempt=2)
            return first, await h.wait_finished("susp")

    first, second = asyncio.run(main())
    assert first == {"status": "waiting_approval", "result": None, "result_json": None,
                     "error": "waiting for approval 'Block 203.0.113.7?'", "traceback": None}
    assert second["status"] == "succeeded" and second["result"] == {"approved": True, "value": 4}
    assert asked == [(0, "tocsin.approval"), (0, "tocsin.approval"), (1, "double")]


def test_sleep_suspends_until_the_timer_fired(bundle):
    sleeping = {"decision": "abort", "status": "sleeping", "reason": "until 2026-01-01T00:10:00Z"}
    host = FakeHost(decide=platform({"tocsin.sleep": lambda args: sleeping}))
    finished, host, run_id = run_one(bundle, "sleeper", host=host)
    assert (finished["status"], finished["error"], finished["result_json"]) == ("sleeping", sleeping["reason"], None)
    assert [(i[1], i[2]) for i in intents(host)] == [("double", {"x": 1}), ("tocsin.sleep", {"seconds": 600.0})]
    assert host.calls[-1] == ("run_finished", run_id, "sleeping", None, sleeping["reason"], None)

    finished, host, _ = run_one(bundle, "sleeper", host=FakeHost(decide=platform({"tocsin.sleep": {"slept": True}})))
    assert finished["result"] == {"before": 2, "after": 4, "slept": None}  # the replayed result is ignored


def test_suspension_inside_gather_cancels_siblings(bundle):
    host = FakeHost(decide=platform({"tocsin.approval": _waiting}))
    started = time.monotonic()
    finished, host, run_id = run_one(bundle, "gathered", host=host)
    assert (finished["status"], finished["error"]) == ("waiting_approval", "waiting for approval 'first?'")
    assert time.monotonic() - started < 0.8  # the 1 s naps were cancelled
    assert [i[1] for i in intents(host)] == ["nap", "tocsin.approval", "nap"]
    assert host.of("step_result") == [] and host.calls[-1][0] == "run_finished"


def test_suspension_cannot_be_swallowed(bundle):
    host = FakeHost(decide=platform({"tocsin.approval": _waiting}))
    finished, host, _ = run_one(bundle, "gathered_return_exceptions", host=host)
    assert (finished["status"], finished["result_json"]) == ("waiting_approval", None)

    host = FakeHost(decide=platform({"tocsin.sleep": lambda args: {"decision": "abort", "status": "sleeping",
                                                                   "reason": "timer"}}))
    finished, host, _ = run_one(bundle, "swallows_suspension", host=host)
    assert (finished["status"], finished["error"]) == ("sleeping", "timer")
    assert [i[1] for i in intents(host)] == ["tocsin.sleep"]  # no step is started after an abort


def test_system_step_inside_an_action_body_is_an_error(bundle):
    finished, host, run_id = run_one(bundle, "system_step_in_action")
    assert finished["status"] == "failed"
    assert "tocsin.sleep cannot be used inside an @action body" in finished["error"]
    (result,) = host.of("step_result")
    assert result[3] is False and "cannot be used inside an @action body" in result[5]


def test_system_steps_outside_a_run():
    run = Run()
    with pytest.raises(RuntimeError, match="tocsin.testing.run_playbook"):
        run.case.comment("x")
    with pytest.raises(RuntimeError, match="only works inside a run"):
        approval("ok?")
    # outside a run sleep is a plain asyncio.sleep
    assert asyncio.run(sleep(0)) is None
    assert asyncio.run(sleep("1ms")) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.comment(""), "comment text must be a non-empty string"),
        (lambda c: c.comment(None), "comment text must be a non-empty string"),
        (lambda c: c.set_status("done"), "invalid case status 'done'"),
        (lambda c: c.set_status("resolved"), "requires a determination"),
        (lambda c: c.set_status("resolved", determination="maybe"), "invalid case determination 'maybe'"),
        (lambda c: c.set_status("in_progress", determination="benign"), "only applies to resolved or closed"),
        (lambda c: c.set_severity("urgent"), "invalid severity 'urgent'"),
        (lambda c: c.add_tag("  "), "case tag must be a non-empty string"),
        (lambda c: c.add_observable("file", "x"), "invalid observable type 'file'"),
        (lambda c: c.add_observable("ip", ""), "observable value must be a non-empty string"),
    ],
)
def test_case_arguments_are_validated_client_side(call, message):
    with pytest.raises(ValueError, match=message):
        call(Run().case)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"title": ""}, "approval title"),
        ({"title": "t", "default": "allow"}, "invalid approval default 'allow'"),
        ({"title": "t", "approvers": "alice"}, "approvers must be a list"),
        ({"title": "t", "approvers": ["alice", ""]}, "approver must be a non-empty string"),
        ({"title": "t", "timeout": "forever"}, "approval timeout"),
    ],
)
def test_approval_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        approval(**kwargs)


def test_sleep_duration_is_validated():
    with pytest.raises(ValueError, match="sleep duration"):
        sleep("soon")
    with pytest.raises(ValueError, match="sleep duration"):
        sleep(-1)


@pytest.mark.parametrize("name", ["tocsin.case.comment", "tocsin.approval", "Tocsin.sleep"])
def test_action_names_starting_with_tocsin_are_reserved(name):
    with pytest.raises(ValueError, match="reserved"):
        action(name=name)

    async def body():
        return None

    with pytest.raises(ValueError, match="reserved"):
        action(body, name=name)
    action(body, name="tocsin_like")  # only the "tocsin." prefix is reserved
