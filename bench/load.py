"""The load generator: closed-loop clients over HTTP, the record of what each request was told
(the fault tests and the chaos run keep their checks in tests/), and what the bench's latencies add up to."""

from __future__ import annotations

import concurrent.futures
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

# No answer, or 503 broker_unavailable: what a client sends again with the same X-Request-ID.
RETRY_STATUSES = (0, 503)


@dataclass
class Attempt:
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no HTTP answer (connection refused or reset, or the client's timeout)
    timed_out: bool = False  # the client gave up waiting (a wait, not a refusal)
    request_id_header: str = ""  # the X-Request-ID the answer carried


@dataclass
class Sent:
    """One request: its X-Request-ID, what it asked, and every answer it was given."""

    request_id: str
    method: str
    path: str
    body: dict[str, Any] | None = None  # a POST's body or a GET's query, in the contract's field names
    fmt: str = "json"  # json, form or multipart
    srn: str = ""  # the student record it is about, if one
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None  # the last HTTP status (0: no answer); None: not sent yet
    answer: Any = None  # the last body: its JSON, else its text (or the connection error)
    location: str = ""  # a 202's Location: where its answer is looked up

    # The first attempt: its answer, before any retry; how long it waited; when it ended.
    @property
    def first_status(self) -> int | None:
        return self.attempts[0].status if self.attempts else None

    @property
    def seconds(self) -> float:
        return self.attempts[0].seconds if self.attempts else 0.0

    @property
    def answered_at(self) -> float:  # time.monotonic()
        return self.attempts[0].started + self.attempts[0].seconds if self.attempts else 0.0


def send(session: requests.Session, base: str, sent: Sent, timeout: float) -> None:
    """One HTTP attempt of `sent` with its X-Request-ID, recorded on it: no answer is status 0."""
    kwargs: dict[str, Any] = {"headers": {"X-Request-ID": sent.request_id}, "timeout": timeout}
    if sent.method == "POST" and sent.body is not None:
        if sent.fmt == "form":
            kwargs["data"] = sent.body
        elif sent.fmt == "multipart":
            kwargs["files"] = {k: (None, v) for k, v in sent.body.items()}
        else:
            kwargs["json"] = sent.body
    elif sent.method == "GET" and sent.body:
        kwargs["params"] = {k: v for k, v in sent.body.items() if v is not None}
    started = time.monotonic()
    timed_out, header = False, ""
    try:
        response = session.request(sent.method, base + sent.path, **kwargs)
        status, header = response.status_code, response.headers.get("X-Request-ID", "")
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:300]
    except requests.Timeout:
        status, body, timed_out = 0, None, True
    except requests.RequestException as exc:
        status, body = 0, repr(exc)[:200]
    sent.attempts.append(Attempt(started, time.monotonic() - started, status, timed_out, header))
    sent.status, sent.answer = status, body
    if status == 202:
        sent.location = response.headers.get("Location", "")


def closed_loop(count: int, request: Callable[[requests.Session, int], Any], limit: int,
                deadline: float = math.inf) -> concurrent.futures.Future[None]:
    """`count` clients in the background: each, with a session of its own, calls request(session, n)
    for the next n below `limit` once its last is answered, until none is left or the deadline passes.
    The future is done when every client is, and raises what a client raised."""
    lock = threading.Lock()
    numbers = iter(range(limit))

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            request(session, number)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=count + 1)  # the clients, and their waiter

    def every_client() -> None:
        for running in [pool.submit(client) for _ in range(count)]:
            running.result()

    return pool.submit(every_client)


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

        def timed(session: requests.Session, number: int) -> None:
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

        started = time.monotonic()
        running = closed_loop(self.clients, timed, max_requests, started + self.seconds)
        while not running.done():
            progress(f"{self.name} @{self.clients}: {len(self.latencies)} requests")
            time.sleep(0.25)
        running.result()
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
