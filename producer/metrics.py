"""The producer's Prometheus metrics, summed over gunicorn's worker processes.

    http_requests_total{route, method, status}
    http_request_duration_seconds{route}
    broker_publish_failures_total{routing_key}   RabbitMQ did not confirm (the 503s)

With several workers, prometheus_client's multiprocess mode keeps each
worker's figures in PROMETHEUS_MULTIPROC_DIR (set in the image) and /metrics
adds them up; without it (the unit tests) the default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from common.metrics import BUCKETS

REQUESTS = Counter("http_requests", "HTTP requests answered", ["route", "method", "status"])
DURATION = Histogram("http_request_duration_seconds", "Time to answer an HTTP request", ["route"],
                     buckets=BUCKETS)
PUBLISH_FAILURES = Counter("broker_publish_failures", "Messages RabbitMQ did not confirm", ["routing_key"])


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus' text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
