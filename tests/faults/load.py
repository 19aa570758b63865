"""A bounded insert load on the test copy, and the table of what became of it.

Every request has its own SRN and X-Request-ID, so the database can be asked
afterwards what happened to each one: present, absent, or present twice.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import requests

from tests.support import SystemCopy, wait_until


@dataclass
class Sent:
    request_id: str
    srn: str
    status: int = 0  # 0: no HTTP answer at all (connection error or client timeout)
    first_status: int | None = None  # the answer before any retry
    seconds: float = 0.0
    answered_at: float = 0.0  # time.monotonic() of the first answer (or of giving up)


@dataclass
class Load:
    """`count` inserts from `clients` threads against the producer; stops by itself."""

    stack: SystemCopy
    count: int
    clients: int = 16
    client_timeout_s: float = 30.0
    sent: list[Sent] = field(default_factory=list)
    done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3).upper()
        self.sent = [Sent(f"load-{tag}-{n}", f"L{tag}{n:06d}") for n in range(self.count)]
        self._local = threading.local()

    def _insert(self, item: Sent) -> None:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        started = time.monotonic()
        try:
            response = session.post(
                f"{self.stack.base_url}/insert_record",
                json={"Name": f"Load {item.srn}", "SRN": item.srn, "Section": "L"},
                headers={"X-Request-ID": item.request_id}, timeout=self.client_timeout_s,
            )
            item.status = response.status_code
        except requests.RequestException:
            item.status = 0
        if item.first_status is None:
            item.first_status = item.status
            item.answered_at = time.monotonic()
            item.seconds = item.answered_at - started
        with self._lock:
            self.done += 1

    def start(self) -> concurrent.futures.Future[None]:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.clients)

        def run() -> None:
            list(pool.map(self._insert, self.sent))
            pool.shutdown()

        runner = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        return runner.submit(run)

    def wait_for(self, done: int, timeout: float = 120) -> None:
        wait_until(lambda: self.done >= done, timeout=timeout, interval=0.05)

    def retry_unconfirmed(self) -> None:
        """Send every request that got no confirmation again, with its own X-Request-ID."""
        for item in self.sent:
            if item.status in (0, 503):
                self._insert(item)


TABLES: list[Table] = []
# Faults without an insert load report a small table of their own.
OTHER_REPORTS: list[str] = []


def settle(stack: SystemCopy, timeout: float = 180) -> None:
    """Wait until no work queue holds a message any more: the system has finished its work."""
    def idle() -> bool:
        return all(n == 0 for name, n in stack.queue_depths().items() if not name.endswith(".dead"))
    wait_until(idle, timeout=timeout, interval=1)


@dataclass
class Table:
    fault: str
    sent: int
    statuses: Counter[str]
    rows: int
    lost: int
    duplicated: int
    present_but_503: int
    slowest_s: float

    HEADER: ClassVar[str] = (
        "| fault | sent | 201 | 202 | 4xx | 503 | 504 | other | rows | lost | duplicated "
        "| 503 but present | slowest (s) |\n|---|" + "---|" * 12
    )

    def row(self) -> str:
        s = self.statuses
        return (f"| {self.fault} | {self.sent} | {s['201']} | {s['202']} | {s['4xx']} | {s['503']} "
                f"| {s['504']} | {s['other']} | {self.rows} | {self.lost} | {self.duplicated} "
                f"| {self.present_but_503} | {self.slowest_s:.1f} |")


def account(stack: SystemCopy, load: Load, fault: str) -> Table:
    """What the database holds for each request of the load."""
    prefix = load.sent[0].srn[:-6]
    rows = stack.sql(f"SELECT srn, request_id FROM students WHERE srn LIKE '{prefix}%'")
    by_srn = Counter(srn for srn, _ in rows)
    sent_for = {item.srn: item.request_id for item in load.sent}
    statuses: Counter[str] = Counter()  # the first answers, before any retry
    for item in load.sent:
        code = item.first_status or 0
        key = str(code) if code in (201, 202, 503, 504) else "4xx" if 400 <= code < 500 else "other"
        statuses[key] += 1
    confirmed = [i for i in load.sent if i.status in (201, 202)]
    return Table(
        fault=fault,
        sent=len(load.sent),
        statuses=statuses,
        rows=len(rows),
        lost=sum(1 for i in confirmed if by_srn[i.srn] == 0),
        # A second row for an SRN, or a row written by anything but the request sent for it.
        duplicated=sum(n - 1 for n in by_srn.values() if n > 1)
        + sum(1 for srn, request_id in rows if sent_for.get(srn) != request_id),
        present_but_503=sum(1 for i in load.sent if i.first_status == 503 and by_srn[i.srn]),
        slowest_s=max(i.seconds for i in load.sent),
    )
