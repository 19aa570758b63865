"""The Postman collection, run by newman against the test copy, covers every route and passes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from producer.openapi import document
from tests.support import ARTIFACTS, ROOT, SystemCopy

POSTMAN = ROOT / "postman"
COLLECTION = POSTMAN / "microservices.postman_collection.json"
ENVIRONMENT = POSTMAN / "microservices.postman_environment.json"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"
TAIL_LINES = 120


def _requests(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every request of the collection, folders flattened, in run order."""
    found: list[dict[str, Any]] = []
    for item in items:
        if "item" in item:
            found += _requests(item["item"])
        else:
            found.append(item["request"])
    return found


def _path_of(request: dict[str, Any]) -> str:
    url = request["url"]
    raw = url if isinstance(url, str) else url["raw"]
    return "/" + raw.removeprefix("{{baseUrl}}").split("?", 1)[0].lstrip("/")


def _pattern(openapi_path: str) -> re.Pattern[str]:
    """An OpenAPI path as a regex: each `{parameter}` stands for any one path segment."""
    parts = re.split(r"(\{[^}/]+\})", openapi_path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def test_the_collection_covers_every_path_of_the_openapi_document() -> None:
    collection = json.loads(COLLECTION.read_text(encoding="utf-8"))
    calls = [(r["method"].lower(), _path_of(r)) for r in _requests(collection["item"])]
    missing = [
        f"{method.upper()} {path}"
        for path, operations in document()["paths"].items()
        for method in operations
        if not any(m == method and _pattern(path).fullmatch(p) for m, p in calls)
    ]
    assert not missing, f"no request in {COLLECTION.name} for: {', '.join(missing)}"


def _ensure_newman() -> None:
    if NEWMAN.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        what = ("the newman test needs npm: install Node.js with npm (apt-get install nodejs npm); "
                "newman itself is installed from postman/package.json")
        if os.environ.get("CI"):
            pytest.fail(f"{what} (required because CI is set)")
        pytest.skip(what)
    result = subprocess.run(
        [npm, "ci", "--prefix", str(POSTMAN), "--no-audit", "--no-fund"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "npm ci failed:\n" + "\n".join(output[-TAIL_LINES:])
    assert NEWMAN.exists(), f"npm ci did not install {NEWMAN.relative_to(ROOT)}"


def test_newman_runs_the_collection_without_a_failure(stack: SystemCopy) -> None:
    _ensure_newman()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(NEWMAN), "run", str(COLLECTION), "-e", str(ENVIRONMENT),
         "--env-var", f"baseUrl={stack.base_url}",
         "--env-var", f"apiToken={stack.values.get('API_TOKEN', '')}",  # needed only when it is set
         "--reporters", "cli,junit", "--reporter-junit-export", str(ARTIFACTS / "newman.xml"),
         "--color", "off"],  # the output is read in pytest's report, not on a terminal
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-TAIL_LINES:])
    assert result.returncode == 0, f"newman exited with {result.returncode}; the tail of its output:\n{tail}"
