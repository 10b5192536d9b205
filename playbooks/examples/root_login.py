"""Review of successful root logins reported by Wazuh.

Matches on fields of the original Wazuh payload (``raw.*``): any rule of
level 3 or more whose destination user is ``root`` (e.g. rule 5715, "sshd:
authentication success").
"""

from __future__ import annotations

import re

from tocsin import Alert, Run, playbook

from .netintel import enrich_ip

_ACCEPTED = re.compile(r"Accepted (?P<method>[\w-]+) for (?P<user>\S+) from (?P<ip>\S+)")


@playbook(
    name="wazuh_root_login",
    when={"source": "wazuh", "raw.rule.level": {"gte": 3}, "raw.data.dstuser": "root"},
    timeout="1m",
)
async def root_login(alert: Alert, run: Run) -> dict:
    """Assess where a root login came from and how it authenticated."""
    data = alert.raw.get("data") or {}
    match = _ACCEPTED.search(str(alert.raw.get("full_log", "")))
    method = match.group("method") if match else None
    source_ip = (alert.ips[0] if alert.ips else None) or data.get("srcip") or (match.group("ip") if match else None)
    if not source_ip:
        run.skip("no source address in the login event")

    origin = await enrich_ip(source_ip)
    if origin["reputation"] == "malicious":
        assessment = "compromise-suspected"
    elif origin["scope"] == "public":
        assessment = "external-root-login"
    elif method == "password":
        assessment = "password-root-login"
    else:
        assessment = "expected-admin-access"
    host = alert.hosts[0] if alert.hosts else (alert.raw.get("agent") or {}).get("name")
    run.log("root login assessed", assessment=assessment, host=host, source_ip=source_ip, method=method)
    return {"assessment": assessment, "host": host, "method": method, "origin": origin}
