"""Alert / Observable / Run."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from tocsin import Alert, Observable, Observables, Run, Skip
from tocsin._types import ActionFailed, RunAborted


def test_from_dict_full():
    data = {
        "id": "al-1",
        "tenant": "acme",
        "source": "wazuh",
        "source_ref": "1707402914.872885",
        "title": "Shellshock attack attempt",
        "description": "d",
        "severity": "HIGH",
        "occurred_at": "2024-02-08T11:35:14.334-03:00",
        "received_at": "2024-02-08T14:35:15Z",
        "tags": ["web", "attack"],
        "observables": [
            {"type": "ip", "value": "192.0.2.10"},
            {"type": "IP", "value": "192.0.2.11"},
            {"type": "ip", "value": "192.0.2.10"},
            {"type": "domain", "value": "example.org"},
            {"type": "url", "value": "http://example.org/a"},
            {"type": "hash", "value": "d41d8cd98f00b204e9800998ecf8427e"},
            {"type": "email", "value": "a@example.org"},
            {"type": "user", "value": "root"},
            {"type": "host", "value": "web-1"},
            {"type": "file", "value": "/tmp/x"},
        ],
        "raw": {"rule": {"level": 6}},
    }
    alert = Alert.from_dict(data)
    assert alert.severity == "high"
    assert alert.occurred_at == datetime(2024, 2, 8, 11, 35, 14, 334000, tzinfo=timezone(timedelta(hours=-3)))
    assert alert.received_at == datetime(2024, 2, 8, 14, 35, 15, tzinfo=timezone.utc)
    assert alert.tags == ("web", "attack")
    assert alert.ips == ("192.0.2.10", "192.0.2.11")
    assert alert.domains == ("example.org",)
    assert alert.urls == ("http://example.org/a",)
    assert alert.hashes == ("d41d8cd98f00b204e9800998ecf8427e",)
    assert alert.emails == ("a@example.org",)
    assert alert.users == ("root",)
    assert alert.hosts == ("web-1",)
    assert alert.observables_of("file") == ("/tmp/x",)
    assert alert.observables[0] == Observable("ip", "192.0.2.10")
    assert alert.raw == {"rule": {"level": 6}}
    assert Alert.from_dict(alert.to_dict()) == alert
    json.dumps(alert.to_dict())  # JSON-ready
    assert alert.to_dict()["received_at"] == "2024-02-08T14:35:15Z"


def test_observables_collection():
    alert = Alert.from_dict(
        {
            "observables": [
                {"type": "ip", "value": "192.0.2.10"},
                {"type": "hash", "value": "d41d8cd98f00b204e9800998ecf8427e"},
                {"type": "IP", "value": "192.0.2.11"},
                {"type": "ip", "value": "192.0.2.10"},
                {"type": "Hash", "value": "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
                {"type": "domain", "value": "example.org"},
            ]
        }
    )
    obs = alert.observables
    assert isinstance(obs, Observables) and isinstance(obs, tuple)
    # typed accessors: de-duplicated values of that type, in order
    assert obs.ips == ("192.0.2.10", "192.0.2.11")
    assert obs.domains == ("example.org",)
    assert obs.urls == () and obs.emails == () and obs.users == () and obs.hosts == ()
    assert obs.hashes == ("d41d8cd98f00b204e9800998ecf8427e", "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    assert obs.of("hash") == obs.hashes
    assert obs.of(" HASH ") == obs.hashes
    assert obs.of("file") == ()
    # ... and the full list, duplicates included
    assert len(obs) == 6
    assert [(o.type, o.value) for o in obs] == [
        ("ip", "192.0.2.10"),
        ("hash", "d41d8cd98f00b204e9800998ecf8427e"),
        ("ip", "192.0.2.11"),
        ("ip", "192.0.2.10"),
        ("hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("domain", "example.org"),
    ]
    assert all(isinstance(o, Observable) for o in obs)
    assert obs[0] == Observable("ip", "192.0.2.10") and obs[-1] == Observable("domain", "example.org")
    assert isinstance(obs[1:3], Observables) and obs[1:3].ips == ("192.0.2.11",)
    assert obs == tuple(obs) and tuple(obs) == obs
    # Alert shortcuts delegate to the collection
    assert alert.ips == obs.ips and alert.hashes == obs.hashes and alert.observables_of("hash") == obs.of("hash")
    # immutable
    with pytest.raises(TypeError):
        obs[0] = Observable("ip", "1.1.1.1")  # type: ignore[index]
    with pytest.raises(AttributeError):
        obs.extra = 1  # type: ignore[attr-defined]


def test_observables_everywhere():
    built = Alert.build(observables=[("ip", "1.2.3.4"), {"type": "hash", "value": "abc"}, Observable("user", "root")])
    assert isinstance(built.observables, Observables)
    assert built.observables.ips == ("1.2.3.4",) and built.observables.of("hash") == ("abc",)
    assert built.observables.users == ("root",)
    assert isinstance(Alert().observables, Observables) and Alert().observables == ()
    assert isinstance(Alert(observables=None).observables, Observables)
    assert isinstance(Alert(observables=[("ip", "1.2.3.4")]).observables, Observables)
    # JSON round trip keeps the type and the contents
    data = built.to_dict()
    assert data["observables"] == [
        {"type": "ip", "value": "1.2.3.4"},
        {"type": "hash", "value": "abc"},
        {"type": "user", "value": "root"},
    ]
    json.dumps(data)
    again = Alert.from_dict(json.loads(json.dumps(data)))
    assert again == built and isinstance(again.observables, Observables)
    assert hash(again) == hash(built)
    # the frozen dataclass keeps it; replace() and copies too
    import copy
    import dataclasses
    import pickle

    assert isinstance(dataclasses.replace(built, title="x").observables, Observables)
    for clone in (copy.copy(built), copy.deepcopy(built), pickle.loads(pickle.dumps(built))):
        assert clone == built and isinstance(clone.observables, Observables)
        assert clone.observables.ips == ("1.2.3.4",)
    with pytest.raises(AttributeError):
        built.observables = Observables()  # type: ignore[misc]
    # the constructor validates like the alert does
    assert Observables([("IP", " 10.0.0.1 ")]) == (Observable("ip", "10.0.0.1"),)
    with pytest.raises(ValueError, match="observables"):
        Observables("1.2.3.4")
    with pytest.raises(ValueError, match="observables"):
        Alert(observables={"type": "ip", "value": "1.2.3.4"})


def test_from_dict_generic_ingest_format_collects_raw():
    line = {
        "title": "t",
        "severity": "critical",
        "source": "falco",
        "occurred_at": "2023-05-25T13:44:05.478445995Z",
        "rule": "Terminal shell in container",
        "output_fields": {"container.id": "ee97d9c4186f"},
    }
    alert = Alert.from_dict(line)
    assert alert.raw == {"rule": "Terminal shell in container", "output_fields": {"container.id": "ee97d9c4186f"}}
    assert alert.occurred_at.microsecond == 478445
    assert alert.id == "" and alert.observables == () and alert.received_at is None


def test_from_dict_defaults_and_errors():
    assert Alert.from_dict({}).severity == "info"
    with pytest.raises(ValueError, match="severity"):
        Alert.from_dict({"severity": "urgent"})
    with pytest.raises(ValueError, match="occurred_at"):
        Alert.from_dict({"occurred_at": "yesterday"})
    with pytest.raises(ValueError, match="tags"):
        Alert.from_dict({"tags": "a,b"})
    with pytest.raises(ValueError, match="observable"):
        Alert.from_dict({"observables": [{"type": "ip"}]})
    with pytest.raises(ValueError, match="empty value"):
        Alert.from_dict({"observables": [{"type": "ip", "value": " "}]})
    with pytest.raises(ValueError, match="raw"):
        Alert.from_dict({"raw": [1]})
    with pytest.raises(ValueError, match="JSON object"):
        Alert.from_dict([])


def test_build():
    alert = Alert.build(title="t", severity="high", source="test", observables=[("ip", "1.2.3.4")], tags=["x"])
    assert alert.ips == ("1.2.3.4",)
    assert alert.observables.ips == ("1.2.3.4",)
    assert alert.id.startswith("test-") and alert.tenant == "default"
    assert alert.tags == ("x",)
    with pytest.raises(TypeError, match="nope"):
        Alert.build(nope=1)


def test_alert_is_immutable_and_hashable():
    alert = Alert.build()
    with pytest.raises(AttributeError):
        alert.title = "x"  # type: ignore[misc]
    hash(alert)


def test_run_local_logging(caplog):
    run = Run(id="r-9", playbook="pb", tenant="acme", attempt=2)
    assert (run.id, run.playbook, run.tenant, run.attempt) == ("r-9", "pb", "acme", 2)
    with caplog.at_level(logging.INFO, logger="tocsin.run"):
        run.log("hello", ip="1.2.3.4")
        run.warning("careful")
    assert "[r-9] hello" in caplog.text and '"ip":"1.2.3.4"' in caplog.text
    assert "careful" in caplog.text
    with pytest.raises(Skip) as info:
        run.skip("nothing to do")
    assert info.value.reason == "nothing to do"


def test_control_flow_exceptions():
    assert not issubclass(Skip, Exception)
    assert not issubclass(RunAborted, Exception)
    assert issubclass(ActionFailed, Exception)
    aborted = RunAborted("cancelled", "by operator")
    assert (aborted.status, aborted.reason, str(aborted)) == ("cancelled", "by operator", "cancelled: by operator")
