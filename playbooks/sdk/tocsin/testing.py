"""Helpers to unit-test playbooks in-process, without the platform::

    import asyncio
    from tocsin.testing import mock_alert, run_playbook
    from myplaybooks.triage import triage, lookup

    def test_triage_blocks_malicious_ip():
        alert = mock_alert(source="suricata", observables=[("ip", "203.0.113.7")])
        result = asyncio.run(run_playbook(
            triage, alert,
            stubs={lookup: {"verdict": "malicious"}},
            approvals=[True],
            secrets={"VT_API_KEY": "test-key"},
        ))
        assert result.status == "succeeded"
        assert result.case_changes == [{"op": "add_tag", "tag": "malicious"}]
        assert [c.name for c in result.calls] == ["lookup", "block_ip"]

:func:`run_playbook` drives the playbook through the same journaled-step code
as the real runtime, with an in-process platform stand-in: every action call
is a step (sequence numbers, JSON round-trips of arguments and results, the
idempotency key), ``run.case`` changes are recorded, approvals are answered
from a script and :func:`tocsin.sleep` returns immediately.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import json
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._decorators import Action, Playbook
from ._run import Run, RunState, set_current_test_session
from ._runtime import execute_playbook
from ._secrets import Secrets
from ._system import SYSTEM_PREFIX
from ._types import Alert

__all__ = ["mock_alert", "run_playbook", "Result", "ActionCall"]

#: ``decided_by`` reported for scripted approval answers.
SCRIPTED_APPROVER = "tocsin.testing"


def mock_alert(**fields: Any) -> Alert:
    """An :class:`~tocsin.Alert` for tests, with the defaults of
    :meth:`Alert.build` (``title="t"``, ``severity="high"``,
    ``source="test"``, ``tenant="default"``, a random ``test-...`` id).

    Any alert field may be given, e.g. ``mock_alert(source="wazuh",
    observables=[("ip", "10.0.0.1")], raw={"rule": {"level": 12}})``.
    """
    return Alert.build(**fields)


@dataclass
class ActionCall:
    """One action call made during :func:`run_playbook`.

    ``outcome`` is ``"ok"`` (see ``result``), ``"error"`` (see ``error``,
    ``"ExcType: message"``) or ``"cancelled"`` (the step never completed,
    e.g. a sibling of a failed ``asyncio.gather``). ``args`` holds the bound
    arguments (defaults applied) as journaled, i.e. as JSON data. ``seq`` is
    the step number, or ``None`` for an action called from inside another
    action's body (not a step on the platform either).
    """

    name: str
    args: dict[str, Any]
    outcome: str = "cancelled"
    result: Any = None
    error: str | None = None
    stubbed: bool = False
    seq: int | None = None
    attempts: int = 0

    @property
    def nested(self) -> bool:
        """Whether the call was made from inside another action's body."""
        return self.seq is None


