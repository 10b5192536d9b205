"""The ``@playbook`` and ``@action`` decorators.

``@playbook`` turns an ``async def f(alert, run)`` into a :class:`Playbook`:
the same coroutine function, plus the metadata the platform needs to schedule
it (trigger, ``when`` condition, tenants, priority, timeout, source location).

``@action`` turns an ``async def`` into an :class:`Action`. Outside a run
managed by the Tocsin runtime, calling it simply awaits the function with the
configured timeout and retries (so plain unit tests need nothing special).
Inside a run, each call is a *journaled step*: the runtime asks the platform
whether to execute it, replay a result recorded by an earlier attempt of the
same run, or abort the run. See :meth:`Action.__call__`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import os
import re
import time
import types
import uuid
from typing import Any, Awaitable, Callable, Coroutine, Iterable, Mapping

from ._cron import CronSchedule, parse_cron
from ._duration import format_seconds, parse_duration
from ._run import (
    RunState,
    current_run_state,
    current_step_key,
    current_test_session,
    set_current_run_state,
    set_current_step_key,
    set_current_traceparent,
)
from ._when import evaluate, validate_when

__all__ = ["Playbook", "Action", "playbook", "action", "TRIGGERS", "SCHEDULE_PREFIX", "PRIORITIES", "TENANT_RE"]

#: Fixed values of ``@playbook(trigger=...)``; ``"schedule:<cron>"`` is accepted too.
TRIGGERS: tuple[str, ...] = ("alert", "manual")
#: Prefix of scheduled triggers: ``"schedule:*/15 * * * *"`` (5-field cron, UTC).
SCHEDULE_PREFIX = "schedule:"
#: Accepted values of ``@playbook(priority=...)``.
PRIORITIES: tuple[str, ...] = ("low", "normal", "high")
#: Tenant identifiers accepted in ``@playbook(tenants=[...])``.
TENANT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: Step names reserved for system steps (case updates, approvals, sleeps).
_RESERVED_PREFIX = "tocsin."

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
_logger = logging.getLogger("tocsin.action")


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{what} name {name!r} is invalid: use 1-128 characters among letters, digits, '_', '.', ':' "
            "and '-', not starting with a punctuation character"
        )
    return name


def _check_async(func: object, decorator: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    if isinstance(func, (Playbook, Action)):
        raise TypeError(f"@{decorator} cannot be applied to {type(func).__name__} {func.name!r} again")
    if not inspect.iscoroutinefunction(func):
        what = getattr(func, "__qualname__", repr(func))
        raise TypeError(f"@{decorator} requires an 'async def' function; {what} is not a coroutine function")
    return func  # type: ignore[return-value]


def _describe_error(exc: BaseException) -> str:
    """``"ExcType: message"`` (or just ``"ExcType"`` for an empty message)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# ---------------------------------------------------------------------------
# @playbook
# ---------------------------------------------------------------------------


