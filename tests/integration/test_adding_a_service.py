"""docs/adding-a-service.md, followed on a throwaway copy of the repository, ends with an answering service.

The unit test of the same name checks the page's pieces against the code without
containers. This one does what the page says, step by step, in a copy of the
source tree (never in this checkout): it takes the code from the page's own
blocks, puts each where the page says, brings that copy up with `make up`'s
script and asks the new route. A step that no longer fits the code fails here,
named, so the page is corrected with the code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scripts.copies import Copy, copy_values, throwaway_copy
from tests.support import ARTIFACTS, PROJECT, ROOT, json_of, unique_srn, wait_until
from tests.unit.test_adding_a_service import KINDS_END, PAGE, blocks, declaration  # the page, read one way

# Not part of a user's clone, or rebuilt by the tools: left out of the copy.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "node_modules", "artifacts", "__pycache__",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".env")


def block(language: str, containing: str) -> str:
    """The page's one code block in `language` that contains `containing`."""
    found = [b for b in blocks(language) if containing in b]
    assert len(found) == 1, f"the page has {len(found)} {language} blocks with {containing!r}"
    return found[0]


def edit(path: Path, old: str, new: str, step: str) -> None:
    """Replace the one `old` in `path` with `new`: the place the page's step names must exist."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{step}: {old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def follow_the_page(tree: Path) -> None:
    """Steps 1 to 5 of the page, in `tree`, with the page's own code (step 3 has none)."""
    # 1. The routing key, and its declaration at the end of KINDS.
    assert 'COUNT_RECORDS = "count_records"' in block("python", "KINDS = (")
    edit(tree / "common" / "topology.py", 'READ_ORDERS = "read_orders"\n',
         'READ_ORDERS = "read_orders"\nCOUNT_RECORDS = "count_records"\n', "1. the routing key")
    edit(tree / "common" / "topology.py", KINDS_END, "\n" + declaration() + KINDS_END[1:],
         "1. the declaration")
    # 2. The handler: a folder with an empty __init__.py and the page's file.
    (tree / "consumer_six").mkdir()
    (tree / "consumer_six" / "__init__.py").write_text("")
    (tree / "consumer_six" / "counting.py").write_text(block("python", "HANDLER = Read("))
    # 3. The route: nothing to write, the declaration makes it.
    assert "## 3. The route: nothing to write" in PAGE, "3. the route"
    # 4. Its accounts: nothing to write, they are made from the declaration.
    assert "## 4. Its accounts: nothing to write" in PAGE, "4. the accounts"
    # 5. The compose entry, among the services, and its password for migrate.
    edit(tree / "docker-compose.yml", "\nvolumes:\n", "\n" + block("yaml", "consumer_six:") + "\nvolumes:\n",
         "5. the compose entry")
    edit(tree / "docker-compose.yml", "\n\n# Each service logs in",
         "\n" + block("yaml", "CONSUMER_SIX_PASSWORD: ${").rstrip("\n") + "\n\n# Each service logs in",
         "5. the password for migrate")


@pytest.fixture
def copy_with_a_new_service(tmp_path: Path) -> Iterator[tuple[Path, Copy]]:
    tree = tmp_path / "clone"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED)
    follow_the_page(tree)
    values = copy_values(f"{PROJECT}newsvc", base={"REQUEST_TIMEOUT_S": "10"})
    with throwaway_copy(tree / "settings.env", values, logs_to=ARTIFACTS, log_prefix="new-service-",
                        label="copy with consumer_six", root=tree) as copy:
        yield tree, copy


def test_following_the_page_gives_a_service_that_answers(copy_with_a_new_service: tuple[Path, Copy]) -> None:
    tree, copy = copy_with_a_new_service
    base = f"http://127.0.0.1:{copy.values['PRODUCER_PORT']}"
    # 7. Run it: the page's curl, before and after a record is stored.
    assert "curl http://localhost:5000/count_records" in PAGE
    counted = requests.get(f"{base}/count_records", timeout=15)
    assert (counted.status_code, json_of(counted)) == (200, {"count": 0})
    srn = unique_srn("N")
    record = {"Name": "New", "SRN": srn, "Section": "A"}
    stored = requests.post(f"{base}/insert_record", json=record, timeout=15)
    assert stored.status_code == 201, stored.text
    counted = requests.get(f"{base}/count_records", timeout=15)
    assert (counted.status_code, json_of(counted)) == (200, {"count": 1})
    # The documents follow the declaration by themselves: its route, and its channel on the bus.
    assert "/count_records" in requests.get(f"{base}/openapi.json", timeout=15).json()["paths"]
    channels = requests.get(f"{base}/asyncapi.json", timeout=15).json()["channels"]
    assert channels["count_records"]["address"] == "count_records"
    # `make status`: the queue with its consumer, and its binding from the exchange.
    def status_with_the_queue_idle() -> str:
        status = subprocess.run(
            [sys.executable, str(tree / "scripts" / "stack.py"), "--env-file", str(copy.env_file), "status"],
            env=copy.process_env(), capture_output=True, text=True, timeout=120, check=True).stdout
        assert re.search(r"^\s*count_records\s+0\s+1\b", status, re.MULTILINE), status
        return status

    # A quorum queue's message count is the one of its last tick (every 5 s): the count just
    # answered can be listed for a few seconds after its acknowledgement; a message that
    # stays fails the test all the same.
    status = wait_until(status_with_the_queue_idle, timeout=20, interval=1)
    assert re.search(r"microservices\s+count_records\s+count_records", status), status
