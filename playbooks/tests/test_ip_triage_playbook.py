"""ip_triage: unchanged offline verdicts on the demo alerts, optional
AbuseIPDB / VirusTotal reputation with stubs, and a run against the fakes."""

from __future__ import annotations

from fakes import FakeAbuseIPDB, FakeVirusTotal
from playbook_support import OFFLINE_SECRETS, call_names, demo_alert, demo_lines, run
from tocsin.integrations import IntegrationError
from tocsin.testing import mock_alert

from examples.triage import ip_triage

PUBLIC_BAD = "185.220.101.45"
PUBLIC_OK = "9.9.9.9"


def abuse(ip: str, score: int) -> dict:
    verdict = "malicious" if score >= 75 else "suspicious" if score >= 25 else "clean"
    return {
        "ip": ip,
        "abuse_confidence": score,
        "total_reports": score * 3,
        "distinct_users": 5,
        "country": "DE",
        "isp": "Example ISP",
        "usage_type": None,
        "domain": None,
        "is_tor": False,
        "is_whitelisted": False,
        "is_public": True,
        "last_reported_at": None,
        "verdict": verdict,
        "link": "https://www.abuseipdb.com/check/x",
    }


def test_demo_alerts_keep_their_offline_verdicts_and_when():
    matched = [n for n, alert in enumerate(demo_lines(), 1) if ip_triage.matches(alert)]
    assert matched == [2, 3, 9]

    shellshock = run(ip_triage, demo_alert(2))
    assert shellshock.status == "succeeded", shellshock.traceback
    assert shellshock.result["verdict"] == "no-external-indicators"
    assert shellshock.result["reputation"] == {}

    guardduty = run(ip_triage, demo_alert(3))
    assert guardduty.result["verdict"] == "malicious" and guardduty.result["malicious"] == ["198.51.100.0"]
    assert call_names(guardduty) == ["enrich_ip"]
    assert guardduty.case_changes == []


def test_only_public_addresses_are_sent_to_reputation_services():
    alert = mock_alert(
        source="suricata",
        severity="high",
        observables=[("ip", "10.1.2.3"), ("ip", PUBLIC_BAD), ("ip", "203.0.113.9"), ("ip", PUBLIC_OK)],
    )
    stubs = {
        "abuseipdb_check": lambda ip: abuse(ip, 100 if ip == PUBLIC_BAD else 0),
        "vt_ip_report": lambda ip: {
            "verdict": "suspicious" if ip == PUBLIC_BAD else "clean",
            "malicious": 1 if ip == PUBLIC_BAD else 0,
            "suspicious": 0,
        },
    }
    result = run(ip_triage, alert, secrets=OFFLINE_SECRETS, stubs=stubs)

    assert result.status == "succeeded", result.traceback
    assert sorted(c.args["ip"] for c in result.calls_to("abuseipdb_check")) == [PUBLIC_BAD, PUBLIC_OK]
    assert sorted(c.args["ip"] for c in result.calls_to("vt_ip_report")) == [PUBLIC_BAD, PUBLIC_OK]
    assert result.result["verdict"] == "malicious"
    assert result.result["malicious"] == [PUBLIC_BAD]
    assert result.result["external"] == [PUBLIC_BAD, PUBLIC_OK]
    assert set(result.result["reputation"]) == {PUBLIC_BAD, PUBLIC_OK}
    assert result.result["reputation"][PUBLIC_OK]["verdict"] == "clean"
    assert any(log["message"] == "address rated malicious by a reputation service" for log in result.logs)


def test_failed_lookups_leave_the_address_for_review():
    alert = mock_alert(source="wazuh", severity="medium", observables=[("ip", PUBLIC_BAD)])
    error = IntegrationError("abuseipdb", "Authentication failed.", status=401)
    result = run(
        ip_triage,
        alert,
        secrets={k: v for k, v in OFFLINE_SECRETS.items() if k.startswith("abuse")},
        stubs={"abuseipdb_check": error},
    )
    assert result.status == "succeeded", result.traceback
    assert result.result["verdict"] == "needs-review"
    entry = result.result["reputation"][PUBLIC_BAD]
    assert entry["abuseipdb"]["status"] == 401 and entry["virustotal"] is None and entry["verdict"] == "unknown"


def test_reputation_against_fake_services():
    with FakeAbuseIPDB() as abuseipdb, FakeVirusTotal() as vt:
        abuseipdb.add_ip(PUBLIC_BAD, 96, total_reports=1200)
        vt.add_ip(PUBLIC_BAD, malicious=8, harmless=60)
        alert = mock_alert(
            source="aws-guardduty", severity="medium", observables=[("ip", PUBLIC_BAD), ("ip", "172.31.5.9")]
        )

        result = run(ip_triage, alert, secrets={**abuseipdb.secrets(), **vt.secrets()})

        assert result.status == "succeeded", result.traceback
        assert result.result["verdict"] == "malicious"
        rep = result.result["reputation"][PUBLIC_BAD]
        assert rep["abuseipdb"]["abuse_confidence"] == 96 and rep["virustotal"]["malicious"] == 8
        [check] = abuseipdb.requests
        assert check.param("ipAddress") == PUBLIC_BAD and check.header("key") == abuseipdb.api_key
        assert [r.path for r in vt.requests] == [f"/api/v3/ip_addresses/{PUBLIC_BAD}"]