class Playbook:
    """A playbook: an ``async def f(alert, run)`` plus its scheduling metadata.

    Calling the object calls the original function, so ``await pb(alert, run)``
    works in tests.

    Attributes: ``name``, ``trigger`` (``"alert"``, ``"manual"`` or
    ``"schedule:<cron>"``), ``schedule`` (the parsed :class:`CronSchedule` of
    a scheduled playbook, else ``None``), ``when`` (normalised dict or
    ``None``), ``tenants`` (``"*"`` or a list of tenant ids), ``enabled``,
    ``priority``, ``timeout`` (seconds, float), ``func``, ``module`` (the
    defining module's ``__name__``), ``function`` (the function's name),
    ``file`` (absolute source path) and ``line`` (first line, i.e. the first
    decorator).
    """

    def __init__(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *,
        name: str | None = None,
        trigger: str = "alert",
        when: Mapping[str, Any] | None = None,
        priority: str = "normal",
        timeout: str | float = "5m",
        tenants: str | Iterable[str] = "*",
        enabled: bool = True,
    ) -> None:
        options = _playbook_options(
            name=name, trigger=trigger, when=when, priority=priority, timeout=timeout, tenants=tenants, enabled=enabled
        )
        self._init(func, options)

    def _init(self, func: Callable[..., Any], options: dict[str, Any]) -> None:
        func = _check_async(func, "playbook")
        try:
            inspect.signature(func).bind(None, None)
        except TypeError:
            raise TypeError(
                f"playbook {func.__qualname__} must accept two positional arguments (alert, run)"
            ) from None
        functools.update_wrapper(self, func)
        self.func = func
        self.name: str = options["name"] or _check_name(func.__name__, "playbook")
        self.trigger: str = options["trigger"]
        self.schedule: CronSchedule | None = options["schedule"]
        self.when: dict[str, Any] | None = options["when"]
        self.tenants: str | list[str] = options["tenants"]
        self.enabled: bool = options["enabled"]
        self.priority: str = options["priority"]
        self.timeout: float = options["timeout"]
        self.module: str = func.__module__
        self.function: str = func.__name__
        source = inspect.getsourcefile(func) or func.__code__.co_filename
        # Pseudo-files such as "<string>" are kept verbatim.
        self.file: str = source if source.startswith("<") else os.path.abspath(source)
        self.line: int = func.__code__.co_firstlineno

    @classmethod
    def _from_options(cls, func: Callable[..., Any], options: dict[str, Any]) -> "Playbook":
        self = cls.__new__(cls)
        self._init(func, options)
        return self

    def __call__(self, alert: Any, run: Any) -> Coroutine[Any, Any, Any]:
        return self.func(alert, run)

    def __repr__(self) -> str:
        return (
            f"<Playbook {self.name!r} trigger={self.trigger!r} priority={self.priority!r} "
            f"at {self.file}:{self.line}>"
        )

    def matches(self, alert: Any) -> bool:
        """Whether ``alert`` satisfies this playbook's ``when`` condition
        (reference semantics, see :mod:`tocsin._when`). Always false for
        manual and scheduled playbooks. ``tenants`` and ``enabled`` are not
        taken into account."""
        return self.trigger == "alert" and evaluate(self.when, alert)

    def describe(self, root: str | None = None) -> dict[str, Any]:
        """Metadata as exported to the platform.

        ``file`` is relative to ``root`` (POSIX separators) when given.
        ``module`` is the defining module name; the bundle loader replaces it
        with the path-derived name.
        """
        file = self.file
        if root is not None:
            file = _relative_path(self.file, root)
        return {
            "name": self.name,
            "module": self.module,
            "function": self.function,
            "trigger": self.trigger,
            "when": self.when,
            "tenants": self.tenants if isinstance(self.tenants, str) else list(self.tenants),
            "enabled": self.enabled,
            "priority": self.priority,
            "timeout_s": self.timeout,
            "file": file,
            "line": self.line,
        }


def _relative_path(path: str, root: str) -> str:
    real_path, real_root = os.path.realpath(path), os.path.realpath(root)
    try:
        rel = os.path.relpath(real_path, real_root)
    except ValueError:  # different drives (Windows)
        return path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return rel.replace(os.sep, "/")


def _check_trigger(trigger: object) -> tuple[str, CronSchedule | None]:
    """Validate a trigger; returns ``(normalised trigger, schedule or None)``."""
    if isinstance(trigger, str) and trigger in TRIGGERS:
        return trigger, None
    if isinstance(trigger, str) and trigger.startswith(SCHEDULE_PREFIX):
        try:
            schedule = parse_cron(trigger[len(SCHEDULE_PREFIX) :])
        except ValueError as exc:
            raise ValueError(f"playbook trigger {trigger!r}: {exc}") from None
        return SCHEDULE_PREFIX + schedule.expression, schedule
    raise ValueError(
        f"playbook trigger {trigger!r} is not supported; expected 'alert', 'manual' or "
        "'schedule:<cron>' (5-field UTC cron, e.g. 'schedule:*/15 * * * *')"
    )


