"""Common plumbing of the bundled integration clients: base URL handling,
credential redaction, request execution over :mod:`tocsin.http` and the
mapping of failures onto :class:`~tocsin.integrations.IntegrationError`."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any, ClassVar, Iterable, Mapping
from urllib.parse import urlsplit

from tocsin import http

from . import IntegrationError, NotConfigured, RateLimited, read_secret

__all__ = ["ServiceClient", "header", "parse_retry_after"]

#: Longest service error text copied into an exception message.
_MAX_MESSAGE = 300
_REDACTED = "[redacted]"


def header(headers: Any, name: str) -> str | None:
    """Case-insensitive lookup of a response header in any mapping-like
    ``headers`` object; ``None`` when absent."""
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is not None:
        value = getter(name)
        if value is None:
            value = getter(name.lower())
        if value is not None:
            return str(value)
    items = getattr(headers, "items", None)
    if items is not None:
        wanted = name.lower()
        for key, value in items():
            if str(key).lower() == wanted:
                return str(value)
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value: either
    delay-seconds or an HTTP-date (RFC 9110 section 10.2.3). ``None`` when
    absent or unparseable; never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def check_base_url(service: str, value: object) -> str:
    """Validate an ``http(s)://host[:port][/path]`` base URL; returns it
    without a trailing slash.

    :raises NotConfigured: when it is not such a URL.
    """
    if not isinstance(value, str) or not value.strip():
        raise NotConfigured(service, "base_url must be a non-empty http(s) URL")
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotConfigured(service, f"base_url must be an absolute http(s) URL, got {text!r}")
    if parts.query or parts.fragment:
        raise NotConfigured(service, f"base_url must not have a query or fragment, got {text!r}")
    return text.rstrip("/")


def check_timeout(service: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{service}: timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def require_text(service: str, what: str, value: object, *, secret: bool = False) -> str:
    """``value`` stripped; :class:`ValueError` unless it is a non-empty
    string. With ``secret=True`` the message never shows the value."""
    if not isinstance(value, str) or not value.strip():
        shown = type(value).__name__ if secret else repr(value)
        raise ValueError(f"{service}: {what} must be a non-empty string, got {shown}")
    return value.strip()


class ServiceClient:
    """Base class of the integration clients.

    Subclasses set :attr:`service`, :attr:`DEFAULT_BASE_URL` (``None`` when
    there is no public default), :attr:`REQUIRED_SECRETS`, implement
    :meth:`_auth_headers` and may refine :meth:`_parse_error` for their error
    body shape.
    """

    #: Integration name used in errors, e.g. ``"virustotal"``.
    service: ClassVar[str] = "service"
    #: Base URL of the real service, or ``None`` when one must be given.
    DEFAULT_BASE_URL: ClassVar[str | None] = None
    #: Secrets that must all be present for :func:`tocsin.integrations.optional`
    #: to build the client.
    REQUIRED_SECRETS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, base_url: str | None, secrets: Iterable[str | None], timeout: float) -> None:
        chosen = self.DEFAULT_BASE_URL if base_url is None else base_url
        if chosen is None:
            raise NotConfigured(self.service, "base_url is required (this service has no public default)")
        self.base_url = check_base_url(self.service, chosen)
        self.timeout = check_timeout(self.service, timeout)
        # Longest first, so a secret containing another one is redacted whole.
        self._secret_values = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    # -- configuration --------------------------------------------------------

    @classmethod
    def is_configured(cls, secrets: Mapping[str, Any]) -> bool:
        """Whether every secret in :attr:`REQUIRED_SECRETS` is set (non-empty)."""
        return all(read_secret(secrets, name, service=cls.service, required=False) for name in cls.REQUIRED_SECRETS)

    def __repr__(self) -> str:
        # Never show credentials.
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- helpers for subclasses ------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _redact(self, text: str, extra: Iterable[str] = ()) -> str:
        for secret in (*self._secret_values, *sorted((e for e in extra if e), key=len, reverse=True)):
            text = text.replace(secret, _REDACTED)
        return text

    def _error(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        extra_secrets: Iterable[str] = (),
    ) -> IntegrationError:
        extra = tuple(extra_secrets)
        text = self._redact(message, extra)
        safe_code = self._redact(code, extra) if code else None
        cls = RateLimited if status == 429 else IntegrationError
        return cls(self.service, text, status=status, code=safe_code, retry_after=retry_after)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        ok: tuple[int, ...] = (200,),
        absolute_url: str | None = None,
        extra_secrets: Iterable[str] = (),
    ) -> Any:
        """Send one request and return the response when its status is in
        ``ok``; raise :class:`IntegrationError` / :class:`RateLimited`
        otherwise.

        ``path`` is appended to :attr:`base_url` unless ``absolute_url`` is
        given. ``extra_secrets`` are redacted from error messages on top of
        the client's credentials (e.g. a webhook URL).
        """
        url = absolute_url if absolute_url is not None else self.base_url + path
        where = path if absolute_url is None else "webhook"
        all_headers = {"Accept": "application/json", **self._auth_headers(), **(headers or {})}
        if idempotency_key is not None:
            all_headers["Idempotency-Key"] = require_text(self.service, "idempotency_key", idempotency_key)
        try:
            response = await http.request(
                method, url, params=params, headers=all_headers, json=json, timeout=self.timeout
            )
        except (http.HTTPError, OSError, TimeoutError) as exc:
            # ``from None``: the transport error may quote the URL (a webhook
            # URL is a credential); its redacted text is in the message.
            detail = str(exc) or type(exc).__name__
            if not isinstance(exc, http.HTTPError):
                detail = f"{method} {where} failed: {type(exc).__name__}: {detail}"
            raise self._error(f"no response: {detail}", extra_secrets=extra_secrets) from None
        if response.status_code in ok:
            return response
        code, message = self._parse_error(response)
        retry_after = parse_retry_after(header(response.headers, "Retry-After"))
        if not message:
            message = f"{method} {where} answered HTTP {response.status_code}"
        raise self._error(
            message[:_MAX_MESSAGE],
            status=response.status_code,
            code=code,
            retry_after=retry_after,
            extra_secrets=extra_secrets,
        )

    def _parse_error(self, response: Any) -> tuple[str | None, str | None]:
        """``(code, message)`` from an error response. The default understands
        ``{"error": {"code", "message"}}``, ``{"error": "..."}``,
        ``{"message": "..."}`` and ``{"detail": "..."}``, else uses the text."""
        body = self._maybe_json(response)
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                return _opt_str(error.get("code")), _opt_str(error.get("message"))
            if isinstance(error, str):
                return error, _opt_str(body.get("message")) or error
            for key in ("message", "detail"):
                if isinstance(body.get(key), str):
                    return _opt_str(body.get("code")), body[key]
        return None, _short_text(response)

    @staticmethod
    def _maybe_json(response: Any) -> Any:
        try:
            return response.json()
        except Exception:  # not JSON (or empty): callers fall back to the text
            return None

    def _json_object(self, response: Any) -> dict[str, Any]:
        """The response body as a JSON object, else :class:`IntegrationError`."""
        try:
            body = response.json()
        except Exception:
            raise self._error("response body is not valid JSON", status=response.status_code) from None
        if not isinstance(body, dict):
            raise self._error(
                f"expected a JSON object in the response, got {type(body).__name__}", status=response.status_code
            )
        return body


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _short_text(response: Any) -> str | None:
    try:
        text = response.text
    except Exception:
        return None
    text = " ".join(str(text).split())
    return text[:_MAX_MESSAGE] or None
