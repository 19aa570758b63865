"""A bounded insert load on the test copy, and the table of what became of it.

Every request has its own SRN and X-Request-ID, so the database can be asked
afterwards what happened to each one: present, absent, or present twice.
"""

from __future__ import annotations

import concurrent.futures
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import requests

from bench.load import RETRY_STATUSES, Sent, closed_loop, send
from tests.support import SystemCopy, wait_until


@dataclass
class Load:
    """`count` inserts from `clients` threads against the producer; stops by itself."""

    stack: SystemCopy
    count: int
    clients: int = 16
    client_timeout_s: float = 30.0
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3).upper()
        srns = [f"L{tag}{n:06d}" for n in range(self.count)]
        self.sent = [Sent(f"load-{tag}-{n}", "POST", "/insert_record",
                          {"Name": f"Load {srn}", "SRN": srn, "Section": "L"}, srn=srn)
                     for n, srn in enumerate(srns)]

    def send(self, session: requests.Session, item: Sent) -> None:
        send(session, self.stack.base_url, item, self.client_timeout_s)

    def start(self) -> concurrent.futures.Future[None]:
        """The load in the background: the future is done once every request has its first answer."""
        return closed_loop(self.clients, lambda session, n: self.send(session, self.sent[n]), self.count)

    def wait_for(self, done: int, timeout: float = 120) -> None:
        wait_until(lambda: sum(item.status is not None for item in self.sent) >= done,
                   timeout=timeout, interval=0.05)

    def retry_unconfirmed(self) -> None:
        """Send every request that got no confirmation again, with its own X-Request-ID."""
        session = requests.Session()
        for item in self.sent:
            if item.status in RETRY_STATUSES:
                self.send(session, item)


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


def record(table: Table) -> Table:
    """Keep `table` for the session's summary (tests/conftest.py), and print it now."""
    TABLES.append(table)
    print("\n" + Table.HEADER + "\n" + table.row())
    return table


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