def _check_tenants(tenants: object) -> str | list[str]:
    if tenants == "*":
        return "*"
    if isinstance(tenants, str):
        raise ValueError(
            f"playbook tenants {tenants!r} is invalid: use '*' for every tenant or a list of tenant ids, "
            f"e.g. tenants=[{tenants!r}]"
        )
    if isinstance(tenants, Mapping) or not isinstance(tenants, Iterable):
        raise ValueError(f"playbook tenants must be '*' or a list of tenant ids, got {type(tenants).__name__}")
    result: list[str] = []
    for tenant in tenants:
        if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
            raise ValueError(
                f"playbook tenants: invalid tenant id {tenant!r}; tenant ids are 1-63 characters among "
                "lower-case letters, digits and '-', starting with a letter or digit"
            )
        if tenant not in result:
            result.append(tenant)
    if not result:
        raise ValueError("playbook tenants: the list is empty; use '*' for every tenant or list at least one id")
    return result


def _playbook_options(
    *,
    name: object,
    trigger: object,
    when: object,
    priority: object,
    timeout: object,
    tenants: object = "*",
    enabled: object = True,
) -> dict[str, Any]:
    if name is not None:
        _check_name(name, "playbook")
    trigger, schedule = _check_trigger(trigger)
    if priority not in PRIORITIES:
        raise ValueError(f"playbook priority {priority!r} is invalid; expected one of {', '.join(PRIORITIES)}")
    normalized_when = validate_when(when)
    if trigger != "alert" and normalized_when is not None:
        kind = "manual" if trigger == "manual" else "schedule:..."
        raise ValueError(f"when: a playbook with trigger='{kind}' cannot have a 'when' condition")
    if not isinstance(enabled, bool):
        raise ValueError(f"playbook enabled must be a bool, got {enabled!r}")
    return {
        "name": name,
        "trigger": trigger,
        "schedule": schedule,
        "when": normalized_when,
        "tenants": _check_tenants(tenants),
        "enabled": enabled,
        "priority": priority,
        "timeout": parse_duration(timeout, field="playbook timeout"),
    }


def playbook(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    trigger: str = "alert",
    when: Mapping[str, Any] | None = None,
    priority: str = "normal",
    timeout: str | float = "5m",
    tenants: str | Iterable[str] = "*",
    enabled: bool = True,
) -> Any:
    """Declare a playbook.

    Use as ``@playbook`` or ``@playbook(name=..., trigger=..., when=...,
    tenants=..., enabled=..., priority=..., timeout=...)`` on an
    ``async def f(alert, run)``.

    :param name: unique name within the bundle (default: the function name).
    :param trigger: ``"alert"`` (run for matching alerts), ``"manual"``
        (started by an operator; the playbook receives ``alert=None``) or
        ``"schedule:<cron>"`` (a 5-field cron expression in UTC, e.g.
        ``"schedule:0 6 * * 1-5"``; the playbook receives ``alert=None``).
    :param when: condition on the alert (alert triggers only), see :mod:`tocsin._when`.
    :param tenants: ``"*"`` (every tenant) or a list of tenant ids the
        playbook applies to.
    :param enabled: ``False`` deploys the playbook without scheduling it.
    :param priority: ``"low"``, ``"normal"`` or ``"high"``.
    :param timeout: maximum run duration, e.g. ``"30s"``, ``"5m"`` or seconds.
    :raises ValueError: on invalid metadata. :raises TypeError: on a non-async function.
    """
    options = _playbook_options(
        name=name, trigger=trigger, when=when, priority=priority, timeout=timeout, tenants=tenants, enabled=enabled
    )

    def decorate(f: Callable[..., Any]) -> Playbook:
        return Playbook._from_options(f, options)

    return decorate(func) if func is not None else decorate


# ---------------------------------------------------------------------------
# @action
# ---------------------------------------------------------------------------


