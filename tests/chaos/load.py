"""The chaos run's clients, and the record of what each one was told.

Several client threads send a mixed load until a deadline: inserts (JSON,
form, multipart), updates, deletes, reads with and without paging, health
checks, items, stock changes and orders on a few hot SKUs. A write that gets
a 503 or no answer is sent again with the same X-Request-ID; a 202 is looked
up later with GET /requests/<id>. Now and then a client reuses an id on
purpose: a finished write's id for another write (the ledger must answer 409
request_id_conflict), or one fresh id for two requests sent at the same time
(neither may get the other's answer).

Each client serialises the work on its own SRNs: it sends nothing more for an
SRN until the last write for it has an outcome, so the state every SRN must
end in is known exactly from what the client was told.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

import bench.load
from bench.load import RETRY_STATUSES, Sent
from tests.support import SystemCopy

# Writes: their route, and the success status they answer with.
WRITES = {"insert": 201, "update": 200, "delete": 200, "create_item": 201, "adjust": 200, "order": 201}
CLIENT_TIMEOUT_S = 12.0


@dataclass(kw_only=True)
class Call(Sent):
    """One logical request of the mix (the shared record of what it asked and was told), and what
    the checks need: who sent it, its kind, and the answers that were not its own."""

    client: int
    kind: str  # insert, update, delete, read, read_all, health, create_item, adjust, order, status
    sku: str | None = None
    # A 202 looked up at its Location (GET /requests/<id>?asked=...): that lookup's status and body.
    resolved_status: int | None = None
    resolved_answer: Any = None
    reuse: str = ""  # "", "finished" (id of a finished write), "pair" (two requests at once)
    partner: Call | None = None  # the other request that shares this one's id
    wrong: list[str] = field(default_factory=list)  # answers that do not fit this request

    @property
    def write(self) -> bool:
        return self.kind in WRITES

    @property
    def outcome(self) -> tuple[int | None, Any]:
        """The final status and body: the stored answer of a 202, else the last answer."""
        if self.status == 202 and self.resolved_status is not None:
            return self.resolved_status, self.resolved_answer
        return self.status, self.answer

    @property
    def applied(self) -> bool | None:
        """Did this write take effect? None: not known from what the client was told."""
        status, answer = self.outcome
        if status == WRITES.get(self.kind) and fits(self, answer):
            return True
        if status in (200, 201):
            # Somebody else's answer (invariant 4): with an id shared on purpose, the id's one
            # outcome is the other request's; otherwise the client cannot tell, and asks again.
            return False if self.reuse else None
        if status is not None and 400 <= status < 500:
            return False
        return None


def fits(sent: Call, body: Any) -> bool:
    """Whether a success body is this request's own answer."""
    if not isinstance(body, dict):
        return False
    asked = sent.body or {}
    if sent.kind == "health":
        return body.get("message") == asked.get("message")
    if sent.kind == "insert":
        return body.get("record") == asked
    if sent.kind == "update":
        record = body.get("record") or {}
        return record.get("SRN") == asked.get("SRN") and all(record.get(k) == v for k, v in asked.items())
    if sent.kind == "delete":
        return (body.get("deleted") or {}).get("SRN") == sent.srn
    if sent.kind in ("read", "read_all"):
        records = body.get("records")
        if not isinstance(records, list) or body.get("count") != len(records):
            return False
        after, limit = asked.get("after"), asked.get("limit")
        srns = [r.get("SRN") for r in records]
        return (srns == sorted(srns) and (after is None or all(s > after for s in srns))
                and (limit is None or len(records) <= limit))
    if sent.kind == "create_item":
        return body.get("item") == {"SKU": asked["SKU"], "Name": asked["Name"], "Quantity": asked["Quantity"]}
    if sent.kind == "adjust":
        item = body.get("item") or {}
        return item.get("SKU") == sent.sku and isinstance(item.get("Quantity"), int) and item["Quantity"] >= 0
    if sent.kind == "order":
        order = body.get("order") or {}
        return (order.get("SKU") == asked["SKU"] and order.get("Quantity") == asked["Quantity"]
                and isinstance(order.get("OrderID"), int))
    if sent.kind == "items":
        return isinstance(body.get("items"), list)
    if sent.kind == "orders":
        return isinstance(body.get("orders"), list)
    return True


