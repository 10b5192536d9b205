"""phishing_report: offline heuristics on the demo alerts, VirusTotal /
mail-gateway / firewall / Slack paths with stubs, and a full run against the
local fake services."""

from __future__ import annotations

from typing import Any

from fakes import Fakes
from playbook_support import OFFLINE_SECRETS, call_names, comments, demo_alert, ops, run
from tocsin.integrations import RateLimited
from tocsin.testing import mock_alert

from examples import phishing
from examples.phishing import parse_report, phishing_report

LURE_URL = "https://login.contoso-verify.example/owa/auth/logon.aspx?replaceCurrent=1"
OWN_URL = "https://www.contoso.com/en-us/privacy"
SENDER = "user.abc@mail.contoso.co.in"
SUBJECT = "[EXTERNAL] Attention"
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"


def vt_result(kind: str, indicator: str, malicious: int = 0, suspicious: int = 0, found: bool = True) -> dict:
    verdict = (
        "malicious"
        if malicious >= 3
        else "suspicious" if malicious or suspicious else ("clean" if found else "unknown")
    )
    return {
        "type": kind,
        "indicator": indicator,
        "found": found,
        "malicious": malicious,
        "suspicious": suspicious,
        "harmless": 60 if found else 0,
        "undetected": 10 if found else 0,
        "verdict": verdict,
        "reputation": 0,
        "last_analysis_date": None,
        "link": f"https://www.virustotal.com/gui/{kind}/x",
    }


COPIES = {
    "messages": [
        {
            "id": "m-1",
            "recipient": "test.User4@contoso.com",
            "subject": SUBJECT,
            "sender": SENDER,
            "received_at": "2020-09-06T12:01:10Z",
        },
        {
            "id": "m-2",
            "recipient": "testUser3@contoso.com",
            "subject": SUBJECT,
            "sender": SENDER,
            "received_at": "2020-09-06T12:01:11Z",
        },
    ],
    "count": 2,
}


def containment_stubs(**overrides: Any) -> dict:
    stubs = {
        "vt_url_report": lambda url: vt_result("url", url, malicious=9),
        "vt_domain_report": lambda domain: vt_result("domain", domain, malicious=1),
        "vt_file_report": lambda file_hash: vt_result("file", file_hash, found=False),
        "mail_search": COPIES,
        "mail_quarantine": lambda message_id: {"id": message_id, "status": "quarantined"},
        "mail_block_url": lambda url, reason: {"id": "bl-1", "url": url, "reason": reason, "created": True},
        "fw_block": lambda type, value, reason, ttl_seconds: {"id": "blk-7", "type": type, "value": value},
        "slack_notify": {"ok": True, "via": "chat.postMessage", "channel": "C0123456789", "ts": "1.2"},
    }
    stubs.update(overrides)
    return stubs


# ---------------------------------------------------------------------------
# Offline (the demo): no secrets, heuristics only
# ---------------------------------------------------------------------------


def test_demo_report_is_phishing_with_heuristics_only_and_comments_the_case():
    result = run(phishing_report, demo_alert(5))

    assert result.status == "succeeded", result.traceback
    assert result.result["verdict"] == "phishing"
    assert {d["domain"]: d["verdict"] for d in result.result["domains"]} == {
        "login.contoso-verify.example": "malicious",
        "www.contoso.com": "trusted",
    }
    assert result.result["sender"]["verdict"] == "suspicious"  # imitates contoso.com
    assert result.result["integrations"] == []
    # Only offline steps: two URL hosts and the sender domain.
    assert call_names(result) == ["configured_integrations"] + ["assess_domain"] * 3
    assert result.calls[0].result == []
    assert ops(result) == ["add_tag", "comment", "set_status"]
    assert result.case_changes[0] == {"op": "add_tag", "tag": "phishing"}
    assert result.case_changes[2] == {"op": "set_status", "status": "in_progress", "determination": None}
    [comment] = comments(result)
    assert "**Phishing triage: phishing** (sources: local heuristics)" in comment
    assert f"URL `{LURE_URL}`: **malicious**" in comment and f"URL `{OWN_URL}`: **trusted**" in comment
    assert "no mail gateway or firewall integration is configured" in comment
    assert "Find and quarantine every copy of the message; block the malicious URLs" in comment
    assert result.result["containment"]["quarantined"] == []


