"""start_run additions (input, secrets, trigger) and idempotency keys."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from fakehost import FakeHost, Harness, make_bundle, new_hash, run_one
from tocsin import Run, SecretNotFound, Secrets, action, idempotency_key

PLAYBOOKS = '''
from tocsin import playbook, action, idempotency_key

ATTEMPT_KEYS = []

@action
async def keyed(x):
    return idempotency_key()

@action(retries=2, backoff=0)
async def flaky_keyed():
    ATTEMPT_KEYS.append(idempotency_key())
    if len(ATTEMPT_KEYS) % 2:
        raise ConnectionError("reset by peer")
    return idempotency_key()

@action
async def inner_keyed():
    return idempotency_key()

@action
async def nested_keyed():
    return [await inner_keyed(), idempotency_key()]

@action
async def with_run(run):
    return run.idempotency_key

@playbook(trigger="manual")
async def echo(alert, run):
    return {
        "input": run.input,
        "trigger": run.trigger,
        "names": sorted(run.secrets),
        "repr": repr(run.secrets),
        "token": run.secrets["API_TOKEN"],
        "missing": run.secrets.get("NOPE"),
        "has": "API_TOKEN" in run.secrets,
    }

@playbook
async def defaults(alert, run):
    return {"input": run.input, "trigger": run.trigger, "secrets": dict(run.secrets)}

@playbook
async def needs_secret(alert, run):
    return {"key": run.secrets["VT_API_KEY"]}

@playbook
async def keys(alert, run):
    try:
        idempotency_key()
    except RuntimeError as exc:
        outside = str(exc)
    return {
        "keyed": await keyed(1),
        "flaky": await flaky_keyed(),
        "nested": await nested_keyed(),
        "with_run": await with_run(run),
        "outside": outside,
    }
'''


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, {"flows.py": PLAYBOOKS}), new_hash()


def test_input_secrets_and_trigger_reach_the_run(bundle):
    finished, _, _ = run_one(
        bundle, "echo", input={"hosts": ["web-1", "web-2"], "dry_run": True},
        secrets={"API_TOKEN": "s3cr3t-value", "OTHER": "x"}, trigger="manual",
    )
    assert finished["status"] == "succeeded", finished
    result = finished["result"]
    assert result["input"] == {"hosts": ["web-1", "web-2"], "dry_run": True}
    assert result["trigger"] == "manual"
    assert result["names"] == ["API_TOKEN", "OTHER"]
    assert result["token"] == "s3cr3t-value" and result["missing"] is None and result["has"] is True
    assert "s3cr3t" not in result["repr"] and "API_TOKEN" in result["repr"]


def test_start_payload_defaults(bundle):
    finished, _, _ = run_one(bundle, "defaults")
    assert finished["result"] == {"input": None, "trigger": "alert", "secrets": {}}
    finished, _, _ = run_one(bundle, "defaults", input=[1, "two"], secrets=None, trigger=None)
    assert finished["result"] == {"input": [1, "two"], "trigger": "alert", "secrets": {}}


def test_missing_secret_fails_with_instructions(bundle):
    finished, _, _ = run_one(bundle, "needs_secret", secrets={"OTHER": "x"})
    assert finished["status"] == "failed"
    assert finished["error"].startswith(
        "SecretNotFound: secret 'VT_API_KEY' is not set for tenant 'acme'; set it with `tocsin secret set VT_API_KEY`"
    )


@pytest.mark.parametrize("secrets", [["API_TOKEN"], {"API_TOKEN": 12345678}, {"": "x"}, "s3cr3t"])
def test_invalid_secrets_payload_fails_without_echoing_values(bundle, secrets):
    finished, _, _ = run_one(bundle, "defaults", secrets=secrets)
    assert finished["status"] == "failed"
    assert finished["error"] == "start_run: invalid 'secrets' (expected an object of secret name to string)"


def test_invalid_trigger_payload(bundle):
    finished, _, _ = run_one(bundle, "defaults", trigger=7)
    assert finished["status"] == "failed" and "invalid 'trigger'" in finished["error"]


def test_idempotency_keys_identify_steps(bundle):
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            first = await h.wait_finished(h.start(*bundle, "keys", run_id="run-k"))
            host.calls.clear()
            second = await h.wait_finished(h.start(*bundle, "keys", run_id="run-k", attempt=2))
            return first, second

    first, second = asyncio.run(main())
    assert first["status"] == "succeeded", first
    assert first["result"] == {
        "keyed": "run-k:0",
        "flaky": "run-k:1",
        "nested": ["run-k:2", "run-k:2"],  # a nested action shares the enclosing step's key
        "with_run": "run-k:3",
        "outside": first["result"]["outside"],
    }
    assert "only available inside an @action body" in first["result"]["outside"]
    assert second["result"] == first["result"]  # re-execution of the same steps: same keys
    import sys

    module = sys.modules[f"_tocsin_bundle_{bundle[1][:16]}.flows"]
    assert module.ATTEMPT_KEYS == ["run-k:1"] * 4  # retries share the key too


def test_idempotency_key_outside_an_action():
    with pytest.raises(RuntimeError, match="inside an @action body"):
        idempotency_key()
    with pytest.raises(RuntimeError, match="inside an @action body"):
        _ = Run().idempotency_key

    seen = []

    @action(retries=1, backoff=0)
    async def local():
        seen.append(idempotency_key())
        if len(seen) == 1:
            raise ConnectionError("retry me")
        return idempotency_key()

    async def main():
        return await local(), await local()

    first, second = asyncio.run(main())
    assert first.startswith("local:") and seen[:2] == [first, first]
    assert second.startswith("local:") and second != first
    with pytest.raises(RuntimeError):
        idempotency_key()  # reset after the call


def test_secrets_mapping():
    secrets = Secrets({"A": "alpha-value", "B": "beta-value"}, tenant="acme")
    assert secrets["A"] == "alpha-value" and len(secrets) == 2 and list(secrets) == ["A", "B"]
    assert secrets.get("C") is None and secrets.get("C", "d") == "d" and "C" not in secrets
    for text in (repr(secrets), str(secrets), f"{secrets}"):
        assert "alpha-value" not in text and "beta-value" not in text and "A, B" in text
    assert repr(Secrets()) == "<Secrets: none set>"
    with pytest.raises(SecretNotFound) as info:
        secrets["VT_API_KEY"]
    assert isinstance(info.value, KeyError) and info.value.name == "VT_API_KEY"
    assert str(info.value).startswith("secret 'VT_API_KEY' is not set for tenant 'acme'; "
                                      "set it with `tocsin secret set VT_API_KEY`")
    with pytest.raises(AttributeError, match="read-only"):
        secrets._values = {}
    with pytest.raises(TypeError):
        secrets["A"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secrets)
    with pytest.raises(TypeError) as bad:
        Secrets({"A": 1234567})
    assert "1234567" not in str(bad.value)
    assert Run(secrets={"X": "y"}).secrets["X"] == "y"
    assert Run().secrets == {} and Run().input is None and Run().trigger == "alert"
