"""Integrations available to a run, the actions that use them, and shared
verdict helpers (this module defines no playbook).

Integrations are optional: each one is enabled by its secrets (see
:mod:`tocsin.integrations`), so the demo playbooks run offline with none set
and use more evidence and containment as secrets are added:

================  =======================================================
Integration       Secrets
================  =======================================================
VirusTotal        ``virustotal_api_key`` (+ ``virustotal_base_url``)
AbuseIPDB         ``abuseipdb_api_key`` (+ ``abuseipdb_base_url``)
Mail gateway      ``mailgateway_token``, ``mailgateway_base_url``
Firewall          ``firewall_token``, ``firewall_base_url``
Slack             ``slack_bot_token`` + ``slack_channel``, or ``slack_webhook_url``
================  =======================================================

Playbooks call :func:`connect` first. It builds the clients from
``run.secrets`` and journals *which* integrations are configured as a step
(``configured_integrations``), so a run that is resumed later (after an
approval, a crash) replays the same decisions even if the tenant's secrets
changed meanwhile; without that, the resumed run would call different steps
and be aborted as non-deterministic.

Clients cannot be action arguments (arguments are journaled as JSON), so
:func:`build_actions` defines the actions as closures over the run's
clients; neither secret values nor secret names reach the journal. Their
names are fixed (``vt_url_report``, ``mail_quarantine``...), which is what
the journal and ``tocsin.testing`` stubs key on. Read-only lookups are
``idempotent=True``; side effects are ``idempotent=True`` only when they pass
``run.idempotency_key`` to an API that de-duplicates on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Awaitable, Iterable

from tocsin import Run, action
from tocsin.integrations import IntegrationError, NotConfigured, optional
from tocsin.integrations.abuseipdb import AbuseIPDB
from tocsin.integrations.firewall import Firewall
from tocsin.integrations.mailgateway import MailGateway
from tocsin.integrations.slack import Slack
from tocsin.integrations.virustotal import VirusTotal

#: Seconds a client waits for one HTTP response (below the action timeouts).
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Connectors:
    """The integration clients of a run (``None`` when absent) and which
    integrations the playbook uses.

    Playbooks branch on :meth:`has`, not on the clients: after :func:`connect`
    the enabled set is the journaled one, which may name an integration whose
    client has meanwhile disappeared (its calls then fail cleanly).
    """

    virustotal: VirusTotal | None = None
    abuseipdb: AbuseIPDB | None = None
    mailgateway: MailGateway | None = None
    firewall: Firewall | None = None
    slack: Slack | None = None
    #: Integrations in use; ``None`` means "those with a client".
    enabled: frozenset[str] | None = None

    @classmethod
    def from_run(cls, run: Run) -> "Connectors":
        """Build every integration whose secrets are set.

        :raises tocsin.integrations.NotConfigured: when a credential is set
            but a companion secret is malformed (e.g. a bad base URL), so a
            typo fails the run instead of silently disabling an integration.
        """
        secrets = run.secrets
        return cls(
            virustotal=optional(VirusTotal, secrets, timeout=HTTP_TIMEOUT),
            abuseipdb=optional(AbuseIPDB, secrets, timeout=HTTP_TIMEOUT),
            mailgateway=optional(MailGateway, secrets, timeout=HTTP_TIMEOUT),
            firewall=optional(Firewall, secrets, timeout=HTTP_TIMEOUT),
            slack=optional(Slack, secrets, timeout=HTTP_TIMEOUT),
        )

    def has(self, name: str) -> bool:
        """Whether the playbook uses integration ``name``."""
        if self.enabled is not None:
            return name in self.enabled
        return getattr(self, name, None) is not None

    @property
    def names(self) -> list[str]:
        """Names of the integrations in use, e.g. ``["virustotal", "slack"]``."""
        return [name for name in INTEGRATIONS if self.has(name)]

    def only(self, names: Iterable[str]) -> "Connectors":
        """A copy using exactly the integrations in ``names`` (clients of the
        others are dropped)."""
        keep = frozenset(names) & frozenset(INTEGRATIONS)
        dropped = {name: None for name in INTEGRATIONS if name not in keep}
        return dataclasses.replace(self, enabled=keep, **dropped)


#: Integration names, in the order :attr:`Connectors.names` lists them.
INTEGRATIONS: tuple[str, ...] = ("virustotal", "abuseipdb", "mailgateway", "firewall", "slack")


async def connect(run: Run) -> tuple[Connectors, SimpleNamespace]:
    """The run's integrations and actions, with the set of configured
    integrations journaled (see the module docstring).

    An integration recorded as configured whose secrets have since been
    removed keeps its place in the decisions; its next call fails with
    :class:`~tocsin.integrations.NotConfigured`, which playbooks record like
    any failed lookup.
    """
    current = Connectors.from_run(run)
    actions = build_actions(run, current)
    recorded = await actions.configured_integrations()
    return current.only(recorded), actions


def _need(client: Any, name: str) -> Any:
    if client is None:
        raise NotConfigured(name, f"the {name} integration is not configured for this tenant")
    return client


def build_actions(run: Run, connectors: Connectors) -> SimpleNamespace:
    """The integration actions of one run, bound to ``connectors``.

    Calling an action whose integration is not configured raises
    :class:`~tocsin.integrations.NotConfigured`; playbooks check
    ``connectors`` first.
    """
    vt, abuse = connectors.virustotal, connectors.abuseipdb
    gateway, firewall, slack = connectors.mailgateway, connectors.firewall, connectors.slack

    # -- configuration and read-only lookups (safe to repeat) ---------------------

    @action(timeout="5s", idempotent=True)
    async def configured_integrations() -> list:
        """Names of the integrations configured when the run first got here."""
        return connectors.names

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def vt_url_report(url: str) -> dict:
        """VirusTotal report of a URL."""
        return await _need(vt, "virustotal").url_report(url)

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def vt_domain_report(domain: str) -> dict:
        """VirusTotal report of a domain."""
        return await _need(vt, "virustotal").domain_report(domain)

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def vt_file_report(file_hash: str) -> dict:
        """VirusTotal report of a file hash."""
        return await _need(vt, "virustotal").file_report(file_hash)

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def vt_ip_report(ip: str) -> dict:
        """VirusTotal report of an IP address."""
        return await _need(vt, "virustotal").ip_report(ip)

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def abuseipdb_check(ip: str) -> dict:
        """AbuseIPDB reputation of an IP address (last 90 days)."""
        return await _need(abuse, "abuseipdb").check(ip)

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def mail_search(sender: str, subject: str | None, received_after: str | None) -> dict:
        """Delivered copies of a message on the mail gateway."""
        return await _need(gateway, "mailgateway").search_messages(sender, subject, received_after)

    @action(retries=1, backoff="1s", timeout="15s", idempotent=True)
    async def fw_find_blocks(value: str) -> dict:
        """Active firewall blocks of a value."""
        return await _need(firewall, "firewall").find_blocks(value)

    # -- side effects -----------------------------------------------------------

    @action(retries=2, backoff="1s", timeout="15s", idempotent=True)
    async def mail_quarantine(message_id: str) -> dict:
        """Quarantine one delivered copy (de-duplicated by the step's key)."""
        return await _need(gateway, "mailgateway").quarantine(message_id, idempotency_key=run.idempotency_key)

    @action(retries=2, backoff="1s", timeout="15s", idempotent=True)
    async def fw_block(type: str, value: str, reason: str, ttl_seconds: int | None) -> dict:
        """Block an IP, URL or domain (de-duplicated by the step's key)."""
        return await _need(firewall, "firewall").block(
            type, value, reason, ttl_seconds, idempotency_key=run.idempotency_key
        )

    # The blocklist and Slack APIs take no idempotency key: these actions are
    # not idempotent (a step left uncertain by a crash goes to review instead
    # of being sent twice) and are not retried.

    @action(timeout="15s")
    async def mail_block_url(url: str, reason: str) -> dict:
        """Add a URL to the mail gateway's blocklist."""
        return await _need(gateway, "mailgateway").block_url(url, reason)

    @action(timeout="15s")
    async def slack_notify(text: str) -> dict:
        """Post a message to the configured Slack channel or webhook."""
        return await _need(slack, "slack").notify(text)

    return SimpleNamespace(
        configured_integrations=configured_integrations,
        vt_url_report=vt_url_report,
        vt_domain_report=vt_domain_report,
        vt_file_report=vt_file_report,
        vt_ip_report=vt_ip_report,
        abuseipdb_check=abuseipdb_check,
        mail_search=mail_search,
        fw_find_blocks=fw_find_blocks,
        mail_quarantine=mail_quarantine,
        fw_block=fw_block,
        mail_block_url=mail_block_url,
        slack_notify=slack_notify,
    )


# ---------------------------------------------------------------------------
# Helpers for playbook code
# ---------------------------------------------------------------------------


async def settle(*steps: Awaitable[Any]) -> list[Any]:
    """Await ``steps`` concurrently; a step that fails with an ordinary
    exception yields :func:`failure` of it instead of failing the playbook.

    Unlike ``asyncio.gather(..., return_exceptions=True)``, control-flow
    exceptions (:class:`tocsin.Skip`, :class:`tocsin.RunAborted`,
    cancellation) are re-raised, so a platform decision to stop the run is
    never swallowed.
    """
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
    return [failure(r) if isinstance(r, Exception) else r for r in results]


def failure(exc: BaseException) -> dict[str, Any]:
    """JSON description of a failed step: ``{"error": str, ...}``."""
    if isinstance(exc, IntegrationError):
        return {"error": str(exc), **exc.to_dict()}
    return {"error": str(exc) or type(exc).__name__}


def failed(result: Any) -> bool:
    """Whether ``result`` is a :func:`failure` description."""
    return isinstance(result, dict) and "error" in result


def combine_verdicts(verdicts: Iterable[str | None]) -> str:
    """Worst of several sources' verdicts: ``malicious`` > ``suspicious`` >
    ``trusted`` (the organisation's own) > ``clean`` (a source vouched for
    it) > ``unknown`` (no source had anything to say)."""
    seen = {v for v in verdicts if v}
    for verdict in ("malicious", "suspicious", "trusted", "clean"):
        if verdict in seen:
            return verdict
    return "unknown"


def source_verdict(result: Any) -> str | None:
    """The verdict of one lookup result (``None`` for a failed or absent one)."""
    if not isinstance(result, dict) or failed(result):
        return None
    verdict = result.get("verdict")
    return verdict if isinstance(verdict, str) else None


async def ip_reputation(actions: SimpleNamespace, connectors: Connectors, local: dict[str, dict]) -> dict[str, dict]:
    """Reputation of addresses already classified locally (``local`` maps
    IP -> :func:`netintel.classify_ip` result).

    Only ``public`` addresses are sent to AbuseIPDB / VirusTotal (private,
    reserved and invalid ones would leak internal data and mean nothing to
    them). Lookups run concurrently; a failed lookup is recorded and ignored.

    :returns: IP -> ``{"ip", "local", "abuseipdb", "virustotal", "verdict"}``
        for every address of ``local`` (a source is ``None`` when not asked).
    """
    public = [ip for ip, info in local.items() if info.get("scope") == "public"]
    steps: list[tuple[str, str, Awaitable[Any]]] = []
    if connectors.has("abuseipdb"):
        steps += [(ip, "abuseipdb", actions.abuseipdb_check(ip)) for ip in public]
    if connectors.has("virustotal"):
        steps += [(ip, "virustotal", actions.vt_ip_report(ip)) for ip in public]
    results = await settle(*(step for _, _, step in steps))
    found: dict[str, dict[str, Any]] = {ip: {} for ip in local}
    for (ip, source, _), result in zip(steps, results):
        found[ip][source] = result
    reputation = {}
    for ip, info in local.items():
        local_verdict = "malicious" if info.get("reputation") == "malicious" else None
        abuse, vt = found[ip].get("abuseipdb"), found[ip].get("virustotal")
        reputation[ip] = {
            "ip": ip,
            "local": info.get("reason") if local_verdict else None,
            "abuseipdb": abuse,
            "virustotal": vt,
            "verdict": combine_verdicts([local_verdict, source_verdict(abuse), source_verdict(vt)]),
        }
    return reputation


def describe_ip_reputation(entry: dict[str, Any]) -> str:
    """One line summarizing :func:`ip_reputation` evidence for a case comment."""
    parts = []
    if entry.get("local"):
        parts.append(f"local blocklist: {entry['local']}")
    abuse = entry.get("abuseipdb")
    if failed(abuse):
        parts.append(f"AbuseIPDB lookup failed ({abuse['error']})")
    elif abuse:
        parts.append(
            f"AbuseIPDB confidence {abuse['abuse_confidence']}% over {abuse['total_reports']} reports"
            + (f", {abuse['country']}" if abuse.get("country") else "")
            + (f", {abuse['isp']}" if abuse.get("isp") else "")
        )
    vt = entry.get("virustotal")
    if failed(vt):
        parts.append(f"VirusTotal lookup failed ({vt['error']})")
    elif vt:
        parts.append(f"VirusTotal {vt['malicious']} malicious / {vt['suspicious']} suspicious detections")
    return "; ".join(parts) or "no reputation data"
