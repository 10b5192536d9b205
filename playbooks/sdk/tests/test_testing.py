"""tocsin.testing: mock_alert and run_playbook."""

from __future__ import annotations

import asyncio
import time

import pytest

from tocsin import Alert, action, approval, idempotency_key, playbook, sleep
from tocsin.testing import ActionCall, Result, mock_alert, run_playbook

REAL_CALLS: list = []


@action
async def lookup(ip: str) -> dict:
    REAL_CALLS.append(("lookup", ip))
    return {"ip": ip, "verdict": "clean"}


@action(retries=3, backoff="1s")
async def block(ip: str, reason: str = "malicious") -> dict:
    REAL_CALLS.append(("block", ip))
    return {"blocked": ip, "reason": reason}


@action
async def enrich(ip: str) -> dict:
    return {"lookup": await lookup(ip)}


@action
async def slow(delay: float) -> float:
    await asyncio.sleep(delay)
    return delay


@action
async def returns_set() -> set:
    return {1, 2}


@action
async def key() -> str:
    return idempotency_key()


@playbook
async def triage(alert, run):
    results = await asyncio.gather(*(lookup(ip) for ip in alert.ips))
    run.log("looked up", count=len(results))
    malicious = [r["ip"] for r in results if r["verdict"] == "malicious"]
    await run.case.add_tag("triaged")
    if not malicious:
        await run.case.set_status("closed")
        return {"blocked": [], "results": results}
    await run.case.set_severity("critical")
    if await approval(f"Block {', '.join(malicious)}?", details={"ips": malicious}, approvers=["soc"]):
        for ip in malicious:
            await block(ip)
        await run.case.add_observable("ip", malicious[0])
        await run.case.set_status("resolved", determination="true_positive")
        return {"blocked": malicious}
    await run.case.comment("blocking was denied")
    return {"blocked": []}


def run(coro):
    return asyncio.run(coro)


ALERT = mock_alert(observables=[("ip", "10.0.0.1"), ("ip", "203.0.113.7")])


def malicious_if_public(ip):
    return {"ip": ip, "verdict": "clean" if ip.startswith("10.") else "malicious"}


def test_mock_alert_defaults():
    alert = mock_alert()
    assert isinstance(alert, Alert)
    assert (alert.title, alert.severity, alert.source, alert.tenant) == ("t", "high", "test", "default")
    assert alert.id.startswith("test-") and alert.observables == ()
    alert = mock_alert(source="wazuh", severity="low", raw={"rule": {"level": 3}}, observables=[("ip", "1.2.3.4")])
    assert (alert.source, alert.severity, alert.raw, alert.ips) == ("wazuh", "low", {"rule": {"level": 3}}, ("1.2.3.4",))
    with pytest.raises(TypeError, match="unexpected field"):
        mock_alert(bogus=1)


def test_unstubbed_actions_run_for_real():
    REAL_CALLS.clear()
    result = run(run_playbook(triage, ALERT))
    assert isinstance(result, Result) and result.status == "succeeded" and result.succeeded
    assert result.result["blocked"] == [] and REAL_CALLS == [("lookup", "10.0.0.1"), ("lookup", "203.0.113.7")]
    assert result.calls == [
        ActionCall("lookup", {"ip": "10.0.0.1"}, "ok", {"ip": "10.0.0.1", "verdict": "clean"}, None, False, 0, 1),
        ActionCall("lookup", {"ip": "203.0.113.7"}, "ok", {"ip": "203.0.113.7", "verdict": "clean"}, None, False, 1, 1),
    ]
    assert result.case_changes == [{"op": "add_tag", "tag": "triaged"},
                                   {"op": "set_status", "status": "closed", "determination": None}]
    assert result.logs == [{"level": "info", "message": "looked up", "fields": {"count": 2}}]
    assert result.approvals_asked == [] and result.error is None and result.traceback is None


@pytest.mark.parametrize(
    "stub",
    [
        malicious_if_public,  # sync callable
        lambda ip: asyncio.sleep(0, malicious_if_public(ip)),  # callable returning an awaitable
    ],
)
def test_callable_stubs_and_approved_containment(stub):
    REAL_CALLS.clear()
    result = run(run_playbook(triage, ALERT, stubs={lookup: stub}, approvals=[True]))
    assert result.status == "succeeded", result.error
    assert result.result == {"blocked": ["203.0.113.7"]}
    assert REAL_CALLS == [("block", "203.0.113.7")]  # lookup was stubbed, block ran for real
    assert [(c.name, c.stubbed, c.seq) for c in result.calls] == [
        ("lookup", True, 0), ("lookup", True, 1), ("block", False, 5)]
    assert result.calls[2].args == {"ip": "203.0.113.7", "reason": "malicious"}  # defaults applied
    assert result.calls_to(lookup)[1].result == {"ip": "203.0.113.7", "verdict": "malicious"}
    assert result.calls_to("block")[0].result == {"blocked": "203.0.113.7", "reason": "malicious"}
    assert result.approvals_asked == [{"title": "Block 203.0.113.7?", "details": {"ips": ["203.0.113.7"]},
                                       "approvers": ["soc"], "timeout_s": 3600.0, "default": "deny"}]
    assert result.case_changes == [
        {"op": "add_tag", "tag": "triaged"},
        {"op": "set_severity", "severity": "critical"},
        {"op": "add_observable", "type": "ip", "value": "203.0.113.7"},
        {"op": "set_status", "status": "resolved", "determination": "true_positive"},
    ]


