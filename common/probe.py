"""The producer's health check, in Python so that no image needs curl; and the consumers' file.

    python -m common.probe http://127.0.0.1:5000/readyz   # the producer

A consumer's health check is a line of sh in the Dockerfile: its loop touches
ALIVE_FILE while it consumes, and the check looks at the file's age.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

# The consumer loop touches its file at least every couple of seconds while it holds a
# consuming channel (see common/consumer.py); the Dockerfile's check wants it at most 15 s old.
ALIVE_FILE = Path("/tmp/consumer.alive")  # noqa: S108 (a container's own /tmp)


def url_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (fixed local URL)
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(0 if url_healthy(sys.argv[1]) else 1)
