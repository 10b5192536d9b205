"""The demo playbooks in playbooks/examples and the demo alerts in deploy/demo."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest

from sdk_paths import DEMO_ALERTS, PLAYBOOKS_DIR
from fakehost import FakeHost, Harness, new_hash, platform
from tocsin import OBSERVABLE_TYPES, SEVERITIES, Alert
from tocsin._bundle import list_modules, load_bundle, unload_bundle

BUNDLE_HASH = new_hash()


@pytest.fixture(scope="module")
def bundle():
    loaded = load_bundle(PLAYBOOKS_DIR, BUNDLE_HASH)
    yield loaded
    unload_bundle(loaded.package)


@pytest.fixture(scope="module")
def demo_lines():
    with open(DEMO_ALERTS, encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh if line.strip()]


def test_bundle_contents(bundle):
    modules = list_modules(PLAYBOOKS_DIR)
    assert modules == sorted(modules)
    assert {"examples/netintel.py", "examples/phishing.py", "examples/root_login.py", "examples/triage.py"} <= set(modules)
    assert set(bundle.modules) == {m[: -len(".py")].replace("/", ".") for m in modules}
    described = {p["name"]: p for p in bundle.describe()}
    assert {"ip_triage", "phishing_report", "wazuh_root_login"} <= set(described)

    triage = described["ip_triage"]
    assert triage["module"] == "examples.triage" and triage["file"] == "examples/triage.py"
    assert triage["when"] == {"source": ["suricata", "wazuh", "aws-guardduty"], "severity": {"gte": "medium"}}
    assert (triage["trigger"], triage["priority"], triage["timeout_s"]) == ("alert", "high", 120.0)

    phishing = described["phishing_report"]
    assert phishing["when"] == {"source": "phishing"}
    assert (phishing["priority"], phishing["file"]) == ("high", "examples/phishing.py")

    root = described["wazuh_root_login"]
    assert root["function"] == "root_login" and root["module"] == "examples.root_login"
    assert root["when"] == {"source": "wazuh", "raw.rule.level": {"gte": 3}, "raw.data.dstuser": "root"}
    for info in described.values():
        with open(f"{PLAYBOOKS_DIR}/{info['file']}", encoding="utf-8") as fh:
            assert fh.read().splitlines()[info["line"] - 1].startswith("@playbook")


def test_demo_alerts_are_valid_generic_alerts(demo_lines):
    assert 8 <= len(demo_lines) <= 10
    seen = {}
    duplicates = []
    for number, line in enumerate(demo_lines, 1):
        data = json.loads(line)
        assert data["title"].strip()
        assert data["severity"] in SEVERITIES
        assert data["source"] == data["source"].lower()
        assert data["source_ref"].strip()
        datetime.fromisoformat(data["occurred_at"])
        assert data["occurred_at"][10] == "T" and (data["occurred_at"].endswith("Z") or data["occurred_at"][-6] in "+-")
        assert all(o["type"] in OBSERVABLE_TYPES and isinstance(o["value"], str) for o in data["observables"])
        assert all(isinstance(t, str) for t in data["tags"])
        key = (data["source"], data["source_ref"])
        if key in seen:
            duplicates.append((seen[key], number))
            assert demo_lines[seen[key] - 1] == line, "duplicates must be exact copies"
        seen[key] = number
    assert duplicates == [(2, 9)]


EXPECTED_MATCHES = {
    1: [],  # suricata, low severity
    2: ["ip_triage"],  # wazuh shellshock, medium
    3: ["ip_triage"],  # guardduty, medium
    4: ["wazuh_root_login"],  # wazuh sshd root login, low
    5: ["phishing_report"],  # phishing with URLs
    6: ["phishing_report"],  # phishing without URLs -> skipped
    7: [],  # falco: no playbook for it
    8: [],  # okta: no playbook for it
    9: ["ip_triage"],  # duplicate of line 2 (deduplicated by ingest)
}


def test_demo_alerts_match_expected_playbooks(bundle, demo_lines):
    for number, line in enumerate(demo_lines, 1):
        alert = Alert.from_dict(json.loads(line))
        matched = sorted(name for name, pb in bundle.playbooks.items() if pb.matches(alert))
        assert matched == EXPECTED_MATCHES[number], (number, alert.title)


EXPECTED_OUTCOMES = {
    (2, "ip_triage"): ("succeeded", {"verdict": "no-external-indicators"}),
    (3, "ip_triage"): ("succeeded", {"verdict": "malicious", "malicious": ["198.51.100.0"]}),
    (4, "wazuh_root_login"): ("succeeded", {"assessment": "expected-admin-access", "method": "publickey"}),
    (5, "phishing_report"): ("succeeded", {"verdict": "phishing"}),
    (6, "phishing_report"): ("skipped", None),
}


def test_demo_playbooks_run_through_the_runtime(bundle, demo_lines):
    host = FakeHost(decide=platform())  # executes actions, replays system steps (tocsin.case.*)

    async def main():
        async with Harness(host) as h:
            runs = {}
            for (number, playbook), _ in EXPECTED_OUTCOMES.items():
                alert = json.loads(demo_lines[number - 1])
                alert.update({"id": f"alert-{number}", "tenant": "demo"})
                runs[(number, playbook)] = h.start(PLAYBOOKS_DIR, BUNDLE_HASH, playbook, alert=alert, tenant="demo")
            return {key: await h.wait_finished(run_id) for key, run_id in runs.items()}, runs

    results, runs = asyncio.run(main())
    for key, (status, expected) in EXPECTED_OUTCOMES.items():
        finished = results[key]
        assert finished["status"] == status, (key, finished)
        if expected is not None:
            assert expected.items() <= finished["result"].items(), (key, finished["result"])

    triage = results[(3, "ip_triage")]["result"]
    assert triage["indicators"][0]["scope"] == "reserved"
    shellshock = results[(2, "ip_triage")]["result"]
    assert [(i["ip"], i["scope"]) for i in shellshock["indicators"]] == [("0.0.0.0", "unspecified")]
    phishing = results[(5, "phishing_report")]["result"]
    verdicts = {d["domain"]: d["verdict"] for d in phishing["domains"]}
    assert verdicts == {"login.contoso-verify.example": "malicious", "www.contoso.com": "trusted"}
    assert results[(6, "phishing_report")]["error"] == "the reported e-mail contains no URL"

    # every journaled action step was executed and reported (system steps are
    # performed by the platform)
    intents = [c for c in host.of("step_intent") if not c[3].startswith("tocsin.")]
    assert intents and len(host.of("step_result")) == len(intents)
    assert {"enrich_ip", "assess_domain"} <= {c[3] for c in intents}


def test_netintel_classification(bundle):
    classify = bundle.modules["examples.netintel"].classify_ip
    assert classify("10.1.2.3")["scope"] == "private"
    assert classify("54.230.202.37")["scope"] == "public"
    assert classify("127.0.0.1")["scope"] == "loopback"
    assert classify("224.0.0.251")["scope"] == "multicast"
    assert classify("100.64.0.1")["scope"] == "reserved"
    assert classify("fe80::1")["scope"] == "link-local"
    assert classify("152.228.133.10")["reputation"] == "malicious"
    assert classify("000.111.222.10") == {
        "ip": "000.111.222.10", "valid": False, "version": None, "scope": "invalid",
        "reputation": "unknown", "reason": None,
    }
