"""Container health checks, in Python so that no image needs curl.

    python -m common.probe http://127.0.0.1:5000/readyz   # the producer
    python -m common.probe consumer                       # a consumer
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

# Kept apart from common.consumer so a health check imports neither pika nor MySQL.
ALIVE_FILE = Path("/tmp/consumer.alive")  # noqa: S108 (a container's own /tmp)
# The consumer loop touches its file at least every couple of seconds while
# it holds a consuming channel (see common/consumer.py).
ALIVE_MAX_AGE_S = 15


def consumer_healthy() -> bool:
    try:
        return time.time() - ALIVE_FILE.stat().st_mtime < ALIVE_MAX_AGE_S
    except FileNotFoundError:
        return False


def url_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (fixed local URL)
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "consumer"
    healthy = consumer_healthy() if target == "consumer" else url_healthy(target)
    sys.exit(0 if healthy else 1)
