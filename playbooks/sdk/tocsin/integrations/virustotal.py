"""VirusTotal API v3 reputation lookups.

Reads existing reports only (nothing is submitted for analysis, so a lookup
never discloses a new URL or file to VirusTotal beyond its identifier):

* ``GET /urls/{id}`` where ``id`` is the URL encoded as unpadded URL-safe
  base64 (RFC 4648 section 5, ``=`` stripped), as VirusTotal documents;
* ``GET /domains/{domain}``, ``GET /ip_addresses/{ip}``, ``GET /files/{hash}``
  (MD5, SHA-1 or SHA-256).

Authentication is the ``x-apikey`` header. Successful answers are
``{"data": {"id", "type", "attributes": {"last_analysis_stats": {...}, ...}}}``;
errors are ``{"error": {"code", "message"}}`` (``NotFoundError`` with 404,
``WrongCredentialsError`` with 401, ``QuotaExceededError`` with 429).

Every method returns the same normalized dict::

    {"type": "url" | "domain" | "ip" | "file", "indicator": <the value looked up>,
     "found": bool, "malicious": int, "suspicious": int, "harmless": int,
     "undetected": int, "verdict": "malicious" | "suspicious" | "clean" | "unknown",
     "reputation": int | None, "last_analysis_date": "<RFC 3339>" | None,
     "link": "https://www.virustotal.com/gui/..."}

A 404 is not an error: VirusTotal has never seen the indicator, so the result
has ``found: False``, zero counts and verdict ``unknown``.

Verdicts: ``malicious`` when at least ``malicious_threshold`` engines (default
3) flag it malicious; ``suspicious`` when fewer do, or any engine flags it
suspicious; ``clean`` when it was analysed and no engine flagged it;
``unknown`` when there is no analysis.

Secrets (:meth:`VirusTotal.from_secrets`): ``virustotal_api_key`` (required),
``virustotal_base_url`` (optional, default ``https://www.virustotal.com/api/v3``).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import quote

from . import read_secret
from ._base import ServiceClient, require_text

__all__ = ["VirusTotal", "url_id", "VERDICTS"]

#: Possible values of the normalized ``verdict``.
VERDICTS: tuple[str, ...] = ("malicious", "suspicious", "clean", "unknown")

_GUI = "https://www.virustotal.com/gui"
_HASH = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
_STATS = ("malicious", "suspicious", "harmless", "undetected")


def url_id(url: str) -> str:
    """VirusTotal's identifier for ``url``: unpadded URL-safe base64 of its
    UTF-8 bytes (``http://x`` -> ``aHR0cDovL3g``)."""
    return base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


class VirusTotal(ServiceClient):
    """Client for the VirusTotal API v3 (read-only reputation lookups)."""

    service = "virustotal"
    DEFAULT_BASE_URL = "https://www.virustotal.com/api/v3"
    REQUIRED_SECRETS = ("virustotal_api_key",)

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30.0,
        malicious_threshold: int = 3,
    ) -> None:
        self._api_key = require_text(self.service, "api_key", api_key, secret=True)
        if isinstance(malicious_threshold, bool) or not isinstance(malicious_threshold, int) or malicious_threshold < 1:
            raise ValueError(f"virustotal: malicious_threshold must be a positive integer, got {malicious_threshold!r}")
        self.malicious_threshold = malicious_threshold
        super().__init__(base_url=base_url, secrets=(self._api_key,), timeout=timeout)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any], **options: Any) -> "VirusTotal":
        """Build a client from ``virustotal_api_key`` and the optional
        ``virustotal_base_url``; ``options`` go to the constructor.

        :raises NotConfigured: when ``virustotal_api_key`` is missing.
        """
        api_key = read_secret(secrets, "virustotal_api_key", service=cls.service)
        base_url = read_secret(secrets, "virustotal_base_url", service=cls.service, required=False)
        return cls(api_key, base_url or cls.DEFAULT_BASE_URL, **options)  # type: ignore[arg-type]

    def _auth_headers(self) -> dict[str, str]:
        return {"x-apikey": self._api_key}

    # -- lookups ----------------------------------------------------------------

    async def url_report(self, url: str) -> dict[str, Any]:
        """Last analysis of ``url`` (``GET /urls/{unpadded urlsafe base64}``)."""
        url = require_text(self.service, "url", url)
        return await self._report("url", url, f"/urls/{url_id(url)}")

    async def domain_report(self, domain: str) -> dict[str, Any]:
        """Last analysis of ``domain`` (``GET /domains/{domain}``)."""
        domain = require_text(self.service, "domain", domain).rstrip(".").lower()
        if any(c in domain for c in "/?#@ ") or not domain:
            raise ValueError(f"virustotal: {domain!r} is not a domain name")
        return await self._report("domain", domain, f"/domains/{quote(domain, safe='')}")

    async def ip_report(self, ip: str) -> dict[str, Any]:
        """Last analysis of an IPv4/IPv6 address (``GET /ip_addresses/{ip}``)."""
        text = require_text(self.service, "ip", ip)
        try:
            address = str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"virustotal: {text!r} is not an IP address") from None
        return await self._report("ip", address, f"/ip_addresses/{quote(address, safe=':')}")

    async def file_report(self, file_hash: str) -> dict[str, Any]:
        """Last analysis of a file by MD5, SHA-1 or SHA-256 (``GET /files/{hash}``)."""
        value = require_text(self.service, "hash", file_hash)
        if not _HASH.match(value):
            raise ValueError(f"virustotal: {value!r} is not an MD5, SHA-1 or SHA-256 hex digest")
        value = value.lower()
        return await self._report("file", value, f"/files/{value}")

    # -- internals --------------------------------------------------------------

    async def _report(self, kind: str, indicator: str, path: str) -> dict[str, Any]:
        response = await self._request("GET", path, ok=(200, 404))
        if response.status_code == 404:
            code, message = self._parse_error(response)
            if code != "NotFoundError":
                # Only VirusTotal's "object not found" means "never seen"; any
                # other 404 (e.g. a wrong base URL) is a configuration error.
                raise self._error(message or "HTTP 404 without a NotFoundError body", status=404, code=code)
            return self._normalize(kind, indicator, None)
        body = self._json_object(response)
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._error("response has no 'data' object", status=response.status_code)
        return self._normalize(kind, indicator, data)

    def _normalize(self, kind: str, indicator: str, data: dict[str, Any] | None) -> dict[str, Any]:
        attributes = (data or {}).get("attributes") or {}
        stats_in = attributes.get("last_analysis_stats") or {}
        stats = {name: _count(stats_in.get(name)) for name in _STATS}
        analysed = sum(_count(v) for v in stats_in.values()) if isinstance(stats_in, dict) else 0
        if stats["malicious"] >= self.malicious_threshold:
            verdict = "malicious"
        elif stats["malicious"] > 0 or stats["suspicious"] > 0:
            verdict = "suspicious"
        elif analysed > 0:
            verdict = "clean"
        else:
            verdict = "unknown"
        reputation = attributes.get("reputation")
        return {
            "type": kind,
            "indicator": indicator,
            "found": data is not None,
            **stats,
            "verdict": verdict,
            "reputation": reputation if isinstance(reputation, int) and not isinstance(reputation, bool) else None,
            "last_analysis_date": _timestamp(attributes.get("last_analysis_date")),
            "link": _gui_link(kind, indicator, data),
        }


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return 0
    return int(value)


def _timestamp(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        moment = datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _gui_link(kind: str, indicator: str, data: dict[str, Any] | None) -> str:
    object_id = (data or {}).get("id")
    if kind == "url":
        # The GUI addresses URLs by their SHA-256 id, which only the API knows.
        if isinstance(object_id, str) and object_id:
            return f"{_GUI}/url/{quote(object_id, safe='')}"
        return f"{_GUI}/search/{quote(indicator, safe='')}"
    segment = {"domain": "domain", "ip": "ip-address", "file": "file"}[kind]
    return f"{_GUI}/{segment}/{quote(indicator, safe=':')}"