def test_report_without_url_or_attachment_is_skipped():
    result = run(phishing_report, demo_alert(6))
    assert (result.status, result.error) == ("skipped", "the reported e-mail contains no URL")
    assert result.calls == [] and result.case_changes == []


def test_parse_report_reads_observables_and_raw_mail():
    report = parse_report(demo_alert(5))
    assert (report.sender, report.subject) == (SENDER, SUBJECT)
    assert report.recipients == ("test.User4@contoso.com", "testUser4@contoso.com")
    assert report.own_domains == ["contoso.com"]
    assert report.urls == (LURE_URL, OWN_URL) and report.hashes == ()

    alert = mock_alert(
        source="phishing",
        observables=[("email", "x@evil.example"), ("hash", EICAR_SHA256.upper())],
        raw={
            "mail": {
                "from": "Ava <Oneil.844@randtelekom.com.tr>",
                "to": "kalinokyra@thismail.it",
                "attachments": [
                    {"name": "export_pdf.js", "md5": "44d88612fea8a8f36de82e1278abb02f"},
                    {"name": "junk", "sha256": "not-a-hash"},
                ],
            }
        },
    )
    report = parse_report(alert)
    assert report.sender == "Oneil.844@randtelekom.com.tr" and report.sender_domain == "randtelekom.com.tr"
    assert report.hashes == (EICAR_SHA256, "44d88612fea8a8f36de82e1278abb02f")
    assert report.recipients == ("kalinokyra@thismail.it",)


# ---------------------------------------------------------------------------
# With integrations (stubbed actions)
# ---------------------------------------------------------------------------


def test_malicious_report_is_contained_everywhere():
    result = run(phishing_report, demo_alert(5), secrets=OFFLINE_SECRETS, stubs=containment_stubs())

    assert result.status == "succeeded", result.traceback
    assert result.result["verdict"] == "phishing"
    # The organisation's own URL and domain never go to VirusTotal.
    assert [c.args for c in result.calls_to("vt_url_report")] == [{"url": LURE_URL}]
    assert sorted(c.args["domain"] for c in result.calls_to("vt_domain_report")) == [
        "login.contoso-verify.example",
        "mail.contoso.co.in",
    ]
    [search] = result.calls_to("mail_search")
    assert search.args == {"sender": SENDER, "subject": SUBJECT, "received_after": "2020-08-30T12:04:00Z"}
    assert sorted(c.args["message_id"] for c in result.calls_to("mail_quarantine")) == ["m-1", "m-2"]
    [fw] = result.calls_to("fw_block")
    assert fw.args["type"] == "url" and fw.args["value"] == LURE_URL and fw.args["ttl_seconds"] is None
    assert [c.args["url"] for c in result.calls_to("mail_block_url")] == [LURE_URL]
    # Lookups first (in parallel), then the search, containment, and Slack last.
    names = call_names(result)
    assert names.index("mail_search") > max(i for i, n in enumerate(names) if n.startswith("vt_"))
    assert names[-1] == "slack_notify"

    containment = result.result["containment"]
    assert containment["quarantined"] == ["m-1", "m-2"] and containment["failed"] == []
    assert containment["firewall"] == [{"url": LURE_URL, "block_id": "blk-7"}]
    # testUser3 received a copy but did not report it: it joins the case.
    assert ops(result) == ["add_tag", "add_observable", "comment", "set_status"]
    assert result.case_changes[1] == {"op": "add_observable", "type": "user", "value": "testUser3@contoso.com"}
    [comment] = comments(result)
    assert "sources: local heuristics, virustotal, mailgateway" in comment
    assert "VirusTotal 9 malicious / 0 suspicious" in comment
    assert "Mail gateway: 2 delivered copies, to test.User4@contoso.com, testUser3@contoso.com." in comment
    assert "- quarantined 2 of 2 copies." in comment
    assert "- blocked 1 URL(s) at the firewall (block ids blk-7)." in comment
    assert "Recommendation: Check whether any recipient clicked" in comment
    [slack] = result.calls_to("slack_notify")
    assert "Quarantined 2/2 copies" in slack.args["text"] and SUBJECT in slack.args["text"]


