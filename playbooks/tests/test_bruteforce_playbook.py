"""bruteforce_containment: trigger, approval-gated blocking and the case
comment in every branch, with stubs and against the fake services."""

from __future__ import annotations

from fakes import FakeAbuseIPDB, FakeFirewall
from playbook_support import OFFLINE_SECRETS, call_names, comments, demo_lines, ops, run
from tocsin.testing import mock_alert

from examples.bruteforce import BLOCK_TTL_SECONDS, bruteforce_containment, source_addresses

ATTACKER = "185.220.101.45"
BLOCKLISTED = "152.228.133.10"  # on the demo's local blocklist
NO_BLOCKS = {"blocks": [], "count": 0}


def brute_force_alert(*ips: str, **fields) -> object:
    fields.setdefault("title", "sshd: brute force trying to get access to the system")
    return mock_alert(
        source="wazuh", severity="high", tags=["brute-force", "T1110"], observables=[("ip", ip) for ip in ips], **fields
    )


def abuse(ip: str, score: int) -> dict:
    verdict = "malicious" if score >= 75 else "suspicious" if score >= 25 else "clean"
    return {
        "ip": ip,
        "abuse_confidence": score,
        "total_reports": 40,
        "distinct_users": 9,
        "country": "DE",
        "isp": "Example ISP",
        "usage_type": None,
        "domain": None,
        "is_tor": False,
        "is_whitelisted": False,
        "is_public": True,
        "last_reported_at": None,
        "verdict": verdict,
        "link": "x",
    }


def stubs(score: int = 100, existing: dict = NO_BLOCKS) -> dict:
    return {
        "abuseipdb_check": lambda ip: abuse(ip, score),
        "vt_ip_report": {"verdict": "clean", "malicious": 0, "suspicious": 0},
        "fw_find_blocks": existing,
        "fw_block": lambda type, value, reason, ttl_seconds: {"id": "blk-42", "type": type, "value": value},
    }


def test_when_matches_tagged_alerts_and_no_demo_alert():
    assert bruteforce_containment.when == {"tags": {"contains": "brute-force"}}
    assert bruteforce_containment.matches(brute_force_alert(ATTACKER))
    assert not any(bruteforce_containment.matches(alert) for alert in demo_lines())


def test_alert_without_source_address_is_skipped():
    result = run(bruteforce_containment, brute_force_alert(raw={"data": {"srcip": "000.111.222.10"}}))
    assert (result.status, result.error) == ("skipped", "no valid source IP address in the alert")
    assert source_addresses(brute_force_alert(raw={"data": {"srcip": ATTACKER}})) == [ATTACKER]


def test_approved_block_of_a_bad_external_address():
    result = run(
        bruteforce_containment, brute_force_alert(ATTACKER), secrets=OFFLINE_SECRETS, stubs=stubs(), approvals=[True]
    )

    assert result.status == "succeeded", result.traceback
    [asked] = result.approvals_asked
    assert asked["title"] == f"Block {ATTACKER} at the firewall?"
    assert (asked["default"], asked["timeout_s"]) == ("deny", 1800.0)
    assert asked["details"]["verdict"] == "malicious" and "AbuseIPDB confidence 100%" in asked["details"]["evidence"]
    [block] = result.calls_to("fw_block")
    assert block.args["type"] == "ip" and block.args["value"] == ATTACKER
    assert block.args["ttl_seconds"] == BLOCK_TTL_SECONDS and "sshd: brute force" in block.args["reason"]
    assert result.result["outcome"] == "blocked" and result.result["blocked"] == [ATTACKER]
    assert ops(result) == ["add_tag", "comment"]
    assert result.case_changes[0] == {"op": "add_tag", "tag": "blocked-at-firewall"}
    [comment] = comments(result)
    assert (
        f"`{ATTACKER}`: **malicious**" in comment and "blocked at the firewall for 24 hours (block blk-42)" in comment
    )


def test_declined_approval_blocks_nothing_but_still_comments():
    result = run(
        bruteforce_containment, brute_force_alert(ATTACKER), secrets=OFFLINE_SECRETS, stubs=stubs(), approvals=[False]
    )
    assert result.status == "succeeded", result.traceback
    assert result.calls_to("fw_block") == []
    assert result.result["outcome"] == "declined"
    assert ops(result) == ["comment"]
    assert "block declined (or the approval timed out); not blocked" in comments(result)[0]


