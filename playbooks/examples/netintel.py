"""Offline network intelligence shared by the demo playbooks.

Nothing here touches the network (the demo runs in CI on a closed network):
addresses are classified with the standard :mod:`ipaddress` module and
"reputation" comes from a small built-in blocklist. A real deployment would
call a threat-intelligence service from :func:`enrich_ip` instead.

This module defines no playbook; other modules of the bundle import it with a
relative import (``from .netintel import enrich_ip``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from tocsin import Alert, action

#: Demo blocklist: network -> why it is listed. The entries come from the
#: sample payloads the demo alerts are derived from.
BLOCKLIST: dict[str, str] = {
    "198.51.100.0/24": "on the custom threat list of an AWS GuardDuty finding (Recon:IAMUser/MaliciousIPCaller.Custom)",
    "152.228.133.10/32": "sent a spoofed BBVA 'Transferencia Interbancaria' lure",
    "67.175.76.202/32": "relayed invoice malspam with a .js attachment",
}

_BLOCKLIST = [(ipaddress.ip_network(net), reason) for net, reason in BLOCKLIST.items()]

# RFC 1918 and RFC 4193 (unique local) ranges. ``ipaddress.is_private`` is not
# used because it also covers documentation and other special-purpose ranges.
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


def scope_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """``unspecified``, ``loopback``, ``link-local``, ``multicast``,
    ``private``, ``public`` or ``reserved`` (any other special-purpose range,
    e.g. documentation or carrier-grade NAT addresses)."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _PRIVATE):
        return "private"
    if address.is_global:
        return "public"
    return "reserved"


def classify_ip(value: str) -> dict:
    """Classify one IP address string; never raises."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return {
            "ip": value,
            "valid": False,
            "version": None,
            "scope": "invalid",
            "reputation": "unknown",
            "reason": None,
        }
    for network, reason in _BLOCKLIST:
        if address.version == network.version and address in network:
            reputation, why = "malicious", reason
            break
    else:
        reputation, why = "unknown", None
    return {
        "ip": str(address),
        "valid": True,
        "version": address.version,
        "scope": scope_of(address),
        "reputation": reputation,
        "reason": why,
    }


def network_indicators(alert: Alert) -> list[str]:
    """IP observables of the alert, plus URL hosts that are IP literals."""
    found = dict.fromkeys(alert.ips)
    for url in alert.urls:
        host = urlsplit(url).hostname
        if host:
            try:
                found.setdefault(str(ipaddress.ip_address(host)), None)
            except ValueError:
                pass
    return list(found)


@action(retries=1, backoff="200ms", timeout="2s", idempotent=True)
async def enrich_ip(ip: str) -> dict:
    """Scope and local reputation of one IP address."""
    return classify_ip(ip)
