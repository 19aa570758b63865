"""The commands of the README and the docs pages, run as written (only the host port is the test copy's)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import SystemCopy, unique_srn

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
INVENTORY = ROOT / "docs" / "inventory.md"
README_URL = "http://localhost:5000"


def commands_in(section: str, prefix: str, page: Path = README) -> list[str]:
    """Lines of the page section's bash and plain code blocks that start with `prefix`."""
    text = page.read_text(encoding="utf-8").split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    found, fence = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:]
        elif fence in ("", "bash") and line.removeprefix("$ ").startswith(prefix):
            found.append(line.removeprefix("$ "))
    return found


def shell_with_curl() -> None:
    """The examples are bash and curl lines: skip in one line without them; under CI, fail."""
    missing = [tool for tool in ("bash", "curl") if shutil.which(tool) is None]
    if missing:
        what = f"the documented examples need bash and curl; missing: {', '.join(missing)} (apt-get install)"
        if os.environ.get("CI"):
            pytest.fail(f"{what} (required because CI is set)")
        pytest.skip(what)


def run_as_written(command: str, stack: SystemCopy, sku: str = "PEN-BLUE") -> Any:
    """Run a documented command on the test copy; `sku` stands in for the example's, which
    a test copy that lives on between runs would already have."""
    shell_with_curl()
    command = command.replace(README_URL, stack.base_url).replace("PEN-BLUE", sku)
    result = subprocess.run(["bash", "-c", command],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, (command, result.stderr)
    return json.loads(result.stdout)


def test_readme_curl_examples(stack: SystemCopy) -> None:
    commands = commands_in("Using it", "curl ")
    assert len(commands) == 8, commands
    for srn in ("PES1UG21CS001", "PES1UG21CS002"):  # a clean start, so the examples answer as shown
        requests.get(f"{stack.base_url}/delete_record", params={"SRN": srn}, timeout=15)

    answers = [run_as_written(c, stack) for c in commands]
    health, insert_json, insert_form, read, page, update, delete, error = answers
    assert health == {"status": "ok", "message": "hello", "consumer": "consumer_one"}
    assert insert_json == {"record": {"Name": "Asha Rao", "SRN": "PES1UG21CS001", "Section": "A"}}
    assert insert_form == {"record": {"Name": "Ravi Kumar", "SRN": "PES1UG21CS002", "Section": "B"}}
    assert {"PES1UG21CS001", "PES1UG21CS002"} <= {r["SRN"] for r in read["records"]}
    assert read["count"] == len(read["records"])
    assert page["records"][0] == {"Name": "Ravi Kumar", "SRN": "PES1UG21CS002", "Section": "B"}
    assert page["count"] == 1 and "next_after" in page
    assert update == {"record": {"Name": "Ravi Kumar", "SRN": "PES1UG21CS002", "Section": "C"}}
    assert delete == {"deleted": {"Name": "Asha Rao", "SRN": "PES1UG21CS001", "Section": "A"}}
    assert error["error"] == "invalid_record"
    assert error["details"] == {"SRN": "required", "Section": "required"}


def test_readme_gateway_command(stack: SystemCopy) -> None:
    [command] = [c for c in commands_in("What `make up` does, by hand", "export RABBITMQ_HOST=", OPERATIONS)]
    inspect = command.removeprefix("export RABBITMQ_HOST=").strip("$()").replace(
        "rabbitmq_net", stack.values["RABBITMQ_NETWORK"])
    shell_with_curl()
    gateway = subprocess.run(["bash", "-c", inspect], capture_output=True, text=True, check=True)
    assert gateway.stdout.strip()
    producer_env = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Env}}", stack.container("producer")],
        capture_output=True, text=True, check=True).stdout
    assert f"RABBITMQ_HOST={gateway.stdout.strip()}" in json.loads(producer_env)


def test_readme_inventory_examples(stack: SystemCopy) -> None:
    commands = commands_in("Using it", "curl ", INVENTORY)
    assert len(commands) == 6, commands
    sku = unique_srn("PEN-")
    create, stock, order, too_many, items, orders = (run_as_written(c, stack, sku) for c in commands)
    assert create == {"item": {"SKU": sku, "Name": "Blue pen", "Quantity": 10}}
    assert stock == {"item": {"SKU": sku, "Name": "Blue pen", "Quantity": 15}}
    placed = order["order"]
    assert placed == {"OrderID": placed["OrderID"], "SKU": sku, "Quantity": 3, "Status": "placed"}
    assert too_many["error"] == "insufficient_stock"
    assert too_many["message"] == f"Only 12 of {sku} in stock; 100 asked for."
    assert {"SKU": sku, "Name": "Blue pen", "Quantity": 12} in items["items"]
    assert [o for o in orders["orders"] if o["SKU"] == sku] == [placed]
