"""AbuseIPDB API v2 IP reputation checks.

``GET /check?ipAddress=<ip>&maxAgeInDays=<1..365>`` with the ``Key`` header
and ``Accept: application/json``. The answer is
``{"data": {"ipAddress", "isPublic", "ipVersion", "isWhitelisted",
"abuseConfidenceScore", "countryCode", "usageType", "isp", "domain",
"hostnames", "isTor", "totalReports", "numDistinctUsers", "lastReportedAt"}}``;
errors are ``{"errors": [{"detail", "status", "source"?}]}`` (401 for a bad
key, 422 for an invalid address or parameter, 429 with ``Retry-After`` when
the daily quota is exhausted).

:meth:`AbuseIPDB.check` returns::

    {"ip": str, "abuse_confidence": int (0-100), "total_reports": int,
     "distinct_users": int, "country": str | None, "isp": str | None,
     "usage_type": str | None, "domain": str | None, "is_tor": bool,
     "is_whitelisted": bool | None, "is_public": bool | None,
     "last_reported_at": str | None,
     "verdict": "malicious" | "suspicious" | "clean",
     "link": "https://www.abuseipdb.com/check/<ip>"}

Verdicts: ``clean`` when AbuseIPDB whitelists the address; otherwise
``malicious`` from ``malicious_threshold`` (default 75) confidence,
``suspicious`` from ``suspicious_threshold`` (default 25), else ``clean``.

Secrets (:meth:`AbuseIPDB.from_secrets`): ``abuseipdb_api_key`` (required),
``abuseipdb_base_url`` (optional, default ``https://api.abuseipdb.com/api/v2``).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping
from urllib.parse import quote

from . import read_secret
from ._base import ServiceClient, require_text

__all__ = ["AbuseIPDB"]


class AbuseIPDB(ServiceClient):
    """Client for the AbuseIPDB API v2 ``check`` endpoint."""

    service = "abuseipdb"
    DEFAULT_BASE_URL = "https://api.abuseipdb.com/api/v2"
    REQUIRED_SECRETS = ("abuseipdb_api_key",)

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30.0,
        malicious_threshold: int = 75,
        suspicious_threshold: int = 25,
    ) -> None:
        self._api_key = require_text(self.service, "api_key", api_key, secret=True)
        for name, value in (
            ("malicious_threshold", malicious_threshold),
            ("suspicious_threshold", suspicious_threshold),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
                raise ValueError(f"abuseipdb: {name} must be an integer between 1 and 100, got {value!r}")
        if suspicious_threshold > malicious_threshold:
            raise ValueError("abuseipdb: suspicious_threshold must not exceed malicious_threshold")
        self.malicious_threshold = malicious_threshold
        self.suspicious_threshold = suspicious_threshold
        super().__init__(base_url=base_url, secrets=(self._api_key,), timeout=timeout)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any], **options: Any) -> "AbuseIPDB":
        """Build a client from ``abuseipdb_api_key`` and the optional
        ``abuseipdb_base_url``; ``options`` go to the constructor.

        :raises NotConfigured: when ``abuseipdb_api_key`` is missing.
        """
        api_key = read_secret(secrets, "abuseipdb_api_key", service=cls.service)
        base_url = read_secret(secrets, "abuseipdb_base_url", service=cls.service, required=False)
        return cls(api_key, base_url or cls.DEFAULT_BASE_URL, **options)  # type: ignore[arg-type]

    def _auth_headers(self) -> dict[str, str]:
        return {"Key": self._api_key, "Accept": "application/json"}

    def _parse_error(self, response: Any) -> tuple[str | None, str | None]:
        body = self._maybe_json(response)
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            details = [str(e.get("detail")) for e in body["errors"] if isinstance(e, dict) and e.get("detail")]
            if details:
                return None, "; ".join(details)
        return super()._parse_error(response)

    async def check(self, ip: str, max_age_days: int = 90) -> dict[str, Any]:
        """Reputation of ``ip`` over the last ``max_age_days`` days (1-365)."""
        text = require_text(self.service, "ip", ip)
        try:
            address = str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"abuseipdb: {text!r} is not an IP address") from None
        if isinstance(max_age_days, bool) or not isinstance(max_age_days, int) or not 1 <= max_age_days <= 365:
            raise ValueError(f"abuseipdb: max_age_days must be an integer between 1 and 365, got {max_age_days!r}")
        response = await self._request("GET", "/check", params={"ipAddress": address, "maxAgeInDays": max_age_days})
        data = self._json_object(response).get("data")
        if not isinstance(data, dict):
            raise self._error("response has no 'data' object", status=response.status_code)
        score = _int(data.get("abuseConfidenceScore"))
        whitelisted = data.get("isWhitelisted")
        whitelisted = whitelisted if isinstance(whitelisted, bool) else None
        if whitelisted:
            verdict = "clean"
        elif score >= self.malicious_threshold:
            verdict = "malicious"
        elif score >= self.suspicious_threshold:
            verdict = "suspicious"
        else:
            verdict = "clean"
        reported_ip = data.get("ipAddress") if isinstance(data.get("ipAddress"), str) else address
        is_public = data.get("isPublic")
        return {
            "ip": reported_ip,
            "abuse_confidence": score,
            "total_reports": _int(data.get("totalReports")),
            "distinct_users": _int(data.get("numDistinctUsers")),
            "country": _str(data.get("countryCode")),
            "isp": _str(data.get("isp")),
            "usage_type": _str(data.get("usageType")),
            "domain": _str(data.get("domain")),
            "is_tor": data.get("isTor") is True,
            "is_whitelisted": whitelisted,
            "is_public": is_public if isinstance(is_public, bool) else None,
            "last_reported_at": _str(data.get("lastReportedAt")),
            "verdict": verdict,
            "link": f"https://www.abuseipdb.com/check/{quote(reported_ip, safe=':')}",
        }


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
