"""The :class:`Run` handle passed to playbooks, and the per-run state the
runtime keeps in a context variable while a playbook executes.

Three context variables carry the execution context:

* the current :class:`RunState` (set for playbook code, cleared inside action
  bodies so that actions they call are plain calls);
* the current step's idempotency key (set while an action body runs, see
  :func:`idempotency_key`);
* the :mod:`tocsin.testing` session, if any (stubs and call recording).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from typing import TYPE_CHECKING, Any, Mapping, NoReturn

from ._secrets import Secrets
from ._types import ActionFailed, RunAborted, Skip

if TYPE_CHECKING:
    from ._system import Case

__all__ = [
    "Run",
    "RunState",
    "current_run_state",
    "set_current_run_state",
    "current_step_key",
    "set_current_step_key",
    "idempotency_key",
    "current_test_session",
    "set_current_test_session",
    "LOG_LEVELS",
    "DECISIONS",
]

#: Decisions a ``step_decision`` message may carry.
DECISIONS: tuple[str, ...] = ("execute", "replay", "abort")

#: Levels accepted by :meth:`Run.log` and forwarded to ``host.run_log``.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

_PY_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_logger = logging.getLogger("tocsin.run")


class RunState:
    """Runtime bookkeeping for one playbook run (one attempt).

    Actions find it through :func:`current_run_state`; the runtime resolves
    the decision futures it holds when ``step_decision`` messages arrive.
    """

    def __init__(self, run_id: str, host: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.run_id = run_id
        self.host = host
        self.loop = loop
        self.closed = False
        #: The first abort the platform decided for this run (or a protocol
        #: error that ends it). Once set, it decides the run's final status
        #: even if playbook code swallowed the exception (e.g. with
        #: ``asyncio.gather(..., return_exceptions=True)``), and no further
        #: step is started.
        self.aborted: RunAborted | None = None
        self._next_seq = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._step_tasks: set[asyncio.Task[Any]] = set()

    def next_seq(self) -> int:
        """Allocate the next step sequence number (0, 1, 2, ...)."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def expect_decision(self, seq: int) -> asyncio.Future[dict[str, Any]]:
        """Register (and return) the future that the decision for ``seq`` resolves."""
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._pending[seq] = future
        return future

    def forget_decision(self, seq: int) -> None:
        self._pending.pop(seq, None)

    def resolve_decision(self, seq: int, payload: dict[str, Any]) -> bool:
        """Resolve the pending decision for ``seq``; False if none is pending."""
        future = self._pending.pop(seq, None)
        if future is None or future.done():
            return False
        future.set_result(payload)
        return True

    def track_step(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._step_tasks.add(task)

    def untrack_step(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._step_tasks.discard(task)

    def straggler_tasks(self, exclude: asyncio.Task[Any] | None = None) -> list[asyncio.Task[Any]]:
        """Tasks still executing a step of this run (other than ``exclude``)."""
        return [t for t in self._step_tasks if t is not exclude and not t.done()]

    # -- the journaled step protocol --------------------------------------------

    def abort(self, status: str, reason: str) -> RunAborted:
        """Record that the run must end with ``status`` (the first abort wins)
        and return the exception to raise."""
        if self.aborted is None:
            self.aborted = RunAborted(status, reason)
        return RunAborted(status, reason)

    def _raise_if_aborted(self) -> None:
        if self.aborted is not None:
            raise RunAborted(self.aborted.status, self.aborted.reason)

    async def decide(self, seq: int, action: str, args_json: str, idempotent: bool) -> Mapping[str, Any]:
        """Send ``step_intent`` for step ``seq`` and wait for its decision.

        Returns the decision payload when it is ``execute`` or ``replay``.
        Raises :class:`RunAborted` for ``abort`` (recording it, see
        :attr:`aborted`), for an unknown decision and when the host fails.
        """
        self._raise_if_aborted()
        future = self.expect_decision(seq)
        try:
            try:
                self.host.step_intent(self.run_id, seq, action, args_json, idempotent)
            except Exception as exc:
                raise self.abort(
                    "failed", f"host error on step_intent for step {seq}: {_describe_error(exc)}"
                ) from exc
            decision = await future
        finally:
            self.forget_decision(seq)
        kind = decision.get("decision")
        if kind == "abort":
            raise self.abort(str(decision.get("status") or "failed"), str(decision.get("reason") or ""))
        if kind not in ("execute", "replay"):
            raise self.abort("failed", f"protocol error: unknown decision {kind!r} for step {seq} ({action})")
        return decision

    def report_result(
        self, seq: int, ok: bool, result_json: str | None, error: str | None, attempts: int, duration_ms: int
    ) -> None:
        """Send ``step_result``; a host failure aborts the run."""
        try:
            self.host.step_result(self.run_id, seq, ok, result_json, error, attempts, duration_ms)
        except Exception as exc:
            raise self.abort("failed", f"host error on step_result for step {seq}: {_describe_error(exc)}") from exc

    def replayed_value(self, seq: int, action: str, decision: Mapping[str, Any]) -> Any:
        """The value of a ``replay`` decision: the decoded ``result_json``, or
        :class:`~tocsin.ActionFailed` raised with the recorded ``error``."""
        error = decision.get("error")
        if error is not None:
            raise ActionFailed(str(error))
        result_json = decision.get("result_json")
        if result_json is None:
            return None
        try:
            return json.loads(result_json)
        except (TypeError, ValueError) as exc:
            raise self.abort(
                "failed", f"protocol error: invalid result_json replayed for step {seq} ({action}): {exc}"
            ) from None


def _describe_error(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


_CURRENT: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("tocsin_current_run", default=None)


def current_run_state() -> RunState | None:
    """The state of the run executing in the current context, if any."""
    return _CURRENT.get()


def set_current_run_state(state: RunState | None) -> contextvars.Token[RunState | None]:
    return _CURRENT.set(state)


_STEP_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("tocsin_step_key", default=None)


def current_step_key() -> str | None:
    """The idempotency key of the action body running in this context, if any."""
    return _STEP_KEY.get()


def set_current_step_key(key: str | None) -> contextvars.Token[str | None]:
    return _STEP_KEY.set(key)


def idempotency_key() -> str:
    """The idempotency key of the step whose action body is running.

    Inside a run it is ``"<run_id>:<seq>"``: the same value every time the
    platform (re-)executes that step, including retries and re-executions
    after a crash, so it can be handed to external APIs that de-duplicate
    requests (``Idempotency-Key`` headers, client request ids...). Actions
    called from inside the body share the key of the enclosing step. An
    action called outside any run (e.g. awaited directly in a unit test)
    gets a fresh ``"local:<hex>"`` key per call.

    :raises RuntimeError: outside an action body.
    """
    key = _STEP_KEY.get()
    if key is None:
        raise RuntimeError(
            "idempotency_key is only available inside an @action body (it identifies the step being executed); "
            "call it from the action that performs the side effect"
        )
    return key


_TRACEPARENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tocsin_traceparent", default=None)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the platform span the current code runs under: the
    action call's span inside an action body, the run's span elsewhere in a run, ``None``
    outside the platform. :mod:`tocsin.http` sends it with every request."""
    return _TRACEPARENT.get()


def set_current_traceparent(value: str | None) -> contextvars.Token[str | None]:
    return _TRACEPARENT.set(value if isinstance(value, str) and value else None)


_TEST_SESSION: contextvars.ContextVar[Any] = contextvars.ContextVar("tocsin_test_session", default=None)


def current_test_session() -> Any:
    """The :mod:`tocsin.testing` session driving this context, if any."""
    return _TEST_SESSION.get()


def set_current_test_session(session: Any) -> contextvars.Token[Any]:
    return _TEST_SESSION.set(session)


class Run:
    """Information about the current run, and a few run-level operations.

    The runtime creates it for every run. In unit tests construct one
    directly: ``Run()`` (all arguments have defaults) logs through the
    standard :mod:`logging` module under the ``tocsin.run`` logger; or use
    :func:`tocsin.testing.run_playbook`, which also provides case
    operations, approvals and stubs.
    """

    __slots__ = ("_id", "_playbook", "_tenant", "_attempt", "_host", "_input", "_secrets", "_trigger", "_case")

    def __init__(
        self,
        id: str = "local",
        playbook: str = "local",
        tenant: str = "default",
        attempt: int = 1,
        *,
        host: Any = None,
        input: Any = None,
        secrets: Mapping[str, str] | None = None,
        trigger: str = "alert",
    ) -> None:
        self._id = str(id)
        self._playbook = str(playbook)
        self._tenant = str(tenant)
        self._attempt = int(attempt)
        self._host = host
        self._input = input
        self._secrets = secrets if isinstance(secrets, Secrets) else Secrets(secrets, tenant=self._tenant)
        self._trigger = str(trigger)
        self._case: Case | None = None

    @property
    def id(self) -> str:
        """Run identifier (stable across attempts of the same run)."""
        return self._id

    @property
    def playbook(self) -> str:
        """Name of the playbook being run."""
        return self._playbook

    @property
    def tenant(self) -> str:
        """Tenant the alert and the run belong to."""
        return self._tenant

    @property
    def attempt(self) -> int:
        """1 for the first execution, incremented each time the run is re-delivered."""
        return self._attempt

    @property
    def input(self) -> Any:
        """The run's input: any JSON value given when the run was started
        (e.g. by ``tocsin run`` for a manual playbook); ``None`` by default."""
        return self._input

    @property
    def secrets(self) -> Secrets:
        """The tenant's secrets, a read-only mapping of name to value.

        ``run.secrets["VT_API_KEY"]`` raises :class:`~tocsin.SecretNotFound`
        when the secret is not set (``tocsin secret set VT_API_KEY``)."""
        return self._secrets

    @property
    def trigger(self) -> str:
        """What started the run: ``"alert"`` (default), ``"manual"``, ``"schedule"``..."""
        return self._trigger

    @property
    def case(self) -> "Case":
        """Operations on the case of this run's alert (comment, status,
        severity, tags, observables); see :class:`tocsin.Case`."""
        if self._case is None:
            from ._system import Case  # local import: _system depends on this module

            self._case = Case()
        return self._case

    @property
    def idempotency_key(self) -> str:
        """The current step's idempotency key (``"<run_id>:<seq>"``); see
        :func:`tocsin.idempotency_key`. Only available inside an action body."""
        return idempotency_key()

    def __repr__(self) -> str:
        return f"Run(id={self._id!r}, playbook={self._playbook!r}, tenant={self._tenant!r}, attempt={self._attempt})"

    # -- logging -------------------------------------------------------------

    def log(self, msg: str, **fields: Any) -> None:
        """Record an ``info`` message in the run's log, with structured ``fields``."""
        self._emit("info", msg, fields)

    def debug(self, msg: str, **fields: Any) -> None:
        """Record a ``debug`` message in the run's log."""
        self._emit("debug", msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        """Record a ``warning`` message in the run's log."""
        self._emit("warning", msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        """Record an ``error`` message in the run's log."""
        self._emit("error", msg, fields)

    def _emit(self, level: str, msg: str, fields: dict[str, Any]) -> None:
        fields_json = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        if self._host is None:
            if fields:
                _logger.log(_PY_LEVELS[level], "[%s] %s %s", self._id, msg, fields_json)
            else:
                _logger.log(_PY_LEVELS[level], "[%s] %s", self._id, msg)
            return
        try:
            self._host.run_log(self._id, level, str(msg), fields_json)
        except Exception:
            # Logging must never break a playbook; fall back to stderr.
            _logger.exception("host.run_log failed for run %s; message was: %s %s", self._id, msg, fields_json)

    # -- control flow --------------------------------------------------------

    def skip(self, reason: str) -> NoReturn:
        """End the run now with status ``skipped`` (raises :class:`~tocsin.Skip`)."""
        raise Skip(reason)