def test_no_approval_is_asked_when_blocking_is_not_warranted_or_possible():
    # Internal and clean external sources: no approval, no block.
    result = run(
        bruteforce_containment, brute_force_alert("10.0.0.7", ATTACKER), secrets=OFFLINE_SECRETS, stubs=stubs(score=0)
    )
    assert result.status == "succeeded", result.traceback
    assert result.approvals_asked == [] and result.calls_to("fw_block") == []
    assert [c.args["ip"] for c in result.calls_to("abuseipdb_check")] == [ATTACKER]  # never the internal one
    assert [s["outcome"] for s in result.result["sources"]] == ["internal-source", "no-bad-reputation"]
    assert result.result["outcome"] == "no-action"
    assert "check the source host for compromise" in comments(result)[0]

    # Already blocked: nothing to ask.
    existing = {"blocks": [{"id": "blk-1", "type": "ip", "value": ATTACKER}], "count": 1}
    result = run(
        bruteforce_containment, brute_force_alert(ATTACKER), secrets=OFFLINE_SECRETS, stubs=stubs(existing=existing)
    )
    assert result.approvals_asked == [] and result.result["outcome"] == "already-blocked"
    assert "already blocked at the firewall (block blk-1)" in comments(result)[0]


def test_offline_uses_the_local_blocklist_and_asks_for_a_manual_block():
    # No secrets at all: the local blocklist still flags the address, but
    # without a firewall integration there is nothing to approve.
    result = run(bruteforce_containment, brute_force_alert(BLOCKLISTED))
    assert result.status == "succeeded", result.traceback
    assert call_names(result) == ["configured_integrations", "enrich_ip"]
    assert result.calls[0].result == []
    assert result.approvals_asked == []
    assert result.result["outcome"] == "needs-manual-block"
    assert "no firewall integration is configured; block it by hand" in comments(result)[0]


def test_block_against_fake_services():
    with FakeAbuseIPDB() as abuseipdb, FakeFirewall() as firewall:
        abuseipdb.add_ip(ATTACKER, 88, total_reports=321)
        firewall.add_block("ip", "192.0.2.99")
        secrets = {**abuseipdb.secrets(), **firewall.secrets()}

        result = run(
            bruteforce_containment, brute_force_alert(ATTACKER), secrets=secrets, approvals=[True], run_id="run-bf-1"
        )

        assert result.status == "succeeded", result.traceback
        assert result.result["outcome"] == "blocked"
        [lookup, create] = firewall.requests
        assert (lookup.method, lookup.param("value")) == ("GET", ATTACKER)
        assert create.json == {
            "type": "ip",
            "value": ATTACKER,
            "reason": create.json["reason"],
            "ttl_seconds": BLOCK_TTL_SECONDS,
        }
        assert create.idempotency_key.startswith("run-bf-1:")
        assert set(firewall.blocked_values()) == {"192.0.2.99", ATTACKER}
        block_id = result.result["sources"][0]["block_id"]
        assert firewall.blocks[block_id]["value"] == ATTACKER
        assert f"(block {block_id})" in comments(result)[0]

        # Declined on a second alert for the same address: it is already
        # blocked now, so nobody is even asked.
        second = run(bruteforce_containment, brute_force_alert(ATTACKER), secrets=secrets, approvals=[False])
        assert second.approvals_asked == [] and second.result["outcome"] == "already-blocked"


def test_resumed_runs_keep_the_integrations_recorded_at_first_execution():
    # The journal recorded "firewall only" before the run was suspended; the
    # tenant has since added an AbuseIPDB key and removed the firewall token.
    # The resumed run must take the same branches (no AbuseIPDB step, the
    # firewall path), and the vanished firewall fails cleanly.
    secrets = {k: v for k, v in OFFLINE_SECRETS.items() if k.startswith("abuse")}
    result = run(
        bruteforce_containment,
        brute_force_alert(BLOCKLISTED),
        secrets=secrets,
        stubs={"configured_integrations": ["firewall"]},
    )

    assert result.status == "succeeded", result.traceback
    assert "abuseipdb_check" not in call_names(result)
    [lookup] = result.calls_to("fw_find_blocks")
    assert lookup.outcome == "error" and "NotConfigured" in lookup.error
    assert result.approvals_asked == []
    assert result.result["sources"][0]["outcome"] == "block-failed"
    assert "could not check existing blocks" in comments(result)[0]