async def async_stub(ip):
    await asyncio.sleep(0)
    return {"ip": ip, "verdict": "malicious"}


def test_async_stub_by_name_and_denied_approval():
    result = run(run_playbook(triage, ALERT, stubs={"lookup": async_stub}, approvals=[False]))
    assert result.result == {"blocked": []}
    assert result.case_changes[-1] == {"op": "comment", "text": "blocking was denied"}
    assert result.calls_to(block) == []


def test_value_stub_is_copied():
    value = {"ip": "x", "verdict": "malicious", "nested": []}
    result = run(run_playbook(triage, mock_alert(observables=[("ip", "1.1.1.1")]), stubs={lookup: value},
                              approvals=[True]))
    assert result.result == {"blocked": ["x"]} and value == {"ip": "x", "verdict": "malicious", "nested": []}


def test_exception_instance_stub_is_raised_without_retries():
    started = time.monotonic()
    result = run(run_playbook(triage, ALERT, stubs={lookup: malicious_if_public,
                                                    block: ConnectionError("firewall unreachable")},
                              approvals=[True]))
    assert time.monotonic() - started < 0.5  # block's retries/backoff do not apply to a stub
    assert result.status == "failed" and result.error == "ConnectionError: firewall unreachable"
    assert "Traceback" in result.traceback
    (call,) = result.calls_to(block)
    assert (call.outcome, call.error, call.stubbed, call.attempts, call.result) == (
        "error", "ConnectionError: firewall unreachable", True, 1, None)


def test_exception_class_stub():
    result = run(run_playbook(triage, ALERT, stubs={lookup: TimeoutError}))
    assert result.status == "failed"
    assert result.error == "TimeoutError: stubbed failure of action 'lookup'"
    assert [c.outcome for c in result.calls] == ["error", "error"]


def test_scripted_approvals_callable_and_dict_answers():
    seen = []

    def decide(title, details):
        seen.append((title, details))
        return {"approved": "203.0.113.7" in title, "comment": "ok by the script"}

    result = run(run_playbook(triage, ALERT, stubs={lookup: malicious_if_public}, approvals=decide))
    assert result.result == {"blocked": ["203.0.113.7"]}
    assert seen == [("Block 203.0.113.7?", {"ips": ["203.0.113.7"]})]

    async def async_decide(title, details):
        return False

    result = run(run_playbook(triage, ALERT, stubs={lookup: malicious_if_public}, approvals=async_decide))
    assert result.result == {"blocked": []}


@playbook
async def two_approvals(alert, run):
    first = await approval("first?")
    second = await approval("second?", default="approve")
    return {"answers": [first, second]}


def test_approval_answers_are_used_in_order():
    assert run(run_playbook(two_approvals, approvals=[True, False])).result == {"answers": [True, False]}


@pytest.mark.parametrize(
    ("approvals", "message"),
    [
        (None, "approval 'first\\?' was requested but run_playbook\\(\\) got no approvals: pass approvals=\\[True\\]"),
        ([True], "approval #2 \\('second\\?'\\) was requested but approvals= scripts only 1 answer\\(s\\)"),
        (["yes"], "invalid scripted approval answer 'yes'"),
        (lambda title, details: 1 / 0, "the approvals callable raised ZeroDivisionError"),
    ],
)
def test_missing_or_invalid_approval_answers_fail_the_run(approvals, message):
    result = run(run_playbook(two_approvals, approvals=approvals))
    assert result.status == "failed"
    assert result.error is not None and __import__("re").search(message, result.error), result.error


@playbook(trigger="schedule:0 * * * *")
async def patient(alert, run):
    await sleep("1h")
    await sleep(1.5)
    return {"alert": alert is None, "trigger": run.trigger}


def test_sleep_returns_immediately_in_tests():
    started = time.monotonic()
    result = run(run_playbook(patient))
    assert time.monotonic() - started < 0.5
    assert result.result == {"alert": True, "trigger": "schedule"} and result.sleeps == [3600.0, 1.5]


