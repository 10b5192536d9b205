"""The playbook runtime, driven by Tocsin's embedded-CPython runner process.

The Rust runner embeds CPython and calls :func:`serve` on its main thread with
a ``host`` object. ``serve`` runs an asyncio event loop; the runner feeds it
messages from a reader thread through the thread-safe ``submit(kind,
payload_json)`` callable that ``serve`` hands to ``host.attach``.

Host methods (all arguments are plain ``str`` / ``int`` / ``bool`` / ``None``;
return values are ignored)::

    host.attach(submit)
    host.step_intent(run_id, seq, action, args_json, idempotent)
    host.step_result(run_id, seq, ok, result_json, error, attempts, duration_ms)
    host.run_log(run_id, level, message, fields_json)
    host.run_finished(run_id, status, result_json, error, traceback)
    host.inspect_result(request_id, playbooks_json, error)
    host.http_request(request_id, method, url, headers_json, body, timeout_s)

``http_request`` (used by :mod:`tocsin.http` while the runtime is serving)
takes ``request_id: str``, ``method: str`` (upper case), ``url: str``
(``http``/``https`` only), ``headers_json: str`` (a JSON list of ``[name,
value]`` pairs), ``body: bytes | None`` and ``timeout_s: float``; the
answer comes back as an ``http_response`` message.

Messages (``kind`` and JSON payload):

``start_run``
    ``{"run_id", "tenant", "playbook", "bundle_dir", "bundle_hash", "attempt",
    "alert", "input"?, "secrets"?, "trigger"?, "traceparent"?}``; ``alert`` is ``null`` for
    a manual or scheduled run and the playbook then receives ``alert=None``.
    ``input`` (any JSON, default ``null``) becomes ``run.input``, ``secrets``
    (object of name to string, default ``{}``) ``run.secrets`` and ``trigger``
    (default ``"alert"``) ``run.trigger``; ``traceparent`` (the W3C trace
    context of the platform's span for the run) is sent by :mod:`tocsin.http`
    requests made outside actions. Loads the bundle (cached per hash),
    runs the playbook as a task under its timeout and reports
    ``run_finished`` with status ``succeeded``, ``failed``, ``skipped`` or
    the status of the platform's ``abort`` decision. An abort with status
    ``waiting_approval`` or ``sleeping`` *suspends* the run: it is reported
    as ``run_finished(run_id, status, None, reason, None)`` and the platform
    re-dispatches the run later (a new ``start_run`` that replays the
    recorded steps). A ``start_run`` for a run that is already running is
    ignored.
``step_decision``
    ``{"run_id", "seq", "decision": "execute"|"replay"|"abort", "result_json"?,
    "error"?, "status"?, "reason"?, "traceparent"?}`` answers a ``step_intent``
    (``traceparent``, with ``execute``, is the action call's span: requests
    the action body makes through :mod:`tocsin.http` carry it). Step names
    starting with ``tocsin.`` are system steps (case updates, approvals,
    sleeps) that the platform performs itself: it answers them with
    ``replay`` or ``abort``; an ``execute`` is reported as a failed step.
``http_response``
    ``{"request_id", "status": int, "headers": [[name, value], ...],
    "body_b64": str, "error": str|null}`` answers an ``http_request``;
    responses for unknown (e.g. cancelled) requests are ignored.
``cancel_run``
    ``{"run_id"}``: cancels the run; nothing is reported.
``inspect``
    ``{"request_id", "bundle_dir", "bundle_hash"}``: replies
    ``inspect_result(request_id, playbooks_json, None)`` or
    ``inspect_result(request_id, None, "<file>:<line>: <message>")``.
``shutdown``
    ``{}``: cancels in-flight runs (without reporting them: the platform
    re-delivers them) and makes :func:`serve` return.

Runner-level problems that belong to no run are reported with
``host.run_log("", "error", message, fields_json)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
import os
import sys
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from ._bundle import BundleError, LoadedBundle, load_bundle, unload_bundle
from ._decorators import Playbook
from ._duration import format_seconds
from ._run import Run, RunState, set_current_run_state, set_current_traceparent
from ._secrets import Secrets
from ._system import SUSPEND_STATUSES
from ._types import Alert, RunAborted, Skip

__all__ = ["Runtime", "serve", "active_runtime", "execute_playbook", "STATUSES", "SUSPEND_STATUSES"]

#: Final statuses reported by ``run_finished`` (a RunAborted may carry another one).
STATUSES: tuple[str, ...] = ("succeeded", "failed", "skipped", "timed_out")

_logger = logging.getLogger("tocsin.runtime")

#: Time allowed for cancelled tasks to unwind (on run end and on shutdown).
_CANCEL_GRACE_S = 5.0


class ProtocolError(ValueError):
    """A message from the host is malformed."""


@dataclass
class _ActiveRun:
    task: asyncio.Task[None]
    state: RunState
    bundle_hash: str


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _require_str(payload: dict[str, Any], key: str, kind: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{kind}: missing or invalid {key!r} (expected a non-empty string)")
    return value


class Runtime:
    """Message handling and run management for one event loop.

    :func:`serve` creates one; tests may drive one directly on their own
    loop through :meth:`_dispatch` (or :meth:`submit`).
    """

    def __init__(self, host: Any, loop: asyncio.AbstractEventLoop | None = None, *, max_bundles: int = 8) -> None:
        self._host = host
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._runs: dict[str, _ActiveRun] = {}
        self._bundles: collections.OrderedDict[str, LoadedBundle] = collections.OrderedDict()
        self._max_bundles = max(1, max_bundles)
        self._closing = False
        self._stopped = asyncio.Event()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "start_run": self._on_start_run,
            "step_decision": self._on_step_decision,
            "cancel_run": self._on_cancel_run,
            "inspect": self._on_inspect,
            "shutdown": self._on_shutdown,
            "http_response": self._on_http_response,
        }
        self._http_pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    # -- entry points ----------------------------------------------------------

    def submit(self, kind: str, payload_json: str) -> None:
        """Thread-safe: queue a message for the event loop.

        Messages arriving after the loop has been closed are dropped.
        """
        try:
            self._loop.call_soon_threadsafe(self._dispatch, kind, payload_json)
        except RuntimeError:
            pass  # loop closed: the runner is shutting down

    def _dispatch(self, kind: str, payload_json: str | bytes) -> None:
        """Handle one message on the loop thread. Never raises."""
        payload: dict[str, Any] = {}
        try:
            decoded = json.loads(payload_json)
            if not isinstance(decoded, dict):
                raise ProtocolError(f"{kind}: payload must be a JSON object, got {type(decoded).__name__}")
            payload = decoded
            handler = self._handlers.get(kind)
            if handler is None:
                raise ProtocolError(f"unknown message kind {kind!r}")
            handler(payload)
        except Exception as exc:
            self._report_dispatch_failure(kind, payload, exc)

    async def run_until_shutdown(self) -> None:
        """Wait until a ``shutdown`` message has been handled."""
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Cancel every in-flight run (no ``run_finished`` is reported)."""
        self._closing = True
        tasks: list[asyncio.Task[Any]] = []
        for active in list(self._runs.values()):
            tasks.extend(self._cancel_active(active))
        self._runs.clear()
        for future in self._http_pending.values():
            if future.done():
                continue
            if future.get_loop() is self._loop:
                future.cancel()
            else:
                try:
                    future.get_loop().call_soon_threadsafe(future.cancel)
                except RuntimeError:
                    pass  # that loop is closed already
        self._http_pending.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE_S)

    # -- handlers ----------------------------------------------------------------

    def _on_start_run(self, payload: dict[str, Any]) -> None:
        run_id = _require_str(payload, "run_id", "start_run")
        if self._closing:
            return  # shutting down; the platform re-delivers the run
        if run_id in self._runs:
            self._call_host("run_log", run_id, "warning", "duplicate start_run ignored: run is already running", "{}")
            return
        state = RunState(run_id, self._host, self._loop)
        task = self._loop.create_task(
            self._execute_run(payload, state), name=f"tocsin-run-{run_id}", context=contextvars.Context()
        )
        bundle_hash = payload.get("bundle_hash")
        self._runs[run_id] = _ActiveRun(task, state, bundle_hash if isinstance(bundle_hash, str) else "")
        task.add_done_callback(lambda t: self._on_run_done(run_id, t))

    def _on_step_decision(self, payload: dict[str, Any]) -> None:
        run_id = _require_str(payload, "run_id", "step_decision")
        seq = payload.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ProtocolError(f"step_decision: missing or invalid 'seq' for run {run_id}")
        active = self._runs.get(run_id)
        if active is None:
            self._call_host(
                "run_log", run_id, "warning", f"step_decision for step {seq} ignored: run is not running here", "{}"
            )
            return
        if not active.state.resolve_decision(seq, payload):
            self._call_host(
                "run_log", run_id, "warning", f"step_decision for step {seq} ignored: no step is waiting for it", "{}"
            )

    def _on_cancel_run(self, payload: dict[str, Any]) -> None:
        run_id = _require_str(payload, "run_id", "cancel_run")
        active = self._runs.pop(run_id, None)
        if active is not None:
            self._cancel_active(active)

    def _on_inspect(self, payload: dict[str, Any]) -> None:
        request_id = _require_str(payload, "request_id", "inspect")
        try:
            bundle = self._bundle(payload, "inspect")
            playbooks_json = json.dumps(bundle.describe())
        except (BundleError, ProtocolError) as exc:
            self._call_host("inspect_result", request_id, None, str(exc))
            return
        except Exception as exc:
            self._call_host("inspect_result", request_id, None, f"internal error: {_describe(exc)}")
            return
        self._call_host("inspect_result", request_id, playbooks_json, None)

    def _on_shutdown(self, payload: dict[str, Any]) -> None:
        self._closing = True
        self._stopped.set()

    def _on_http_response(self, payload: dict[str, Any]) -> None:
        request_id = _require_str(payload, "request_id", "http_response")
        future = self._http_pending.pop(request_id, None)
        if future is None or future.done():
            _logger.debug("http_response for unknown or finished request %s ignored", request_id)
            return
        if future.get_loop() is self._loop:
            future.set_result(payload)
        else:  # a request made from another event loop (e.g. in a worker thread)
            future.get_loop().call_soon_threadsafe(_resolve_if_pending, future, payload)

    # -- HTTP through the host ------------------------------------------------------

    @property
    def supports_http(self) -> bool:
        """Whether the host implements ``http_request``."""
        return callable(getattr(self._host, "http_request", None))

    async def http_roundtrip(
        self, method: str, url: str, headers_json: str, body: bytes | None, timeout_s: float
    ) -> dict[str, Any]:
        """Send ``host.http_request`` and wait for the matching
        ``http_response`` payload. Callable from any event loop.

        :raises OSError: (from the host) when the request cannot be sent.
        """
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._http_pending[request_id] = future
        try:
            self._host.http_request(request_id, method, url, headers_json, body, float(timeout_s))
            return await future
        finally:
            self._http_pending.pop(request_id, None)

    # -- runs --------------------------------------------------------------------

    async def _execute_run(self, payload: dict[str, Any], state: RunState) -> None:
        run_id = state.run_id
        # This task runs in its own context: the run's span is its trace parent.
        set_current_traceparent(payload.get("traceparent"))
        try:
            try:
                playbook, alert, run = self._prepare_run(payload, state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ProtocolError):
                    error, tb = str(exc), None
                else:
                    error, tb = f"could not start run: {_describe(exc)}", traceback.format_exc()
                self._release(run_id)
                self._call_host("run_finished", run_id, "failed", None, error, tb)
                return
            status, result_json, error, tb = await execute_playbook(playbook, alert, run, state)
            self._release(run_id)
            self._call_host("run_finished", run_id, status, result_json, error, tb)
        finally:
            state.closed = True

    def _release(self, run_id: str) -> None:
        """Forget the current task's run before reporting ``run_finished``: the
        platform may re-dispatch the run (e.g. a suspended one) as soon as it
        sees the report, and that ``start_run`` must not be taken for a
        duplicate."""
        active = self._runs.get(run_id)
        if active is not None and active.task is asyncio.current_task():
            del self._runs[run_id]

    def _prepare_run(self, payload: dict[str, Any], state: RunState) -> tuple[Playbook, Alert | None, Run]:
        name = payload.get("playbook")
        if not isinstance(name, str) or not name:
            raise ProtocolError("start_run: missing or invalid 'playbook'")
        try:
            bundle = self._bundle(payload, "start_run")
        except BundleError as exc:
            raise ProtocolError(f"bundle failed to load: {exc}") from exc
        playbook = bundle.playbooks.get(name)
        if playbook is None:
            known = ", ".join(sorted(bundle.playbooks)) or "none"
            raise ProtocolError(
                f"unknown playbook {name!r} in bundle {bundle.bundle_hash} (available: {known})"
            )
        alert_data = payload.get("alert")
        alert: Alert | None
        if alert_data is None:
            alert = None  # a manual run, not triggered by an alert
        elif isinstance(alert_data, dict):
            try:
                alert = Alert.from_dict(alert_data)
            except ValueError as exc:
                raise ProtocolError(f"invalid alert: {exc}") from exc
        else:
            raise ProtocolError("start_run: invalid 'alert' (expected a JSON object or null)")
        attempt = payload.get("attempt", 1)
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            attempt = 1
        tenant = payload.get("tenant")
        tenant = tenant if isinstance(tenant, str) and tenant else (alert.tenant if alert else "")
        secrets_data = payload.get("secrets")
        if secrets_data is None:
            secrets_data = {}
        if not isinstance(secrets_data, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in secrets_data.items()
        ):
            # Never echo the payload: it holds secret values.
            raise ProtocolError("start_run: invalid 'secrets' (expected an object of secret name to string)")
        trigger = payload.get("trigger")
        if trigger is None:
            trigger = "alert"
        if not isinstance(trigger, str) or not trigger:
            raise ProtocolError("start_run: invalid 'trigger' (expected a non-empty string)")
        run = Run(
            id=state.run_id,
            playbook=playbook.name,
            tenant=tenant,
            attempt=attempt,
            host=self._host,
            input=payload.get("input"),
            secrets=Secrets(secrets_data, tenant=tenant),
            trigger=trigger,
        )
        return playbook, alert, run

    def _cancel_active(self, active: _ActiveRun) -> list[asyncio.Task[Any]]:
        active.state.closed = True
        tasks = [active.task, *active.state.straggler_tasks(exclude=active.task)]
        for task in tasks:
            task.cancel()
        return tasks

    def _on_run_done(self, run_id: str, task: asyncio.Task[None]) -> None:
        active = self._runs.get(run_id)
        if active is not None and active.task is task:
            del self._runs[run_id]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._call_host(
                "run_log",
                run_id,
                "error",
                f"runtime error while running: {_describe(exc)}",
                json.dumps({"traceback": "".join(traceback.format_exception(exc))}),
            )

    # -- bundles -----------------------------------------------------------------

    def _bundle(self, payload: dict[str, Any], kind: str) -> LoadedBundle:
        bundle_hash = _require_str(payload, "bundle_hash", kind)
        cached = self._bundles.get(bundle_hash)
        if cached is not None:
            self._bundles.move_to_end(bundle_hash)
            return cached
        bundle_dir = _require_str(payload, "bundle_dir", kind)
        bundle = load_bundle(bundle_dir, bundle_hash)
        self._bundles[bundle_hash] = bundle
        self._evict_bundles()
        return bundle

    def _evict_bundles(self) -> None:
        in_use = {active.bundle_hash for active in self._runs.values()}
        for bundle_hash in list(self._bundles):
            if len(self._bundles) <= self._max_bundles:
                break
            if bundle_hash in in_use or bundle_hash == next(reversed(self._bundles)):
                continue
            unload_bundle(self._bundles.pop(bundle_hash).package)

    # -- host calls --------------------------------------------------------------

    def _call_host(self, method: str, *args: Any) -> None:
        try:
            getattr(self._host, method)(*args)
        except Exception:
            _logger.exception("host.%s%r failed", method, args[:2])

    def _report_dispatch_failure(self, kind: str, payload: dict[str, Any], exc: Exception) -> None:
        message = f"failed to handle {kind!r} message: {_describe(exc)}"
        tb = None if isinstance(exc, ProtocolError) else traceback.format_exc()
        run_id = payload.get("run_id") if isinstance(payload.get("run_id"), str) else ""
        request_id = payload.get("request_id")
        if kind == "inspect" and isinstance(request_id, str) and request_id:
            self._call_host("inspect_result", request_id, None, message)
        elif kind == "start_run" and run_id and run_id not in self._runs:
            self._call_host("run_finished", run_id, "failed", None, message, tb)
        else:
            fields = {"kind": kind}
            if tb:
                fields["traceback"] = tb
            self._call_host("run_log", run_id, "error", message, json.dumps(fields))


