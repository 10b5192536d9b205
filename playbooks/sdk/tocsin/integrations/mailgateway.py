"""Client for a generic secure e-mail gateway REST API.

Secure e-mail gateways (SEGs) differ in their APIs; this client speaks the
small REST contract below. Point it at an adapter for your product (or at a
product that exposes these endpoints). Every request carries
``Authorization: Bearer <token>`` and ``Accept: application/json``; request
and response bodies are JSON.

``POST /api/v1/messages/search``
    Body ``{"sender": str, "subject": str (optional), "received_after":
    RFC 3339 timestamp (optional)}``. ``sender`` matches the envelope/header
    sender address case-insensitively; ``subject`` matches the subject
    exactly. Answers ``200 {"messages": [{"id", "recipient", "subject",
    "sender", "received_at"}]}``, one entry per delivered copy (one per
    recipient).

``POST /api/v1/messages/{id}/quarantine``
    No body. Honors the ``Idempotency-Key`` header: a repeated request with
    the same key returns the first answer without acting again. Answers
    ``200 {"id": str, "status": "quarantined"}``; 404 when the message does
    not exist.

``POST /api/v1/blocklist/urls``
    Body ``{"url": str, "reason": str}``. Answers ``201`` with the new entry
    ``{"id", "url", "reason"}``, or ``200`` with the existing entry when the
    URL is already listed.

Errors answer a 4xx/5xx status with ``{"error": {"code": str, "message":
str}}``; 401 means a missing or invalid token; 429 means rate limited and
carries ``Retry-After`` (seconds).

Secrets (:meth:`MailGateway.from_secrets`): ``mailgateway_token`` and
``mailgateway_base_url`` (both required: there is no public default).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import quote

from . import read_secret
from ._base import ServiceClient, require_text

__all__ = ["MailGateway"]


class MailGateway(ServiceClient):
    """Message search, quarantine and URL blocklisting on a mail gateway."""

    service = "mailgateway"
    DEFAULT_BASE_URL = None
    REQUIRED_SECRETS = ("mailgateway_token", "mailgateway_base_url")

    def __init__(self, token: str, base_url: str, *, timeout: float = 30.0) -> None:
        self._token = require_text(self.service, "token", token, secret=True)
        super().__init__(base_url=base_url, secrets=(self._token,), timeout=timeout)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any], **options: Any) -> "MailGateway":
        """Build a client from ``mailgateway_token`` and ``mailgateway_base_url``;
        ``options`` go to the constructor.

        :raises NotConfigured: when either secret is missing.
        """
        token = read_secret(secrets, "mailgateway_token", service=cls.service)
        base_url = read_secret(secrets, "mailgateway_base_url", service=cls.service)
        return cls(token, base_url, **options)  # type: ignore[arg-type]

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def search_messages(
        self,
        sender: str,
        subject: str | None = None,
        received_after: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Delivered copies of messages from ``sender`` (optionally with this
        exact ``subject``, received after ``received_after``).

        A sender is required so that a search can never select all mail.

        :returns: ``{"messages": [{"id", "recipient", "subject", "sender",
            "received_at"}], "count": int}``.
        """
        body: dict[str, Any] = {"sender": require_text(self.service, "sender", sender)}
        if subject is not None:
            body["subject"] = require_text(self.service, "subject", subject)
        if received_after is not None:
            body["received_after"] = _rfc3339(received_after)
        response = await self._request("POST", "/api/v1/messages/search", json=body)
        messages = self._json_object(response).get("messages")
        if not isinstance(messages, list):
            raise self._error("response has no 'messages' list", status=response.status_code)
        normalized = []
        for item in messages:
            if not isinstance(item, dict) or not item.get("id"):
                raise self._error("a message in the search response has no 'id'", status=response.status_code)
            normalized.append(
                {
                    "id": str(item["id"]),
                    "recipient": _opt(item.get("recipient")),
                    "subject": _opt(item.get("subject")),
                    "sender": _opt(item.get("sender")),
                    "received_at": _opt(item.get("received_at")),
                }
            )
        return {"messages": normalized, "count": len(normalized)}

    async def quarantine(self, message_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Move one delivered copy to quarantine.

        Pass ``idempotency_key`` (e.g. ``run.idempotency_key`` inside an
        action) so that a retried request cannot act twice.

        :returns: ``{"id": str, "status": str}`` (``"quarantined"``).
        """
        message_id = require_text(self.service, "message_id", message_id)
        response = await self._request(
            "POST",
            f"/api/v1/messages/{quote(message_id, safe='')}/quarantine",
            idempotency_key=idempotency_key,
            ok=(200, 201, 202),
        )
        body = self._json_object(response)
        return {"id": str(body.get("id") or message_id), "status": str(body.get("status") or "quarantined")}

    async def block_url(self, url: str, reason: str) -> dict[str, Any]:
        """Add ``url`` to the gateway's URL blocklist.

        :returns: ``{"id": str | None, "url": str, "reason": str, "created": bool}``
            (``created`` is false when the URL was already listed).
        """
        url = require_text(self.service, "url", url)
        reason = require_text(self.service, "reason", reason)
        response = await self._request(
            "POST", "/api/v1/blocklist/urls", json={"url": url, "reason": reason}, ok=(200, 201)
        )
        body = self._json_object(response)
        return {
            "id": _opt(body.get("id")),
            "url": str(body.get("url") or url),
            "reason": str(body.get("reason") or reason),
            "created": response.status_code == 201,
        }


def _rfc3339(value: str | datetime) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    text = require_text("mailgateway", "received_after", value)
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"mailgateway: received_after must be an RFC 3339 timestamp, got {text!r}") from None
    return text


def _opt(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None
