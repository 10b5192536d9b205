"""Test configuration for the example playbooks: make the SDK, the bundle
directory (so ``from examples import phishing`` works) and the integration
fakes importable without installing anything."""

from __future__ import annotations

import os
import sys

sys.dont_write_bytecode = True

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PLAYBOOKS_DIR = os.path.dirname(TESTS_DIR)
for path in (
    os.path.join(PLAYBOOKS_DIR, "sdk"),
    os.path.join(PLAYBOOKS_DIR, "sdk", "tests", "integrations"),
    PLAYBOOKS_DIR,
    TESTS_DIR,
):
    if path not in sys.path:
        sys.path.insert(0, path)
