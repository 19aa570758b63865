"""Shared by every test: markers by folder, and the copy of the system in Docker.

The copy has its own compose project, RabbitMQ container, network, volumes and
host ports, so a user's running system is never touched; it is brought up
once, for the first test that asks for it, and deleted at the end, also when a
test fails. Set MSTEST_KEEP=1 to keep it between runs while developing (it is
reused when found).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ARTIFACTS, PROJECT, SystemCopy, copy_of_the_system


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).parent.name  # tests/unit or tests/integration
        if kind in {"unit", "integration", "faults", "cluster", "chaos"}:
            item.add_marker(getattr(pytest.mark, kind))


# The database server each copy ran on, for the summary: CI runs the suite on MySQL and on MariaDB.
DATABASES: list[str] = []


@pytest.fixture(scope="session")
def stack() -> Iterator[SystemCopy]:
    with contextlib.contextmanager(copy_of_the_system)("stack", PROJECT) as system:
        [[version, comment]] = system.sql("SELECT VERSION(), @@version_comment")
        DATABASES.append(f"{version} ({comment})")
        yield system


@pytest.fixture
def api(stack: SystemCopy) -> Callable[..., requests.Response]:
    session = requests.Session()

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return session.request(method, stack.base_url + path, **kwargs)

    return call


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The database the copy ran on; the chaos run's and the fault tests' tables, kept for the docs."""
    from tests.chaos.invariants import REPORTS as CHAOS_REPORTS
    from tests.faults.load import OTHER_REPORTS, TABLES, Table

    for database in DATABASES:
        terminalreporter.write_line(f"database server of the test copy: {database}")
    if CHAOS_REPORTS:
        terminalreporter.write_sep("=", "chaos: what the clients were told against what the system holds")
        terminalreporter.write_line("\n".join(CHAOS_REPORTS))
    if not TABLES and not OTHER_REPORTS:
        return
    load_table = [Table.HEADER + "".join("\n" + t.row() for t in TABLES)] if TABLES else []
    text = "\n\n".join([*load_table, *OTHER_REPORTS])
    terminalreporter.write_sep("=", "fault injection: what became of every request")
    terminalreporter.write_line(text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "faults.md").write_text(text + "\n")