def _resolve_if_pending(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


# ---------------------------------------------------------------------------
# Running one playbook (shared with tocsin.testing)
# ---------------------------------------------------------------------------


async def execute_playbook(
    playbook: Playbook, alert: Alert | None, run: Run, state: RunState
) -> tuple[str, str | None, str | None, str | None]:
    """Run ``playbook`` as run ``state`` in the current task; return
    ``(status, result_json, error, traceback)`` as reported by ``run_finished``.

    Must run in a task of its own (its context holds the run state). Steps
    still in flight when the playbook returns are cancelled first, and an
    abort decided by the platform determines the status even if playbook
    code swallowed it.
    """
    set_current_run_state(state)
    try:
        outcome = await _run_playbook(playbook, alert, run)
    finally:
        state.closed = True
    await _cancel_stragglers(state)
    if state.aborted is not None:
        return state.aborted.status, None, state.aborted.reason, None
    return outcome


async def _run_playbook(
    playbook: Playbook, alert: Alert | None, run: Run
) -> tuple[str, str | None, str | None, str | None]:
    """Run the playbook; return ``(status, result_json, error, traceback)``."""
    try:
        async with asyncio.timeout(playbook.timeout) as scope:
            result = await playbook.func(alert, run)
    except Skip as exc:
        return "skipped", None, exc.reason, None
    except RunAborted as exc:
        return exc.status, None, exc.reason, None
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except TimeoutError as exc:
        if scope.expired():
            return "timed_out", None, f"playbook timed out after {format_seconds(playbook.timeout)}", None
        return "failed", None, _describe(exc), traceback.format_exc()
    except BaseException as exc:
        return "failed", None, _describe(exc), traceback.format_exc()
    if result is None:
        return "succeeded", None, None, None
    if not isinstance(result, dict):
        return "failed", None, f"playbook must return a dict or None, got {type(result).__name__}", None
    try:
        return "succeeded", json.dumps(result, allow_nan=False), None, None
    except (TypeError, ValueError) as exc:
        return "failed", None, f"playbook returned a non-JSON-serializable result: {exc}", None


async def _cancel_stragglers(state: RunState) -> None:
    """Cancel steps still running after the playbook returned (e.g. the
    siblings of a failed ``asyncio.gather``), so that nothing of this run is
    reported after ``run_finished``."""
    stragglers = state.straggler_tasks(exclude=asyncio.current_task())
    for task in stragglers:
        task.cancel()
    if stragglers:
        await asyncio.wait(stragglers, timeout=_CANCEL_GRACE_S)


# ---------------------------------------------------------------------------
# serve()
# ---------------------------------------------------------------------------

_ACTIVE: Runtime | None = None


def active_runtime() -> Runtime | None:
    """The runtime currently serving in this process (inside the runner), if any."""
    return _ACTIVE


def _dispatch(kind: str, payload_json: str) -> None:
    """Dispatch a message to the runtime currently serving (loop thread only)."""
    runtime = _ACTIVE
    if runtime is None:
        raise RuntimeError("tocsin runtime is not serving")
    runtime._dispatch(kind, payload_json)


def _redirect_stdout_to_stderr() -> None:
    """Point fd 1 at stderr: the runner uses the original fd 1 for protocol
    frames (it has already duplicated it), so ``print()`` must not touch it."""
    if sys.stdout is not None:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
    os.dup2(2, 1)
    if sys.stdout is None:
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives for the process
    elif hasattr(sys.stdout, "reconfigure"):
        try:
            sys.stdout.reconfigure(line_buffering=True)
        except (OSError, ValueError):
            pass


def serve(host: Any) -> None:
    """Run the playbook runtime until a ``shutdown`` message arrives.

    Must be called on the runner's main thread. See the module docstring for
    the host interface and the message protocol.
    """
    global _ACTIVE
    _redirect_stdout_to_stderr()
    sys.dont_write_bytecode = True  # never write __pycache__ into bundle directories
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runtime = Runtime(host, loop)
    _ACTIVE = runtime
    try:
        host.attach(runtime.submit)
        loop.run_until_complete(runtime.run_until_shutdown())
    finally:
        try:
            loop.run_until_complete(runtime.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            _ACTIVE = None
            asyncio.set_event_loop(None)
            loop.close()
