"""System steps: platform-side effects requested by playbook code.

Case updates, approvals and durable sleeps are journaled steps like action
calls, under reserved names starting with ``tocsin.``: the runtime sends
``host.step_intent(run_id, seq, "tocsin.<op>", args_json, True)`` and the
platform performs the effect itself, then answers ``replay`` with its result
(or ``abort``). A system step is never executed by Python: an ``execute``
decision for one is reported as a failed step and raised.

Approvals and sleeps suspend the run while they are pending: the platform
answers ``abort`` with status ``waiting_approval`` / ``sleeping``, the run
reports that status and ends, and the platform re-dispatches it later; the new
attempt replays every recorded step from the top and gets the decision.

Every function here returns a coroutine *without* being a coroutine function
itself: the step's sequence number is allocated when the function is called
(like :class:`~tocsin.Action` calls), so ``asyncio.gather`` orders steps by
argument position.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Coroutine, Iterable, Mapping

from ._duration import parse_duration
from ._run import RunState, current_run_state, current_step_key
from ._types import OBSERVABLE_TYPES, RunAborted, normalize_severity

__all__ = [
    "SYSTEM_PREFIX",
    "CASE_STATUSES",
    "DETERMINATIONS",
    "APPROVAL_DEFAULTS",
    "SUSPEND_STATUSES",
    "Case",
    "approval",
    "sleep",
    "system_step",
]

#: Step names starting with this prefix are reserved for system steps.
SYSTEM_PREFIX = "tocsin."
#: Accepted values of ``run.case.set_status(status)``.
CASE_STATUSES: tuple[str, ...] = ("new", "in_progress", "resolved", "closed")
#: Accepted values of ``determination=`` (required when resolving a case).
DETERMINATIONS: tuple[str, ...] = ("true_positive", "false_positive", "benign")
#: Accepted values of ``approval(default=...)``: the answer applied when the
#: approval times out.
APPROVAL_DEFAULTS: tuple[str, ...] = ("deny", "approve")
#: Abort statuses that suspend a run instead of ending it for good.
SUSPEND_STATUSES: tuple[str, ...] = ("waiting_approval", "sleeping")


def system_step(op: str, args: Mapping[str, Any]) -> Coroutine[Any, Any, Any]:
    """Start the system step ``tocsin.<op>`` with ``args``; returns the
    coroutine resolving to the result the platform replays (``None`` when it
    replays no result).

    :raises RuntimeError: outside a run or inside an action body.
    :raises TypeError: if ``args`` is not JSON-serializable.
    """
    name = SYSTEM_PREFIX + op
    state = _require_run_state(name)
    try:
        args_json = json.dumps(dict(args), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: arguments must be JSON-serializable: {exc}") from None
    if state.closed:
        return _refuse_closed(state, name)
    seq = state.next_seq()
    return _perform(state, seq, name, args_json)


def _require_run_state(name: str) -> RunState:
    state = current_run_state()
    if state is not None:
        return state
    if current_step_key() is not None:
        raise RuntimeError(
            f"{name} cannot be used inside an @action body: case updates, approvals and durable sleeps are "
            "steps of the playbook itself; call them from the playbook function"
        )
    raise RuntimeError(
        f"{name} needs the Tocsin platform: it only works inside a run (in unit tests, run the playbook "
        "with tocsin.testing.run_playbook)"
    )


async def _refuse_closed(state: RunState, name: str) -> Any:
    raise asyncio.CancelledError(f"run {state.run_id} has already finished; {name} not started")


async def _perform(state: RunState, seq: int, name: str, args_json: str) -> Any:
    task = asyncio.current_task()
    state.track_step(task)
    try:
        decision = await state.decide(seq, name, args_json, True)
        if decision.get("decision") == "execute":
            error = f"system step {name} must be performed by the platform"
            state.report_result(seq, False, None, error, 0, 0)
            raise RuntimeError(error)
        return state.replayed_value(seq, name, decision)
    finally:
        state.untrack_step(task)


# ---------------------------------------------------------------------------
# Case operations
# ---------------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


class Case:
    """Operations on the case of the current run (``run.case``).

    Each method validates its arguments immediately (raising
    :class:`ValueError`), then returns an awaitable system step
    ``tocsin.case.<method>``; awaiting it returns the result the platform
    recorded (a dict) or ``None``. Only usable from playbook code inside a
    run (or under :func:`tocsin.testing.run_playbook`), not from an action
    body.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<Case of the current run>"

    def comment(self, text: str) -> Coroutine[Any, Any, dict[str, Any] | None]:
        """Add a comment (markdown text) to the case."""
        return system_step("case.comment", {"text": _text(text, "case comment text")})

    def set_status(
        self, status: str, *, determination: str | None = None
    ) -> Coroutine[Any, Any, dict[str, Any] | None]:
        """Move the case to ``status`` (one of :data:`CASE_STATUSES`).

        ``determination`` (one of :data:`DETERMINATIONS`) is required for
        ``resolved``, optional for ``closed`` and refused otherwise.
        """
        if status not in CASE_STATUSES:
            raise ValueError(f"invalid case status {status!r}; expected one of {', '.join(CASE_STATUSES)}")
        if determination is not None and determination not in DETERMINATIONS:
            raise ValueError(
                f"invalid case determination {determination!r}; expected one of {', '.join(DETERMINATIONS)}"
            )
        if status == "resolved" and determination is None:
            raise ValueError(
                "resolving a case requires a determination: "
                f"set_status('resolved', determination=...) with one of {', '.join(DETERMINATIONS)}"
            )
        if status in ("new", "in_progress") and determination is not None:
            raise ValueError(f"a determination only applies to resolved or closed cases, not {status!r}")
        return system_step("case.set_status", {"status": status, "determination": determination})

    def set_severity(self, severity: str) -> Coroutine[Any, Any, dict[str, Any] | None]:
        """Set the case severity (``info``, ``low``, ``medium``, ``high`` or ``critical``)."""
        return system_step("case.set_severity", {"severity": normalize_severity(severity)})

    def add_tag(self, tag: str) -> Coroutine[Any, Any, dict[str, Any] | None]:
        """Add a tag to the case (adding an existing tag is a no-op on the platform)."""
        return system_step("case.add_tag", {"tag": _text(tag, "case tag").strip()})

    def add_observable(self, type: str, value: str) -> Coroutine[Any, Any, dict[str, Any] | None]:
        """Attach an observable (``ip``, ``domain``, ``url``, ``hash``,
        ``email``, ``user`` or ``host``) to the case."""
        kind = type.strip().lower() if isinstance(type, str) else type
        if kind not in OBSERVABLE_TYPES:
            raise ValueError(f"invalid observable type {type!r}; expected one of {', '.join(OBSERVABLE_TYPES)}")
        return system_step("case.add_observable", {"type": kind, "value": _text(value, "observable value").strip()})


