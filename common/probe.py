"""The producer's health check, in Python so that no image needs curl; and the consumers' file.

    python -S -m common.probe http://127.0.0.1:5000/readyz   # the producer

Docker runs the check every few seconds for as long as the producer runs, so it is
a plain HTTP/1.0 GET on a socket: urllib.request's imports (ssl, email, http.client)
cost more than twice the CPU of the rest of the process, and `-S` skips site-packages,
which the check does not need.

A consumer's health check is a line of sh in the Dockerfile: its loop touches
ALIVE_FILE while it consumes, and the check looks at the file's age.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

# The consumer loop touches its file at least every couple of seconds while it holds a
# consuming channel (see common/consumer.py); the Dockerfile's check wants it at most 15 s old.
ALIVE_FILE = Path("/tmp/consumer.alive")  # noqa: S108 (a container's own /tmp)


def url_healthy(url: str, timeout: float = 3.0) -> bool:
    """Whether an http:// URL answers 200."""
    parts = urlsplit(url)
    request = f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode()
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout) as conn:
            conn.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    # "HTTP/1.1 200 OK": the status is the second word of the first line.
    return head.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"]


if __name__ == "__main__":
    sys.exit(0 if url_healthy(sys.argv[1]) else 1)
