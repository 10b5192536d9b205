"""Mail-gateway client against FakeMailGateway: search, idempotent
quarantine, URL blocklisting, bearer auth and error mapping."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from tocsin.integrations import IntegrationError, RateLimited
from tocsin.integrations.mailgateway import MailGateway

SENDER = "user.abc@mail.contoso.co.in"
SUBJECT = "[EXTERNAL] Attention"


def run(coro):
    return asyncio.run(coro)


def seed(fake):
    ids = [
        fake.add_message(SENDER, "test.User4@contoso.com", SUBJECT, "2020-09-06T12:01:10Z"),
        fake.add_message(SENDER, "testUser3@contoso.com", SUBJECT, "2020-09-06T12:01:11Z"),
        fake.add_message(SENDER, "old@contoso.com", SUBJECT, "2020-08-01T00:00:00Z"),
        fake.add_message(SENDER, "other@contoso.com", "Lunch?", "2020-09-06T12:00:00Z"),
        fake.add_message("someone@else.example", "x@contoso.com", SUBJECT, "2020-09-06T12:00:00Z"),
    ]
    return ids


def test_search_sends_the_documented_body_and_normalizes_messages(fake_gateway):
    ids = seed(fake_gateway)
    client = MailGateway(fake_gateway.token, fake_gateway.base_url)

    found = run(client.search_messages(SENDER.upper(), SUBJECT, datetime(2020, 8, 30, tzinfo=timezone.utc)))

    assert found["count"] == 2
    assert [m["id"] for m in found["messages"]] == ids[:2]
    assert found["messages"][0] == {
        "id": ids[0],
        "recipient": "test.User4@contoso.com",
        "subject": SUBJECT,
        "sender": SENDER,
        "received_at": "2020-09-06T12:01:10Z",
    }
    [request] = fake_gateway.requests
    assert (request.method, request.path) == ("POST", "/api/v1/messages/search")
    assert request.json == {"sender": SENDER.upper(), "subject": SUBJECT, "received_after": "2020-08-30T00:00:00Z"}
    assert request.header("authorization") == f"Bearer {fake_gateway.token}"
    assert request.header("content-type") == "application/json"

    # Optional fields are omitted, not sent as null.
    everything = run(client.search_messages(SENDER))
    assert everything["count"] == 4
    assert fake_gateway.requests[-1].json == {"sender": SENDER}


def test_quarantine_passes_the_idempotency_key_and_is_safe_to_repeat(fake_gateway):
    ids = seed(fake_gateway)
    client = MailGateway(fake_gateway.token, fake_gateway.base_url)

    async def main():
        first = await client.quarantine(ids[0], idempotency_key="run-1:7")
        again = await client.quarantine(ids[0], idempotency_key="run-1:7")
        return first, again

    first, again = run(main())
    assert first == again == {"id": ids[0], "status": "quarantined"}
    assert fake_gateway.quarantined == [ids[0]]
    requests = fake_gateway.requests_to("POST", f"/api/v1/messages/{ids[0]}/quarantine")
    assert [r.idempotency_key for r in requests] == ["run-1:7", "run-1:7"]

    with pytest.raises(IntegrationError) as caught:
        run(client.quarantine("msg-9999", idempotency_key="run-1:8"))
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    with pytest.raises(ValueError, match="idempotency_key"):
        run(client.quarantine(ids[0], idempotency_key=""))


def test_block_url_reports_whether_the_entry_is_new(fake_gateway):
    client = MailGateway(fake_gateway.token, fake_gateway.base_url)
    url = "https://login.contoso-verify.example/owa/auth/logon.aspx?replaceCurrent=1"

    async def main():
        return await client.block_url(url, "phishing"), await client.block_url(url, "phishing")

    created, existing = run(main())
    assert created["created"] is True and existing["created"] is False
    assert created["id"] == existing["id"] and created["url"] == url
    assert fake_gateway.requests[0].json == {"url": url, "reason": "phishing"}
    assert len(fake_gateway.blocklist) == 1


def test_auth_rate_limit_and_argument_errors(fake_gateway):
    wrong = MailGateway("wrong-token", fake_gateway.base_url)
    with pytest.raises(IntegrationError) as caught:
        run(wrong.search_messages(SENDER))
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert "wrong-token" not in str(caught.value)

    client = MailGateway(fake_gateway.token, fake_gateway.base_url)
    fake_gateway.fail_next(429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "5"})
    with pytest.raises(RateLimited) as limited:
        run(client.block_url("https://x.example/", "r"))
    assert (limited.value.retry_after, limited.value.message) == (5.0, "slow down")

    fake_gateway.fail_next(200, {"unexpected": True})
    with pytest.raises(IntegrationError, match="no 'messages' list"):
        run(client.search_messages(SENDER))

    requests_before = len(fake_gateway.requests)
    with pytest.raises(ValueError, match="sender"):
        run(client.search_messages(""))
    with pytest.raises(ValueError, match="RFC 3339"):
        run(client.search_messages(SENDER, received_after="yesterday"))
    assert len(fake_gateway.requests) == requests_before
