"""AbuseIPDB API v2 client against FakeAbuseIPDB: the check request, result
normalization and verdicts, 401/422/429 errors."""

from __future__ import annotations

import asyncio

import pytest

from tocsin.integrations import IntegrationError, RateLimited
from tocsin.integrations.abuseipdb import AbuseIPDB


def run(coro):
    return asyncio.run(coro)


def test_check_sends_key_accept_and_parameters(fake_abuseipdb):
    fake_abuseipdb.add_ip("203.0.113.50", 100, total_reports=412, country="CN", isp="Example Cloud")
    client = AbuseIPDB(fake_abuseipdb.api_key, fake_abuseipdb.base_url)

    result = run(client.check("203.0.113.50", max_age_days=30))

    assert result == {
        "ip": "203.0.113.50",
        "abuse_confidence": 100,
        "total_reports": 412,
        "distinct_users": 50,
        "country": "CN",
        "isp": "Example Cloud",
        "usage_type": "Data Center/Web Hosting/Transit",
        "domain": "example.net",
        "is_tor": False,
        "is_whitelisted": False,
        "is_public": False,  # a documentation address
        "last_reported_at": "2024-02-08T14:35:12+00:00",
        "verdict": "malicious",
        "link": "https://www.abuseipdb.com/check/203.0.113.50",
    }
    [request] = fake_abuseipdb.requests
    assert (request.method, request.path) == ("GET", "/api/v2/check")
    assert request.param("ipAddress") == "203.0.113.50" and request.param("maxAgeInDays") == "30"
    assert request.header("key") == fake_abuseipdb.api_key
    assert request.header("accept") == "application/json"


def test_verdicts_follow_confidence_and_whitelisting(fake_abuseipdb):
    fake_abuseipdb.add_ip("198.51.100.1", 40, total_reports=3)
    fake_abuseipdb.add_ip("198.51.100.2", 90, total_reports=9, whitelisted=True)
    fake_abuseipdb.add_ip("2001:db8::1", 80, total_reports=20)
    client = AbuseIPDB(fake_abuseipdb.api_key, fake_abuseipdb.base_url)

    async def main():
        return await asyncio.gather(
            client.check("198.51.100.1"),
            client.check("198.51.100.2"),
            client.check("2001:db8::1"),
            client.check("192.0.2.200"),
        )

    suspicious, whitelisted, v6, unreported = run(main())
    assert suspicious["verdict"] == "suspicious"
    assert (whitelisted["verdict"], whitelisted["is_whitelisted"]) == ("clean", True)
    assert (v6["verdict"], v6["ip"]) == ("malicious", "2001:db8::1")
    assert (unreported["verdict"], unreported["total_reports"], unreported["country"]) == ("clean", 0, None)
    assert {r.param("maxAgeInDays") for r in fake_abuseipdb.requests} == {"90"}

    lenient = AbuseIPDB(
        fake_abuseipdb.api_key, fake_abuseipdb.base_url, malicious_threshold=95, suspicious_threshold=50
    )
    assert run(lenient.check("2001:db8::1"))["verdict"] == "suspicious"


def test_errors_carry_status_detail_and_retry_after(fake_abuseipdb):
    wrong = AbuseIPDB("wrong-key", fake_abuseipdb.base_url)
    with pytest.raises(IntegrationError) as caught:
        run(wrong.check("198.51.100.1"))
    assert caught.value.status == 401
    assert caught.value.message.startswith("Authentication failed.")
    assert "wrong-key" not in str(caught.value)

    client = AbuseIPDB(fake_abuseipdb.api_key, fake_abuseipdb.base_url)
    fake_abuseipdb.fail_next(*fake_abuseipdb.daily_limit_exceeded(retry_after="3600"))
    with pytest.raises(RateLimited) as limited:
        run(client.check("198.51.100.1"))
    assert limited.value.retry_after == 3600.0
    assert "Daily rate limit of 1000 requests exceeded" in limited.value.message

    fake_abuseipdb.fail_next(
        422, {"errors": [{"detail": "The max age in days must be between 1 and 365.", "status": 422}]}
    )
    with pytest.raises(IntegrationError, match="max age in days") as caught:
        run(client.check("198.51.100.1"))
    assert caught.value.status == 422


def test_invalid_arguments_are_refused_before_any_request(fake_abuseipdb):
    client = AbuseIPDB(fake_abuseipdb.api_key, fake_abuseipdb.base_url)
    with pytest.raises(ValueError, match="not an IP address"):
        run(client.check("not-an-ip"))
    with pytest.raises(ValueError, match="between 1 and 365"):
        run(client.check("198.51.100.1", max_age_days=0))
    with pytest.raises(ValueError, match="threshold"):
        AbuseIPDB("k", malicious_threshold=20, suspicious_threshold=30)
    assert fake_abuseipdb.requests == []