@playbook
async def nested(alert, run):
    return await enrich("192.0.2.1")


def test_stubs_apply_to_nested_action_calls():
    result = run(run_playbook(nested, stubs={lookup: {"verdict": "stubbed"}}))
    assert result.result == {"lookup": {"verdict": "stubbed"}}
    assert [(c.name, c.seq, c.nested, c.stubbed, c.outcome) for c in result.calls] == [
        ("enrich", 0, False, False, "ok"), ("lookup", None, True, True, "ok")]
    assert result.calls[1].args == {"ip": "192.0.2.1"}


@playbook
async def json_checks(alert, run):
    try:
        await returns_set()
    except TypeError as exc:
        return {"error": str(exc)}


@playbook
async def bad_return(alert, run):
    return {"when": object()}


def test_json_serializability_is_enforced():
    result = run(run_playbook(json_checks))
    assert "returned a non-JSON-serializable result" in result.result["error"]
    (call,) = result.calls
    assert call.outcome == "error" and call.error.startswith("TypeError: action 'returns_set' returned a non-JSON")
    result = run(run_playbook(bad_return))
    assert result.status == "failed" and "non-JSON-serializable" in result.error
    with pytest.raises(TypeError, match="input must be JSON-serializable"):
        run(run_playbook(bad_return, input={"x": {1}}))
    with pytest.raises(TypeError, match="the alert \\(including raw fields\\) must be JSON-serializable"):
        run(run_playbook(bad_return, mock_alert(raw={"x": object()})))


@playbook(trigger="manual")
async def context(alert, run):
    return {
        "alert": alert,
        "input": run.input,
        "token": run.secrets["API_TOKEN"],
        "run": [run.id, run.playbook, run.tenant, run.attempt, run.trigger],
        "keys": [await key(), await key()],
    }


def test_input_secrets_run_id_and_idempotency_keys():
    result = run(run_playbook(context, input={"hosts": ("a", "b")}, secrets={"API_TOKEN": "t"}, run_id="my-run"))
    assert result.result == {
        "alert": None,
        "input": {"hosts": ["a", "b"]},  # JSON round-trip, like the platform
        "token": "t",
        "run": ["my-run", "context", "default", 1, "manual"],
        "keys": ["my-run:0", "my-run:1"],
    }


def test_missing_secret_fails_the_run():
    result = run(run_playbook(context))
    assert result.status == "failed"
    assert result.error.startswith("SecretNotFound: secret 'API_TOKEN' is not set for tenant 'default'; "
                                   "set it with `tocsin secret set API_TOKEN`")


@playbook
async def skipper(alert, run):
    run.skip(f"nothing to do for {alert.tenant}")


def test_skip_alert_forms_and_plain_functions():
    assert run(run_playbook(skipper, {"title": "x", "tenant": "acme"})).status == "skipped"
    assert run(run_playbook(skipper, mock_alert(tenant="globex"))).error == "nothing to do for globex"

    async def undecorated(alert, run):
        return {"title": alert.title}

    assert run(run_playbook(undecorated, mock_alert(title="plain"))).result == {"title": "plain"}
    with pytest.raises(TypeError, match="alert must be an Alert"):
        run(run_playbook(skipper, ["not", "an", "alert"]))


@playbook
async def gather_failure(alert, run):
    await asyncio.gather(lookup("10.0.0.1"), slow(5))


def test_cancelled_siblings_are_recorded_as_cancelled():
    started = time.monotonic()
    result = run(run_playbook(gather_failure, stubs={lookup: RuntimeError("boom")}))
    assert time.monotonic() - started < 1
    assert result.status == "failed" and result.error == "RuntimeError: boom"
    assert [(c.name, c.outcome) for c in result.calls] == [("lookup", "error"), ("slow", "cancelled")]


@playbook(timeout="100ms")
async def too_slow(alert, run):
    await slow(5)


def test_playbook_timeout_applies():
    result = run(run_playbook(too_slow))
    assert (result.status, result.error) == ("timed_out", "playbook timed out after 0.1s")


@pytest.mark.parametrize(
    ("stubs", "error", "message"),
    [
        ({triage: 1}, TypeError, "expected an @action function or an action name"),
        ({lookup.func: 1}, TypeError, "expected an @action function or an action name"),
        ({"tocsin.approval": True}, ValueError, "is a system step; use approvals="),
        ([("lookup", 1)], TypeError, "stubs must be a mapping"),
    ],
)
def test_invalid_stubs(stubs, error, message):
    with pytest.raises(error, match=message):
        run(run_playbook(triage, stubs=stubs))


def test_invalid_approvals_argument():
    with pytest.raises(TypeError, match="approvals must be a list"):
        run(run_playbook(two_approvals, approvals="yes"))
