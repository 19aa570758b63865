"""docs/adding-a-service.md stays true: its code runs against today's modules, its names exist.

The whole walk-through on a copy of the system is costly; this checks, without
containers, that every piece it shows still fits the code it plugs into.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from common import accounts, declare, topology
from common.core import Handler, Message
from producer import producer

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "adding-a-service.md").read_text(encoding="utf-8")
NEW_NAMES = {"COUNT_RECORDS"}  # what the walk-through itself adds
# Where the walk-through's declaration goes: the end of KINDS.
KINDS_END = "\n)\nKIND = {kind.key: kind for kind in KINDS}\n"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE, re.MULTILINE | re.DOTALL)


def declaration() -> str:
    """The page's new entry of KINDS (`    Kind(...),`, over one line or more), as written."""
    [block] = [b for b in blocks("python") if "KINDS = (" in b]
    return block[block.index("    Kind("):block.rindex("\n)")] + "\n"


def handler_module() -> dict[str, Any]:
    """The walk-through's handler file, run with its new routing key filled in."""
    [source] = [b for b in blocks("python") if "HANDLER = Read(" in b]
    source = source.replace("from common.topology import COUNT_RECORDS", 'COUNT_RECORDS = "count_records"')
    namespace: dict[str, Any] = {"__name__": "consumer_six.counting"}
    exec(compile(source, "adding-a-service.md", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


class CountCursor:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def execute(self, query: str, params: Any = None) -> None:
        self.queries.append(query)

    def fetchone(self) -> tuple[int]:
        return (3,)


def test_every_name_the_python_imports_exists() -> None:
    for block in blocks("python"):
        if "import" not in block:
            continue
        for node in ast.walk(ast.parse(block.replace("...,", ""))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                module = importlib.import_module(node.module)
                names = [a.name for a in node.names if a.name not in NEW_NAMES]
                missing = [name for name in names if not hasattr(module, name)]
                assert missing == [], (node.module, missing)


def test_the_handler_counts_and_is_a_read_that_expires() -> None:
    module = handler_module()
    handler = module["HANDLER"]
    assert isinstance(handler, Handler)
    assert (handler.routing_key, handler.expires, handler.ledger, handler.uses_db) == (
        "count_records", True, False, True)
    assert handler.parse({}) == {}
    cursor = CountCursor()
    assert handler.handle(Message("r-1", {}), cursor) == {"count": 3}
    assert cursor.queries == ["SELECT COUNT(*) FROM students"]


def test_the_producer_and_topology_names_it_uses_exist() -> None:
    for name in ("_dispatch", "serves", "stamped", "declared_view", "_one_arg", "SUCCESS_STATUS",
                 "STATUS_OF_ERROR"):
        assert hasattr(producer, name), name
    for name in ("KINDS", "Kind", "ROUTING_KEYS", "work_queue_policy"):
        assert hasattr(topology, name), name
    assert hasattr(declare, "declare")
    assert "def _dispatch(routing_key: str, payload: dict[str, Any]) -> Response:" in (
        ROOT / "producer" / "producer.py").read_text(encoding="utf-8")


def test_the_declaration_fits_the_table_of_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's `Kind(...)`, evaluated in common/topology.py's names, is a read of consumer_six
    whose answer, account and documents follow from it."""
    names = {**vars(topology), "COUNT_RECORDS": "count_records"}
    kind = eval(declaration().strip().rstrip(","), names)  # noqa: S307 - our own docs
    assert kind == topology.Kind("count_records", "GET", "/count_records", "consumer_six",
                                 grants=(("SELECT", "students"),))
    assert kind.reply["properties"] == {"count": {"type": "integer", "minimum": 0}}
    assert producer.declared_view(kind) is not None, "step 3 says the declaration alone serves it"
    assert KINDS_END in (ROOT / "common" / "topology.py").read_text(encoding="utf-8")
    # Step 4: its account is made from it.
    monkeypatch.setattr(topology, "KINDS", (*topology.KINDS, kind))
    assert accounts.consumer_account("consumer_six").grants == (("SELECT", "students"),)


def test_the_compose_entry_and_the_dockerfile_stage_fit() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for anchor in ("x-consumer: &consumer", "x-build: &build", "x-build-args: &build-args"):
        assert anchor in compose, anchor
    for anchor in ("x-consumer-env: &consumer-env", "x-database-passwords: &database-passwords"):
        assert anchor in compose, anchor
    [entry] = [b for b in blocks("yaml") if "consumer_six:" in b]
    assert "<<: *consumer" in entry and "target: consumer" in entry and "<<: *consumer-env" in entry
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM base AS consumer" in dockerfile
    assert "ARG SERVICE" in dockerfile and "ARG MODULE" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'files = ["."]' in pyproject  # mypy checks a new folder without being told


def test_the_view_it_shows_is_the_producers() -> None:
    """Step 3's example of a view of its own is the producer's code as it is."""
    [view] = [b for b in blocks("python") if "@serves(" in b]
    assert view in (ROOT / "producer" / "producer.py").read_text(encoding="utf-8")


def test_the_files_it_points_at_exist() -> None:
    for path in ("common/topology.py", "common/consumer.py", "producer/producer.py", "producer/openapi.py",
                 "common/accounts.py", "tests/unit/test_kinds.py", "tests/unit/test_consumers.py",
                 "producer/asyncapi.py"):
        assert path in PAGE and (ROOT / path).exists(), path
