"""Shared by unit and integration tests: every test is marked by its folder."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).parent.name  # tests/unit or tests/integration
        if kind in {"unit", "integration"}:
            item.add_marker(getattr(pytest.mark, kind))
