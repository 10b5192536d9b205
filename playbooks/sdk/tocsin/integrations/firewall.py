"""Client for a generic firewall / web-proxy blocking REST API.

Firewall vendors differ in their APIs; this client speaks the small REST
contract below. Point it at an adapter for your product (or at a product
that exposes these endpoints). Every request carries ``Authorization: Bearer
<token>`` and ``Accept: application/json``; bodies are JSON.

``POST /api/v1/blocks``
    Body ``{"type": "ip" | "url" | "domain", "value": str, "reason": str,
    "ttl_seconds": int | null}`` (``null``: no expiry). Honors the
    ``Idempotency-Key`` header: a repeated request with the same key returns
    the first answer without creating a second block. Answers ``201`` (or
    ``200`` on an idempotent replay) with the block ``{"id", "type", "value",
    "reason", "ttl_seconds", "created_at", "expires_at"}``.

``DELETE /api/v1/blocks/{id}``
    Removes a block. Answers ``204``; ``404`` with error code ``not_found``
    when no such block exists.

``GET /api/v1/blocks?value=<value>``
    Active blocks of that exact value: ``200 {"blocks": [<block>, ...]}``.

Errors answer a 4xx/5xx status with ``{"error": {"code": str, "message":
str}}``; 401 means a missing or invalid token; 429 means rate limited and
carries ``Retry-After`` (seconds).

Secrets (:meth:`Firewall.from_secrets`): ``firewall_token`` and
``firewall_base_url`` (both required: there is no public default).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

from . import read_secret
from ._base import ServiceClient, require_text

__all__ = ["Firewall", "BLOCK_TYPES"]

#: Indicator types the firewall can block.
BLOCK_TYPES: tuple[str, ...] = ("ip", "url", "domain")

# Refuse networks broader than these prefixes: a playbook bug must not be
# able to cut off a large part of the Internet with one call.
_MIN_PREFIX = {4: 8, 6: 32}


class Firewall(ServiceClient):
    """Create, list and remove IP / URL / domain blocks."""

    service = "firewall"
    DEFAULT_BASE_URL = None
    REQUIRED_SECRETS = ("firewall_token", "firewall_base_url")

    def __init__(self, token: str, base_url: str, *, timeout: float = 30.0) -> None:
        self._token = require_text(self.service, "token", token, secret=True)
        super().__init__(base_url=base_url, secrets=(self._token,), timeout=timeout)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any], **options: Any) -> "Firewall":
        """Build a client from ``firewall_token`` and ``firewall_base_url``;
        ``options`` go to the constructor.

        :raises NotConfigured: when either secret is missing.
        """
        token = read_secret(secrets, "firewall_token", service=cls.service)
        base_url = read_secret(secrets, "firewall_base_url", service=cls.service)
        return cls(token, base_url, **options)  # type: ignore[arg-type]

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def block(
        self,
        type: str,
        value: str,
        reason: str,
        ttl_seconds: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Block ``value`` (of ``type`` ``"ip"``, ``"url"`` or ``"domain"``).

        Pass ``idempotency_key`` (e.g. ``run.idempotency_key`` inside an
        action) so that a retried request cannot create a second block.

        :returns: the block ``{"id", "type", "value", "reason", "ttl_seconds",
            "created_at", "expires_at"}``.
        """
        value = _check_value(type, value)
        reason = require_text(self.service, "reason", reason)
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0
        ):
            raise ValueError(f"firewall: ttl_seconds must be a positive integer or None, got {ttl_seconds!r}")
        body = {"type": type, "value": value, "reason": reason, "ttl_seconds": ttl_seconds}
        response = await self._request(
            "POST", "/api/v1/blocks", json=body, idempotency_key=idempotency_key, ok=(200, 201)
        )
        block = _block(self._json_object(response), fallback=body)
        if not block["id"]:
            raise self._error("the created block has no 'id'", status=response.status_code)
        return block

    async def block_ip(
        self, ip: str, reason: str, ttl_seconds: int | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Same as ``block("ip", ip, ...)`` (an address or a CIDR network)."""
        return await self.block("ip", ip, reason, ttl_seconds, idempotency_key=idempotency_key)

    async def block_url(
        self, url: str, reason: str, ttl_seconds: int | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Same as ``block("url", url, ...)``."""
        return await self.block("url", url, reason, ttl_seconds, idempotency_key=idempotency_key)

    async def block_domain(
        self, domain: str, reason: str, ttl_seconds: int | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Same as ``block("domain", domain, ...)``."""
        return await self.block("domain", domain, reason, ttl_seconds, idempotency_key=idempotency_key)

    async def unblock(self, block_id: str) -> dict[str, Any]:
        """Remove a block. Removing a block that no longer exists is not an
        error (``removed`` is then false), so the call is safe to repeat.

        :returns: ``{"id": str, "removed": bool}``.
        """
        block_id = require_text(self.service, "block_id", block_id)
        response = await self._request("DELETE", f"/api/v1/blocks/{quote(block_id, safe='')}", ok=(200, 204, 404))
        if response.status_code == 404:
            code, message = self._parse_error(response)
            if code != "not_found":
                raise self._error(message or "HTTP 404 without a not_found body", status=404, code=code)
        return {"id": block_id, "removed": response.status_code != 404}

    async def find_blocks(self, value: str) -> dict[str, Any]:
        """Active blocks of exactly ``value``.

        :returns: ``{"blocks": [<block>, ...], "count": int}``.
        """
        value = require_text(self.service, "value", value)
        response = await self._request("GET", "/api/v1/blocks", params={"value": value})
        blocks = self._json_object(response).get("blocks")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise self._error("response has no 'blocks' list of objects", status=response.status_code)
        normalized = [_block(b) for b in blocks]
        return {"blocks": normalized, "count": len(normalized)}


def _check_value(type: object, value: object) -> str:
    if type not in BLOCK_TYPES:
        raise ValueError(f"firewall: block type must be one of {', '.join(BLOCK_TYPES)}, got {type!r}")
    text = require_text("firewall", f"{type} value", value)
    if type == "ip":
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"firewall: {text!r} is not an IP address or network") from None
        if network.prefixlen < _MIN_PREFIX[network.version]:
            raise ValueError(
                f"firewall: refusing to block {text!r}: network broader than /{_MIN_PREFIX[network.version]}"
            )
        if network.num_addresses == 1:
            return str(network.network_address)
        return str(network)
    if type == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"firewall: {text!r} is not an absolute http(s) URL")
        return text
    domain = text.rstrip(".").lower()
    if not domain or any(c in domain for c in "/:?#@ "):
        raise ValueError(f"firewall: {text!r} is not a domain name")
    return domain


def _block(item: dict[str, Any], fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    fallback = fallback or {}

    def pick(key: str) -> Any:
        value = item.get(key)
        return fallback.get(key) if value is None else value

    block_id = item.get("id")
    ttl = pick("ttl_seconds")
    return {
        "id": str(block_id) if block_id is not None else None,
        "type": pick("type"),
        "value": pick("value"),
        "reason": pick("reason"),
        "ttl_seconds": ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
        "created_at": item.get("created_at"),
        "expires_at": item.get("expires_at"),
    }
