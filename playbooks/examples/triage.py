"""IP triage for network and cloud detections.

Runs on medium-or-worse alerts from Suricata, Wazuh and AWS GuardDuty,
classifies every network indicator concurrently (scope and the local
blocklist, offline) and, when ``abuseipdb_api_key`` and/or
``virustotal_api_key`` are set, checks the *public* addresses' reputation
with those services in parallel (private, reserved and invalid addresses are
never sent out). Returns a verdict:

* ``malicious``: an address is blocklisted locally or rated malicious by a
  reputation service;
* ``needs-review``: at least one public address, none malicious;
* ``no-external-indicators``: only private, reserved or invalid addresses;
* ``no-network-indicators``: the alert carries no address at all.
"""

from __future__ import annotations

import asyncio

from tocsin import Alert, Run, playbook

from .connectors import connect, ip_reputation
from .netintel import enrich_ip, network_indicators


@playbook(
    when={"source": ["suricata", "wazuh", "aws-guardduty"], "severity": {"gte": "medium"}},
    priority="high",
    timeout="2m",
)
async def ip_triage(alert: Alert, run: Run) -> dict:
    """Classify the alert's IPs (scope, local blocklist, optional reputation services)."""
    indicators = network_indicators(alert)
    if not indicators:
        run.log("alert carries no network indicators", source=alert.source)
        return {"verdict": "no-network-indicators", "indicators": [], "malicious": [], "external": [], "reputation": {}}

    # One journaled step per address, executed concurrently.
    enriched = await asyncio.gather(*(enrich_ip(ip) for ip in indicators))
    external = [e["ip"] for e in enriched if e["scope"] == "public"]

    reputation: dict[str, dict] = {}
    sources: list[str] = []
    if external:
        connectors, actions = await connect(run)
        sources = [n for n in ("abuseipdb", "virustotal") if connectors.has(n)]
        if sources:
            local = {e["ip"]: e for e in enriched if e["scope"] == "public"}
            reputation = await ip_reputation(actions, connectors, local)

    malicious = [
        e["ip"]
        for e in enriched
        if e["reputation"] == "malicious" or reputation.get(e["ip"], {}).get("verdict") == "malicious"
    ]
    suspicious = [ip for ip, r in reputation.items() if r["verdict"] == "suspicious"]
    if malicious:
        verdict = "malicious"
    elif external:
        verdict = "needs-review"
    else:
        verdict = "no-external-indicators"
    for entry in enriched:
        if entry["reputation"] == "malicious":
            run.warning("blocklisted address", ip=entry["ip"], reason=entry["reason"])
    for ip in malicious:
        if ip in reputation and reputation[ip]["verdict"] == "malicious":
            run.warning("address rated malicious by a reputation service", ip=ip)
    run.log(
        "ip triage complete",
        verdict=verdict,
        indicators=len(enriched),
        reputation_sources=sources,
    )
    return {
        "verdict": verdict,
        "indicators": enriched,
        "malicious": malicious,
        "suspicious": suspicious,
        "external": external,
        "reputation": reputation,
    }