# The refusals each kind of request may get; anything else is somebody else's answer.
REFUSALS = {
    "insert": {"request_id_conflict"},
    "update": {"request_id_conflict"},
    "delete": {"request_id_conflict"},
    "create_item": {"request_id_conflict"},
    "adjust": {"request_id_conflict", "insufficient_stock"},
    "order": {"request_id_conflict", "insufficient_stock"},
}
# Failures that say "try again" rather than answer anything.
TRANSIENT = {503: "broker_unavailable", 504: "consumer_timeout"}


def check_answer(sent: Call, status: int, body: Any, *, stored: bool = False) -> None:
    """Note on `sent` every answer that is not its own (invariant 4), each different one once."""
    before = list(sent.wrong)
    _check_answer(sent, status, body, stored=stored)
    if len(sent.wrong) > len(before) and sent.wrong[-1] in before:
        sent.wrong.pop()


def _check_answer(sent: Call, status: int, body: Any, *, stored: bool = False) -> None:
    where = "stored answer" if stored else "answer"
    success = WRITES.get(sent.kind, 200)
    if sent.kind == "status" or (sent.kind == "read_all" and status == 200 and isinstance(body, str)):
        # A lookup is checked as the write it looks up; a cut-short full read is invalid JSON by design.
        return
    if status == 0 or (not stored and status == 202 and sent.write):
        return
    if status in TRANSIENT and not stored:
        if not isinstance(body, dict) or body.get("error") != TRANSIENT[status]:
            sent.wrong.append(f"{where} {status} {str(body)[:200]}")
        return
    if status == success:
        if fits(sent, body):
            return
        if sent.partner is not None and fits(sent.partner, body):
            if stored and sent.reuse == "pair":
                return  # the id's one stored answer is whichever of the two was carried out
            sent.wrong.append(f"{where} {status} is the answer of {sent.partner.kind} sharing the id: "
                              f"{str(body)[:200]}")
            return
        sent.wrong.append(f"{where} {status} does not fit the request: {str(body)[:200]}")
        return
    code = body.get("error") if isinstance(body, dict) else None
    if 400 <= status < 500 and code in REFUSALS.get(sent.kind, set()):
        return
    sent.wrong.append(f"{where} {status} {code or str(body)[:200]}")


@dataclass
class Hot:
    """A SKU the clients share: its stock at the start."""

    sku: str
    initial: int
    created_by: str = ""  # the request id that created it during the run, if one did


