"""Shared by every test: markers by folder, and the copy of the system in Docker.

The copy has its own compose project, RabbitMQ container, network, volumes and
host ports, so a user's running system is never touched; it is brought up
once, for the first test that asks for it, and deleted at the end, also when a
test fails. Set MSTEST_KEEP=1 to keep it between runs while developing (it is
reused when found).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ARTIFACTS, Stack, stack_values


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).parent.name  # tests/unit or tests/integration
        if kind in {"unit", "integration", "faults"}:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    keep = os.environ.get("MSTEST_KEEP") == "1"
    env_file = ARTIFACTS / "stack.env"
    values = stack_values(env_file if keep else ARTIFACTS / "does-not-exist")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    system = Stack(env_file, values)
    if not keep:
        system.stack("clean", check=False)  # leftovers of an interrupted run
    started = time.monotonic()
    system.stack("up")
    print(f"\ntest stack up in {time.monotonic() - started:.0f} s", file=sys.stderr)
    try:
        yield system
    finally:
        logs = subprocess.run(
            ["docker", "logs", values["RABBITMQ_CONTAINER"]], capture_output=True, text=True
        )
        (ARTIFACTS / "rabbitmq.log").write_text(logs.stdout + logs.stderr)
        (ARTIFACTS / "compose.log").write_text(system.compose("logs", "--no-color", "--timestamps"))
        if not keep:
            system.stack("clean")
            env_file.unlink(missing_ok=True)


@pytest.fixture
def api(stack: Stack) -> Callable[..., requests.Response]:
    session = requests.Session()

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return session.request(method, stack.base_url + path, **kwargs)

    return call


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault tests' tables, together, and kept for the README."""
    from tests.faults.load import OTHER_REPORTS, TABLES, Table

    if not TABLES and not OTHER_REPORTS:
        return
    load_table = [Table.HEADER + "".join("\n" + t.row() for t in TABLES)] if TABLES else []
    text = "\n\n".join([*load_table, *OTHER_REPORTS])
    terminalreporter.write_sep("=", "fault injection: what became of every request")
    terminalreporter.write_line(text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "faults.md").write_text(text + "\n")
