"""Paths used by the SDK tests.

Test modules import these from here rather than from ``conftest``: pytest
imports every ``conftest.py`` under the module name ``conftest`` (there are
several in this tree), so ``from conftest import ...`` is ambiguous.
"""

from __future__ import annotations

import os

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.dirname(TESTS_DIR)
PLAYBOOKS_DIR = os.path.dirname(SDK_DIR)
REPO_DIR = os.path.dirname(PLAYBOOKS_DIR)
DEMO_ALERTS = os.path.join(REPO_DIR, "deploy", "demo", "alerts.ndjson")
