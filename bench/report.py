"""The bench's tables and its results file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.system import machine
from scripts.stack import ROOT, print_table

RESULTS = ROOT / "bench" / "results"


def show(rows: list[dict[str, Any]], columns: list[str], title: str = "") -> None:
    print()
    if title:
        print(title)
    print_table([columns, *([str(row.get(c, "")) for c in columns] for row in rows)])


def ratio(ours: float, theirs: float) -> float | str:
    return round(ours / theirs, 2) if theirs else ""


def judge(targets: list[dict[str, Any]]) -> None:
    """Fill in `met` from the limit at the end of each target's text ("... >= 2", "... <= 1.0", "== 0")."""
    for t in targets:
        limit = float(t["target"].rsplit(" ", 1)[1])
        value = t["ratio"]
        if not isinstance(value, (int, float)):
            t["met"] = "?"
            continue
        t["met"] = "yes" if (value >= limit if ">=" in t["target"] else
                             value <= limit if "<=" in t["target"] else value == limit) else "no"


def write(name: str, settings: dict[str, Any], **sections: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "settings": settings, **sections}, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return path
