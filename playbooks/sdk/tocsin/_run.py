"""The :class:`Run` handle passed to playbooks, and the per-run state the
runtime keeps in a context variable while a playbook executes."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from typing import Any, NoReturn

from ._types import Skip

__all__ = ["Run", "RunState", "current_run_state", "LOG_LEVELS"]

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


_CURRENT: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("tocsin_current_run", default=None)


def current_run_state() -> RunState | None:
    """The state of the run executing in the current context, if any."""
    return _CURRENT.get()


def set_current_run_state(state: RunState | None) -> contextvars.Token[RunState | None]:
    return _CURRENT.set(state)


class Run:
    """Information about the current run, and a few run-level operations.

    The runtime creates it for every run. In unit tests construct one
    directly: ``Run()`` (all arguments have defaults) logs through the
    standard :mod:`logging` module under the ``tocsin.run`` logger.
    """

    __slots__ = ("_id", "_playbook", "_tenant", "_attempt", "_host")

    def __init__(
        self,
        id: str = "local",
        playbook: str = "local",
        tenant: str = "default",
        attempt: int = 1,
        *,
        host: Any = None,
    ) -> None:
        self._id = str(id)
        self._playbook = str(playbook)
        self._tenant = str(tenant)
        self._attempt = int(attempt)
        self._host = host

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
