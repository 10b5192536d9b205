"""Bundled integrations: small async clients for the services playbooks call.

Each integration is a module with one client class built on :mod:`tocsin.http`:

=====================================  ==========================================  ==============================
Module                                 Client                                      Secrets read by ``from_secrets``
=====================================  ==========================================  ==============================
:mod:`tocsin.integrations.virustotal`  :class:`~.virustotal.VirusTotal` (API v3)   ``virustotal_api_key``,
                                                                                   ``virustotal_base_url`` (optional)
:mod:`tocsin.integrations.abuseipdb`   :class:`~.abuseipdb.AbuseIPDB` (API v2)     ``abuseipdb_api_key``,
                                                                                   ``abuseipdb_base_url`` (optional)
:mod:`tocsin.integrations.mailgateway` :class:`~.mailgateway.MailGateway`          ``mailgateway_token``,
                                                                                   ``mailgateway_base_url``
:mod:`tocsin.integrations.firewall`    :class:`~.firewall.Firewall`                ``firewall_token``,
                                                                                   ``firewall_base_url``
:mod:`tocsin.integrations.slack`       :class:`~.slack.Slack`                      ``slack_bot_token`` and/or
                                                                                   ``slack_webhook_url``;
                                                                                   ``slack_channel``,
                                                                                   ``slack_base_url`` (optional)
=====================================  ==========================================  ==============================

Usage inside a playbook (clients are plain objects, so they are built in the
playbook body and used inside actions; only JSON goes through the journal)::

    from tocsin.integrations import optional
    from tocsin.integrations.virustotal import VirusTotal

    vt = optional(VirusTotal, run.secrets)      # None when the secret is absent

    @action(retries=1, timeout="20s", idempotent=True)
    async def vt_url(url: str) -> dict:
        return await vt.url_report(url)

Conventions shared by every client:

* Constructors take the credential (``api_key`` or ``token``) and a
  ``base_url`` that defaults to the real service (the generic mail gateway
  and firewall have no public default and require one), plus ``timeout``.
* ``from_secrets(secrets)`` builds a client from a secrets mapping such as
  ``run.secrets`` (any mapping whose ``[name]`` raises :class:`KeyError` for a
  missing secret). A missing or empty required secret raises
  :class:`NotConfigured`; :func:`optional` turns that into ``None``.
* Methods return plain JSON-serializable dicts, normalized for playbooks.
* Failures raise :class:`IntegrationError` (or a subclass) carrying the
  service, HTTP status, the service's error code and message. HTTP 429 raises
  :class:`RateLimited` with ``retry_after`` (seconds) when the service says
  how long to wait. Transport failures (connection refused, timeouts, TLS)
  raise :class:`IntegrationError` with ``status=None``. Credentials never
  appear in error messages: every known secret value is redacted.
* Invalid arguments (an empty indicator, a malformed IP address, ...) raise
  :class:`ValueError` before any request is sent.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

__all__ = [
    "IntegrationError",
    "RateLimited",
    "NotConfigured",
    "optional",
    "read_secret",
]


class IntegrationError(Exception):
    """A call to an external service failed.

    Attributes:

    * ``service`` -- integration name, e.g. ``"virustotal"``;
    * ``status`` -- HTTP status code, or ``None`` when no response was received
      (connection error, timeout) or the failure is not an HTTP one;
    * ``code`` -- the service's own error code when it gives one (e.g.
      ``"WrongCredentialsError"``, ``"channel_not_found"``), else ``None``;
    * ``message`` -- human-readable description (credentials redacted);
    * ``retry_after`` -- seconds to wait before retrying, when known.
    """

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.service = str(service)
        self.message = str(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(self.service, self.message, status, code, retry_after)

    @property
    def retryable(self) -> bool:
        """Whether retrying later may succeed: no response at all, HTTP 429,
        or a 5xx server error."""
        return self.status is None or self.status == 429 or self.status >= 500

    def to_dict(self) -> dict[str, Any]:
        """JSON form, suitable for an action result or a run log field."""
        return {
            "service": self.service,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "retry_after": self.retry_after,
        }

    def __str__(self) -> str:
        parts = [f"{self.service}:"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(f"[{self.code}]")
        parts.append(self.message)
        text = " ".join(parts)
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g}s)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(service={self.service!r}, status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, retry_after={self.retry_after!r})"
        )


class RateLimited(IntegrationError):
    """The service answered HTTP 429 (or its equivalent). ``retry_after`` is
    the delay it asked for in seconds, or ``None`` when it did not say."""


class NotConfigured(IntegrationError):
    """A client cannot be built: a required secret is missing or empty, or a
    configuration value is invalid. ``status`` is always ``None``."""


def read_secret(secrets: Mapping[str, Any], name: str, *, service: str, required: bool = True) -> str | None:
    """Read secret ``name`` from ``secrets`` (e.g. ``run.secrets``).

    Values are stripped of surrounding whitespace; an empty value counts as
    missing. Returns ``None`` for a missing optional secret.

    :raises NotConfigured: if a required secret is missing or empty, or the
        value is not a string.
    """
    try:
        value = secrets[name]
    except KeyError:
        value = None
    if value is not None and not isinstance(value, str):
        raise NotConfigured(service, f"secret {name!r} must be a string, got {type(value).__name__}")
    value = value.strip() if value else ""
    if value:
        return value
    if required:
        raise NotConfigured(service, f"secret {name!r} is not set")
    return None


_Client = TypeVar("_Client")


def optional(client_class: type[_Client], secrets: Mapping[str, Any], **options: Any) -> _Client | None:
    """``client_class.from_secrets(secrets, **options)``, or ``None`` when the
    integration is not configured (its required secrets are absent).
    ``options`` go to the client's constructor (e.g. ``timeout=10``).

    Any other configuration problem (e.g. a malformed base URL secret) is
    still raised as :class:`NotConfigured`, so a typo does not silently turn an
    integration off: only a missing credential does.
    """
    if not client_class.is_configured(secrets):  # type: ignore[attr-defined]
        return None
    return client_class.from_secrets(secrets, **options)  # type: ignore[attr-defined]
