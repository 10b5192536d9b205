"""Test configuration: make the SDK importable without installing it."""

from __future__ import annotations

import os
import sys

# Never litter the source tree (or temporary bundles) with __pycache__.
sys.dont_write_bytecode = True

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.dirname(TESTS_DIR)

for path in (SDK_DIR, TESTS_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)

# Re-exported for compatibility; test modules import them from sdk_paths.
from sdk_paths import DEMO_ALERTS, PLAYBOOKS_DIR, REPO_DIR  # noqa: E402,F401