# ---------------------------------------------------------------------------
# Approvals and sleeps
# ---------------------------------------------------------------------------


def approval(
    title: str,
    details: Any = None,
    approvers: Iterable[str] | None = None,
    timeout: str | float = "1h",
    default: str = "deny",
) -> Coroutine[Any, Any, bool]:
    """Ask a human to approve something; resolves to ``True`` if approved.

    The run is suspended (status ``waiting_approval``, no worker slot held)
    until someone decides or ``timeout`` passes, in which case ``default``
    (``"deny"`` or ``"approve"``) applies. The run then resumes by replaying
    its recorded steps, so the code before the approval must be
    deterministic.

    :param title: one line shown to approvers.
    :param details: optional JSON data (text or an object) shown with it.
    :param approvers: user names or group names allowed to decide
        (``None``: anyone allowed to act on the tenant's cases).
    :param timeout: how long to wait, e.g. ``"30m"``, ``"1h"`` or seconds.
    :param default: the answer when the approval times out.
    :raises ValueError: on invalid arguments.
    """
    title = _text(title, "approval title")
    approver_list: list[str] | None = None
    if approvers is not None:
        if isinstance(approvers, str):
            raise ValueError(f"approvers must be a list of names, got the string {approvers!r}")
        approver_list = [_text(a, "approver") for a in approvers]
    if default not in APPROVAL_DEFAULTS:
        raise ValueError(f"invalid approval default {default!r}; expected 'deny' or 'approve'")
    timeout_s = parse_duration(timeout, field="approval timeout")
    args = {
        "title": title,
        "details": details,
        "approvers": approver_list,
        "timeout_s": timeout_s,
        "default": default,
    }
    return _approval(system_step("approval", args))


async def _approval(step: Coroutine[Any, Any, Any]) -> bool:
    result = await step
    if not isinstance(result, Mapping) or not isinstance(result.get("approved"), bool):
        state = current_run_state()
        reason = f"protocol error: invalid result for tocsin.approval: {result!r}"
        raise state.abort("failed", reason) if state is not None else RunAborted("failed", reason)
    return result["approved"]


def sleep(duration: str | float) -> Coroutine[Any, Any, None]:
    """Pause the playbook for ``duration`` (``"10m"``, ``"1h"`` or seconds).

    Inside a run this is a durable timer: the run is suspended (status
    ``sleeping``, no worker slot held) and resumed by the platform when the
    timer fires. Outside a run it is a plain :func:`asyncio.sleep`; under
    :func:`tocsin.testing.run_playbook` it returns immediately.

    :raises ValueError: on an invalid duration.
    :raises RuntimeError: inside an action body (use :func:`asyncio.sleep` there).
    """
    seconds = parse_duration(duration, field="sleep duration", allow_zero=True)
    if not math.isfinite(seconds):  # pragma: no cover - parse_duration refuses it
        raise ValueError(f"sleep duration must be finite, got {duration!r}")
    if current_run_state() is None and current_step_key() is None:
        return asyncio.sleep(seconds)
    return _sleep(system_step("sleep", {"seconds": seconds}))


async def _sleep(step: Coroutine[Any, Any, Any]) -> None:
    await step
    return None
