"""HTTP load from `wrk`, the bench's generator, or from bench/load.py's Python threads where wrk is absent.

wrk costs about 0.03 ms of CPU per request, the Python generator 1.3-2.5 ms:
on a 2-core machine the Python one takes a fifth of the machine from the
system it loads, so every figure says which generator made it. wrk is in
Debian and Ubuntu (`apt-get install wrk`) and Homebrew (`brew install wrk`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from bench.load import Run, inserts
from scripts.stack import ROOT

SCRIPT = ROOT / "bench" / "http.lua"
# wrk's own per-request timeout (its default, 2 s, is shorter than the system's answer deadline).
TIMEOUT = "30s"


def available() -> bool:
    return shutil.which("wrk") is not None


def generator() -> str:
    return "wrk" if available() else "python"


def load(base: str, clients: int, seconds: float, *, insert_prefix: str = "", path: str = "/livez",
         name: str = "") -> dict[str, Any]:
    """`clients` closed-loop connections for `seconds`: POST /insert_record with SRNs starting with
    `insert_prefix` (each answered 201), or else GET `path` (each answered 200).

    The row: requests, per_s, p50_ms, p99_ms, errors (answers not as expected and socket
    errors), and the generator that made it.
    """
    what = name or ("insert_record" if insert_prefix else f"GET {path}")
    if not available():
        if insert_prefix:
            row = inserts(base, what, clients, seconds, insert_prefix)
        else:
            row = Run(what, clients, seconds).go(
                lambda session, _: session.get(f"{base}{path}", timeout=30).status_code == 200).row()
        return {**row, "generator": "python"}
    args = ["insert", insert_prefix] if insert_prefix else ["get", path]
    out = subprocess.run(
        ["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
         "--timeout", TIMEOUT, "-s", str(SCRIPT), base, "--", *args],
        capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    return {"what": what, "clients": clients, "requests": figures["requests"],
            "per_s": round(figures["requests"] / figures["seconds"], 1),
            "p50_ms": round(figures["p50_us"] / 1000, 3), "p99_ms": round(figures["p99_us"] / 1000, 3),
            "errors": figures["unexpected"] + figures["socket_errors"], "generator": "wrk"}

