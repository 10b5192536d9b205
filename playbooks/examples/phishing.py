"""Triage and containment of user-reported phishing e-mails.

From a reported-email alert (``source: phishing``) the playbook extracts the
message's URLs, attachment hashes, sender and subject, then:

1. scores every URL host and the sender's domain with offline heuristics
   (look-alikes of the organisation's own domains, credential-lure words,
   raw IP hosts, punycode); the organisation's domains are those of the
   reporting mailboxes (``user`` observables and ``raw.mail.recipient``);
2. when ``virustotal_api_key`` is set, looks the URLs, the sender domain,
   other URL domains and the attachment hashes up on VirusTotal, all in
   parallel (the organisation's own URLs are never sent);
3. when the mail gateway is configured, finds every delivered copy of the
   message (same sender and subject, received up to a week before it);
4. decides: ``phishing`` when any indicator is malicious, ``likely-phishing``
   when one is suspicious, else ``needs-review``;
5. for ``phishing``: quarantines every copy and blocks the malicious URLs at
   the firewall and on the mail gateway (when configured), tags the case,
   adds the other recipients to it, comments what was done (or what to do by
   hand), sets the case ``in_progress`` and notifies Slack (when configured);
   otherwise it comments the evidence and a recommendation, without any
   containment.

Reports with neither URL nor attachment hash are skipped. With no secrets at
all (the offline demo) only the heuristics run and the case gets a comment.

Expected alert fields (Tocsin's generic format, see the demo alerts):
observables ``url``, ``hash``, ``email`` (the sender first), ``user`` (the
reporting mailboxes); optional ``raw.mail`` with ``sender``/``from``,
``recipient``/``to``, ``subject``, ``received_at`` and ``attachments``
(objects with ``sha256``/``sha1``/``md5``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from tocsin import Alert, Run, action, playbook

from .connectors import (
    Connectors,
    connect,
    combine_verdicts,
    failed,
    settle,
    source_verdict,
)

#: Words typical of credential-harvesting links.
LURE_WORDS = ("login", "logon", "signin", "verify", "secure", "account", "update", "password", "invoice", "payment")

#: How long before the reported message the mail-gateway search looks for copies.
SEARCH_WINDOW = timedelta(days=7)

#: At most this many URLs / attachment hashes are looked up (API quotas).
MAX_LOOKUPS = 20

# Second-level labels under which registrations happen one level deeper
# (``example.co.uk``). A heuristic; a real deployment would use the Public
# Suffix List.
_SECOND_LEVEL = {"co", "com", "net", "org", "gov", "ac", "edu"}

_HASH = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$")


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
        host = _host(url)
        if host:
            hosts.setdefault(host, None)
    return list(hosts)


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@action(timeout="5s", idempotent=True)
async def assess_domain(domain: str, own_domains: list[str]) -> dict:
    """Score one host name against offline phishing heuristics."""
    reasons: list[str] = []
    score = 0
    if _is_ip(domain):
        return {
            "domain": domain,
            "registrable": domain,
            "score": 3,
            "verdict": "suspicious",
            "reasons": ["link points at a raw IP address"],
        }
    registrable = registrable_domain(domain)
    if registrable in own_domains:
        return {
            "domain": domain,
            "registrable": registrable,
            "score": 0,
            "verdict": "trusted",
            "reasons": ["belongs to the organisation"],
        }
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


# ---------------------------------------------------------------------------
# What the report contains
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportedEmail:
    """The parts of a reported e-mail the playbook works with."""

    sender: str | None
    subject: str | None
    recipients: tuple[str, ...]  # the reporting mailboxes
    urls: tuple[str, ...]
    hashes: tuple[str, ...]
    received_at: datetime | None

    @property
    def sender_domain(self) -> str | None:
        if self.sender and "@" in self.sender:
            return self.sender.rsplit("@", 1)[1].lower().strip(".") or None
        return None

    @property
    def own_domains(self) -> list[str]:
        """Registrable domains of the reporting mailboxes (the organisation's)."""
        return sorted({registrable_domain(r.rsplit("@", 1)[1]) for r in self.recipients if "@" in r})


def _address(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    address = parseaddr(value)[1].strip()
    return address if "@" in address else None


def parse_report(alert: Alert) -> ReportedEmail:
    """Extract the sender, subject, reporters, URLs and attachment hashes."""
    mail = alert.raw.get("mail")
    mail = mail if isinstance(mail, dict) else {}
    sender = _address(mail.get("sender")) or _address(mail.get("from"))
    if sender is None:
        sender = next((a for a in map(_address, alert.emails) if a), None)
    subject = mail.get("subject") if isinstance(mail.get("subject"), str) and mail["subject"].strip() else None

    recipients: dict[str, None] = {}
    for value in (mail.get("recipient"), mail.get("to"), *alert.users):
        address = _address(value)
        if address:
            recipients.setdefault(address, None)

    urls = dict.fromkeys(alert.urls)
    hashes: dict[str, None] = {}
    attachments = mail.get("attachments")
    candidates = list(alert.hashes)
    if isinstance(attachments, list):
        for item in attachments:
            if isinstance(item, dict):
                candidates += [item[k] for k in ("sha256", "sha1", "md5") if isinstance(item.get(k), str)]
    for value in candidates:
        digest = value.strip().lower()
        if _HASH.match(digest):
            hashes.setdefault(digest, None)

    received_at = alert.occurred_at
    if isinstance(mail.get("received_at"), str):
        try:
            received_at = datetime.fromisoformat(mail["received_at"])
        except ValueError:
            pass
    if received_at is not None and received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=timezone.utc)
    return ReportedEmail(sender, subject, tuple(recipients), tuple(urls), tuple(hashes), received_at)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------
# The playbook
# ---------------------------------------------------------------------------


@playbook(when={"source": "phishing"}, priority="high", timeout="3m")
async def phishing_report(alert: Alert, run: Run) -> dict:
    """Assess a reported e-mail and contain it when it is clearly malicious."""
    report = parse_report(alert)
    if not report.urls and not report.hashes:
        run.log("nothing to analyze: no URL and no attachment hash", sender=report.sender)
        run.skip("the reported e-mail contains no URL")

    connectors, actions = await connect(run)
    own_domains = report.own_domains
    hosts = url_hosts(alert)
    sender_domain = report.sender_domain
    run.log(
        "phishing triage started",
        urls=len(report.urls),
        hashes=len(report.hashes),
        sender=report.sender,
        integrations=connectors.names,
    )

    # 1. Offline heuristics: every URL host, then the sender's domain.
    local = await asyncio.gather(
        *(assess_domain(host, own_domains) for host in hosts),
        *([assess_domain(sender_domain, own_domains)] if sender_domain else []),
    )
    host_assessments = {a["domain"]: a for a in local[: len(hosts)]}
    sender_assessment = local[len(hosts)] if sender_domain else None

    # 2. VirusTotal, in parallel; the organisation's own URLs and domains stay private.
    vt_urls = [u for u in report.urls if host_assessments.get(_host(u) or "", {}).get("verdict") != "trusted"]
    vt_urls, skipped_urls = vt_urls[:MAX_LOOKUPS], vt_urls[MAX_LOOKUPS:]
    vt_domains = [
        d
        for d in dict.fromkeys([*([sender_domain] if sender_domain else []), *hosts])
        if not _is_ip(d) and registrable_domain(d) not in own_domains
    ][:MAX_LOOKUPS]
    vt_hashes = list(report.hashes[:MAX_LOOKUPS])
    not_looked_up = [*skipped_urls, *report.hashes[MAX_LOOKUPS:]] if connectors.has("virustotal") else []
    vt: dict[tuple[str, str], Any] = {}
    if connectors.has("virustotal"):
        keys = [("url", u) for u in vt_urls] + [("domain", d) for d in vt_domains] + [("file", h) for h in vt_hashes]
        results = await settle(
            *(actions.vt_url_report(u) for u in vt_urls),
            *(actions.vt_domain_report(d) for d in vt_domains),
            *(actions.vt_file_report(h) for h in vt_hashes),
        )
        vt = dict(zip(keys, results))
        for (kind, value), result in vt.items():
            if failed(result):
                run.warning("VirusTotal lookup failed", kind=kind, value=value, error=result["error"])

    # 3. Evidence per indicator (worst verdict of the sources).
    url_evidence = []
    for url in report.urls:
        host = _host(url)
        heuristics = host_assessments.get(host) if host else None
        vt_url = vt.get(("url", url))
        vt_host = vt.get(("domain", host)) if host else None
        url_evidence.append(
            {
                "url": url,
                "host": host,
                "heuristics": heuristics,
                "virustotal": vt_url,
                "virustotal_domain": vt_host,
                "verdict": combine_verdicts(
                    [
                        heuristics["verdict"] if heuristics else None,
                        source_verdict(vt_url),
                        source_verdict(vt_host),
                    ]
                ),
            }
        )
    attachment_evidence = [
        {
            "hash": h,
            "virustotal": vt.get(("file", h)),
            "verdict": combine_verdicts([source_verdict(vt.get(("file", h)))]),
        }
        for h in report.hashes
    ]
    sender_evidence = None
    if report.sender:
        vt_sender = vt.get(("domain", sender_domain)) if sender_domain else None
        sender_evidence = {
            "address": report.sender,
            "domain": sender_domain,
            "heuristics": sender_assessment,
            "virustotal": vt_sender,
            "verdict": combine_verdicts(
                [
                    sender_assessment["verdict"] if sender_assessment else None,
                    source_verdict(vt_sender),
                ]
            ),
        }

    verdicts = [e["verdict"] for e in url_evidence + attachment_evidence] + (
        [sender_evidence["verdict"]] if sender_evidence else []
    )
    worst = combine_verdicts(verdicts)
    verdict = {"malicious": "phishing", "suspicious": "likely-phishing"}.get(worst, "needs-review")

    # 4. Every delivered copy of the message. Sender *and* subject are
    # required: quarantining everything a (possibly spoofed) sender sent in a
    # week would be far too broad.
    copies: list[dict] = []
    search: dict | None = None
    if connectors.has("mailgateway") and report.sender and report.subject:
        received_after = _rfc3339(report.received_at - SEARCH_WINDOW) if report.received_at else None
        [search] = await settle(actions.mail_search(report.sender, report.subject, received_after))
        if failed(search):
            run.warning("mail gateway search failed", error=search["error"])
        else:
            copies = search["messages"]

    sources = ["local heuristics"] + [n for n in ("virustotal", "mailgateway") if connectors.has(n)]
    evidence = {
        "sources": sources,
        "urls": url_evidence,
        "sender": sender_evidence,
        "attachments": attachment_evidence,
        "copies": copies,
        "searched": search is not None,
        "search_error": search["error"] if failed(search) else None,
        "not_looked_up": not_looked_up,
    }
    run.log("phishing report assessed", verdict=verdict, urls=len(report.urls), domains=len(hosts), copies=len(copies))

    containment = None
    if verdict == "phishing":
        containment = await _contain(alert, run, connectors, actions, report, evidence)
        await run.case.add_tag("phishing")
        known = {r.lower() for r in report.recipients}
        for recipient in dict.fromkeys(c["recipient"] for c in copies if c.get("recipient")):
            if recipient.lower() not in known:
                await run.case.add_observable("user", recipient)
        await run.case.comment(render_comment(verdict, report, evidence, containment))
        await run.case.set_status("in_progress")
        if connectors.has("slack"):
            [notified] = await settle(actions.slack_notify(render_notification(alert, report, containment)))
            containment["slack"] = notified
            if failed(notified):
                run.warning("Slack notification failed", error=notified["error"])
    else:
        await run.case.comment(render_comment(verdict, report, evidence, None))

    return {
        "verdict": verdict,
        "urls": list(report.urls),
        "domains": [host_assessments[h] for h in hosts],
        "sender": sender_evidence,
        "attachments": attachment_evidence,
        "evidence": evidence,
        "containment": containment,
        "integrations": connectors.names,
    }


async def _contain(
    alert: Alert, run: Run, connectors: Connectors, actions: Any, report: ReportedEmail, evidence: dict
) -> dict:
    """Quarantine every copy and block the malicious URLs, concurrently.
    Failures are collected (and logged), not raised: the case comment says
    what worked and what must be finished by hand."""
    reason = f"Phishing reported in alert {alert.id or alert.source_ref}: {report.subject or alert.title}"
    bad_urls = [e["url"] for e in evidence["urls"] if e["verdict"] == "malicious"]
    copies = evidence["copies"]
    steps: list[tuple[str, str]] = []
    calls = []
    if connectors.has("mailgateway"):
        steps += [("quarantine", c["id"]) for c in copies]
        calls += [actions.mail_quarantine(c["id"]) for c in copies]
        steps += [("mail_blocklist", u) for u in bad_urls]
        calls += [actions.mail_block_url(u, reason) for u in bad_urls]
    if connectors.has("firewall"):
        steps += [("firewall", u) for u in bad_urls]
        calls += [actions.fw_block("url", u, reason, None) for u in bad_urls]
    results = await settle(*calls)

    done: dict[str, list] = {"quarantined": [], "mail_blocklist": [], "firewall": []}
    failures = []
    for (kind, target), result in zip(steps, results):
        if failed(result):
            failures.append({"action": kind, "target": target, "error": result["error"]})
            run.error("containment step failed", action=kind, target=target, error=result["error"])
        elif kind == "quarantine":
            done["quarantined"].append(target)
        elif kind == "firewall":
            done["firewall"].append({"url": target, "block_id": result["id"]})
        else:
            done["mail_blocklist"].append(target)
    integrations = [n for n in ("mailgateway", "firewall") if connectors.has(n)]
    return {**done, "failed": failures, "malicious_urls": bad_urls, "copies": len(copies), "integrations": integrations}


# ---------------------------------------------------------------------------
# Case comment and notification
# ---------------------------------------------------------------------------


def _vt_summary(result: Any) -> str | None:
    if result is None:
        return None
    if failed(result):
        return f"VirusTotal lookup failed ({result['error']})"
    if not result.get("found"):
        return "unknown to VirusTotal"
    return f"VirusTotal {result['malicious']} malicious / {result['suspicious']} suspicious"


def _heuristics_summary(assessment: dict | None) -> str | None:
    if not assessment or not assessment.get("reasons"):
        return None
    return "; ".join(assessment["reasons"])


def _line(label: str, value: str, verdict: str, details: list[str | None]) -> str:
    shown = [d for d in details if d]
    return f"- {label} `{value}`: **{verdict}**" + (f" ({'; '.join(shown)})" if shown else "")


def render_comment(verdict: str, report: ReportedEmail, evidence: dict, containment: dict | None) -> str:
    """The case comment: verdict, evidence per indicator, what was done and
    what is recommended (markdown)."""
    lines = [f"**Phishing triage: {verdict}** (sources: {', '.join(evidence['sources'])})", ""]
    subject = f'"{report.subject}"' if report.subject else "(subject unknown)"
    lines.append(f"Reported message {subject} from `{report.sender or 'unknown sender'}`.")
    lines += ["", "Indicators:"]
    for entry in evidence["urls"]:
        lines.append(
            _line(
                "URL",
                entry["url"],
                entry["verdict"],
                [
                    _heuristics_summary(entry["heuristics"]),
                    _vt_summary(entry["virustotal"]),
                    _vt_summary(entry["virustotal_domain"]) and f"domain: {_vt_summary(entry['virustotal_domain'])}",
                ],
            )
        )
    sender = evidence["sender"]
    if sender and sender["domain"]:
        lines.append(
            _line(
                "Sender domain",
                sender["domain"],
                sender["verdict"],
                [
                    _heuristics_summary(sender["heuristics"]),
                    _vt_summary(sender["virustotal"]),
                ],
            )
        )
    for entry in evidence["attachments"]:
        lines.append(
            _line(
                "Attachment",
                entry["hash"],
                entry["verdict"],
                [
                    _vt_summary(entry["virustotal"]) or "not looked up: VirusTotal is not configured",
                ],
            )
        )
    if evidence["not_looked_up"]:
        lines.append(f"- {len(evidence['not_looked_up'])} more indicator(s) were not looked up (lookup limit).")

    lines.append("")
    if evidence["search_error"]:
        lines.append(f"Mail gateway search failed: {evidence['search_error']}.")
    elif evidence["searched"]:
        recipients = sorted({c["recipient"] for c in evidence["copies"] if c.get("recipient")})
        count = len(evidence["copies"])
        lines.append(
            f"Mail gateway: {count} delivered cop{'y' if count == 1 else 'ies'}"
            + (f", to {', '.join(recipients)}." if recipients else ".")
        )
    elif "mailgateway" in evidence["sources"]:
        lines.append("Mail gateway not searched: the sender or the subject of the message is unknown.")
    else:
        lines.append("Mail gateway not configured: other recipients were not searched.")

    lines += ["", "Actions taken:"]
    if containment is None:
        lines.append("- none (the evidence is not conclusive enough for automatic containment).")
    else:
        taken = []
        if containment["quarantined"]:
            taken.append(f"- quarantined {len(containment['quarantined'])} of {containment['copies']} copies.")
        if containment["firewall"]:
            ids = ", ".join(b["block_id"] for b in containment["firewall"])
            taken.append(f"- blocked {len(containment['firewall'])} URL(s) at the firewall (block ids {ids}).")
        if containment["mail_blocklist"]:
            taken.append(f"- added {len(containment['mail_blocklist'])} URL(s) to the mail gateway blocklist.")
        for item in containment["failed"]:
            taken.append(f"- FAILED {item['action']} `{item['target']}`: {item['error']}")
        if not taken and not containment["integrations"]:
            taken.append("- none: no mail gateway or firewall integration is configured.")
        elif not taken:
            taken.append("- none: no copy was found and no malicious URL needed blocking.")
        lines += taken

    lines += ["", f"Recommendation: {recommendation(verdict, evidence, containment)}"]
    return "\n".join(lines)


def recommendation(verdict: str, evidence: dict, containment: dict | None) -> str:
    """What the analyst should do next."""
    if verdict == "phishing" and containment is not None:
        todo = []
        if not evidence["searched"] or evidence["search_error"]:
            todo.append("find and quarantine every copy of the message")
        if containment["malicious_urls"] and not (containment["firewall"] or containment["mail_blocklist"]):
            todo.append("block the malicious URLs")
        if containment["failed"]:
            todo.append("finish the failed containment steps by hand")
        todo.append(
            "check whether any recipient clicked the links or opened attachments, and reset their " "credentials if so"
        )
        text = "; ".join(todo)
        return text[0].upper() + text[1:] + "."
    if verdict == "likely-phishing":
        return (
            "Suspicious indicators but nothing confirmed malicious: review the message headers and the flagged "
            "indicators, then quarantine the copies if you confirm phishing."
        )
    return (
        "No indicator was flagged: review the message (headers, sender authentication, context) before "
        "closing the case as benign."
    )


def render_notification(alert: Alert, report: ReportedEmail, containment: dict) -> str:
    """The Slack message sent after containment."""
    subject = report.subject or alert.title
    parts = [f':rotating_light: Phishing confirmed: "{subject}" from {report.sender or "unknown sender"}.']
    parts.append(
        f"Quarantined {len(containment['quarantined'])}/{containment['copies']} copies; "
        f"{len(containment['malicious_urls'])} malicious URL(s), "
        f"{len(containment['firewall'])} blocked at the firewall, "
        f"{len(containment['mail_blocklist'])} on the mail gateway blocklist."
    )
    if containment["failed"]:
        parts.append(f"{len(containment['failed'])} containment step(s) failed: see the case.")
    parts.append(f"Alert {alert.id or alert.source_ref}.")
    return " ".join(parts)
