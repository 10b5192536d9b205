"""Shared helpers for the example-playbook tests (imported by name, not
through ``conftest``, which pytest may import under another module name)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from tocsin import Alert
from tocsin.testing import Result, run_playbook

PLAYBOOKS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_ALERTS = os.path.join(os.path.dirname(PLAYBOOKS_DIR), "deploy", "demo", "alerts.ndjson")

#: Secrets that enable an integration but point at a closed local port: any
#: call that is not stubbed fails fast instead of reaching a network.
UNREACHABLE = "http://127.0.0.1:9"
OFFLINE_SECRETS = {
    "virustotal_api_key": "vt-key",
    "virustotal_base_url": UNREACHABLE,
    "abuseipdb_api_key": "abuse-key",
    "abuseipdb_base_url": UNREACHABLE,
    "mailgateway_token": "seg-token",
    "mailgateway_base_url": UNREACHABLE,
    "firewall_token": "fw-token",
    "firewall_base_url": UNREACHABLE,
    "slack_bot_token": "xoxb-token",
    "slack_channel": "#soc",
    "slack_base_url": UNREACHABLE,
}


def demo_alert(line: int) -> Alert:
    """Line ``line`` (1-based) of deploy/demo/alerts.ndjson."""
    with open(DEMO_ALERTS, encoding="utf-8") as fh:
        lines = [raw for raw in fh if raw.strip()]
    data = json.loads(lines[line - 1])
    data.setdefault("id", f"demo-{line}")
    return Alert.from_dict(data)


def demo_lines() -> list[Alert]:
    with open(DEMO_ALERTS, encoding="utf-8") as fh:
        return [Alert.from_dict(json.loads(raw)) for raw in fh if raw.strip()]


def run(playbook: Any, alert: Any, **kwargs: Any) -> Result:
    """``run_playbook`` on a fresh event loop."""
    return asyncio.run(run_playbook(playbook, alert, **kwargs))


def call_names(result: Result) -> list[str]:
    return [c.name for c in result.calls]


def ops(result: Result) -> list[str]:
    return [change["op"] for change in result.case_changes]


def comments(result: Result) -> list[str]:
    return [change["text"] for change in result.case_changes if change["op"] == "comment"]
