"""A Python stand-in for the Rust runner's ``host`` object, plus helpers to
drive :class:`tocsin._runtime.Runtime` on a real event loop."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
import uuid
from typing import Any, Callable

from tocsin._runtime import Runtime

Decision = dict[str, Any] | None


def execute_all(run_id: str, seq: int, action: str, args_json: str, idempotent: bool) -> Decision:
    return {"decision": "execute"}


def platform(results: dict[str, Any] | None = None) -> Callable[..., Decision]:
    """A ``decide`` that executes actions and replays system steps (``tocsin.*``)
    with ``results[name]`` (a JSON value, or a callable(args) returning a
    decision dict), like the worker does once the effect is done."""
    results = results or {}

    def decide(run_id: str, seq: int, action: str, args_json: str, idempotent: bool) -> Decision:
        if not action.startswith("tocsin."):
            return {"decision": "execute"}
        value = results.get(action)
        if callable(value):
            return value(json.loads(args_json))
        return {"decision": "replay", "result_json": None if value is None else json.dumps(value)}

    return decide


class FakeHost:
    """Records every call; answers ``step_intent`` through ``decide``.

    ``decide(run_id, seq, action, args_json, idempotent)`` returns the
    decision payload (without run_id/seq) to submit back, or ``None`` to leave
    the step waiting. Argument types are checked against the host contract.
    """

    def __init__(self, decide: Callable[..., Decision] = execute_all,
                 http: Callable[..., dict[str, Any] | None] | None = None) -> None:
        self.decide = decide
        self.http = http
        self.calls: list[tuple[Any, ...]] = []
        self.submit: Callable[[str, str], None] | None = None

    # -- host interface ------------------------------------------------------

    def attach(self, submit: Callable[[str, str], None]) -> None:
        assert callable(submit)
        self.submit = submit
        self.calls.append(("attach",))

    def step_intent(self, run_id: str, seq: int, action: str, args_json: str, idempotent: bool) -> None:
        _types(run_id=(run_id, str), seq=(seq, int), action=(action, str), args_json=(args_json, str),
               idempotent=(idempotent, bool))
        json.loads(args_json)
        self.calls.append(("step_intent", run_id, seq, action, args_json, idempotent))
        decision = self.decide(run_id, seq, action, args_json, idempotent)
        if decision is not None:
            assert self.submit is not None, "attach() was not called"
            self.submit("step_decision", json.dumps({"run_id": run_id, "seq": seq, **decision}))

    def step_result(self, run_id: str, seq: int, ok: bool, result_json: str | None, error: str | None,
                    attempts: int, duration_ms: int) -> None:
        _types(run_id=(run_id, str), seq=(seq, int), ok=(ok, bool), result_json=(result_json, (str, type(None))),
               error=(error, (str, type(None))), attempts=(attempts, int), duration_ms=(duration_ms, int))
        self.calls.append(("step_result", run_id, seq, ok, result_json, error, attempts, duration_ms))

    def run_log(self, run_id: str, level: str, message: str, fields_json: str) -> None:
        _types(run_id=(run_id, str), level=(level, str), message=(message, str), fields_json=(fields_json, str))
        json.loads(fields_json)
        self.calls.append(("run_log", run_id, level, message, fields_json))

    def run_finished(self, run_id: str, status: str, result_json: str | None, error: str | None,
                     traceback: str | None) -> None:
        _types(run_id=(run_id, str), status=(status, str), result_json=(result_json, (str, type(None))),
               error=(error, (str, type(None))), traceback=(traceback, (str, type(None))))
        self.calls.append(("run_finished", run_id, status, result_json, error, traceback))

    def http_request(self, request_id: str, method: str, url: str, headers_json: str, body: bytes | None,
                     timeout_s: float) -> None:
        """Answers through ``http(request_id, method, url, headers, body, timeout_s)``,
        which returns the ``http_response`` payload (without request_id) or
        ``None`` to leave the request unanswered."""
        _types(request_id=(request_id, str), method=(method, str), url=(url, str),
               headers_json=(headers_json, str), body=(body, (bytes, type(None))), timeout_s=(timeout_s, float))
        headers = json.loads(headers_json)
        assert isinstance(headers, list) and all(isinstance(h, list) and len(h) == 2 for h in headers)
        self.calls.append(("http_request", request_id, method, url, headers_json, body, timeout_s))
        response = self.http(request_id, method, url, headers, body, timeout_s) if self.http else None
        if response is not None:
            assert self.submit is not None, "attach() was not called"
            self.submit("http_response", json.dumps({"request_id": request_id, **response}))

    def inspect_result(self, request_id: str, playbooks_json: str | None, error: str | None) -> None:
        _types(request_id=(request_id, str), playbooks_json=(playbooks_json, (str, type(None))),
               error=(error, (str, type(None))))
        self.calls.append(("inspect_result", request_id, playbooks_json, error))

    # -- inspection helpers ----------------------------------------------------

    def of(self, method: str, run_id: str | None = None) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == method and (run_id is None or c[1] == run_id)]

    def finished(self, run_id: str) -> dict[str, Any] | None:
        calls = self.of("run_finished", run_id)
        if not calls:
            return None
        _, _, status, result_json, error, tb = calls[-1]
        return {"status": status, "result": None if result_json is None else json.loads(result_json),
                "result_json": result_json, "error": error, "traceback": tb}


def _types(**checks: tuple[Any, Any]) -> None:
    for name, (value, expected) in checks.items():
        if expected is int:
            assert isinstance(value, int) and not isinstance(value, bool), f"{name}={value!r} is not an int"
        else:
            assert isinstance(value, expected), f"{name}={value!r} is not {expected}"


class Harness:
    """``async with Harness(host) as h:`` runs a Runtime on the current loop."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host

    async def __aenter__(self) -> "Harness":
        self.runtime = Runtime(self.host, asyncio.get_running_loop())
        self.host.attach(self.runtime.submit)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.runtime.aclose()

    def send(self, kind: str, **payload: Any) -> None:
        self.runtime._dispatch(kind, json.dumps(payload))

    def start(self, bundle_dir: str, bundle_hash: str, playbook: str, alert: dict[str, Any] | None = None,
              run_id: str | None = None, attempt: int = 1, tenant: str = "acme", **extra: Any) -> str:
        """Send ``start_run``; ``extra`` adds payload keys (``input``, ``secrets``, ``trigger``)."""
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        if alert is None:
            alert = {"id": "a-1", "tenant": tenant, "source": "test", "title": "t", "severity": "high",
                     "observables": [{"type": "ip", "value": "10.0.0.1"}]}
        self.send("start_run", run_id=run_id, tenant=tenant, playbook=playbook, bundle_dir=str(bundle_dir),
                  bundle_hash=bundle_hash, attempt=attempt, alert=alert, **extra)
        return run_id

    async def wait_finished(self, run_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (result := self.host.finished(run_id)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} did not finish within {timeout}s; calls: {self.host.calls}")
            await asyncio.sleep(0.002)
        return result

    async def inspect(self, bundle_dir: str, bundle_hash: str, timeout: float = 5.0) -> tuple[Any, str | None]:
        request_id = f"req-{uuid.uuid4().hex[:8]}"
        self.send("inspect", request_id=request_id, bundle_dir=str(bundle_dir), bundle_hash=bundle_hash)
        deadline = time.monotonic() + timeout
        while not (calls := self.host.of("inspect_result", request_id)):
            if time.monotonic() > deadline:
                raise AssertionError("no inspect_result")
            await asyncio.sleep(0.002)
        _, _, playbooks_json, error = calls[-1]
        return (None if playbooks_json is None else json.loads(playbooks_json)), error


def make_bundle(root: str | os.PathLike[str], files: dict[str, str]) -> str:
    """Write ``files`` (relative path -> source, dedented) under ``root``."""
    for rel, source in files.items():
        path = os.path.join(os.fspath(root), *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(textwrap.dedent(source).lstrip("\n"))
    return os.fspath(root)


def new_hash() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def run_one(bundle: tuple[str, str], playbook: str, host: FakeHost | None = None,
            **kwargs: Any) -> tuple[dict[str, Any], FakeHost, str]:
    """Start one run of ``playbook`` from ``bundle`` (``(dir, hash)``) on a fresh
    runtime; returns ``(finished, host, run_id)``."""
    host = host or FakeHost()

    async def main() -> tuple[dict[str, Any], str]:
        async with Harness(host) as h:
            run_id = h.start(*bundle, playbook, **kwargs)
            return await h.wait_finished(run_id), run_id

    finished, run_id = asyncio.run(main())
    return finished, host, run_id