def test_ambiguous_report_gets_evidence_and_recommendation_but_no_containment():
    alert = mock_alert(
        source="phishing",
        title="Reported e-mail",
        observables=[
            ("email", "billing@vendor.example"),
            ("user", "alice@contoso.com"),
            ("url", "https://files.vendor.example/statement"),
        ],
        raw={"mail": {"subject": "Your statement"}},
    )
    stubs = containment_stubs(
        vt_url_report=lambda url: vt_result("url", url, malicious=1),
        vt_domain_report=lambda domain: vt_result("domain", domain),
    )
    result = run(phishing_report, alert, secrets=OFFLINE_SECRETS, stubs=stubs)

    assert result.status == "succeeded", result.traceback
    assert result.result["verdict"] == "likely-phishing"
    assert result.result["containment"] is None
    assert not {"mail_quarantine", "mail_block_url", "fw_block", "slack_notify"} & set(call_names(result))
    assert ops(result) == ["comment"]
    [comment] = comments(result)
    assert "**Phishing triage: likely-phishing**" in comment
    assert "URL `https://files.vendor.example/statement`: **suspicious** (VirusTotal 1 malicious" in comment
    assert "- none (the evidence is not conclusive enough for automatic containment)." in comment
    assert "Recommendation: Suspicious indicators but nothing confirmed malicious" in comment


def test_nothing_flagged_is_needs_review():
    alert = mock_alert(
        source="phishing",
        observables=[
            ("email", "news@vendor.example"),
            ("user", "alice@contoso.com"),
            ("url", "https://vendor.example/news"),
        ],
    )
    stubs = containment_stubs(
        vt_url_report=lambda url: vt_result("url", url), vt_domain_report=lambda domain: vt_result("domain", domain)
    )
    result = run(phishing_report, alert, secrets=OFFLINE_SECRETS, stubs=stubs)
    assert result.result["verdict"] == "needs-review"
    # No subject: the gateway is not searched (sender alone would be too broad).
    assert "mail_search" not in call_names(result)
    [comment] = comments(result)
    assert "Mail gateway not searched: the sender or the subject of the message is unknown." in comment
    assert "Recommendation: No indicator was flagged" in comment


def test_virustotal_failures_degrade_to_heuristics():
    limited = RateLimited("virustotal", "Quota exceeded", status=429, code="QuotaExceededError", retry_after=60.0)
    stubs = containment_stubs(vt_url_report=limited, vt_domain_report=limited)
    result = run(phishing_report, demo_alert(5), secrets=OFFLINE_SECRETS, stubs=stubs)

    assert result.status == "succeeded", result.traceback
    assert result.result["verdict"] == "phishing"  # the heuristics still flag the look-alike
    url = result.result["evidence"]["urls"][0]
    assert url["virustotal"]["status"] == 429 and url["virustotal"]["retry_after"] == 60.0
    warnings = [log for log in result.logs if log["level"] == "warning"]
    assert warnings and all(w["message"] == "VirusTotal lookup failed" for w in warnings)
    assert "VirusTotal lookup failed (virustotal: HTTP 429 [QuotaExceededError] Quota exceeded" in comments(result)[0]


def test_failed_containment_steps_are_reported_not_raised():
    def quarantine(message_id: str) -> dict:
        if message_id == "m-2":
            raise RuntimeError(f"gateway refused {message_id}")
        return {"id": message_id, "status": "quarantined"}

    stubs = containment_stubs(mail_quarantine=quarantine)
    result = run(phishing_report, demo_alert(5), secrets=OFFLINE_SECRETS, stubs=stubs)

    assert result.status == "succeeded", result.traceback
    containment = result.result["containment"]
    assert containment["quarantined"] == ["m-1"]
    assert containment["failed"] == [{"action": "quarantine", "target": "m-2", "error": "gateway refused m-2"}]
    [comment] = comments(result)
    assert "- FAILED quarantine `m-2`: gateway refused m-2" in comment
    assert "Recommendation: Finish the failed containment steps by hand" in comment
    assert any(log["level"] == "error" for log in result.logs)


