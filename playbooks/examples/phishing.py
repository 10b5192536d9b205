"""Triage of user-reported phishing e-mails.

Extracts the domains of the reported URLs and scores each one with offline
heuristics (look-alikes of the organisation's own domains, credential-lure
keywords, raw IP hosts, punycode). The organisation's domains are taken from
the alert's ``user`` observables (the reporting mailboxes). Reports without
any URL are skipped.
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

from tocsin import Alert, Run, action, playbook

#: Words typical of credential-harvesting links.
LURE_WORDS = ("login", "logon", "signin", "verify", "secure", "account", "update", "password", "invoice", "payment")

# Second-level labels under which registrations happen one level deeper
# (``example.co.uk``). A heuristic; a real deployment would use the Public
# Suffix List.
_SECOND_LEVEL = {"co", "com", "net", "org", "gov", "ac", "edu"}


def registrable_domain(host: str) -> str:
    """Best-effort registrable part of a host name (``a.b.contoso.co.in -> contoso.co.in``)."""
    labels = host.lower().strip(".").split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def url_hosts(alert: Alert) -> list[str]:
    """Lower-cased host names of the alert's URLs, de-duplicated, in order."""
    hosts: dict[str, None] = {}
    for url in alert.urls:
        host = urlsplit(url).hostname
        if host:
            hosts.setdefault(host.lower(), None)
    return list(hosts)


@action(timeout="5s", idempotent=True)
async def assess_domain(domain: str, own_domains: list[str]) -> dict:
    """Score one URL host against offline phishing heuristics."""
    reasons: list[str] = []
    score = 0
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        registrable = registrable_domain(domain)
    else:
        return {"domain": domain, "registrable": domain, "score": 3, "verdict": "suspicious",
                "reasons": ["link points at a raw IP address"]}
    if registrable in own_domains:
        return {"domain": domain, "registrable": registrable, "score": 0, "verdict": "trusted",
                "reasons": ["belongs to the organisation"]}
    if any(label.startswith("xn--") for label in domain.split(".")):
        score += 3
        reasons.append("punycode label (possible homograph)")
    for own in own_domains:
        brand = own.split(".")[0]
        if len(brand) >= 4 and brand in domain:
            score += 3
            reasons.append(f"imitates {own}")
    words = [w for w in LURE_WORDS if w in domain]
    if words:
        score += 2
        reasons.append(f"lure words: {', '.join(words)}")
    if registrable.split(".")[0].count("-") >= 1:
        score += 1
        reasons.append("hyphenated registrable name")
    verdict = "malicious" if score >= 5 else "suspicious" if score >= 2 else "unknown"
    return {"domain": domain, "registrable": registrable, "score": score, "verdict": verdict, "reasons": reasons}


@playbook(when={"source": "phishing"}, priority="high", timeout="1m")
async def phishing_report(alert: Alert, run: Run) -> dict:
    """Assess every URL domain of a reported e-mail."""
    if not alert.urls:
        run.skip("the reported e-mail contains no URL")
    hosts = url_hosts(alert)
    # Internal identities (the reporting mailboxes) tell us the organisation's domains.
    own_domains = sorted({registrable_domain(u.rsplit("@", 1)[1]) for u in alert.users if "@" in u})
    assessments = await asyncio.gather(*(assess_domain(host, own_domains) for host in hosts))
    worst = max(assessments, key=lambda a: a["score"])
    verdict = {"malicious": "phishing", "suspicious": "likely-phishing"}.get(worst["verdict"], "needs-review")
    run.log("phishing report assessed", verdict=verdict, urls=len(alert.urls), domains=len(hosts))
    return {"verdict": verdict, "urls": list(alert.urls), "domains": assessments}
