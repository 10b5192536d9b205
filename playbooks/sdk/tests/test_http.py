"""tocsin.http: the host transport (through the fake host) and the local
transports against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import tocsin
from fakehost import FakeHost, Harness, make_bundle, new_hash
from tocsin import _runtime, http
from tocsin.http import Headers, HTTPError, HTTPStatusError, HTTPTimeout, Response

# ---------------------------------------------------------------------------
# A real server
# ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def _handle(self):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, content_type, extra = 200, "application/json; charset=utf-8", []
        if parts.path == "/slow":
            time.sleep(1.0)
        if parts.path.startswith("/status/"):
            status = int(parts.path.rsplit("/", 1)[1])
        if parts.path == "/redirect":
            status, extra = 302, [("Location", "/echo")]
        if parts.path == "/bytes":
            data, content_type = bytes(range(256)), "application/octet-stream"
        elif parts.path == "/latin1":
            data, content_type = "café".encode("latin-1"), "text/plain; charset=ISO-8859-1"
        else:
            data = json.dumps({
                "method": self.command,
                "path": parts.path,
                "query": parse_qs(parts.query, keep_blank_values=True),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
            }).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Multi", "a")
        self.send_header("X-Multi", "b")
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def stdlib(monkeypatch):
    """Force the urllib transport (httpx may be installed)."""
    monkeypatch.setattr(http, "_load_httpx", lambda: None)
    assert _runtime.active_runtime() is None


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------------------
# Local (stdlib) transport
# ---------------------------------------------------------------------------


def test_get_with_params_and_response_api(server, stdlib):
    response = run(http.get(f"{server}/echo?fixed=1",
                            params={"q": "a b&c", "n": 2, "multi": ["x", "y"], "flag": True, "empty": None}))
    assert isinstance(response, Response) and response.status_code == 200 and response.is_success
    echoed = response.json()
    assert echoed["method"] == "GET" and echoed["path"] == "/echo"
    assert echoed["query"] == {"fixed": ["1"], "q": ["a b&c"], "n": ["2"], "multi": ["x", "y"], "flag": ["true"],
                               "empty": [""]}
    assert echoed["headers"]["user-agent"] == f"tocsin-playbook/{tocsin.__version__}"
    assert response.headers["content-type"] == response.headers["CONTENT-TYPE"] == "application/json; charset=utf-8"
    assert response.headers.get_list("x-multi") == ["a", "b"] and response.headers["X-Multi"] == "a, b"
    assert "x-multi" in response.headers and "nope" not in response.headers
    assert response.encoding == "utf-8" and json.loads(response.text) == echoed
    assert response.url == f"{server}/echo?fixed=1&q=a+b%26c&n=2&multi=x&multi=y&flag=true&empty="
    assert response.raise_for_status() is response
    assert repr(response) == "<Response [200 OK]>"


def test_post_json_and_headers(server, stdlib):
    response = run(http.post(f"{server}/items", json={"name": "café", "tags": [1, 2]},
                             headers={"X-Api-Key": "k-123", "Accept": "application/json"}))
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["body"].encode("latin-1") == '{"name":"café","tags":[1,2]}'.encode()
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["x-api-key"] == "k-123" and echoed["headers"]["accept"] == "application/json"


def test_other_methods_and_bodies(server, stdlib):
    put = run(http.put(f"{server}/raw", data=b"\x00\x01raw", headers={"Content-Type": "application/x-custom"})).json()
    assert (put["method"], put["body"], put["headers"]["content-type"]) == ("PUT", "\x00\x01raw", "application/x-custom")
    patch = run(http.patch(f"{server}/form", data={"a": "1", "b": ["x", "y"]})).json()
    assert patch["body"] == "a=1&b=x&b=y"
    assert patch["headers"]["content-type"] == "application/x-www-form-urlencoded"
    text = run(http.request("post", f"{server}/text", data="héllo")).json()
    assert text["body"].encode("latin-1").decode() == "héllo"
    assert text["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert run(http.delete(f"{server}/items/1")).json()["method"] == "DELETE"


def test_non_2xx_is_not_an_error_until_raise_for_status(server, stdlib):
    response = run(http.get(f"{server}/status/404", params={"api_key": "very-secret"}))
    assert response.status_code == 404 and not response.is_success and response.json()["path"] == "/status/404"
    with pytest.raises(HTTPStatusError) as info:
        response.raise_for_status()
    error = info.value
    assert isinstance(error, HTTPError)
    assert error.status_code == 404 and error.url == f"{server}/status/404?api_key=very-secret"
    assert error.response is response and error.method == "GET"
    assert str(error) == f"HTTP 404 Not Found for GET {server}/status/404"  # no query string: it may hold keys
    assert run(http.post(f"{server}/status/503")).status_code == 503


def test_redirects_are_not_followed(server, stdlib):
    response = run(http.get(f"{server}/redirect"))
    assert response.status_code == 302 and response.headers["location"] == "/echo"
    with pytest.raises(HTTPStatusError, match="HTTP 302 Found"):
        response.raise_for_status()


def test_binary_and_charset(server, stdlib):
    assert run(http.get(f"{server}/bytes")).content == bytes(range(256))
    latin = run(http.get(f"{server}/latin1"))
    assert latin.encoding == "iso8859-1" and latin.text == "café"


def test_timeout(server, stdlib):
    started = time.monotonic()
    with pytest.raises(HTTPTimeout) as info:
        run(http.get(f"{server}/slow", timeout=0.2))
    assert time.monotonic() - started < 0.9
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, HTTPError)
    assert str(info.value) == f"GET {server}/slow timed out after 0.2s"


def test_connection_failure(stdlib):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HTTPError, match=f"GET http://127.0.0.1:{port}/x failed: "):
        run(http.get(f"http://127.0.0.1:{port}/x?token=abc", timeout=2))


def test_logs_never_show_header_values_or_queries(server, stdlib, caplog):
    with caplog.at_level(logging.DEBUG, logger="tocsin.http"):
        run(http.get(f"{server}/hooks/T000/secret-path", params={"key": "query-secret"},
                     headers={"Authorization": "Bearer header-secret"}))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"GET {server} -> 200" in text
    for secret in ("header-secret", "query-secret", "secret-path"):
        assert secret not in text


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: http.get("ftp://example.org/file"), ValueError, "only http:// and https:// URLs"),
        (lambda: http.get("file:///etc/passwd"), ValueError, "unsupported URL scheme 'file'"),
        (lambda: http.get("example.org/path"), ValueError, "unsupported URL scheme 'none'"),
        (lambda: http.get("http:///nohost"), ValueError, "no host"),
        (lambda: http.get("http://exa mple.org/"), ValueError, "whitespace"),
        (lambda: http.get("http://example.org:99999/"), ValueError, "invalid URL"),
        (lambda: http.request("GE T", "http://example.org/"), ValueError, "invalid HTTP method"),
        (lambda: http.get("http://example.org/", headers={"X-Key": "a\r\nInjected: 1"}), ValueError,
         "header 'X-Key': value contains a line break"),
        (lambda: http.get("http://example.org/", headers={"Bad Name": "x"}), ValueError, "invalid header name"),
        (lambda: http.post("http://example.org/", json={}, data=b"x"), ValueError, "either json= or data="),
        (lambda: http.post("http://example.org/", json={"x": {1, 2}}), TypeError, "not JSON-serializable"),
        (lambda: http.post("http://example.org/", data=123), TypeError, "data= must be bytes, str or a mapping"),
        (lambda: http.get("http://example.org/", params={"x": object()}), TypeError, "query parameter values"),
        (lambda: http.get("http://example.org/", timeout=0), ValueError, "http timeout"),
    ],
)
def test_invalid_requests(call, error, message):
    with pytest.raises(error, match=message) as info:
        run(call())
    assert "a\r\nInjected" not in str(info.value)


def test_headers_and_response_objects():
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-Token", "t0p-s3cret")])
    assert len(headers) == 2 and list(headers) == ["Set-Cookie", "X-Token"]
    assert headers["SET-COOKIE"] == "a=1, b=2" and headers.get("missing") is None
    assert headers.multi_items()[1] == ("set-cookie", "b=2")
    assert "t0p-s3cret" not in repr(headers) and "X-Token" in repr(headers)
    assert Headers({"A": "1"})["a"] == "1"
    response = Response(599, [], b"not json", url="https://x.example/a?k=v", method="GET")
    assert response.reason_phrase == "" and repr(response) == "<Response [599]>"
    with pytest.raises(ValueError):
        response.json()
    with pytest.raises(HTTPStatusError, match=r"^HTTP 599 for GET https://x.example/a$"):
        response.raise_for_status()
    assert Response(200, [("Content-Type", "text/plain; charset=bogus")], b"ok").encoding == "utf-8"


def test_exports():
    from tocsin import http as exported

    assert exported is http and tocsin.HTTPError is HTTPError and tocsin.HTTPStatusError is HTTPStatusError
    assert issubclass(HTTPStatusError, HTTPError) and issubclass(HTTPTimeout, HTTPError)


# ---------------------------------------------------------------------------
# Host transport (inside the runner)
# ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_runtime(host, monkeypatch, body):
    """Run ``body(harness)`` with a runtime that is 'serving' (as in the runner)."""

    async def main():
        async with Harness(host) as h:
            monkeypatch.setattr(_runtime, "_ACTIVE", h.runtime)
            return await body(h)

    return asyncio.run(main())


def test_host_transport_request_and_response(monkeypatch):
    def respond(request_id, method, url, headers, body, timeout_s):
        payload = json.dumps({"seen": [method, url, body.decode()]}).encode()
        return {"status": 201, "headers": [["Content-Type", "application/json"], ["Set-Cookie", "a=1"],
                                           ["set-cookie", "b=2"]],
                "body_b64": _b64(payload), "error": None}

    host = FakeHost(http=respond)

    async def body(h):
        return await http.post("https://api.example/v1/items?x=1", params={"y": "2"},
                               headers={"Authorization": "Bearer t0k"}, json={"a": 1}, timeout="5s")

    response = with_runtime(host, monkeypatch, body)
    assert response.status_code == 201
    assert response.json() == {"seen": ["POST", "https://api.example/v1/items?x=1&y=2", '{"a":1}']}
    assert response.headers.get_list("SET-COOKIE") == ["a=1", "b=2"]
    (call,) = host.of("http_request")
    _, request_id, method, url, headers_json, sent_body, timeout_s = call
    assert len(request_id) == 32 and (method, url, sent_body, timeout_s) == (
        "POST", "https://api.example/v1/items?x=1&y=2", b'{"a":1}', 5.0)
    assert json.loads(headers_json) == [["Authorization", "Bearer t0k"], ["Content-Type", "application/json"],
                                        ["User-Agent", f"tocsin-playbook/{tocsin.__version__}"]]


def test_host_transport_bytes_both_ways(monkeypatch):
    received = []

    def respond(request_id, method, url, headers, body, timeout_s):
        received.append((method, body))
        return {"status": 200, "headers": [], "body_b64": _b64(bytes(range(255, -1, -1))), "error": None}

    async def body(h):
        put = await http.put("http://intranet.example/blob", data=b"\x00\x01\xfe\xff")
        get = await http.get("http://intranet.example/blob")
        return put, get

    put, get = with_runtime(FakeHost(http=respond), monkeypatch, body)
    assert received == [("PUT", b"\x00\x01\xfe\xff"), ("GET", None)]
    assert put.content == get.content == bytes(range(255, -1, -1)) and put.headers == {}


def test_host_transport_error(monkeypatch):
    def respond(request_id, method, url, headers, body, timeout_s):
        return {"status": 0, "headers": [], "body_b64": "", "error": "connect to api.example:443: connection refused"}

    async def body(h):
        with pytest.raises(HTTPError) as info:
            await http.get("https://api.example/")
        return info.value

    error = with_runtime(FakeHost(http=respond), monkeypatch, body)
    assert type(error) is HTTPError and str(error) == "connect to api.example:443: connection refused"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"status": 200, "headers": [], "body_b64": "***", "error": None}, "body_b64 is not valid base64"),
        ({"status": "200", "headers": [], "body_b64": "", "error": None}, "status '200'"),
        ({"status": 200, "headers": {"a": "b"}, "body_b64": "", "error": None}, "headers must be a list"),
    ],
)
def test_host_transport_invalid_response(monkeypatch, payload, message):
    async def body(h):
        with pytest.raises(HTTPError, match=message):
            await http.get("https://api.example/")

    with_runtime(FakeHost(http=lambda *a: payload), monkeypatch, body)


def test_host_transport_ignores_unknown_and_cancelled_requests(monkeypatch):
    host = FakeHost(http=lambda *a: None)  # never answers by itself

    async def body(h):
        h.send("http_response", request_id="nobody-waits", status=200, headers=[], body_b64="", error=None)
        task = asyncio.ensure_future(http.get("https://api.example/slow"))
        while not host.of("http_request"):
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        request_id = host.of("http_request")[0][1]
        h.send("http_response", request_id=request_id, status=200, headers=[], body_b64="", error=None)
        await asyncio.sleep(0.01)
        return dict(h.runtime._http_pending)

    assert with_runtime(host, monkeypatch, body) == {}
    assert [c for c in host.of("run_log") if c[2] == "error"] == []


def test_host_transport_gives_up_when_the_platform_never_answers(monkeypatch):
    monkeypatch.setattr(http, "_HOST_GRACE_S", 0.05)

    async def body(h):
        with pytest.raises(HTTPTimeout, match=r"GET https://api.example/ timed out after 0.05s \(no answer"):
            await http.get("https://api.example/?k=secret", timeout=0.05)
        return dict(h.runtime._http_pending)

    assert with_runtime(FakeHost(http=lambda *a: None), monkeypatch, body) == {}


def test_host_transport_from_another_event_loop(monkeypatch):
    def respond(request_id, method, url, headers, body, timeout_s):
        return {"status": 204, "headers": [], "body_b64": "", "error": None}

    async def body(h):
        # e.g. a library running its own loop in a worker thread
        return await asyncio.to_thread(asyncio.run, http.delete("https://api.example/item"))

    assert with_runtime(FakeHost(http=respond), monkeypatch, body).status_code == 204


def test_host_without_http_request_falls_back_to_local_transport(server, stdlib, monkeypatch):
    class OldHost(FakeHost):
        http_request = None

    async def body(h):
        return await http.get(f"{server}/echo")

    assert with_runtime(OldHost(), monkeypatch, body).json()["path"] == "/echo"


def test_http_inside_an_action_of_a_run(tmp_path, monkeypatch):
    bundle_dir = make_bundle(tmp_path, {"pb.py": '''
        from tocsin import playbook, action, http

        @action(idempotent=True)
        async def fetch(url):
            response = await http.get(url, headers={"Idempotency-Key": __import__("tocsin").idempotency_key()})
            return {"status": response.status_code, "body": response.json()}

        @playbook
        async def uses_http(alert, run):
            return await fetch("https://intel.example/ip/10.0.0.1")
    '''})

    def respond(request_id, method, url, headers, body, timeout_s):
        key = dict(headers)["Idempotency-Key"]
        return {"status": 200, "headers": [], "body_b64": _b64(json.dumps({"key": key}).encode()), "error": None}

    host = FakeHost(http=respond)

    async def body(h):
        return await h.wait_finished(h.start(bundle_dir, new_hash(), "uses_http", run_id="r-http"))

    finished = with_runtime(host, monkeypatch, body)
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"status": 200, "body": {"key": "r-http:0"}}
    assert [c[0] for c in host.calls if c[0] not in ("attach", "run_log")] == [
        "step_intent", "http_request", "step_result", "run_finished"]


def test_httpx_transport(server):
    pytest.importorskip("httpx")
    http._httpx_module = http._UNSET  # re-detect
    assert http._load_httpx() is not None
    response = run(http.get(f"{server}/status/404", params={"q": "1"}, headers={"X-A": "b"}))
    assert response.status_code == 404 and response.json()["query"] == {"q": ["1"]}
    assert response.json()["headers"]["x-a"] == "b" and response.headers.get_list("x-multi") == ["a", "b"]
    assert run(http.get(f"{server}/bytes")).content == bytes(range(256))
    assert run(http.get(f"{server}/redirect")).status_code == 302
    with pytest.raises(HTTPTimeout):
        run(http.get(f"{server}/slow", timeout=0.2))


def test_requests_carry_the_platform_trace_context(tmp_path, monkeypatch):
    """``traceparent`` of the action's span inside an action body, the run's span
    elsewhere in the run; a playbook's own header wins."""
    bundle_dir = make_bundle(tmp_path, {"pb.py": '''
        from tocsin import playbook, action, http

        @action()
        async def inside(url):
            await http.get(url)
            await http.get(url, headers={"traceparent": "mine"})
            return {}

        @playbook
        async def traced(alert, run):
            await inside("https://intel.example/a")
            await http.get("https://intel.example/b")
            return {}
    '''})
    action_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    run_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"

    def decide(run_id, seq, action, args_json, idempotent):
        return {"decision": "execute", "traceparent": action_tp}

    def respond(request_id, method, url, headers, body, timeout_s):
        return {"status": 200, "headers": [], "body_b64": "", "error": None}

    host = FakeHost(decide=decide, http=respond)

    async def body(h):
        return await h.wait_finished(
            h.start(bundle_dir, new_hash(), "traced", run_id="r-trace", traceparent=run_tp))

    finished = with_runtime(host, monkeypatch, body)
    assert finished["status"] == "succeeded", finished
    sent = [[v for n, v in json.loads(c[4]) if n.lower() == "traceparent"] for c in host.of("http_request")]
    assert sent == [[action_tp], ["mine"], [run_tp]]
