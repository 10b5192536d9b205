"""Fixtures for the integration client tests: each fake service started on
127.0.0.1 for one test (see ``fakes.py``)."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.dirname(os.path.dirname(HERE))
for path in (SDK_DIR, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from fakes import FakeAbuseIPDB, FakeFirewall, FakeMailGateway, FakeSlack, FakeVirusTotal  # noqa: E402


@pytest.fixture
def fake_vt():
    with FakeVirusTotal() as fake:
        yield fake


@pytest.fixture
def fake_abuseipdb():
    with FakeAbuseIPDB() as fake:
        yield fake


@pytest.fixture
def fake_gateway():
    with FakeMailGateway() as fake:
        yield fake


@pytest.fixture
def fake_firewall():
    with FakeFirewall() as fake:
        yield fake


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        yield fake
