"""@playbook metadata and validation."""

from __future__ import annotations

import inspect
import os

import pytest

from tocsin import Alert, Playbook, Run, playbook


def test_defaults_and_metadata():
    @playbook
    async def enrich(alert, run):
        return {"title": alert.title}

    assert isinstance(enrich, Playbook)
    assert enrich.name == "enrich"
    assert enrich.trigger == "alert"
    assert enrich.when is None
    assert enrich.priority == "normal"
    assert enrich.timeout == 300.0
    assert enrich.file == os.path.abspath(__file__)
    assert enrich.line == enrich.func.__code__.co_firstlineno
    assert inspect.getsource(enrich.func).lstrip().startswith("@playbook")
    assert enrich.function == "enrich" and enrich.__name__ == "enrich"
    assert enrich.module == __name__


def test_called_like_the_coroutine_function():
    @playbook(name="custom-name", trigger="manual", priority="high", timeout="500ms")
    async def pb(alert, run):
        return {"title": alert.title, "run": run.id}

    assert (pb.name, pb.trigger, pb.priority, pb.timeout) == ("custom-name", "manual", "high", 0.5)
    import asyncio

    assert asyncio.run(pb(Alert.build(title="x"), Run(id="r1"))) == {"title": "x", "run": "r1"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (7, 7.0), (0.25, 0.25)],
)
def test_timeout_parsing(value, seconds):
    @playbook(timeout=value)
    async def pb(alert, run):
        return None

    assert pb.timeout == seconds


@pytest.mark.parametrize("value", ["", "10", "5 minutes", "1d", "-1s", 0, -3, True, None, "ms", float("inf")])
def test_invalid_timeout(value):
    with pytest.raises(ValueError, match="timeout"):
        playbook(timeout=value)


def test_invalid_trigger_and_priority():
    with pytest.raises(ValueError, match="trigger 'cron'"):
        playbook(trigger="cron")
    with pytest.raises(ValueError, match="priority 'urgent'"):
        playbook(priority="urgent")


def test_invalid_name():
    with pytest.raises(ValueError, match="name"):
        playbook(name="has space")
    with pytest.raises(ValueError, match="name"):
        playbook(name="")


def test_manual_playbook_cannot_have_when():
    with pytest.raises(ValueError, match="manual"):
        playbook(trigger="manual", when={"source": "x"})


def test_non_async_function_rejected():
    with pytest.raises(TypeError, match="async def"):

        @playbook
        def sync_pb(alert, run):
            return None

    with pytest.raises(TypeError, match="async def"):

        @playbook(name="x")
        def sync_pb2(alert, run):
            return None


def test_async_generator_rejected():
    with pytest.raises(TypeError, match="async def"):

        @playbook
        async def gen(alert, run):
            yield 1


def test_signature_must_accept_alert_and_run():
    with pytest.raises(TypeError, match=r"\(alert, run\)"):

        @playbook
        async def one_arg(alert):
            return None


def test_when_is_validated_and_normalised():
    @playbook(when={"severity": {"gte": "HIGH"}, "source": ["suricata", "wazuh"]})
    async def pb(alert, run):
        return None

    assert pb.when == {"severity": {"gte": "high"}, "source": ["suricata", "wazuh"]}
    assert pb.describe()["when"] == pb.when


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"source": {"like": "x"}}, "unknown operator 'like'"),
        ({"title": {"matches": "(unclosed"}}, "invalid regular expression"),
        ({"severity": {"gte": "urgent"}}, "invalid severity 'urgent'"),
        ({"severity": "sev1"}, "invalid severity"),
        ({"bogus": 1}, "unknown field 'bogus'"),
    ],
)
def test_invalid_when_raises_value_error(when, message):
    with pytest.raises(ValueError, match=message):
        playbook(when=when)


def test_describe_relative_file():
    @playbook
    async def pb(alert, run):
        return None

    info = pb.describe(os.path.dirname(__file__))
    assert info["file"] == os.path.basename(__file__)
    assert set(info) == {
        "name", "module", "function", "trigger", "when", "tenants", "enabled", "priority", "timeout_s", "file", "line"
    }
    assert (info["tenants"], info["enabled"]) == ("*", True)


def test_matches_uses_reference_semantics():
    @playbook(when={"source": "wazuh", "raw.rule.level": {"gte": 10}})
    async def pb(alert, run):
        return None

    assert pb.matches(Alert.build(source="wazuh", raw={"rule": {"level": 12}}))
    assert not pb.matches(Alert.build(source="wazuh", raw={"rule": {"level": 3}}))
    assert not pb.matches(Alert.build(source="suricata", raw={"rule": {"level": 12}}))
