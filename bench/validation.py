"""What validating a body costs per request: the payload models, with no system around them.

    python bench/validation.py [--rounds 5] [--seconds 0.5]

Each case is one body the producer or a consumer cleans (valid, and invalid
with several bad fields). Rounds of the cases are interleaved and each is
reported as the median and range of the rounds, in microseconds per call.
Where pydantic (v2) or msgspec is installed, the same valid record through a
model of theirs with the same constraints is timed beside it, for comparison
(neither is a dependency; `pip install pydantic msgspec` into .venv to see them).
It runs the code of the checkout it is in, so the same command at an earlier
commit gives the figures before a change.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.messages import Invalid

try:  # the payload models (this checkout), or the hand-written functions before them
    from common.models import ITEM, ORDER, RECORD, UPDATE
    insert, update, item, order = RECORD.clean, UPDATE.clean, ITEM.clean, ORDER.clean
except ImportError:
    from common import inventory, messages
    insert, update = messages.record_from_json, messages.update_from_json  # type: ignore[attr-defined]
    item, order = inventory.clean_item, inventory.clean_order  # type: ignore[attr-defined]

GOOD_RECORD = {"Name": "  Asha Rao ", "SRN": " pes1ug21cs001", "Section": "A "}
BAD_RECORD = {"Name": "", "SRN": "no spaces allowed", "Section": 7, "Extra": 1}


def case(clean: Callable[[dict[str, Any]], Any], body: dict[str, Any]) -> Callable[[], None]:
    def call() -> None:
        with contextlib.suppress(Invalid):
            clean(body)
    return call


def candidates() -> dict[str, Callable[[], None]]:
    """The same valid record through pydantic's and msgspec's models, where installed."""
    found: dict[str, Callable[[], None]] = {}
    with contextlib.suppress(ImportError):
        pydantic: Any = importlib.import_module("pydantic")
        text = pydantic.StringConstraints
        record = pydantic.create_model(
            "Record", __config__=pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True),
            Name=(Annotated[str, text(min_length=1, max_length=100)], ...),
            SRN=(Annotated[str, text(pattern=r"^[A-Za-z0-9_-]{1,32}$", to_upper=True)], ...),
            Section=(Annotated[str, text(min_length=1, max_length=16)], ...))
        found[f"record, valid (pydantic {pydantic.VERSION}, for comparison)"] = (
            lambda: record.model_validate(GOOD_RECORD) and None)
    with contextlib.suppress(ImportError):
        msgspec: Any = importlib.import_module("msgspec")
        meta = msgspec.Meta
        struct = msgspec.defstruct("Record", [
            ("Name", Annotated[str, meta(min_length=1, max_length=100)]),
            ("SRN", Annotated[str, meta(pattern=r"^\s*[A-Za-z0-9_-]{1,32}\s*$")]),
            ("Section", Annotated[str, meta(min_length=1, max_length=16)]),
        ], forbid_unknown_fields=True)
        found[f"record, valid (msgspec {msgspec.__version__}, for comparison; no trimming)"] = (
            lambda: msgspec.convert(GOOD_RECORD, struct) and None)
    return found


def per_call_us(call: Callable[[], None], seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            call()
        calls += 200
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per case and round")
    args = parser.parse_args()
    cases = {
        "insert_record, valid": case(insert, GOOD_RECORD),
        "insert_record, 4 bad fields": case(insert, BAD_RECORD),
        "update_record, valid": case(update, {"SRN": "s1", "Section": " B "}),
        "create_item, valid": case(item, {"sku": " pen-1 ", "name": " Blue pen ", "Quantity": 5}),
        "place_order, valid": case(order, {"SKU": "PEN-1", "Quantity": 2}),
        **candidates(),
    }
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):  # interleaved: each round times every case once
        for name, call in cases.items():
            rounds[name].append(per_call_us(call, args.seconds))
    width = max(map(len, cases))
    print(f"{'body':<{width}}  median_us  range_us")
    for name, values in rounds.items():
        print(f"{name:<{width}}  {statistics.median(values):9.2f}  {min(values):.2f}-{max(values):.2f}")


if __name__ == "__main__":
    main()
