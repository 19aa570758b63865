"""The bench's load generator (bench/wrk.py with bench/http.lua) against the test copy: the figures of
`make bench` are only as true as its count of requests and of wrong answers."""

from __future__ import annotations

from bench import wrk
from tests.support import SystemCopy, needed, unique_srn, wait_until


def stored(stack: SystemCopy, prefix: str) -> int:
    return int(stack.sql(f"SELECT COUNT(*) FROM students WHERE srn LIKE '{prefix}%'")[0][0])


def test_every_insert_from_wrk_is_a_new_record_and_every_answer_is_counted(stack: SystemCopy) -> None:
    if not wrk.available():
        needed("the bench's load generator needs wrk: apt-get install wrk")
    prefix = unique_srn("WRK")
    try:
        row = wrk.load(stack.base_url, 4, 1, insert_prefix=prefix)
        assert row["generator"] == "wrk" and row["requests"] > 0 and row["errors"] == 0, row
        # Requests still in flight when wrk stopped may be stored too, and no more than one a connection.
        wait_until(lambda: stored(stack, prefix) >= row["requests"])
        assert stored(stack, prefix) <= row["requests"] + 4

        refused = wrk.load(stack.base_url, 1, 1, insert_prefix="NOT AN SRN")  # each answered 400
        assert refused["requests"] > 0 and refused["errors"] == refused["requests"], refused

        missing = wrk.load(stack.base_url, 1, 1, path="/no_such_route")
        assert missing["requests"] > 0 and missing["errors"] == missing["requests"], missing
        found = wrk.load(stack.base_url, 1, 1, path="/livez")
        assert found["requests"] > 0 and found["errors"] == 0 and found["p50_ms"] > 0, found
    finally:
        stack.sql(f"DELETE FROM students WHERE srn LIKE '{prefix}%'")
