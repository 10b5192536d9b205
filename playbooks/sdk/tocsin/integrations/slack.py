"""Slack notifications: the Web API's ``chat.postMessage`` and incoming webhooks.

``chat.postMessage``
    ``POST https://slack.com/api/chat.postMessage`` with ``Authorization:
    Bearer <bot token>`` and a JSON body ``{"channel", "text", "blocks"?}``.
    Slack answers HTTP 200 even for failures: ``{"ok": true, "channel",
    "ts", "message"}`` on success, ``{"ok": false, "error": "<code>"}``
    otherwise (``channel_not_found``, ``not_in_channel``, ``invalid_auth``,
    ``not_authed``, ...), which this client raises as
    :class:`~tocsin.integrations.IntegrationError` with that ``code``. Rate
    limiting is HTTP 429 with ``Retry-After`` (raised as
    :class:`~tocsin.integrations.RateLimited`).

Incoming webhooks
    ``POST <webhook URL>`` with a JSON body ``{"text", "blocks"?}``. Success
    is HTTP 200 with the plain-text body ``ok``; failures are plain-text codes
    with a 4xx status (``invalid_payload``, ``no_text``, ``no_service``,
    ``channel_not_found``, ``action_prohibited``, ``channel_is_archived``).
    The webhook URL is a credential: it never appears in error messages.

Secrets (:meth:`Slack.from_secrets`): ``slack_bot_token`` and/or
``slack_webhook_url`` (at least one), ``slack_channel`` (default channel of
:meth:`Slack.notify` for the bot token), ``slack_base_url`` (optional,
default ``https://slack.com/api``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from . import NotConfigured, RateLimited, read_secret
from ._base import ServiceClient, require_text

__all__ = ["Slack"]


class Slack(ServiceClient):
    """Post messages with a bot token (``chat.postMessage``) or an incoming
    webhook."""

    service = "slack"
    DEFAULT_BASE_URL = "https://slack.com/api"

    def __init__(
        self,
        token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        default_channel: str | None = None,
        webhook_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._token = require_text(self.service, "token", token, secret=True) if token is not None else None
        self.default_channel = (
            require_text(self.service, "default_channel", default_channel) if default_channel is not None else None
        )
        self._webhook_url = _check_webhook_url(webhook_url) if webhook_url is not None else None
        super().__init__(
            base_url=base_url,
            secrets=(self._token, *_webhook_secrets(self._webhook_url)),
            timeout=timeout,
        )

    @classmethod
    def is_configured(cls, secrets: Mapping[str, Any]) -> bool:
        """Whether ``slack_bot_token`` or ``slack_webhook_url`` is set."""
        return any(
            read_secret(secrets, name, service=cls.service, required=False)
            for name in ("slack_bot_token", "slack_webhook_url")
        )

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any], **options: Any) -> "Slack":
        """Build a client from ``slack_bot_token`` / ``slack_webhook_url`` (at
        least one), ``slack_channel`` and ``slack_base_url`` (optional);
        ``options`` go to the constructor.

        :raises NotConfigured: when neither the bot token nor the webhook URL is set.
        """
        token = read_secret(secrets, "slack_bot_token", service=cls.service, required=False)
        webhook_url = read_secret(secrets, "slack_webhook_url", service=cls.service, required=False)
        if token is None and webhook_url is None:
            raise NotConfigured(cls.service, "neither secret 'slack_bot_token' nor 'slack_webhook_url' is set")
        channel = read_secret(secrets, "slack_channel", service=cls.service, required=False)
        base_url = read_secret(secrets, "slack_base_url", service=cls.service, required=False)
        try:
            return cls(
                token,
                base_url or cls.DEFAULT_BASE_URL,
                default_channel=channel,
                webhook_url=webhook_url,
                **options,
            )
        except ValueError as exc:
            # e.g. a malformed slack_webhook_url (the message never shows it)
            raise NotConfigured(cls.service, f"invalid Slack configuration: {exc}") from None

    def _parse_error(self, response: Any) -> tuple[str | None, str | None]:
        body = self._maybe_json(response)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"], _describe(body)
        text = _plain(response)
        if text:
            # Webhooks answer plain-text codes such as "no_service".
            return text if " " not in text else None, text
        return super()._parse_error(response)

    async def post_message(
        self, channel: str, text: str, blocks: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """``chat.postMessage`` to ``channel`` (an id like ``C0123456789`` or
        a name like ``#soc``). ``text`` is required even with ``blocks``: it
        is the notification and accessibility fallback.

        :returns: ``{"ok": True, "channel": str, "ts": str}``.
        :raises NotConfigured: when the client has no bot token.
        """
        if self._token is None:
            raise NotConfigured(self.service, "chat.postMessage needs a bot token (secret 'slack_bot_token')")
        body: dict[str, Any] = {
            "channel": require_text(self.service, "channel", channel),
            "text": require_text(self.service, "text", text),
        }
        if blocks is not None:
            body["blocks"] = [dict(b) for b in blocks]
        response = await self._request(
            "POST",
            "/chat.postMessage",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
            ok=(200,),
        )
        result = self._json_object(response)
        if result.get("ok") is not True:
            code = result.get("error") if isinstance(result.get("error"), str) else None
            error = self._error(_describe(result) or "chat.postMessage failed", status=200, code=code)
            if code == "ratelimited":
                raise RateLimited(error.service, error.message, status=200, code=code)
            raise error
        return {"ok": True, "channel": str(result.get("channel") or body["channel"]), "ts": str(result.get("ts") or "")}

    async def post_webhook(
        self, url: str, text: str, blocks: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Post ``text`` (and optional ``blocks``) to an incoming webhook.

        :returns: ``{"ok": True}``.
        """
        url = _check_webhook_url(url)
        body: dict[str, Any] = {"text": require_text(self.service, "text", text)}
        if blocks is not None:
            body["blocks"] = [dict(b) for b in blocks]
        await self._request("POST", "", json=body, absolute_url=url, extra_secrets=_webhook_secrets(url), ok=(200,))
        return {"ok": True}

    async def notify(self, text: str, blocks: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Send ``text`` where this client is configured to: the default
        channel through the bot token when both are set, else the webhook.

        :returns: ``{"ok": True, "via": "chat.postMessage", "channel", "ts"}``
            or ``{"ok": True, "via": "webhook"}``.
        :raises NotConfigured: when neither destination is configured.
        """
        if self._token is not None and self.default_channel is not None:
            posted = await self.post_message(self.default_channel, text, blocks)
            return {"via": "chat.postMessage", **posted}
        if self._webhook_url is not None:
            posted = await self.post_webhook(self._webhook_url, text, blocks)
            return {"via": "webhook", **posted}
        raise NotConfigured(
            self.service,
            "nowhere to notify: set 'slack_bot_token' with 'slack_channel', or 'slack_webhook_url'",
        )


def _check_webhook_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValueError("slack: the webhook URL must be a non-empty string")
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(parts.path) <= 1:
        raise ValueError("slack: the webhook URL must be an absolute http(s) URL with a path")
    return text


def _webhook_secrets(url: str | None) -> tuple[str, ...]:
    """The webhook URL and its path (the path alone is the credential)."""
    if not url:
        return ()
    path = urlsplit(url).path
    return (url, path) if len(path) > 1 else (url,)


def _describe(body: Mapping[str, Any]) -> str | None:
    error = body.get("error")
    parts = [str(error)] if error else []
    metadata = body.get("response_metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("messages"), list):
        parts.extend(str(m) for m in metadata["messages"])
    return "; ".join(parts) or None


def _plain(response: Any) -> str | None:
    try:
        text = str(response.text).strip()
    except Exception:
        return None
    return text[:200] or None