@dataclass
class Result:
    """What :func:`run_playbook` observed.

    ``status`` is ``succeeded``, ``failed`` or ``skipped``; ``result`` the
    JSON round-trip of the returned dict (or ``None``); ``error`` /
    ``traceback`` describe a failure (``error`` is the skip reason for a
    skipped run). ``calls`` lists every action call in order, ``case_changes``
    every ``run.case`` operation as ``{"op": <method>, **args}``, ``logs``
    every ``run.log`` record as ``{"level", "message", "fields"}``,
    ``approvals_asked`` the arguments of every approval request (``title``,
    ``details``, ``approvers``, ``timeout_s``, ``default``) and ``sleeps``
    the duration of every :func:`tocsin.sleep`, in seconds.
    """

    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    calls: list[ActionCall] = field(default_factory=list)
    case_changes: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    approvals_asked: list[dict[str, Any]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def calls_to(self, action: Action | str) -> list[ActionCall]:
        """The calls of one action (given as the decorated function or its name)."""
        name = _action_name(action, "calls_to")
        return [c for c in self.calls if c.name == name]


# ---------------------------------------------------------------------------
# Stubs
# ---------------------------------------------------------------------------


def _action_name(key: object, what: str) -> str:
    if isinstance(key, types.MethodType) and isinstance(key.__func__, Action):
        key = key.__func__
    if isinstance(key, Action):
        return key.name
    if isinstance(key, str) and key:
        if key.startswith(SYSTEM_PREFIX):
            raise ValueError(
                f"{what}: {key!r} is a system step; use approvals= for approvals (case changes and sleeps "
                "are recorded, not stubbed)"
            )
        return key
    raise TypeError(f"{what}: expected an @action function or an action name, got {key!r}")


def _stub_body(name: str, stub: Any) -> Callable[..., Any]:
    """An ``async def`` standing in for the action body."""
    if isinstance(stub, BaseException):

        async def raise_instance(*args: Any, **kwargs: Any) -> Any:
            try:
                fresh = copy.copy(stub)  # a fresh traceback on every call
            except Exception:
                fresh = stub
            raise fresh

        return raise_instance
    if isinstance(stub, type) and issubclass(stub, BaseException):

        async def raise_class(*args: Any, **kwargs: Any) -> Any:
            try:
                exc = stub(f"stubbed failure of action {name!r}")
            except TypeError:  # an exception class with a different constructor
                exc = stub()
            raise exc

        return raise_class
    if callable(stub):

        async def call(*args: Any, **kwargs: Any) -> Any:
            value = stub(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value

        return call

    async def value(*args: Any, **kwargs: Any) -> Any:
        return copy.deepcopy(stub)

    return value


# ---------------------------------------------------------------------------
# The session: stubs, script and records for one run
# ---------------------------------------------------------------------------


class _Session:
    def __init__(self, stubs: Mapping[Any, Any] | None, approvals: Any) -> None:
        if stubs is not None and not isinstance(stubs, Mapping):
            raise TypeError(f"stubs must be a mapping of action to stub, got {type(stubs).__name__}")
        self._stubs: dict[str, Callable[..., Any]] = {}
        for key, stub in (stubs or {}).items():
            name = _action_name(key, "stubs")
            self._stubs[name] = _stub_body(name, stub)
        if approvals is not None and not callable(approvals):
            if isinstance(approvals, (str, bytes, Mapping)) or not isinstance(approvals, Iterable):
                raise TypeError("approvals must be a list of answers or a callable(title, details) -> bool")
            approvals = list(approvals)
        self._approvals = approvals
        self._approval_count = 0
        self.calls: list[ActionCall] = []
        self.case_changes: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.approvals_asked: list[dict[str, Any]] = []
        self.sleeps: list[float] = []

    # -- used by Action (tocsin._decorators) ------------------------------------

    def stub_for(self, name: str) -> Callable[..., Any] | None:
        return self._stubs.get(name)

    def record_call(self, name: str, args: dict[str, Any], result: Any, error: str | None, *, stubbed: bool) -> None:
        """Record a call made from inside an action body (not a step)."""
        outcome = "ok" if error is None else "error"
        self.calls.append(ActionCall(name, args, outcome, result, error, stubbed, None, 1))

    # -- approvals ---------------------------------------------------------------

    def next_approval(self, args: Mapping[str, Any]) -> Any:
        """The scripted answer (bool, mapping or awaitable) for this approval.

        :raises LookupError: with the message to fail the run with.
        """
        self._approval_count += 1
        title = args.get("title")
        if self._approvals is None:
            raise LookupError(
                f"approval {title!r} was requested but run_playbook() got no approvals: pass "
                "approvals=[True] (approve) or [False] (deny), one answer per approval, or a "
                "callable(title, details) -> bool"
            )
        if callable(self._approvals):
            return self._approvals(title, args.get("details"))
        if self._approval_count > len(self._approvals):
            raise LookupError(
                f"approval #{self._approval_count} ({title!r}) was requested but approvals= scripts only "
                f"{len(self._approvals)} answer(s)"
            )
        return self._approvals[self._approval_count - 1]


def _approval_result(answer: Any) -> str:
    """The replayed ``result_json`` for a scripted answer."""
    if isinstance(answer, bool):
        answer = {"approved": answer}
    if not isinstance(answer, Mapping) or not isinstance(answer.get("approved"), bool):
        raise LookupError(
            f"invalid scripted approval answer {answer!r}: expected True/False or a dict with a boolean 'approved'"
        )
    result = {"approved": answer["approved"], "decided_by": SCRIPTED_APPROVER, "comment": None, "timed_out": False}
    result.update({k: v for k, v in answer.items() if k in result})
    return json.dumps(result)


class _LocalHost:
    """The platform stand-in behind the run's :class:`RunState`."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.state: RunState | None = None
        self._steps: dict[int, ActionCall] = {}
        self._answer_tasks: set[asyncio.Task[Any]] = set()

    def _decide(self, seq: int, decision: dict[str, Any]) -> None:
        assert self.state is not None
        self.state.resolve_decision(seq, {"run_id": self.state.run_id, "seq": seq, **decision})

    def step_intent(self, run_id: str, seq: int, action: str, args_json: str, idempotent: bool) -> None:
        args = json.loads(args_json)
        if action.startswith(SYSTEM_PREFIX):
            self._system_step(seq, action[len(SYSTEM_PREFIX) :], args)
            return
        call = ActionCall(action, args, stubbed=self.session.stub_for(action) is not None, seq=seq)
        self.session.calls.append(call)
        self._steps[seq] = call
        self._decide(seq, {"decision": "execute"})

    def step_result(
        self,
        run_id: str,
        seq: int,
        ok: bool,
        result_json: str | None,
        error: str | None,
        attempts: int,
        duration_ms: int,
    ) -> None:
        call = self._steps.pop(seq, None)
        if call is None:
            return
        call.outcome = "ok" if ok else "error"
        call.result = None if result_json is None else json.loads(result_json)
        call.error = error
        call.attempts = attempts

    def run_log(self, run_id: str, level: str, message: str, fields_json: str) -> None:
        self.session.logs.append({"level": level, "message": message, "fields": json.loads(fields_json)})

    def _system_step(self, seq: int, op: str, args: dict[str, Any]) -> None:
        session = self.session
        if op.startswith("case."):
            session.case_changes.append({"op": op[len("case.") :], **args})
            self._decide(seq, {"decision": "replay", "result_json": None})
        elif op == "sleep":
            session.sleeps.append(float(args.get("seconds", 0)))
            self._decide(seq, {"decision": "replay", "result_json": None})
        elif op == "approval":
            session.approvals_asked.append(dict(args))
            try:
                answer = session.next_approval(args)
            except LookupError as exc:
                self._fail(seq, str(exc))
                return
            except Exception as exc:
                self._fail(seq, f"the approvals callable raised {type(exc).__name__}: {exc}")
                return
            if inspect.isawaitable(answer):
                task = asyncio.ensure_future(self._answer_later(seq, answer))
                self._answer_tasks.add(task)
                task.add_done_callback(self._answer_tasks.discard)
                return
            self._answer(seq, answer)
        else:
            self._fail(seq, f"unknown system step {SYSTEM_PREFIX}{op} (this SDK version does not simulate it)")

    def _answer(self, seq: int, answer: Any) -> None:
        try:
            result_json = _approval_result(answer)
        except LookupError as exc:
            self._fail(seq, str(exc))
            return
        self._decide(seq, {"decision": "replay", "result_json": result_json})

    async def _answer_later(self, seq: int, answer: Any) -> None:
        try:
            value = await answer
        except Exception as exc:
            self._fail(seq, f"the approvals callable raised {type(exc).__name__}: {exc}")
            return
        self._answer(seq, value)

    def _fail(self, seq: int, reason: str) -> None:
        self._decide(seq, {"decision": "abort", "status": "failed", "reason": reason})

    def run_finished(self, *args: Any) -> None:  # pragma: no cover - not used by run_playbook
        pass

    def inspect_result(self, *args: Any) -> None:  # pragma: no cover - not used by run_playbook
        pass


# ---------------------------------------------------------------------------
# run_playbook
# ---------------------------------------------------------------------------


def _json_round_trip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serializable (the platform sends it as JSON): {exc}") from None


async def run_playbook(
    fn: Playbook | Callable[..., Any],
    alert: Alert | Mapping[str, Any] | None = None,
    *,
    stubs: Mapping[Any, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    approvals: Iterable[Any] | Callable[[str, Any], Any] | None = None,
    input: Any = None,
    run_id: str | None = None,
) -> Result:
    """Run a playbook in-process, as the platform would, and report what happened.

    :param fn: the ``@playbook`` (a plain ``async def f(alert, run)`` is
        accepted too, with the default playbook settings).
    :param alert: the triggering alert (an :class:`~tocsin.Alert` or its JSON
        form). Defaults to :func:`mock_alert()` for alert-triggered playbooks
        and ``None`` for manual and scheduled ones.
    :param stubs: ``{action: stub}`` where ``action`` is the ``@action``
        function or its name, and ``stub`` is a value (the result), a
        callable (sync or async, called with the action's arguments; its
        return value is the result) or an exception instance or class
        (raised). A stub replaces the whole call (no retries); it also
        applies to actions called from inside other actions. Actions without
        a stub run for real.
    :param secrets: ``run.secrets`` (name to string).
    :param approvals: successive answers to :func:`tocsin.approval`
        (``True``/``False``, or a dict with ``approved`` and optionally
        ``decided_by``, ``comment``, ``timed_out``), or a
        ``callable(title, details)`` returning such an answer (it may be
        async). An approval without a scripted answer fails the run.
    :param input: ``run.input`` (JSON data).
    :param run_id: the run id (default: a random ``test-...`` id); steps'
        idempotency keys are ``"<run_id>:<seq>"``.
    :returns: a :class:`Result`. The run's own failures (exceptions, timeout,
        invalid result) are reported in it, not raised.
    :raises TypeError: / :raises ValueError: on invalid arguments.
    """
    playbook = fn if isinstance(fn, Playbook) else Playbook(fn)
    if alert is None:
        alert = mock_alert() if playbook.trigger == "alert" else None
    elif isinstance(alert, Mapping):
        alert = Alert.from_dict(alert)
    elif not isinstance(alert, Alert):
        raise TypeError(f"alert must be an Alert, its JSON form or None, got {type(alert).__name__}")
    if alert is not None:
        alert = Alert.from_dict(_json_round_trip(alert.to_dict(), "the alert (including raw fields)"))
    input = _json_round_trip(input, "input")
    run_id = run_id or f"test-{uuid.uuid4().hex[:12]}"
    tenant = alert.tenant if alert is not None and alert.tenant else "default"
    trigger = "alert" if playbook.trigger == "alert" else playbook.trigger.split(":", 1)[0]

    session = _Session(stubs, approvals)
    host = _LocalHost(session)
    state = RunState(run_id, host, asyncio.get_running_loop())
    host.state = state
    run = Run(
        id=run_id,
        playbook=playbook.name,
        tenant=tenant,
        attempt=1,
        host=host,
        input=input,
        secrets=Secrets(secrets, tenant=tenant),
        trigger=trigger,
    )
    context = contextvars.Context()
    context.run(set_current_test_session, session)
    task = asyncio.get_running_loop().create_task(
        execute_playbook(playbook, alert, run, state), name=f"tocsin-test-run-{run_id}", context=context
    )
    status, result_json, error, tb = await task
    return Result(
        status=status,
        result=None if result_json is None else json.loads(result_json),
        error=error,
        traceback=tb,
        calls=session.calls,
        case_changes=session.case_changes,
        logs=session.logs,
        approvals_asked=session.approvals_asked,
        sleeps=session.sleeps,
    )
