"""Approval-gated firewall blocking of brute-force sources.

Runs on alerts tagged ``brute-force``. For each source address of the alert
(``ip`` observables, else ``raw.data.srcip`` / ``raw.src_ip`` /
``raw.client.ipAddress`` / ``raw.source.ip``, at most
:data:`MAX_SOURCES`):

1. classifies it offline (scope, local blocklist) and, for public addresses,
   checks AbuseIPDB / VirusTotal when their secrets are set;
2. a public address with a malicious or suspicious reputation is a
   candidate for blocking; if the firewall integration is configured and the
   address is not blocked yet, the playbook asks
   ``approval("Block <ip> at the firewall?")`` (30 minutes, default deny) and,
   when approved, blocks it for :data:`BLOCK_TTL_SECONDS` (an idempotent
   step: the firewall de-duplicates on the step's idempotency key);
3. comments on the case what it found and did for every address, approved
   or not, and tags the case ``blocked-at-firewall`` when something was
   blocked.

Internal addresses are never blocked (the comment recommends checking the
host instead); addresses without bad reputation are left alone.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from tocsin import Alert, Run, approval, playbook

from .connectors import Connectors, connect, describe_ip_reputation, failed, ip_reputation, settle
from .netintel import enrich_ip

#: How long a firewall block lasts (24 hours).
BLOCK_TTL_SECONDS = 24 * 3600
#: How long to wait for an approver before giving up (the default is deny).
APPROVAL_TIMEOUT = "30m"
#: Most source addresses handled per alert (one approval each).
MAX_SOURCES = 5

#: Raw-payload paths where common sources put the attacking address.
_RAW_SOURCE_PATHS = (("data", "srcip"), ("src_ip",), ("client", "ipAddress"), ("source", "ip"))


def source_addresses(alert: Alert) -> list[str]:
    """Valid IP addresses the attack came from, de-duplicated, in order."""
    candidates = list(alert.ips)
    if not candidates:
        for path in _RAW_SOURCE_PATHS:
            value: Any = alert.raw
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str):
                candidates.append(value)
    found: dict[str, None] = {}
    for value in candidates:
        try:
            found.setdefault(str(ipaddress.ip_address(value.strip())), None)
        except ValueError:
            continue
    return list(found)


@playbook(
    when={"tags": {"contains": "brute-force"}},
    priority="high",
    timeout="1h",
)
async def bruteforce_containment(alert: Alert, run: Run) -> dict:
    """Enrich the brute-force sources and block the bad ones after approval."""
    addresses = source_addresses(alert)
    if not addresses:
        run.skip("no valid source IP address in the alert")
    handled, ignored = addresses[:MAX_SOURCES], addresses[MAX_SOURCES:]

    connectors, actions = await connect(run)
    local = dict(zip(handled, await asyncio.gather(*(enrich_ip(ip) for ip in handled))))
    reputation = await ip_reputation(actions, connectors, local)
    candidates = [
        ip
        for ip in handled
        if local[ip]["scope"] == "public" and reputation[ip]["verdict"] in ("malicious", "suspicious")
    ]

    existing: dict[str, Any] = {}
    if connectors.has("firewall") and candidates:
        existing = dict(zip(candidates, await settle(*(actions.fw_find_blocks(ip) for ip in candidates))))

    outcomes = []
    for ip in handled:
        entry: dict[str, Any] = {"ip": ip, "scope": local[ip]["scope"], "reputation": reputation[ip]}
        if ip not in candidates:
            entry["outcome"] = "internal-source" if local[ip]["scope"] != "public" else "no-bad-reputation"
        elif not connectors.has("firewall"):
            entry["outcome"] = "firewall-not-configured"
        elif failed(existing.get(ip)):
            entry.update(outcome="block-failed", error=f"could not check existing blocks: {existing[ip]['error']}")
        elif existing[ip]["count"]:
            entry.update(outcome="already-blocked", block_id=existing[ip]["blocks"][0]["id"])
        else:
            approved = await approval(
                f"Block {ip} at the firewall?",
                details={
                    "alert": alert.title,
                    "ip": ip,
                    "evidence": describe_ip_reputation(reputation[ip]),
                    "verdict": reputation[ip]["verdict"],
                    "block_for_seconds": BLOCK_TTL_SECONDS,
                },
                timeout=APPROVAL_TIMEOUT,
                default="deny",
            )
            if not approved:
                entry["outcome"] = "declined"
            else:
                reason = f"Brute force ({alert.title}), alert {alert.id or alert.source_ref}"
                [block] = await settle(actions.fw_block("ip", ip, reason, BLOCK_TTL_SECONDS))
                if failed(block):
                    entry.update(outcome="block-failed", error=block["error"])
                    run.error("firewall block failed", ip=ip, error=block["error"])
                else:
                    entry.update(outcome="blocked", block_id=block["id"])
        run.log("source handled", ip=ip, outcome=entry["outcome"])
        outcomes.append(entry)

    blocked = [e["ip"] for e in outcomes if e["outcome"] == "blocked"]
    if blocked:
        await run.case.add_tag("blocked-at-firewall")
    await run.case.comment(render_comment(outcomes, ignored, connectors))
    return {
        "outcome": summary_outcome(outcomes),
        "sources": outcomes,
        "blocked": blocked,
        "not_handled": ignored,
        "integrations": connectors.names,
    }


def summary_outcome(outcomes: list[dict]) -> str:
    """One word for the whole run, by priority: ``blocked``, ``block-failed``,
    ``declined``, ``needs-manual-block`` (a candidate but no firewall),
    ``already-blocked``, else ``no-action``."""
    seen = {e["outcome"] for e in outcomes}
    for outcome, summary in (
        ("blocked", "blocked"),
        ("block-failed", "block-failed"),
        ("declined", "declined"),
        ("firewall-not-configured", "needs-manual-block"),
        ("already-blocked", "already-blocked"),
    ):
        if outcome in seen:
            return summary
    return "no-action"


_OUTCOME_TEXT = {
    "blocked": "blocked at the firewall for 24 hours (block {block_id})",
    "already-blocked": "already blocked at the firewall (block {block_id}); nothing to do",
    "declined": "block declined (or the approval timed out); not blocked",
    "block-failed": "block FAILED: {error}; block it by hand",
    "firewall-not-configured": "bad reputation but no firewall integration is configured; block it by hand",
    "no-bad-reputation": "public address without bad reputation; not blocked, keep monitoring",
    "internal-source": "internal address ({scope}); not blocked, check the source host for compromise",
}


def render_comment(outcomes: list[dict], ignored: list[str], connectors: Connectors) -> str:
    """The case comment: one line per source address (markdown)."""
    sources = ["local classification"] + [n for n in ("abuseipdb", "virustotal") if connectors.has(n)]
    lines = [f"**Brute-force containment** (reputation sources: {', '.join(sources)})", ""]
    for entry in outcomes:
        text = _OUTCOME_TEXT[entry["outcome"]].format(**{"block_id": "?", "error": "?", **entry})
        evidence = describe_ip_reputation(entry["reputation"])
        lines.append(f"- `{entry['ip']}`: **{entry['reputation']['verdict']}** ({evidence}); {text}.")
    if ignored:
        lines.append(f"- {len(ignored)} more source address(es) not handled automatically: {', '.join(ignored)}.")
    return "\n".join(lines)
