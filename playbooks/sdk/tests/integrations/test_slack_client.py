"""Slack client against FakeSlack: chat.postMessage (ok:false errors on HTTP
200), incoming webhooks, notify() routing and rate limiting."""

from __future__ import annotations

import asyncio

import pytest

from tocsin.integrations import IntegrationError, NotConfigured, RateLimited
from tocsin.integrations.slack import Slack


def run(coro):
    return asyncio.run(coro)


def test_post_message_sends_bearer_token_and_body(fake_slack):
    client = Slack(fake_slack.token, fake_slack.base_url)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Phishing* contained"}}]

    result = run(client.post_message("#soc", "Phishing contained", blocks))

    assert result == {"ok": True, "channel": "C0123456789", "ts": "1707402914.000001"}
    [request] = fake_slack.requests
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert request.header("authorization") == f"Bearer {fake_slack.token}"
    assert request.json == {"channel": "#soc", "text": "Phishing contained", "blocks": blocks}
    assert fake_slack.posted == [
        {"via": "chat.postMessage", "channel": "#soc", "text": "Phishing contained", "blocks": blocks}
    ]


def test_ok_false_answers_are_errors_with_the_slack_code(fake_slack):
    client = Slack(fake_slack.token, fake_slack.base_url)
    with pytest.raises(IntegrationError) as caught:
        run(client.post_message("#nowhere", "hi"))
    assert (caught.value.status, caught.value.code) == (200, "channel_not_found")

    wrong = Slack("xoxb-wrong", fake_slack.base_url)
    with pytest.raises(IntegrationError) as caught:
        run(wrong.post_message("#soc", "hi"))
    assert caught.value.code == "invalid_auth" and "xoxb-wrong" not in str(caught.value)

    fake_slack.fail_next(
        200,
        {
            "ok": False,
            "error": "invalid_blocks",
            "response_metadata": {"messages": ["[ERROR] missing required field: text"]},
        },
    )
    with pytest.raises(IntegrationError, match="missing required field") as caught:
        run(client.post_message("#soc", "hi"))
    assert caught.value.code == "invalid_blocks"

    fake_slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
    with pytest.raises(RateLimited) as limited:
        run(client.post_message("#soc", "hi"))
    assert (limited.value.status, limited.value.code, limited.value.retry_after) == (429, "ratelimited", 1.0)
    assert fake_slack.posted == []


def test_post_webhook_and_its_plain_text_errors(fake_slack):
    client = Slack()
    assert run(client.post_webhook(fake_slack.webhook_url, "hello")) == {"ok": True}
    assert fake_slack.posted[-1] == {"via": "webhook", "channel": None, "text": "hello", "blocks": None}
    request = fake_slack.requests[-1]
    assert request.json == {"text": "hello"} and request.header("authorization") is None

    unknown = fake_slack.url + "/services/T00000000/B00000000/revoked-secret"
    with pytest.raises(IntegrationError) as caught:
        run(client.post_webhook(unknown, "hello"))
    assert (caught.value.status, caught.value.code) == (404, "no_service")
    assert "revoked-secret" not in str(caught.value)

    fake_slack.fail_next(429, "rate limited", {"Retry-After": "30"})
    with pytest.raises(RateLimited) as limited:
        run(client.post_webhook(fake_slack.webhook_url, "hello"))
    assert limited.value.retry_after == 30.0
    with pytest.raises(ValueError, match="webhook URL"):
        run(client.post_webhook("not a url", "hello"))


def test_bot_token_is_never_sent_to_the_webhook(fake_slack):
    client = Slack(fake_slack.token, fake_slack.base_url, webhook_url=fake_slack.webhook_url)
    assert run(client.notify("via webhook (no default channel)")) == {"ok": True, "via": "webhook"}
    assert fake_slack.requests[-1].header("authorization") is None


def test_notify_routes_by_configuration_from_secrets(fake_slack):
    bot = Slack.from_secrets(fake_slack.secrets(channel="#soc"))
    sent = run(bot.notify("bot message"))
    assert sent["via"] == "chat.postMessage" and sent["ts"]

    hook = Slack.from_secrets(fake_slack.secrets(webhook=True))
    assert run(hook.notify("hook message"))["via"] == "webhook"
    assert [p["text"] for p in fake_slack.posted] == ["bot message", "hook message"]

    token_only = Slack.from_secrets({"slack_bot_token": "xoxb-1"})
    with pytest.raises(NotConfigured, match="nowhere to notify"):
        run(token_only.notify("x"))
    with pytest.raises(NotConfigured, match="slack_bot_token"):
        Slack.from_secrets({"slack_channel": "#soc"})
    with pytest.raises(NotConfigured, match="bot token"):
        run(Slack(webhook_url=fake_slack.webhook_url).post_message("#soc", "x"))
    with pytest.raises(NotConfigured, match="webhook URL") as caught:
        Slack.from_secrets({"slack_webhook_url": "hooks.slack.com/services/T/B/leaky"})
    assert "leaky" not in str(caught.value)
