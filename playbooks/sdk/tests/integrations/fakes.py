"""Local fake servers for the bundled integrations.

Each fake is a :class:`http.server.ThreadingHTTPServer` bound to
``127.0.0.1`` on an ephemeral port, served from a daemon thread, and used as a
context manager::

    with FakeVirusTotal() as vt:
        vt.add_url("http://bad.example/", malicious=12)
        client = VirusTotal(vt.api_key, vt.base_url)
        ...
        assert vt.requests[0].path == "/api/v3/urls/aHR0cDovL2JhZC5leGFtcGxlLw"

The fakes answer like the real services (request and response shapes from
their public documentation, or for the generic mail gateway and firewall from
the contracts documented in ``tocsin.integrations.mailgateway`` / ``.firewall``),
check authentication headers, and record every request as a
:class:`Recorded` (method, path, query, headers, JSON body, idempotency key).

``fail_next(status, body, headers, times)`` scripts the next answers, e.g. a
429 with ``Retry-After``; scripted answers are recorded like any other.
Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "Recorded",
    "FakeService",
    "FakeVirusTotal",
    "FakeAbuseIPDB",
    "FakeMailGateway",
    "FakeFirewall",
    "FakeSlack",
    "Fakes",
]

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Recorded:
    """One request received by a fake."""

    method: str
    path: str  # decoded path, without the query string
    raw_path: str  # path as sent (percent-encoding preserved)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # parsed JSON body, or None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def _json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _text_reply(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}, text.encode()


class FakeService:
    """Base class: the HTTP server, request recording and scripted failures.

    Subclasses implement :meth:`handle`.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripted: list[Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> "FakeService":
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                request = Recorded(
                    method=self.command,
                    path=unquote(split.path),
                    raw_path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    json=parsed,
                )
                status, headers, payload = service._dispatch(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if payload:
                    self.wfile.write(payload)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        # A short poll interval keeps shutdown() (which waits for the next
        # poll) from adding half a second to every test.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server root)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running (use it as a context manager)")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting and inspection ---------------------------------------------------

    def fail_next(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None, *, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and ``body``
        (JSON unless it is a ``str``) instead of handling them."""
        if isinstance(body, str):
            reply = _text_reply(status, body, headers)
        else:
            reply = _json_reply(status, body if body is not None else {}, headers)
        with self._lock:
            self._scripted.extend([reply] * times)

    def requests_to(self, method: str, path_prefix: str = "") -> list[Recorded]:
        """Recorded requests with this method whose path starts with ``path_prefix``."""
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def _dispatch(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._scripted:
                return self._scripted.pop(0)
        try:
            return self.handle(request)
        except Exception as exc:  # a bug in a fake must show up as a 500, not a hang
            return _json_reply(500, {"error": {"code": "fake_error", "message": f"{type(exc).__name__}: {exc}"}})

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError


# ---------------------------------------------------------------------------
# VirusTotal API v3
# ---------------------------------------------------------------------------


def _stats(malicious: int = 0, suspicious: int = 0, harmless: int = 0, undetected: int = 0, timeout: int = 0) -> dict:
    return {
        "harmless": harmless,
        "malicious": malicious,
        "suspicious": suspicious,
        "undetected": undetected,
        "timeout": timeout,
    }


class FakeVirusTotal(FakeService):
    """VirusTotal API v3 under ``/api/v3``: ``GET /urls/{id}`` (unpadded
    URL-safe base64 or SHA-256 of the URL), ``/domains/{domain}``,
    ``/ip_addresses/{ip}``, ``/files/{md5|sha1|sha256}``. Requires the
    ``x-apikey`` header (401 ``WrongCredentialsError`` otherwise); unknown
    objects answer 404 ``NotFoundError``."""

    API_PREFIX = "/api/v3"

    def __init__(self, api_key: str = "vt-test-key-0123456789") -> None:
        super().__init__()
        self.api_key = api_key
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def base_url(self) -> str:
        return self.url + self.API_PREFIX

    def secrets(self) -> dict[str, str]:
        """Secrets that point :class:`tocsin.integrations.virustotal.VirusTotal` here."""
        return {"virustotal_api_key": self.api_key, "virustotal_base_url": self.base_url}

    def _add(self, collection: str, key: str, object_type: str, object_id: str, attributes: dict) -> None:
        data = {
            "id": object_id,
            "type": object_type,
            "links": {"self": f"https://www.virustotal.com/api/v3/{collection}/{object_id}"},
            "attributes": attributes,
        }
        self.objects[(collection, key)] = data

    def add_url(self, url: str, **stats: int) -> None:
        sha = hashlib.sha256(url.encode()).hexdigest()
        attributes = {
            "url": url,
            "last_analysis_stats": _stats(**stats),
            "last_analysis_date": 1700000000,
            "reputation": -stats.get("malicious", 0),
        }
        self._add("urls", url, "url", sha, attributes)

    def add_domain(self, domain: str, **stats: int) -> None:
        attributes = {"last_analysis_stats": _stats(**stats), "last_analysis_date": 1700000000, "reputation": 0}
        self._add("domains", domain.lower(), "domain", domain.lower(), attributes)

    def add_ip(self, ip: str, **stats: int) -> None:
        attributes = {"last_analysis_stats": _stats(**stats), "last_analysis_date": 1700000000, "reputation": 0}
        self._add("ip_addresses", ip, "ip_address", ip, attributes)

    def add_file(self, sha256: str, *, md5: str | None = None, sha1: str | None = None, **stats: int) -> None:
        attributes = {
            "sha256": sha256,
            "md5": md5,
            "sha1": sha1,
            "last_analysis_stats": _stats(**stats),
            "last_analysis_date": 1700000000,
            "reputation": 0,
        }
        for digest in filter(None, (sha256, md5, sha1)):
            self._add("files", digest.lower(), "file", sha256.lower(), attributes)

    @staticmethod
    def quota_exceeded(retry_after: str | None = "30") -> tuple[int, dict, dict]:
        """Arguments for :meth:`fail_next` reproducing VirusTotal's quota error."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return 429, {"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}}, headers

    def handle(self, request: Recorded) -> Reply:
        if request.header("x-apikey") != self.api_key:
            return _json_reply(401, {"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}})
        if request.method != "GET" or not request.path.startswith(self.API_PREFIX + "/"):
            return _json_reply(
                404, {"error": {"code": "NotFoundError", "message": f"Resource not found: {request.path}"}}
            )
        # Use the raw path: a URL id is base64 and may contain no "/" by design.
        parts = request.raw_path[len(self.API_PREFIX) + 1 :].split("/")
        if len(parts) != 2 or not parts[1]:
            return _json_reply(400, {"error": {"code": "BadRequestError", "message": "Bad request"}})
        collection, raw_id = parts[0], unquote(parts[1])
        if collection == "urls":
            key = self._decode_url_id(raw_id)
            if key is None:
                return _json_reply(
                    400, {"error": {"code": "InvalidArgumentError", "message": f"Invalid URL id {raw_id!r}"}}
                )
        elif collection in ("domains", "files"):
            key = raw_id.lower()
        elif collection == "ip_addresses":
            try:
                key = str(ipaddress.ip_address(raw_id))
            except ValueError:
                return _json_reply(
                    400, {"error": {"code": "InvalidArgumentError", "message": f"{raw_id} is not a valid IP"}}
                )
        else:
            return _json_reply(
                404, {"error": {"code": "NotFoundError", "message": f"Resource not found: {request.path}"}}
            )
        data = self.objects.get((collection, key))
        if data is None:
            return _json_reply(
                404, {"error": {"code": "NotFoundError", "message": f'{collection[:-1]} "{raw_id}" not found'}}
            )
        return _json_reply(200, {"data": data})

    def _decode_url_id(self, raw_id: str) -> str | None:
        if len(raw_id) == 64 and all(c in "0123456789abcdef" for c in raw_id):
            for (collection, key), data in self.objects.items():
                if collection == "urls" and data["id"] == raw_id:
                    return key
            return raw_id
        if "=" in raw_id or "+" in raw_id or "/" in raw_id:
            return None  # VirusTotal ids are unpadded URL-safe base64
        try:
            return base64.urlsafe_b64decode(raw_id + "=" * (-len(raw_id) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None


# ---------------------------------------------------------------------------
# AbuseIPDB API v2
# ---------------------------------------------------------------------------


class FakeAbuseIPDB(FakeService):
    """AbuseIPDB API v2 ``GET /api/v2/check``. Requires the ``Key`` header;
    validates ``ipAddress`` and ``maxAgeInDays`` (422 otherwise); any valid
    address not added with :meth:`add_ip` has no reports."""

    API_PREFIX = "/api/v2"

    def __init__(self, api_key: str = "abuseipdb-test-key-0123456789") -> None:
        super().__init__()
        self.api_key = api_key
        self.addresses: dict[str, dict[str, Any]] = {}

    @property
    def base_url(self) -> str:
        return self.url + self.API_PREFIX

    def secrets(self) -> dict[str, str]:
        return {"abuseipdb_api_key": self.api_key, "abuseipdb_base_url": self.base_url}

    def add_ip(
        self,
        ip: str,
        score: int,
        *,
        total_reports: int = 0,
        country: str | None = "NL",
        isp: str | None = "Example Hosting B.V.",
        whitelisted: bool | None = False,
        is_tor: bool = False,
    ) -> None:
        self.addresses[str(ipaddress.ip_address(ip))] = {
            "abuseConfidenceScore": score,
            "totalReports": total_reports,
            "numDistinctUsers": min(total_reports, 50),
            "countryCode": country,
            "isp": isp,
            "isWhitelisted": whitelisted,
            "isTor": is_tor,
            "lastReportedAt": "2024-02-08T14:35:12+00:00" if total_reports else None,
        }

    @staticmethod
    def daily_limit_exceeded(retry_after: str = "3600") -> tuple[int, dict, dict]:
        """Arguments for :meth:`fail_next` reproducing AbuseIPDB's quota error."""
        body = {
            "errors": [
                {
                    "detail": "Daily rate limit of 1000 requests exceeded for this endpoint. "
                    "See headers for additional details.",
                    "status": 429,
                }
            ]
        }
        headers = {
            "Retry-After": retry_after,
            "X-RateLimit-Limit": "1000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1700003600",
        }
        return 429, body, headers

    def handle(self, request: Recorded) -> Reply:
        if request.header("key") != self.api_key:
            return _json_reply(
                401,
                {
                    "errors": [
                        {
                            "detail": "Authentication failed. Your API key is either missing, incorrect, or revoked. "
                            "Note: The APIv2 key differs from the APIv1 key.",
                            "status": 401,
                        }
                    ]
                },
            )
        if request.method != "GET" or request.path != self.API_PREFIX + "/check":
            return _json_reply(404, {"errors": [{"detail": "Not Found.", "status": 404}]})
        raw_ip = request.param("ipAddress") or ""
        try:
            address = ipaddress.ip_address(raw_ip)
        except ValueError:
            return _json_reply(
                422,
                {
                    "errors": [
                        {
                            "detail": "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or "
                            "2001:4860:4860::8888).",
                            "status": 422,
                            "source": {"parameter": "ipAddress"},
                        }
                    ]
                },
            )
        max_age = request.param("maxAgeInDays") or "30"
        if not max_age.isdigit() or not 1 <= int(max_age) <= 365:
            return _json_reply(
                422,
                {
                    "errors": [
                        {
                            "detail": "The max age in days must be between 1 and 365.",
                            "status": 422,
                            "source": {"parameter": "maxAgeInDays"},
                        }
                    ]
                },
            )
        known = self.addresses.get(str(address), {})
        data = {
            "ipAddress": str(address),
            "isPublic": address.is_global,
            "ipVersion": address.version,
            "isWhitelisted": known.get("isWhitelisted", False),
            "abuseConfidenceScore": known.get("abuseConfidenceScore", 0),
            "countryCode": known.get("countryCode"),
            "usageType": "Data Center/Web Hosting/Transit" if known else None,
            "isp": known.get("isp"),
            "domain": "example.net" if known else None,
            "hostnames": [],
            "isTor": known.get("isTor", False),
            "totalReports": known.get("totalReports", 0),
            "numDistinctUsers": known.get("numDistinctUsers", 0),
            "lastReportedAt": known.get("lastReportedAt"),
        }
        return _json_reply(200, {"data": data})


# ---------------------------------------------------------------------------
# Generic secure e-mail gateway (contract in tocsin.integrations.mailgateway)
# ---------------------------------------------------------------------------


def _bearer(request: Recorded, token: str) -> Reply | None:
    if request.header("authorization") != f"Bearer {token}":
        return _json_reply(401, {"error": {"code": "unauthorized", "message": "missing or invalid bearer token"}})
    return None


class FakeMailGateway(FakeService):
    """The mail-gateway contract: message search, idempotent quarantine and
    a URL blocklist. :attr:`quarantined` lists the message ids actually
    quarantined (one entry per effect, so a replay does not add one)."""

    def __init__(self, token: str = "mailgateway-test-token-0123456789") -> None:
        super().__init__()
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.quarantined: list[str] = []
        self.blocklist: list[dict[str, Any]] = []
        self._replies_by_key: dict[str, Reply] = {}
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url

    def secrets(self) -> dict[str, str]:
        return {"mailgateway_token": self.token, "mailgateway_base_url": self.base_url}

    def add_message(
        self, sender: str, recipient: str, subject: str, received_at: str, message_id: str | None = None
    ) -> str:
        message_id = message_id or f"msg-{next(self._ids):04d}"
        self.messages.append(
            {"id": message_id, "recipient": recipient, "subject": subject, "sender": sender, "received_at": received_at}
        )
        return message_id

    def handle(self, request: Recorded) -> Reply:
        denied = _bearer(request, self.token)
        if denied:
            return denied
        path = request.path
        if request.method == "POST" and path == "/api/v1/messages/search":
            return self._search(request)
        if request.method == "POST" and path.startswith("/api/v1/messages/") and path.endswith("/quarantine"):
            message_id = path[len("/api/v1/messages/") : -len("/quarantine")]
            return self._quarantine(request, message_id)
        if request.method == "POST" and path == "/api/v1/blocklist/urls":
            return self._block_url(request)
        return _json_reply(404, {"error": {"code": "not_found", "message": f"no route for {request.method} {path}"}})

    def _search(self, request: Recorded) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("sender"), str) or not body["sender"]:
            return _json_reply(400, {"error": {"code": "invalid_request", "message": "'sender' is required"}})
        sender = body["sender"].lower()
        subject = body.get("subject")
        after = body.get("received_after")
        found = [
            m
            for m in self.messages
            if m["sender"].lower() == sender
            and (subject is None or m["subject"] == subject)
            and (after is None or m["received_at"] >= after)
        ]
        return _json_reply(200, {"messages": found})

    def _quarantine(self, request: Recorded, message_id: str) -> Reply:
        key = request.idempotency_key
        with self._lock:
            if key is not None and key in self._replies_by_key:
                return self._replies_by_key[key]
        if not any(m["id"] == message_id for m in self.messages):
            reply = _json_reply(404, {"error": {"code": "not_found", "message": f"message {message_id} not found"}})
        else:
            with self._lock:
                if message_id not in self.quarantined:
                    self.quarantined.append(message_id)
            reply = _json_reply(200, {"id": message_id, "status": "quarantined"})
        if key is not None:
            with self._lock:
                self._replies_by_key[key] = reply
        return reply

    def _block_url(self, request: Recorded) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not body.get("url") or not body.get("reason"):
            return _json_reply(
                400, {"error": {"code": "invalid_request", "message": "'url' and 'reason' are required"}}
            )
        for entry in self.blocklist:
            if entry["url"] == body["url"]:
                return _json_reply(200, entry)
        entry = {"id": f"bl-{next(self._ids):04d}", "url": body["url"], "reason": body["reason"]}
        self.blocklist.append(entry)
        return _json_reply(201, entry)


# ---------------------------------------------------------------------------
# Generic firewall (contract in tocsin.integrations.firewall)
# ---------------------------------------------------------------------------


class FakeFirewall(FakeService):
    """The firewall contract: idempotent block creation, removal and lookup.
    :attr:`blocks` maps block id -> block (the active blocks)."""

    def __init__(self, token: str = "firewall-test-token-0123456789") -> None:
        super().__init__()
        self.token = token
        self.blocks: dict[str, dict[str, Any]] = {}
        self._replies_by_key: dict[str, Reply] = {}
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url

    def secrets(self) -> dict[str, str]:
        return {"firewall_token": self.token, "firewall_base_url": self.base_url}

    def add_block(self, type: str, value: str, reason: str = "pre-existing") -> str:
        block_id = f"blk-{next(self._ids):04d}"
        self.blocks[block_id] = {
            "id": block_id,
            "type": type,
            "value": value,
            "reason": reason,
            "ttl_seconds": None,
            "created_at": "2024-01-01T00:00:00Z",
            "expires_at": None,
        }
        return block_id

    def blocked_values(self) -> list[str]:
        return [b["value"] for b in self.blocks.values()]

    def handle(self, request: Recorded) -> Reply:
        denied = _bearer(request, self.token)
        if denied:
            return denied
        path = request.path
        if path == "/api/v1/blocks" and request.method == "POST":
            return self._create(request)
        if path == "/api/v1/blocks" and request.method == "GET":
            value = request.param("value")
            found = [b for b in self.blocks.values() if value is None or b["value"] == value]
            return _json_reply(200, {"blocks": found})
        if path.startswith("/api/v1/blocks/") and request.method == "DELETE":
            block_id = path[len("/api/v1/blocks/") :]
            if self.blocks.pop(block_id, None) is None:
                return _json_reply(404, {"error": {"code": "not_found", "message": f"block {block_id} not found"}})
            return 204, {}, b""
        return _json_reply(404, {"error": {"code": "not_found", "message": f"no route for {request.method} {path}"}})

    def _create(self, request: Recorded) -> Reply:
        key = request.idempotency_key
        with self._lock:
            if key is not None and key in self._replies_by_key:
                status, headers, payload = self._replies_by_key[key]
                return (200 if status == 201 else status), headers, payload
        body = request.json
        if (
            not isinstance(body, dict)
            or body.get("type") not in ("ip", "url", "domain")
            or not isinstance(body.get("value"), str)
            or not body["value"]
            or not isinstance(body.get("reason"), str)
        ):
            return _json_reply(
                422,
                {"error": {"code": "invalid_block", "message": "type (ip|url|domain), value and reason are required"}},
            )
        ttl = body.get("ttl_seconds")
        block_id = f"blk-{next(self._ids):04d}"
        block = {
            "id": block_id,
            "type": body["type"],
            "value": body["value"],
            "reason": body["reason"],
            "ttl_seconds": ttl,
            "created_at": "2024-02-08T14:40:00Z",
            "expires_at": None if ttl is None else "2024-02-09T14:40:00Z",
        }
        with self._lock:
            self.blocks[block_id] = block
            reply = _json_reply(201, block)
            if key is not None:
                self._replies_by_key[key] = reply
        return reply


# ---------------------------------------------------------------------------
# Slack Web API (chat.postMessage) and incoming webhooks
# ---------------------------------------------------------------------------


class FakeSlack(FakeService):
    """Slack's ``POST /api/chat.postMessage`` (bearer bot token; failures are
    HTTP 200 ``{"ok": false, "error"}``) and incoming webhooks under
    ``/services/...`` (plain-text answers). :attr:`posted` lists the
    messages accepted, as ``{"via", "channel", "text", "blocks"}``."""

    WEBHOOK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"

    def __init__(
        self, token: str = "xoxb-test-0123456789", channels: tuple[str, ...] = ("#soc", "C0123456789")
    ) -> None:
        super().__init__()
        self.token = token
        self.channels = set(channels)
        self.posted: list[dict[str, Any]] = []
        self._ts = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url + "/api"

    @property
    def webhook_url(self) -> str:
        return self.url + self.WEBHOOK_PATH

    def secrets(self, *, channel: str = "#soc", webhook: bool = False) -> dict[str, str]:
        """Bot-token secrets (default) or, with ``webhook=True``, webhook ones."""
        if webhook:
            return {"slack_webhook_url": self.webhook_url}
        return {"slack_bot_token": self.token, "slack_channel": channel, "slack_base_url": self.base_url}

    def handle(self, request: Recorded) -> Reply:
        if request.path == "/api/chat.postMessage" and request.method == "POST":
            return self._post_message(request)
        if request.path.startswith("/services/") and request.method == "POST":
            return self._webhook(request)
        return _text_reply(404, "not_found")

    def _post_message(self, request: Recorded) -> Reply:
        auth = request.header("authorization")
        if auth is None:
            return _json_reply(200, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            return _json_reply(200, {"ok": False, "error": "invalid_auth"})
        body = request.json
        if not isinstance(body, dict):
            return _json_reply(200, {"ok": False, "error": "invalid_json"})
        channel = body.get("channel")
        if not channel:
            return _json_reply(200, {"ok": False, "error": "channel_not_found"})
        if channel not in self.channels:
            return _json_reply(200, {"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return _json_reply(200, {"ok": False, "error": "no_text"})
        ts = f"1707402914.{next(self._ts):06d}"
        self.posted.append(
            {"via": "chat.postMessage", "channel": channel, "text": body.get("text"), "blocks": body.get("blocks")}
        )
        channel_id = channel if channel.startswith("C") else "C0123456789"
        message = {"type": "message", "text": body.get("text"), "user": "U0BOT00001", "ts": ts}
        return _json_reply(200, {"ok": True, "channel": channel_id, "ts": ts, "message": message})

    def _webhook(self, request: Recorded) -> Reply:
        if request.path != self.WEBHOOK_PATH:
            return _text_reply(404, "no_service")
        body = request.json
        if not isinstance(body, dict):
            return _text_reply(400, "invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return _text_reply(400, "no_text")
        self.posted.append({"via": "webhook", "channel": None, "text": body.get("text"), "blocks": body.get("blocks")})
        return _text_reply(200, "ok")


@dataclass
class Fakes:
    """All five fakes started together (see :func:`all_fakes`)."""

    virustotal: FakeVirusTotal = field(default_factory=FakeVirusTotal)
    abuseipdb: FakeAbuseIPDB = field(default_factory=FakeAbuseIPDB)
    mailgateway: FakeMailGateway = field(default_factory=FakeMailGateway)
    firewall: FakeFirewall = field(default_factory=FakeFirewall)
    slack: FakeSlack = field(default_factory=FakeSlack)

    def __iter__(self):
        return iter((self.virustotal, self.abuseipdb, self.mailgateway, self.firewall, self.slack))

    def __enter__(self) -> "Fakes":
        started = []
        try:
            for fake in self:
                fake.__enter__()
                started.append(fake)
        except BaseException:
            for fake in reversed(started):
                fake.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for fake in self:
            fake.__exit__(*exc)

    def secrets(self) -> dict[str, str]:
        """Secrets configuring every integration against these fakes."""
        merged: dict[str, str] = {}
        for fake in self:
            merged.update(fake.secrets())
        return merged
