"""Firewall client against FakeFirewall: idempotent blocks, lookups,
removal, validation and error mapping."""

from __future__ import annotations

import asyncio

import pytest

from tocsin.integrations import IntegrationError, RateLimited
from tocsin.integrations.firewall import Firewall


def run(coro):
    return asyncio.run(coro)


def test_block_sends_the_documented_body_and_idempotency_key(fake_firewall):
    client = Firewall(fake_firewall.token, fake_firewall.base_url)

    async def main():
        first = await client.block_ip("203.0.113.50", "brute force", 86400, idempotency_key="run-9:3")
        replay = await client.block_ip("203.0.113.50", "brute force", 86400, idempotency_key="run-9:3")
        return first, replay

    first, replay = run(main())
    assert first == replay
    assert first["id"] and first["value"] == "203.0.113.50" and first["ttl_seconds"] == 86400
    assert fake_firewall.blocked_values() == ["203.0.113.50"]  # the replay created nothing
    request = fake_firewall.requests[0]
    assert (request.method, request.path) == ("POST", "/api/v1/blocks")
    assert request.json == {"type": "ip", "value": "203.0.113.50", "reason": "brute force", "ttl_seconds": 86400}
    assert request.idempotency_key == "run-9:3"
    assert request.header("authorization") == f"Bearer {fake_firewall.token}"


def test_url_and_domain_blocks_and_values_are_normalized(fake_firewall):
    client = Firewall(fake_firewall.token, fake_firewall.base_url)

    async def main():
        return await asyncio.gather(
            client.block_url("https://login.contoso-verify.example/owa", "phishing"),
            client.block_domain("Contoso-Verify.Example.", "phishing"),
            client.block("ip", "198.51.100.0/24", "scanner net"),
        )

    url, domain, net = run(main())
    assert url["type"] == "url" and domain["value"] == "contoso-verify.example" and net["value"] == "198.51.100.0/24"
    assert all(r.idempotency_key is None for r in fake_firewall.requests)
    assert {r.json["ttl_seconds"] for r in fake_firewall.requests} == {None}


def test_find_blocks_and_unblock(fake_firewall):
    existing = fake_firewall.add_block("ip", "192.0.2.10")
    fake_firewall.add_block("ip", "192.0.2.11")
    client = Firewall(fake_firewall.token, fake_firewall.base_url)

    found = run(client.find_blocks("192.0.2.10"))
    assert found["count"] == 1 and found["blocks"][0]["id"] == existing
    assert fake_firewall.requests[-1].param("value") == "192.0.2.10"

    assert run(client.unblock(existing)) == {"id": existing, "removed": True}
    assert run(client.unblock(existing)) == {"id": existing, "removed": False}  # safe to repeat
    assert fake_firewall.requests[-1].method == "DELETE"
    assert run(client.find_blocks("192.0.2.10")) == {"blocks": [], "count": 0}


def test_invalid_blocks_are_refused_before_any_request(fake_firewall):
    client = Firewall(fake_firewall.token, fake_firewall.base_url)
    with pytest.raises(ValueError, match="block type"):
        run(client.block("host", "x", "r"))
    with pytest.raises(ValueError, match="not an IP"):
        run(client.block_ip("000.111.222.10", "r"))
    with pytest.raises(ValueError, match="refusing to block"):
        run(client.block_ip("0.0.0.0/0", "r"))
    with pytest.raises(ValueError, match="http"):
        run(client.block_url("javascript:alert(1)", "r"))
    with pytest.raises(ValueError, match="domain"):
        run(client.block_domain("a.example/path", "r"))
    with pytest.raises(ValueError, match="ttl_seconds"):
        run(client.block_ip("192.0.2.1", "r", ttl_seconds=0))
    with pytest.raises(ValueError, match="reason"):
        run(client.block_ip("192.0.2.1", " "))
    assert fake_firewall.requests == []


def test_auth_rate_limit_and_server_errors(fake_firewall):
    wrong = Firewall("wrong-token", fake_firewall.base_url)
    with pytest.raises(IntegrationError) as caught:
        run(wrong.block_ip("192.0.2.1", "r"))
    assert caught.value.status == 401 and "wrong-token" not in str(caught.value)

    client = Firewall(fake_firewall.token, fake_firewall.base_url)
    fake_firewall.fail_next(
        429, {"error": {"code": "rate_limited", "message": "too many changes"}}, {"Retry-After": "12"}
    )
    with pytest.raises(RateLimited) as limited:
        run(client.block_ip("192.0.2.1", "r", idempotency_key="k"))
    assert limited.value.retry_after == 12.0 and limited.value.code == "rate_limited"

    fake_firewall.fail_next(500, "internal error")
    with pytest.raises(IntegrationError) as caught:
        run(client.find_blocks("192.0.2.1"))
    assert (caught.value.status, caught.value.message) == (500, "internal error")

    fake_firewall.fail_next(404, "<html>nginx</html>")
    with pytest.raises(IntegrationError) as caught:
        run(client.unblock("blk-1"))
    assert caught.value.status == 404  # a 404 without not_found is not "already removed"

    fake_firewall.fail_next(201, {"type": "ip"})
    with pytest.raises(IntegrationError, match="no 'id'"):
        run(client.block_ip("192.0.2.1", "r"))
