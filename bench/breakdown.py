"""Where an insert's time goes, at one client: the steps' times as the services log them.

The producer's `http_request` line carries `at` = {http_received, published, confirmed,
reply_received, http_answered}, consumer_two's `message_handled` line `at` =
{consumer_received, committed, reply_sent}, all time.time() of one machine's clock, under
the same request id. This joins them and gives the median of every step, so every
millisecond of an insert has a name.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import wrk
from bench.system import BENCH_TAG, System

# The steps one after another, from the request's arrival in Flask to its answer.
STEPS = (
    ("http_received", "published", "producer: received -> published (Flask, validation, I/O thread)"),
    ("published", "consumer_received", "RabbitMQ: published -> delivered to consumer_two (quorum queue)"),
    ("consumer_received", "committed", "consumer_two: delivered -> committed (ledger, insert, commit)"),
    ("committed", "reply_sent", "consumer_two: committed -> reply sent"),
    ("reply_sent", "reply_received", "RabbitMQ: reply sent -> reply received by the producer"),
    ("reply_received", "http_answered", "producer: reply received -> HTTP answered (thread wakes, JSON)"),
)
# Happens alongside the steps above, not after them.
ALONGSIDE = (("published", "confirmed", "(alongside) RabbitMQ: published -> confirm received"),)


def joined(producer: list[dict[str, Any]], consumer: list[dict[str, Any]],
           since: float) -> list[dict[str, float]]:
    """Every insert's marks from both services, by request id; only complete ones since `since`."""
    handled = {line["request_id"]: line["at"] for line in consumer
               if line.get("event") == "message_handled" and line.get("queue") == "insert_record"
               and isinstance(line.get("at"), dict)}
    inserts = []
    for line in producer:
        at = line.get("at")
        if (line.get("event") != "http_request" or line.get("path") != "/insert_record"
                or not isinstance(at, dict) or at.get("http_received", 0) < since):
            continue
        marks = {**at, **handled.get(line["request_id"], {})}
        if all(name in marks for step in STEPS for name in step[:2]):
            inserts.append(marks)
    return inserts


def breakdown(system: System, tag: str,
              seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A 1-client insert run, then the median of each step from the services' logs (ms)."""
    since = time.time()
    row = wrk.load(system.base, 1, seconds, insert_prefix=f"{BENCH_TAG}{tag}")
    time.sleep(0.5)  # the last lines reach docker's log
    inserts = joined(system.logs("producer", since - 1), system.logs("consumer_two", since - 1), since)
    rows: list[dict[str, Any]] = []

    def median_ms(start: str, end: str) -> float:
        if not inserts:
            return float("nan")
        return round(statistics.median((m[end] - m[start]) * 1000 for m in inserts), 3)

    for start, end, what in STEPS + ALONGSIDE:
        rows.append({"step": what, "p50_ms": median_ms(start, end)})
    server = median_ms("http_received", "http_answered")
    rows.append({"step": "sum of the steps' medians",
                 "p50_ms": round(sum(r["p50_ms"] for r in rows[:len(STEPS)]), 3)})
    rows.append({"step": "producer: received -> answered (median)", "p50_ms": server})
    rows.append({"step": "outside Flask: client p50 - the above (client, HTTP, gunicorn)",
                 "p50_ms": round(row["p50_ms"] - server, 3)})
    rows.append({"step": "client: insert p50 @1", "p50_ms": row["p50_ms"]})
    return {**row, "what": "insert_record (latency breakdown run)", "joined": len(inserts)}, rows
