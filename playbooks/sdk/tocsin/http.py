"""A small async HTTP client for actions::

    from tocsin import action, http

    @action(retries=2, timeout="20s", idempotent=True)
    async def vt_lookup(ip: str, api_key: str) -> dict:
        response = await http.get(
            f"https://www.virustotal.com/api/v3/ip_addresses/{ip}",
            headers={"x-apikey": api_key},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

Transports:

* inside the Tocsin runner (while :func:`tocsin._runtime.serve` runs), requests
  are performed by the platform through ``host.http_request(request_id,
  method, url, headers_json, body, timeout_s)`` and answered by an
  ``http_response`` message, so egress policy and proxies are applied in one
  place;
* elsewhere (unit tests, scripts), `httpx <https://www.python-httpx.org>`_ is
  used when it is installed, else the standard library (:mod:`urllib.request`
  in a worker thread).

All transports return the same :class:`Response` and raise the same
exceptions: :class:`HTTPError` for transport failures (connection refused,
TLS, DNS...), :class:`HTTPTimeout` (also a :class:`TimeoutError`) when the
``timeout`` passes. A non-2xx status is *not* an error unless
:meth:`Response.raise_for_status` is called. Redirects are not followed by the
local transports: a 3xx response is returned as is. Only ``http`` and
``https`` URLs are accepted.

Header values, query strings and URL credentials never appear in logs or in
exception messages (they often carry API keys); logs show the origin
(``scheme://host:port``) only, exception messages add the path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import json as _json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ._duration import format_seconds, parse_duration
from ._run import current_traceparent

__all__ = [
    "request",
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "Response",
    "Headers",
    "HTTPError",
    "HTTPStatusError",
    "HTTPTimeout",
    "DEFAULT_TIMEOUT",
]

#: Default total time allowed for a request, in seconds.
DEFAULT_TIMEOUT = 30.0
#: Extra time granted to the platform beyond ``timeout`` before the runtime
#: gives up waiting for its ``http_response``.
_HOST_GRACE_S = 5.0

_logger = logging.getLogger("tocsin.http")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FORBIDDEN_VALUE_CHARS = re.compile(r"[\r\n\x00]")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class HTTPError(Exception):
    """An HTTP request failed (no response was received), or the base class
    of :class:`HTTPStatusError` and :class:`HTTPTimeout`."""


class HTTPTimeout(HTTPError, TimeoutError):
    """The request did not complete within its ``timeout``."""


class HTTPStatusError(HTTPError):
    """Raised by :meth:`Response.raise_for_status` for a non-2xx status.

    Attributes: ``status_code``, ``url`` (the full request URL), ``method``
    and ``response``. The message shows the URL without its query string.
    """

    def __init__(self, message: str, response: "Response") -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.url = response.url
        self.method = response.method


# ---------------------------------------------------------------------------
# Headers and responses
# ---------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued HTTP headers (read-only).

    ``headers["content-type"]`` returns the value (several values of the same
    header are joined with ``", "``); :meth:`get_list` returns them
    separately and :meth:`multi_items` gives every ``(name, value)`` pair in
    order. ``repr()`` lists header names only, never values.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else [tuple(p) for p in items]
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError("headers must be (name, value) pairs")
            name, value = str(pair[0]), str(pair[1])
            self._items.append((name, value))
            self._index.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower()) if isinstance(name, str) else None
        if values is None:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len(self._index)

    def get_list(self, name: str) -> list[str]:
        """Every value of header ``name``, in order (``[]`` if absent)."""
        return list(self._index.get(name.lower(), ()))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, in order, duplicates included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"<Headers: {', '.join(self)}>"


class Response:
    """An HTTP response.

    Attributes: ``status_code`` (int), ``headers`` (:class:`Headers`),
    ``content`` (bytes), ``url`` and ``method`` (of the request).
    """

    __slots__ = ("status_code", "headers", "content", "url", "method")

    def __init__(
        self,
        status_code: int,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] = (),
        content: bytes = b"",
        *,
        url: str = "",
        method: str = "GET",
    ) -> None:
        self.status_code = int(status_code)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.content = bytes(content)
        self.url = url
        self.method = method

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>".replace(" ]", "]")

    @property
    def reason_phrase(self) -> str:
        """The standard reason phrase of the status (``"Not Found"``), or ``""``."""
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300

    @property
    def encoding(self) -> str:
        """The charset of ``Content-Type`` if it names a known codec, else ``"utf-8"``."""
        match = _CHARSET.search(self.headers.get("content-type", ""))
        if match:
            try:
                return codecs.lookup(match.group(1)).name
            except LookupError:
                pass
        return "utf-8"

    @property
    def text(self) -> str:
        """The body decoded with :attr:`encoding` (undecodable bytes are replaced)."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        :raises ValueError: (:class:`json.JSONDecodeError`) if it is not JSON.
        """
        return _json.loads(self.content)

    def raise_for_status(self) -> "Response":
        """Raise :class:`HTTPStatusError` unless the status is 2xx; returns the response."""
        if not self.is_success:
            reason = f" {self.reason_phrase}" if self.reason_phrase else ""
            raise HTTPStatusError(
                f"HTTP {self.status_code}{reason} for {self.method} {redact_url(self.url)}", self
            )
        return self


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    timeout: float

    @property
    def label(self) -> str:
        return f"{self.method} {redact_url(self.url)}"


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``scheme://host[:port]/path`` of ``url``: no credentials, query or
    fragment (and no path either unless ``keep_path``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path if keep_path else "", "", ""))


def _check_url(url: object) -> urllib.parse.SplitResult:
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("invalid URL: it contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ValueError(f"invalid URL {redact_url(url)!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise ValueError(f"unsupported URL scheme {shown!r}: only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise ValueError(f"invalid URL {redact_url(url)!r}: no host")
    return parts


def _param_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"query parameter values must be strings or numbers, got {type(value).__name__}")


def _encode_params(params: object) -> str:
    pairs: list[tuple[str, str]] = []
    items = params.items() if isinstance(params, Mapping) else params
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError("params must be a mapping or a list of (name, value) pairs")
    for item in items:
        name, value = item
        if isinstance(value, (list, tuple)):
            pairs.extend((str(name), _param_value(v)) for v in value)
        else:
            pairs.append((str(name), _param_value(value)))
    return urllib.parse.urlencode(pairs)


def _check_headers(headers: object) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError("headers must be a mapping or a list of (name, value) pairs")
    result: list[tuple[str, str]] = []
    for item in items:
        name, value = item
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError(f"header {name!r}: value must be a string, got {type(value).__name__}")
        value = str(value)
        if _FORBIDDEN_VALUE_CHARS.search(value):
            # The value itself is not shown: it may be a credential.
            raise ValueError(f"header {name!r}: value contains a line break or NUL character")
        result.append((name, value))
    return result


def _has_header(headers: list[tuple[str, str]], name: str) -> bool:
    wanted = name.lower()
    return any(n.lower() == wanted for n, _ in headers)


def _prepare(
    method: object,
    url: object,
    *,
    params: object,
    headers: object,
    json: object,
    data: object,
    timeout: object,
    json_given: bool,
) -> _Request:
    if not isinstance(method, str) or not _TOKEN.fullmatch(method.strip()):
        raise ValueError(f"invalid HTTP method {method!r}")
    method = method.strip().upper()
    parts = _check_url(url)
    assert isinstance(url, str)
    if params is not None:
        query = _encode_params(params)
        if query:
            joined = f"{parts.query}&{query}" if parts.query else query
            url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))
    header_list = _check_headers(headers)
    body: bytes | None = None
    content_type: str | None = None
    if json_given and data is not None:
        raise ValueError("pass either json= or data=, not both")
    if json_given:
        try:
            body = _json.dumps(json, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"json= body is not JSON-serializable: {exc}") from None
        content_type = "application/json"
    elif data is not None:
        if isinstance(data, (bytes, bytearray, memoryview)):
            body, content_type = bytes(data), "application/octet-stream"
        elif isinstance(data, str):
            body, content_type = data.encode("utf-8"), "text/plain; charset=utf-8"
        elif isinstance(data, Mapping):
            body = _encode_params(data).encode("ascii")
            content_type = "application/x-www-form-urlencoded"
        else:
            raise TypeError(f"data= must be bytes, str or a mapping (form fields), got {type(data).__name__}")
    if content_type is not None and not _has_header(header_list, "content-type"):
        header_list.append(("Content-Type", content_type))
    traceparent = current_traceparent()
    if traceparent is not None and not _has_header(header_list, "traceparent"):
        # W3C trace context: the called service continues the platform's trace.
        header_list.append(("traceparent", traceparent))
    if not _has_header(header_list, "user-agent"):
        from . import __version__

        header_list.append(("User-Agent", f"tocsin-playbook/{__version__}"))
    seconds = parse_duration(timeout, field="http timeout")
    return _Request(method, url, header_list, body, seconds)


async def request(
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    json: Any = None,
    data: bytes | str | Mapping[str, Any] | None = None,
    timeout: float | str = DEFAULT_TIMEOUT,
) -> Response:
    """Send an HTTP request and return the :class:`Response`.

    :param method: ``GET``, ``POST``... (case-insensitive).
    :param url: an ``http://`` or ``https://`` URL.
    :param params: query parameters appended to the URL (a list value
        repeats the parameter).
    :param headers: request headers (a mapping or ``(name, value)`` pairs).
    :param json: a JSON body (sets ``Content-Type: application/json``).
        ``json=None`` sends no body.
    :param data: a raw body: ``bytes``, ``str`` (UTF-8) or a mapping sent as
        an URL-encoded form. Not together with ``json``.
    :param timeout: total time allowed, in seconds or as ``"10s"``.
    :raises ValueError: on an invalid method, URL (only http/https) or header.
    :raises TypeError: on a body or parameters of the wrong type.
    :raises HTTPTimeout: when ``timeout`` passes.
    :raises HTTPError: when no response could be obtained.
    """
    prepared = _prepare(
        method, url, params=params, headers=headers, json=json, data=data, timeout=timeout, json_given=json is not None
    )
    return await _send(prepared)


async def get(url: str, **kwargs: Any) -> Response:
    """``request("GET", url, ...)``."""
    return await request("GET", url, **kwargs)


async def post(url: str, **kwargs: Any) -> Response:
    """``request("POST", url, ...)``."""
    return await request("POST", url, **kwargs)


async def put(url: str, **kwargs: Any) -> Response:
    """``request("PUT", url, ...)``."""
    return await request("PUT", url, **kwargs)


async def patch(url: str, **kwargs: Any) -> Response:
    """``request("PATCH", url, ...)``."""
    return await request("PATCH", url, **kwargs)


async def delete(url: str, **kwargs: Any) -> Response:
    """``request("DELETE", url, ...)``."""
    return await request("DELETE", url, **kwargs)


# ---------------------------------------------------------------------------
# Transports
# ---------------------------------------------------------------------------

_UNSET: Any = object()
_httpx_module: Any = _UNSET


def _load_httpx() -> Any:
    """The ``httpx`` module if it is installed, else ``None`` (cached)."""
    global _httpx_module
    if _httpx_module is _UNSET:
        try:
            import httpx  # type: ignore[import-not-found]
        except ImportError:
            httpx = None
        _httpx_module = httpx
    return _httpx_module


async def _send(req: _Request) -> Response:
    from ._runtime import active_runtime  # local import: keeps `import tocsin` light

    started = time.monotonic()
    runtime = active_runtime()
    if runtime is not None and runtime.supports_http:
        transport, response = "platform", await _send_host(runtime, req)
    else:
        httpx = _load_httpx()
        if httpx is not None:
            transport, response = "httpx", await _send_httpx(httpx, req)
        else:
            transport, response = "urllib", await _send_stdlib(req)
    # Only the origin is logged: paths can carry credentials too (webhook URLs).
    _logger.debug(
        "%s %s -> %d (%d bytes in %.0f ms via %s)",
        req.method,
        redact_url(req.url, keep_path=False),
        response.status_code,
        len(response.content),
        (time.monotonic() - started) * 1000,
        transport,
    )
    return response


def _timeout_error(req: _Request, detail: str = "") -> HTTPTimeout:
    return HTTPTimeout(f"{req.label} timed out after {format_seconds(req.timeout)}{detail}")


async def _send_host(runtime: Any, req: _Request) -> Response:
    headers_json = _json.dumps([[name, value] for name, value in req.headers])
    try:
        async with asyncio.timeout(req.timeout + _HOST_GRACE_S) as scope:
            payload = await runtime.http_roundtrip(req.method, req.url, headers_json, req.body, req.timeout)
    except TimeoutError:
        if scope.expired():
            raise _timeout_error(req, " (no answer from the platform)") from None
        raise
    except Exception as exc:
        raise HTTPError(f"{req.label} failed: could not hand the request to the platform: {exc}") from None
    return _response_from_payload(req, payload)


def _response_from_payload(req: _Request, payload: Mapping[str, Any]) -> Response:
    error = payload.get("error")
    if error is not None:
        raise HTTPError(str(error))

    def protocol_error(problem: str) -> HTTPError:
        return HTTPError(f"{req.label} failed: invalid http_response from the platform: {problem}")

    status = payload.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise protocol_error(f"status {status!r}")
    raw_headers = payload.get("headers") or []
    if not isinstance(raw_headers, list) or not all(
        isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in raw_headers
    ):
        raise protocol_error("headers must be a list of [name, value] string pairs")
    body_b64 = payload.get("body_b64") or ""
    if not isinstance(body_b64, str):
        raise protocol_error("body_b64 must be a string")
    try:
        content = base64.b64decode(body_b64, validate=True)
    except (binascii.Error, ValueError):
        raise protocol_error("body_b64 is not valid base64") from None
    return Response(status, [(n, v) for n, v in raw_headers], content, url=req.url, method=req.method)


async def _send_httpx(httpx: Any, req: _Request) -> Response:
    try:
        async with asyncio.timeout(req.timeout):
            async with httpx.AsyncClient(follow_redirects=False, timeout=req.timeout) as client:
                response = await client.request(req.method, req.url, headers=req.headers, content=req.body)
    except (httpx.TimeoutException, TimeoutError):
        raise _timeout_error(req) from None
    except httpx.HTTPError as exc:
        raise HTTPError(f"{req.label} failed: {type(exc).__name__}: {exc}") from None
    return Response(
        response.status_code, response.headers.multi_items(), response.content, url=req.url, method=req.method
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Return 3xx responses instead of following them (like httpx)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _urllib_blocking(req: _Request) -> tuple[int, list[tuple[str, str]], bytes]:
    request = urllib.request.Request(req.url, data=req.body, method=req.method)
    for name, value in req.headers:
        request.add_header(name, value)
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=req.timeout) as response:
            return response.status, list(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        # A non-2xx (or unfollowed 3xx) status: a response, not a failure.
        with exc:
            body = exc.read() if exc.fp is not None else b""
            headers = list(exc.headers.items()) if exc.headers is not None else []
            return exc.code, headers, body


async def _send_stdlib(req: _Request) -> Response:
    try:
        async with asyncio.timeout(req.timeout):
            status, headers, content = await asyncio.to_thread(_urllib_blocking, req)
    except TimeoutError:
        # Either our deadline or the socket timeout in the worker thread.
        raise _timeout_error(req) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _timeout_error(req) from None
        raise HTTPError(f"{req.label} failed: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # connection reset, bad status line, TLS...
        raise HTTPError(f"{req.label} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # http.client.HTTPException and friends
        raise HTTPError(f"{req.label} failed: {type(exc).__name__}: {exc}") from None
    return Response(status, headers, content, url=req.url, method=req.method)