class Action:
    """An action: an ``async def`` whose calls are journaled steps inside a run.

    Attributes: ``name``, ``retries``, ``backoff`` (seconds), ``timeout``
    (seconds or ``None``), ``idempotent``, ``func``.
    """

    def __init__(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *,
        name: str | None = None,
        retries: int = 0,
        backoff: str | float = "1s",
        timeout: str | float | None = "30s",
        idempotent: bool = False,
    ) -> None:
        options = _action_options(name=name, retries=retries, backoff=backoff, timeout=timeout, idempotent=idempotent)
        self._init(func, options)

    def _init(self, func: Callable[..., Any], options: dict[str, Any]) -> None:
        func = _check_async(func, "action")
        functools.update_wrapper(self, func)
        self.func = func
        self.name: str = options["name"] or _check_name(func.__name__, "action")
        self.retries: int = options["retries"]
        self.backoff: float = options["backoff"]
        self.timeout: float | None = options["timeout"]
        self.idempotent: bool = options["idempotent"]
        self._signature = inspect.signature(func)

    @classmethod
    def _from_options(cls, func: Callable[..., Any], options: dict[str, Any]) -> "Action":
        self = cls.__new__(cls)
        self._init(func, options)
        return self

    def __repr__(self) -> str:
        return f"<Action {self.name!r} retries={self.retries} timeout={self.timeout}>"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Support @action on methods: bind like a function would.
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Start a call; returns an awaitable.

        Arguments are bound (and checked) immediately. Inside a run, the step
        sequence number is also allocated immediately, so the order in which
        actions are *called* (e.g. the argument order of ``asyncio.gather``)
        fixes their sequence numbers deterministically.
        """
        bound = self._signature.bind(*args, **kwargs)
        state = current_run_state()
        if state is None:
            return self._call_local(bound, args, kwargs)
        if state.closed:
            return self._refuse_closed(state)
        bound.apply_defaults()
        seq = state.next_seq()
        return self._call_journaled(state, seq, _args_json(bound.arguments), args, kwargs)

    # -- execution -----------------------------------------------------------

    async def _call_local(self, bound: inspect.BoundArguments, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call outside the journal: outside any run, or from inside another
        action's body (where it shares the enclosing step's idempotency key)."""
        token = set_current_step_key(f"local:{uuid.uuid4().hex}") if current_step_key() is None else None
        try:
            session = current_test_session()
            if session is None:
                result, _attempts = await self._run_attempts(args, kwargs, isolate=False)
                return result
            # Under tocsin.testing: apply stubs and record the call.
            stub = session.stub_for(self.name)
            bound.apply_defaults()
            try:
                arguments = json.loads(_args_json(bound.arguments))
            except (TypeError, ValueError):  # e.g. a circular structure: record reprs instead
                arguments = {name: repr(value) for name, value in bound.arguments.items()}
            try:
                if stub is not None:
                    result = await self._invoke_once(args, kwargs, isolate=False, body=stub)
                else:
                    result, _attempts = await self._run_attempts(args, kwargs, isolate=False)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                session.record_call(self.name, arguments, None, _describe_error(exc), stubbed=stub is not None)
                raise
            session.record_call(self.name, arguments, result, None, stubbed=stub is not None)
            return result
        finally:
            if token is not None:
                token.var.reset(token)

    async def _refuse_closed(self, state: RunState) -> Any:
        raise asyncio.CancelledError(f"run {state.run_id} has already finished; action {self.name!r} not started")

    async def _run_attempts(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, isolate: bool, step_key: str | None = None
    ) -> tuple[Any, int]:
        """Run the body with timeout, retrying on ``Exception`` with
        exponential backoff. Returns ``(result, attempts)``; re-raises the last
        exception when every attempt failed."""
        for index in range(self.retries + 1):
            try:
                return await self._invoke_once(args, kwargs, isolate=isolate, step_key=step_key), index + 1
            except Exception as exc:
                if index == self.retries:
                    raise
                delay = self.backoff * (2**index)
                _logger.debug(
                    "action %r attempt %d failed (%s); retrying in %s",
                    self.name,
                    index + 1,
                    _describe_error(exc),
                    format_seconds(delay),
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _invoke_once(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        isolate: bool,
        step_key: str | None = None,
        body: Callable[..., Coroutine[Any, Any, Any]] | None = None,
    ) -> Any:
        coro = (body or self.func)(*args, **kwargs)
        if isolate:
            # The body runs outside the run's journal: actions it calls
            # internally are plain local calls, so replays stay deterministic.
            # It sees the step's idempotency key.
            context = contextvars.copy_context()
            context.run(set_current_run_state, None)
            if step_key is not None:
                context.run(set_current_step_key, step_key)
            awaitable: Awaitable[Any] = asyncio.get_running_loop().create_task(coro, context=context)
        else:
            awaitable = coro
        if self.timeout is None:
            return await awaitable
        try:
            async with asyncio.timeout(self.timeout) as scope:
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise TimeoutError(f"action {self.name!r} timed out after {format_seconds(self.timeout)}") from None
            raise

    async def _call_journaled(
        self, state: RunState, seq: int, args_json: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        task = asyncio.current_task()
        state.track_step(task)
        try:
            decision = await state.decide(seq, self.name, args_json, self.idempotent)
            if decision.get("decision") == "execute":
                token = set_current_traceparent(decision.get("traceparent"))
                try:
                    return await self._execute_step(state, seq, args, kwargs)
                finally:
                    token.var.reset(token)
            return state.replayed_value(seq, self.name, decision)
        finally:
            state.untrack_step(task)

    async def _execute_step(
        self, state: RunState, seq: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        started = time.monotonic()

        def report(ok: bool, result_json: str | None, error: str | None, attempts: int) -> None:
            duration_ms = int(round((time.monotonic() - started) * 1000))
            state.report_result(seq, ok, result_json, error, attempts, duration_ms)

        step_key = f"{state.run_id}:{seq}"
        session = current_test_session()
        stub = session.stub_for(self.name) if session is not None else None
        try:
            if stub is not None:
                # A stub replaces the whole call: one attempt, no retries.
                result = await self._invoke_once(args, kwargs, isolate=True, step_key=step_key, body=stub)
                attempts = 1
            else:
                result, attempts = await self._run_attempts(args, kwargs, isolate=True, step_key=step_key)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            report(False, None, _describe_error(exc), 1 if stub is not None else self.retries + 1)
            raise
        try:
            result_json = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            error = TypeError(f"action {self.name!r} returned a non-JSON-serializable result: {exc}")
            report(False, None, _describe_error(error), attempts)
            raise error from None
        report(True, result_json, None, attempts)
        # Hand back the JSON round-trip so an executed step and its later
        # replay give the playbook exactly the same value.
        return json.loads(result_json)


def _args_json(arguments: Mapping[str, Any]) -> str:
    """The canonical JSON form of bound action arguments (as journaled)."""
    return json.dumps(dict(arguments), sort_keys=True, separators=(",", ":"), default=str)

def _action_options(
    *, name: object, retries: object, backoff: object, timeout: object, idempotent: object
) -> dict[str, Any]:
    if name is not None:
        _check_name(name, "action")
        if name.lower().startswith(_RESERVED_PREFIX):
            raise ValueError(
                f"action name {name!r} is reserved: names starting with {_RESERVED_PREFIX!r} denote "
                "platform system steps (case updates, approvals, sleeps); choose another name"
            )
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"action retries must be a non-negative integer, got {retries!r}")
    if not isinstance(idempotent, bool):
        raise ValueError(f"action idempotent must be a bool, got {idempotent!r}")
    return {
        "name": name,
        "retries": retries,
        "backoff": parse_duration(backoff, field="action backoff", allow_zero=True),
        "timeout": None if timeout is None else parse_duration(timeout, field="action timeout"),
        "idempotent": idempotent,
    }


def action(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: str | float = "1s",
    timeout: str | float | None = "30s",
    idempotent: bool = False,
) -> Any:
    """Declare an action.

    Use as ``@action`` or ``@action(name=..., retries=..., backoff=...,
    timeout=..., idempotent=...)`` on an ``async def``.

    :param name: step name recorded in the journal (default: function name).
    :param retries: extra attempts after a failure (any ``Exception``).
    :param backoff: delay before the first retry; doubles for each further retry.
    :param timeout: per-attempt time limit (``None`` disables it).
    :param idempotent: tells the platform the action is safe to re-execute
        when an earlier attempt's outcome is unknown.
    """
    options = _action_options(name=name, retries=retries, backoff=backoff, timeout=timeout, idempotent=idempotent)

    def decorate(f: Callable[..., Any]) -> Action:
        return Action._from_options(f, options)

    return decorate(func) if func is not None else decorate
