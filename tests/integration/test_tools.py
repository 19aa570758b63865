"""The operator's commands of scripts/stack.py, on the test copy."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, Stack


def test_status_shows_health_and_queues(stack: Stack) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "--env-file", str(stack.env_file), "status"],
        capture_output=True, text=True, check=True, env=stack.process_env(),
    ).stdout
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    for service in ("producer", "consumer_one", "consumer_two", "consumer_three", "consumer_four", "db"):
        assert lines[service] == ["running", "healthy"], out
    assert lines["migrate"] == ["exited", "(0)", "-"]
    for queue in ("health_check", "insert_record", "delete_record", "read_database", "request_status"):
        assert lines[queue][1] == "1", out  # one consumer each
        assert lines[f"{queue}.dead"][1] == "0", out
