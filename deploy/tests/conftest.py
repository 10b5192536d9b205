"""Fixtures for the deployment tests; the helpers live in deploy_support.py (a module name of
its own, so these tests can share a pytest run with other suites' conftest files)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from deploy_support import COMPOSE_FILE, MULTIPOOL_VALUES, Rendered, load_values, render


@pytest.fixture(scope="session")
def default_render() -> Rendered:
    return render()


@pytest.fixture(scope="session")
def multipool_values() -> dict[str, Any]:
    return load_values(MULTIPOOL_VALUES)


@pytest.fixture(scope="session")
def multipool_render(multipool_values: dict[str, Any]) -> Rendered:
    return render(multipool_values)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())
