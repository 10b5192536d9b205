"""@action outside a run: plain awaiting with timeout and retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from tocsin import Action, action


def test_plain_call_and_metadata():
    @action
    async def add(a, b=1):
        return a + b

    assert isinstance(add, Action)
    assert (add.name, add.retries, add.backoff, add.timeout, add.idempotent) == ("add", 0, 1.0, 30.0, False)
    assert asyncio.run(add(2)) == 3
    assert asyncio.run(add(2, b=5)) == 7


def test_options():
    @action(name="lookup.ip", retries=3, backoff="250ms", timeout="2m", idempotent=True)
    async def f():
        return None

    assert (f.name, f.retries, f.backoff, f.timeout, f.idempotent) == ("lookup.ip", 3, 0.25, 120.0, True)


def test_bad_arguments_raise_at_call_time():
    @action
    async def f(a):
        return a

    with pytest.raises(TypeError):
        f(1, 2)


def test_retries_then_success():
    calls = []

    @action(retries=2, backoff="10ms")
    async def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert asyncio.run(flaky()) == "ok"
    assert len(calls) == 3
    # exponential backoff: 10 ms, then 20 ms
    assert calls[1] - calls[0] >= 0.009 and calls[2] - calls[1] >= 0.019


def test_retries_exhausted_reraises_last():
    attempts = []

    @action(retries=1, backoff=0)
    async def broken():
        attempts.append(1)
        raise RuntimeError(f"fail {len(attempts)}")

    with pytest.raises(RuntimeError, match="fail 2"):
        asyncio.run(broken())
    assert len(attempts) == 2


def test_timeout():
    @action(timeout="50ms")
    async def slow():
        await asyncio.sleep(5)

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="action 'slow' timed out after 0.05s"):
        asyncio.run(slow())
    assert time.monotonic() - started < 1


def test_timeout_is_retried():
    attempts = []

    @action(timeout="30ms", retries=1, backoff=0)
    async def slow_then_fast():
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(5)
        return "done"

    assert asyncio.run(slow_then_fast()) == "done"


def test_no_timeout():
    @action(timeout=None)
    async def f():
        await asyncio.sleep(0.01)
        return 1

    assert asyncio.run(f()) == 1


def test_on_method():
    class Client:
        def __init__(self, base):
            self.base = base

        @action(retries=0)
        async def get(self, path):
            return self.base + path

    assert asyncio.run(Client("https://x").get("/y")) == "https://x/y"


@pytest.mark.parametrize(
    "kwargs",
    [{"retries": -1}, {"retries": 1.5}, {"retries": True}, {"backoff": "-1s"}, {"timeout": 0}, {"timeout": "soon"},
     {"idempotent": "yes"}, {"name": "bad name"}],
)
def test_invalid_options(kwargs):
    with pytest.raises(ValueError):
        action(**kwargs)


def test_non_async_rejected():
    with pytest.raises(TypeError, match="async def"):

        @action
        def f():
            return 1

    with pytest.raises(TypeError, match="async def"):

        @action(retries=1)
        def g():
            return 1
