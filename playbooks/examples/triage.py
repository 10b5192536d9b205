"""IP triage for network and cloud detections.

Runs on medium-or-worse alerts from Suricata, Wazuh and AWS GuardDuty,
enriches every network indicator concurrently and returns a verdict.
"""

from __future__ import annotations

import asyncio

from tocsin import Alert, Run, playbook

from .netintel import enrich_ip, network_indicators


@playbook(
    when={"source": ["suricata", "wazuh", "aws-guardduty"], "severity": {"gte": "medium"}},
    priority="high",
    timeout="2m",
)
async def ip_triage(alert: Alert, run: Run) -> dict:
    """Classify the alert's IPs (private/public/reserved + local reputation)."""
    indicators = network_indicators(alert)
    if not indicators:
        run.log("alert carries no network indicators", source=alert.source)
        return {"verdict": "no-network-indicators", "indicators": [], "malicious": [], "external": []}

    # One journaled step per address, executed concurrently.
    enriched = await asyncio.gather(*(enrich_ip(ip) for ip in indicators))

    malicious = [e["ip"] for e in enriched if e["reputation"] == "malicious"]
    external = [e["ip"] for e in enriched if e["scope"] == "public"]
    if malicious:
        verdict = "malicious"
    elif external:
        verdict = "needs-review"
    else:
        verdict = "no-external-indicators"
    for entry in enriched:
        if entry["reputation"] == "malicious":
            run.warning("blocklisted address", ip=entry["ip"], reason=entry["reason"])
    run.log("ip triage complete", verdict=verdict, indicators=len(enriched))
    return {"verdict": verdict, "indicators": enriched, "malicious": malicious, "external": external}
