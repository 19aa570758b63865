"""Prometheus metrics of the consumers, each served on its own port of the compose network.

    consumer_messages_total{queue, outcome}   ok | refused | expired | invalid | failed | requeued
    consumer_dead_lettered_total{queue}       set aside in <queue>.dead
    consumer_handling_seconds{queue}          from taking a message to acknowledging it
    consumer_ledger_pruned_total              expired request-ledger entries deleted
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

MESSAGES = Counter("consumer_messages", "Messages taken off a queue, by what became of them",
                   ["queue", "outcome"])
DEAD_LETTERED = Counter("consumer_dead_lettered", "Messages rejected to the dead-letter queue", ["queue"])
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HANDLING = Histogram("consumer_handling_seconds", "Time from taking a message to acknowledging it",
                     ["queue"], buckets=BUCKETS)
LEDGER_PRUNED = Counter("consumer_ledger_pruned", "Expired request-ledger entries deleted")


def serve(port: int) -> None:
    """Serve /metrics from a background thread."""
    start_http_server(port)
