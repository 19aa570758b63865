"""The OpenAPI document against the live system: schemathesis fuzzes every route."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ARTIFACTS, SystemCopy

# What the contract promises of every answer: never a 5xx, and always as documented.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(stack: SystemCopy) -> None:
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(cli), "run", f"{stack.base_url}/openapi.json", "--checks", ",".join(CHECKS),
         "--max-examples", "50", "--seed", "20261125", "--phases", "examples,coverage,fuzzing",
         # One worker: hypothesis' source cache is not thread-safe in this version.
         "--workers", "1", "--report", "junit", "--report-dir", str(ARTIFACTS / "schemathesis")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
