"""What one client holding many half-open connections does to everyone else's requests.

    python bench/slow_clients.py [--base http://127.0.0.1:5000] [--sockets 0,220,400]

Opens N connections to the producer that each send the start of a request and
never finish it (a "slowloris"), then times GET /livez from a fresh connection,
with the N still open. Only loopback, bounded in count and time. The figures and
the setting that bounds them are in docs/security.md.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
import urllib.parse
import urllib.request

LIVEZ_TRIES = 5
LIVEZ_TIMEOUT_S = 10.0


def half_open(host: str, port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n")  # the blank line never comes
        sockets.append(sock)
    return sockets


def livez_seconds(base: str) -> float:
    """Median seconds of GET /livez (LIVEZ_TIMEOUT_S when it did not answer)."""
    times = []
    for _ in range(LIVEZ_TRIES):
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"{base}/livez", timeout=LIVEZ_TIMEOUT_S) as answer:  # noqa: S310
                answer.read()
            times.append(time.monotonic() - started)
        except OSError:
            times.append(LIVEZ_TIMEOUT_S)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:5000")
    parser.add_argument("--sockets", default="0,100,220,400")
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.base)
    print("half-open sockets  GET /livez median (s)")
    for count in (int(n) for n in args.sockets.split(",")):
        sockets = half_open(url.hostname or "127.0.0.1", url.port or 80, count)
        try:
            time.sleep(0.5)
            print(f"{count:17d}  {livez_seconds(args.base):.3f}")
        finally:
            for sock in sockets:
                sock.close()
        time.sleep(1)


if __name__ == "__main__":
    main()