def test_malicious_attachment_alone_is_enough():
    alert = mock_alert(
        source="phishing",
        observables=[
            ("email", "Oneil.844@randtelekom.com.tr"),
            ("user", "kalinokyra@thismail.it"),
            ("hash", EICAR_SHA256),
        ],
    )
    stubs = containment_stubs(
        vt_file_report=lambda file_hash: vt_result("file", file_hash, malicious=60),
        vt_domain_report=lambda domain: vt_result("domain", domain),
    )
    result = run(phishing_report, alert, secrets=OFFLINE_SECRETS, stubs=stubs)
    assert result.result["verdict"] == "phishing"
    assert result.result["attachments"][0]["verdict"] == "malicious"
    assert result.calls_to("fw_block") == []  # no URL to block
    assert "Attachment `" + EICAR_SHA256 + "`: **malicious** (VirusTotal 60 malicious" in comments(result)[0]


def test_only_keyed_side_effects_are_idempotent():
    from tocsin import Run

    from examples.connectors import Connectors, build_actions

    actions = vars(build_actions(Run(), Connectors()))
    idempotent = {name for name, a in actions.items() if a.idempotent}
    assert {"mail_quarantine", "fw_block"} <= idempotent  # they pass run.idempotency_key
    assert {"mail_block_url", "slack_notify"}.isdisjoint(idempotent)  # their APIs take no key
    assert actions["mail_block_url"].retries == actions["slack_notify"].retries == 0
    assert phishing.assess_domain.idempotent


# ---------------------------------------------------------------------------
# Against the fake services, for real
# ---------------------------------------------------------------------------


def test_full_containment_against_fake_services():
    with Fakes() as fakes:
        fakes.virustotal.add_url(LURE_URL, malicious=11, harmless=50)
        fakes.virustotal.add_domain("login.contoso-verify.example", malicious=4)
        gateway = fakes.mailgateway
        ids = [
            gateway.add_message(SENDER, r, SUBJECT, "2020-09-06T12:01:10Z")
            for r in ("test.User4@contoso.com", "testUser3@contoso.com", "ceo@contoso.com")
        ]
        gateway.add_message(SENDER, "old@contoso.com", SUBJECT, "2020-08-01T00:00:00Z")  # outside the window

        result = run(phishing_report, demo_alert(5), secrets=fakes.secrets(), run_id="run-phish-1")

        assert result.status == "succeeded", result.traceback
        assert result.result["verdict"] == "phishing"
        assert all(not c.stubbed for c in result.calls)
        # VirusTotal: keyed lookups, never the organisation's URL.
        vt_paths = [r.path for r in fakes.virustotal.requests]
        assert all(r.header("x-apikey") == fakes.virustotal.api_key for r in fakes.virustotal.requests)
        assert not any("contoso.com" in p and "contoso.co.in" not in p for p in vt_paths)
        # Every copy in the window was quarantined, each with its own step key.
        assert sorted(gateway.quarantined) == sorted(ids)
        keys = [
            r.idempotency_key
            for r in gateway.requests_to("POST", "/api/v1/messages/m")
            if r.path.endswith("/quarantine")
        ]
        assert len(set(keys)) == 3 and all(k.startswith("run-phish-1:") for k in keys)
        search = gateway.requests_to("POST", "/api/v1/messages/search")[0]
        assert search.json == {"sender": SENDER, "subject": SUBJECT, "received_after": "2020-08-30T12:04:00Z"}
        assert [e["url"] for e in gateway.blocklist] == [LURE_URL]
        [block] = fakes.firewall.blocks.values()
        assert (block["type"], block["value"]) == ("url", LURE_URL)
        assert fakes.firewall.requests[0].idempotency_key.startswith("run-phish-1:")
        [posted] = fakes.slack.posted
        assert posted["channel"] == "#soc" and "Quarantined 3/3 copies" in posted["text"]
        assert fakes.abuseipdb.requests == []  # not used by this playbook
        assert "ceo@contoso.com" in comments(result)[0]

        # A re-execution of the same run (same step keys) does not act twice
        # on the keyed side effects.
        again = run(phishing_report, demo_alert(5), secrets=fakes.secrets(), run_id="run-phish-1")
        assert again.status == "succeeded", again.traceback
        assert sorted(gateway.quarantined) == sorted(ids)
        assert len(fakes.firewall.blocks) == 1
