"""Behaviour shared by every integration client: errors, secrets, base URLs,
Retry-After parsing and credential redaction."""

from __future__ import annotations

import asyncio
import socket
from email.utils import formatdate

import pytest

from tocsin import Run
from tocsin.integrations import IntegrationError, NotConfigured, RateLimited, optional, read_secret
from tocsin.integrations._base import header, parse_retry_after
from tocsin.integrations.abuseipdb import AbuseIPDB
from tocsin.integrations.firewall import Firewall
from tocsin.integrations.mailgateway import MailGateway
from tocsin.integrations.slack import Slack
from tocsin.integrations.virustotal import VirusTotal


def closed_port_url() -> str:
    """A 127.0.0.1 URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_integration_error_formats_and_serializes():
    error = RateLimited("virustotal", "Quota exceeded", status=429, code="QuotaExceededError", retry_after=30.0)
    assert isinstance(error, IntegrationError)
    assert str(error) == "virustotal: HTTP 429 [QuotaExceededError] Quota exceeded (retry after 30s)"
    assert error.retryable
    assert error.to_dict() == {
        "service": "virustotal",
        "status": 429,
        "code": "QuotaExceededError",
        "message": "Quota exceeded",
        "retry_after": 30.0,
    }
    assert IntegrationError("x", "boom", status=503).retryable
    assert IntegrationError("x", "no response").retryable
    assert not IntegrationError("x", "denied", status=403).retryable
    assert str(IntegrationError("firewall", "denied", status=403)) == "firewall: HTTP 403 denied"
    assert "Quota exceeded" in repr(error)


def test_read_secret_and_optional_work_with_run_secrets():
    secrets = Run(secrets={"virustotal_api_key": "  k-123  ", "firewall_token": "", "abuseipdb_api_key": "a"}).secrets
    assert read_secret(secrets, "virustotal_api_key", service="virustotal") == "k-123"
    assert read_secret(secrets, "nope", service="x", required=False) is None
    with pytest.raises(NotConfigured, match="secret 'firewall_token' is not set"):
        read_secret(secrets, "firewall_token", service="firewall")
    with pytest.raises(NotConfigured, match="must be a string"):
        read_secret({"k": 3}, "k", service="x")

    assert isinstance(optional(VirusTotal, secrets), VirusTotal)
    assert isinstance(optional(AbuseIPDB, secrets), AbuseIPDB)
    assert optional(Firewall, secrets) is None  # empty token counts as missing
    assert optional(MailGateway, secrets) is None
    assert optional(Slack, secrets) is None
    assert optional(VirusTotal, {}) is None
    # Plain dicts work too.
    assert optional(Slack, {"slack_webhook_url": "https://hooks.slack.com/services/T/B/x"}) is not None

    # A present credential with a broken companion secret is a loud error, not "off".
    with pytest.raises(NotConfigured, match="absolute http"):
        optional(VirusTotal, {"virustotal_api_key": "k", "virustotal_base_url": "ftp://vt"})
    with pytest.raises(NotConfigured, match="mailgateway_base_url"):
        MailGateway.from_secrets({"mailgateway_token": "t"})
    with pytest.raises(NotConfigured, match="virustotal_api_key"):
        VirusTotal.from_secrets(Run().secrets)


def test_clients_validate_configuration_and_never_show_credentials():
    client = VirusTotal("super-secret-key", "https://vt.example/api/v3/")
    assert client.base_url == "https://vt.example/api/v3"
    assert "super-secret-key" not in repr(client)
    assert VirusTotal("k").base_url == "https://www.virustotal.com/api/v3"
    assert AbuseIPDB("k").base_url == "https://api.abuseipdb.com/api/v2"
    assert Slack("xoxb-1").base_url == "https://slack.com/api"
    with pytest.raises(NotConfigured, match="no public default"):
        Firewall("t", None)  # type: ignore[arg-type]
    with pytest.raises(NotConfigured, match="query or fragment"):
        MailGateway("t", "https://seg.example/?x=1")
    with pytest.raises(ValueError, match="api_key"):
        VirusTotal("  ")
    with pytest.raises(ValueError, match="timeout"):
        Firewall("t", "https://fw.example", timeout=0)


def test_parse_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(formatdate(1_000_060, usegmt=True), now=1_000_000) == 60.0
    assert parse_retry_after(formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    assert header({"Retry-After": "3"}, "retry-after") == "3"
    assert header(None, "x") is None


def test_transport_errors_become_integration_errors_without_credentials():
    url = closed_port_url()

    async def main():
        vt = VirusTotal("vt-secret-key", url + "/api/v3")
        with pytest.raises(IntegrationError) as caught:
            await vt.ip_report("203.0.113.7")
        assert caught.value.status is None and caught.value.retryable
        assert "no response" in caught.value.message
        assert "vt-secret-key" not in str(caught.value)

        hook = f"{url}/services/T0/B0/webhook-secret-part"
        slack = Slack(webhook_url=hook)
        with pytest.raises(IntegrationError) as caught:
            await slack.notify("hello")
        text = str(caught.value)
        assert "webhook-secret-part" not in text and "[redacted]" in text
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    asyncio.run(main())


def test_invalid_credentials_are_refused_without_echoing_them():
    for build in (
        lambda: VirusTotal(b"bytes-secret"),  # type: ignore[arg-type]
        lambda: AbuseIPDB(b"bytes-secret"),  # type: ignore[arg-type]
        lambda: MailGateway(b"bytes-secret", "https://seg.example"),  # type: ignore[arg-type]
        lambda: Firewall(b"bytes-secret", "https://fw.example"),  # type: ignore[arg-type]
        lambda: Slack(b"bytes-secret"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError) as caught:
            build()
        assert "bytes-secret" not in str(caught.value) and "got bytes" in str(caught.value)
