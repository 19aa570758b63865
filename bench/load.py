"""The load generator: closed-loop clients over HTTP, and what their latencies add up to."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests


def progress(message: str) -> None:
    """One line that rewrites itself on a terminal; nothing in a log file."""
    if sys.stderr.isatty():
        print(f"\r\033[K  {message}", end="", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    """A closed-loop load: `clients` threads, each sending its next request when the last is answered."""

    name: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    def go(self, request: Callable[[requests.Session, int], bool], max_requests: int = 1_000_000) -> Run:
        lock = threading.Lock()
        counter = iter(range(max_requests))
        deadline = time.monotonic() + self.seconds

        def client() -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                started = time.monotonic()
                try:
                    ok = request(session, number)
                except requests.RequestException:
                    ok = False
                took = time.monotonic() - started
                with lock:
                    self.latencies.append(took)
                    if not ok:
                        self.errors += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(self.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            progress(f"{self.name} @{self.clients}: {len(self.latencies)} requests")
            time.sleep(0.25)
        self.elapsed = time.monotonic() - started
        return self

    def row(self) -> dict[str, Any]:
        ms = [x * 1000 for x in self.latencies]
        return {
            "what": self.name, "clients": self.clients, "requests": len(ms),
            "per_s": round(len(ms) / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(percentile(ms, 0.50), 2), "p95_ms": round(percentile(ms, 0.95), 2),
            "p99_ms": round(percentile(ms, 0.99), 2), "errors": self.errors,
        }


def inserts(base: str, name: str, clients: int, seconds: float, srn_prefix: str) -> dict[str, Any]:
    """POST /insert_record at `base` from `clients` clients for `seconds`: the row of the run.

    The same generator measures our producer and both baselines; each record has
    an SRN of its own, `srn_prefix` + clients + sequence number.
    """
    def insert(session: requests.Session, n: int) -> bool:
        record = {"Name": "Bench", "SRN": f"{srn_prefix}{clients:02d}{n:07d}", "Section": "B"}
        return session.post(f"{base}/insert_record", json=record, timeout=30).status_code == 201
    return Run(name, clients, seconds).go(insert).row()


def http_floor(base: str, clients: int, seconds: float,
               name: str = "HTTP floor: GET /livez") -> dict[str, Any]:
    """GET /livez: what gunicorn and Flask cost alone, at `clients`."""
    return Run(name, clients, seconds).go(
        lambda session, _: session.get(f"{base}/livez", timeout=10).status_code == 200).row()


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