@dataclass
class Shared:
    """What every client reads and appends to (lists append atomically under the GIL)."""

    stack: SystemCopy
    tag: str
    started: float  # time.monotonic() when the load starts
    deadline: float  # time.monotonic() when the load stops
    hot: list[Hot]
    sent: list[Call] = field(default_factory=list)
    lookups: list[Call] = field(default_factory=list)  # GET /requests/<id> of 202s
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client(threading.Thread):
    """One client: a seeded choice of requests until the deadline."""

    def __init__(self, shared: Shared, number: int, seed: int):
        super().__init__(name=f"chaos-client-{number}", daemon=True)
        self.shared, self.number = shared, number
        self.random = random.Random(seed)  # noqa: S311 (replayable choices, not secrets)
        self.session = requests.Session()
        self.count = 0
        self.last_status = -1
        self.srns: dict[str, dict[str, str]] = {}  # live SRNs and the record each holds
        self.busy: dict[str, Call] = {}  # SRN -> its write without an outcome yet
        self.pending: list[Call] = []  # writes answered 202 or never answered: to resolve
        self.finished: list[Call] = []  # writes with an outcome: their ids may be reused

    # ---- sending ----------------------------------------------------------

    def new_id(self) -> str:
        self.count += 1
        return f"{self.shared.tag}-{self.number}-{self.count}"

    def new(self, kind: str, method: str, path: str, body: dict[str, Any] | None = None,
            request_id: str = "", **extra: Any) -> Call:
        """A request of this client's, kept for the checks; a new id unless it is given one."""
        sent = Call(request_id or self.new_id(), method, path, body, client=self.number, kind=kind, **extra)
        self.shared.sent.append(sent)
        return sent

    def send(self, sent: Call, session: requests.Session | None = None) -> None:
        """One HTTP attempt of `sent`, recorded, and its answer checked."""
        bench.load.send(session or self.session, self.shared.stack.base_url, sent, CLIENT_TIMEOUT_S)
        attempt = sent.attempts[-1]
        if attempt.status and attempt.request_id_header != sent.request_id:
            sent.wrong.append(f"X-Request-ID {attempt.request_id_header!r} on the answer")
        self.last_status = attempt.status
        check_answer(sent, attempt.status, sent.answer)

    def send_retrying(self, sent: Call, tries: int = 4) -> None:
        """Send, and after a 503 or no answer send again with the same id, a few times."""
        for attempt in range(tries):
            self.send(sent)
            if sent.status not in RETRY_STATUSES or not sent.write:
                return
            if time.monotonic() + 1 > self.shared.deadline:
                return
            time.sleep(min(0.5 * 2 ** attempt, 3) * self.random.uniform(0.5, 1.5))

    def settle(self, sent: Call) -> None:
        """What to remember of a write once it has its answer (for now)."""
        if not sent.write:
            return
        if sent.applied is None and sent.resolved_status is not None:
            # Looked up, and told an answer that is not its own (invariant 4): nothing more to learn.
            if sent in self.pending:
                self.pending.remove(sent)
            return
        if sent.applied is None:  # 202, or no outcome: look it up later
            if sent not in self.pending:
                self.pending.append(sent)
            if sent.srn:
                self.busy[sent.srn] = sent
            return
        if sent in self.pending:
            self.pending.remove(sent)
        self.finished.append(sent)
        if sent.srn:
            self.busy.pop(sent.srn, None)
            if sent.applied:
                self.apply(sent)

    def apply(self, sent: Call) -> None:
        assert sent.body is not None
        if sent.kind == "insert":
            self.srns[sent.srn] = dict(sent.body)
        elif sent.kind == "update":
            self.srns[sent.srn] = {**self.srns.get(sent.srn, {}), **sent.body}
        elif sent.kind == "delete":
            self.srns.pop(sent.srn, None)

    def resolve(self, sent: Call) -> None:
        """Look a pending write up: its stored answer (202), or send it again (503, none)."""
        if sent.status == 202:
            # The lookup is a request of its own, with an id of its own.
            lookup = Call(self.new_id(), "GET", sent.location or f"/requests/{sent.request_id}",
                          client=self.number, kind="status")
            self.shared.lookups.append(lookup)
            self.send(lookup)
            if lookup.status == 404 or lookup.status in RETRY_STATUSES or lookup.status in TRANSIENT:
                return  # not done yet, or nobody to ask
            sent.resolved_status, sent.resolved_answer = lookup.status, lookup.answer
            check_answer(sent, lookup.status or 0, lookup.answer, stored=True)
        else:
            self.send(sent)
        self.settle(sent)

    # ---- the mix ------------------------------------------------------------

    def run(self) -> None:
        actions = [
            (self.insert, 20), (self.update, 9), (self.delete, 5), (self.read_page, 8), (self.read_all, 1),
            (self.health, 9), (self.create_item, 2), (self.adjust, 10), (self.order, 14),
            (self.reuse_finished, 2), (self.reuse_pair, 3), (self.lookup_pending, 6),
            (self.read_inventory, 2),
        ]
        functions, weights = zip(*actions, strict=True)
        while time.monotonic() < self.shared.deadline:
            action = self.random.choices(functions, weights)[0]
            try:
                action()
            except Exception as exc:  # a bug of the load itself must not end the thread quietly
                print(f"chaos client {self.number}: {action.__name__}: {exc!r}", flush=True)
                raise
            if self.last_status == 0:
                time.sleep(0.3)  # nobody listening: do not spin

    def fresh_srn(self) -> str:
        return f"C{self.shared.tag}{self.number}X{self.count + 1:05d}".upper()

    def record(self, srn: str) -> dict[str, str]:
        return {"Name": f"Name {self.random.randrange(10**6)}", "SRN": srn,
                "Section": self.random.choice("ABCDEFGH")}

    def insert(self) -> None:
        srn = self.fresh_srn()
        sent = self.new("insert", "POST", "/insert_record", self.record(srn), srn=srn,
                        fmt=self.random.choice(["json", "json", "form", "multipart"]))
        self.send_retrying(sent)
        self.settle(sent)

    def idle_srn(self) -> str | None:
        idle = [s for s in self.srns if s not in self.busy]
        return self.random.choice(idle) if idle else None

    def update(self) -> None:
        srn = self.idle_srn()
        if srn is None:
            return self.insert()
        change: dict[str, str] = {"SRN": srn}
        if self.random.random() < 0.7:
            change["Name"] = f"Renamed {self.random.randrange(10**6)}"
        if len(change) == 1 or self.random.random() < 0.5:
            change["Section"] = self.random.choice("XYZ")
        sent = self.new("update", "POST", "/update_record", change, srn=srn,
                        fmt=self.random.choice(["json", "form", "multipart"]))
        self.send_retrying(sent)
        self.settle(sent)
        return None

    def delete(self) -> None:
        srn = self.idle_srn()
        if srn is None:
            return self.insert()
        sent = self.new("delete", "GET", "/delete_record", {"SRN": srn}, srn=srn)
        self.send_retrying(sent)
        self.settle(sent)
        return None

    def read_page(self) -> None:
        after = self.random.choice([None, *list(self.srns)[-3:], f"C{self.shared.tag}"])
        sent = self.new("read", "GET", "/read_database",
                        {"limit": self.random.choice([1, 5, 50, 500]), "after": after})
        self.send_retrying(sent, tries=1)

    def read_all(self) -> None:
        self.send_retrying(self.new("read_all", "GET", "/read_database"), tries=1)

    def read_inventory(self) -> None:
        kind = self.random.choice(["items", "orders"])
        self.send_retrying(self.new(kind, "GET", f"/{kind}"), tries=1)

    def health(self) -> None:
        sent = self.new("health", "GET", "/health_check", {"message": f"m{self.random.randrange(10**9)}"})
        self.send_retrying(sent, tries=1)

    def create_item(self) -> None:
        sku = f"K{self.shared.tag}{self.number}X{self.count + 1}".upper()
        quantity = self.random.randrange(0, 20)
        body: dict[str, Any] = {"SKU": sku, "Name": f"Item {sku}", "Quantity": quantity}
        sent = self.new("create_item", "POST", "/items", body, sku=sku)
        self.send_retrying(sent)
        self.settle(sent)
        if sent.applied:
            self.shared.hot.append(Hot(sku, quantity, sent.request_id))

    def hot_sku(self) -> str:
        # The first few SKUs are the hot ones: most traffic goes there.
        hot = self.shared.hot
        return (hot[self.random.randrange(min(3, len(hot)))] if self.random.random() < 0.85
                else self.random.choice(hot)).sku

    def adjust(self) -> None:
        sku = self.hot_sku()
        delta = self.random.choice([-3, -2, -1, 1, 2, 3, 5, 8])
        sent = self.new("adjust", "POST", f"/items/{sku}/stock", {"Delta": delta}, sku=sku)
        self.send_retrying(sent)
        self.settle(sent)

    def order(self) -> None:
        sku = self.hot_sku()
        sent = self.new("order", "POST", "/orders", {"SKU": sku, "Quantity": self.random.randint(1, 3)},
                        sku=sku)
        self.send_retrying(sent)
        self.settle(sent)

    def lookup_pending(self) -> None:
        if self.pending:
            self.resolve(self.random.choice(self.pending))

    def reuse_finished(self) -> None:
        """A finished write's id for another write: 409 request_id_conflict, nothing done."""
        done = [s for s in self.finished if s.reuse == ""]
        if not done:
            return self.insert()
        old = self.random.choice(done)
        srn = self.fresh_srn()
        self.count += 1
        sent = self.new("insert", "POST", "/insert_record", self.record(srn), old.request_id, srn=srn,
                        reuse="finished", partner=old)
        self.send_retrying(sent)
        self.settle(sent)
        return None

    def reuse_pair(self) -> None:
        """One fresh id for two different requests sent at the same time."""
        request_id = self.new_id()
        bodies: list[Call] = []
        for _ in range(2):
            if self.random.random() < 0.5:
                bodies.append(self.new("health", "GET", "/health_check",
                                       {"message": f"pair {self.random.randrange(10**9)}"}, request_id,
                                       reuse="pair"))
            else:
                srn = self.fresh_srn()
                self.count += 1
                bodies.append(self.new("insert", "POST", "/insert_record", self.record(srn), request_id,
                                       srn=srn, reuse="pair"))
        first, second = bodies
        first.partner, second.partner = second, first
        other = threading.Thread(target=self.send, args=(second, requests.Session()), daemon=True)
        other.start()
        self.send(first)
        other.join(CLIENT_TIMEOUT_S + 5)
        for sent in bodies:
            self.settle(sent)
