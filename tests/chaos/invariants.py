"""The chaos run's checker: what clients were told against what the database and RabbitMQ hold.

Every invariant keeps the evidence of each violation (the request id, what it
was told, what is stored), so a failing run says which request broke what.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.load import RETRY_STATUSES
from tests.chaos.faults import Fault
from tests.chaos.load import Call, Client, Hot, fits
from tests.support import SystemCopy

INVARIANTS = {
    1: "every write answered 201/200 is in the database exactly once, as answered",
    2: "every 202 resolves through GET /requests/<id>",
    3: "every 503 (or no answer), retried with its id, ends in exactly one outcome",
    4: "no response carries another request's answer",
    5: "stock = initial + adjustments - orders, never below zero, each order once",
    6: "the request ledger agrees with the rows",
    7: "no good message sits in a dead-letter queue",
    8: "no request waited longer than REQUEST_TIMEOUT_S + 1 s",
    9: "nothing restarted that the run did not kill; every service answers within 30 s of the last fault",
}
ROUTING_KEY = {"insert": "insert_record", "update": "update_record", "delete": "delete_record",
               "create_item": "create_item", "adjust": "adjust_stock", "order": "place_order"}
# After a fault that stops the producer, the requests it had accepted may wait until it is back.
PRODUCER_GRACE_S = 5.0
RECOVERY_LIMIT_S = 30.0
# The reports of this session's chaos runs, for the terminal summary (tests/conftest.py).
REPORTS: list[str] = []


@dataclass
class Stored:
    """What the copy holds for the run's prefixes once it has settled."""

    students: dict[str, tuple[str, str, str]]  # srn -> name, section, request id
    ledger: dict[str, tuple[str, dict[str, Any]]]  # request id -> routing key, reply
    items: dict[str, tuple[int, str]]  # sku -> quantity, request id
    orders: list[tuple[int, str, int, str]]  # order id, sku, quantity, request id
    dead: dict[str, int]  # .dead queue -> messages added during the run
    dead_ids: list[str]  # the message ids in .dead queues that are the run's


def read_stored(stack: SystemCopy, tag: str, dead_before: dict[str, int]) -> Stored:
    students = {srn: (name, section, rid) for srn, name, section, rid in stack.sql(
        f"SELECT srn, name, section, request_id FROM students WHERE srn LIKE 'C{tag}%'")}
    ledger = {rid: (key, json.loads(reply)) for rid, key, reply in stack.sql(
        f"SELECT request_id, routing_key, reply FROM requests WHERE request_id LIKE '{tag}-%'")}
    items = {sku: (int(q), rid) for sku, q, rid in stack.sql(
        f"SELECT sku, quantity, request_id FROM items WHERE sku LIKE 'K{tag}%'")}
    orders = [(int(oid), sku, int(q), rid) for oid, sku, q, rid in stack.sql(
        f"SELECT order_id, sku, quantity, request_id FROM orders WHERE sku LIKE 'K{tag}%'")]
    depths = stack.queue_depths()
    dead = {q: n - dead_before.get(q, 0) for q, n in depths.items()
            if q.endswith(".dead") and n != dead_before.get(q, 0)}
    dead_ids: list[str] = []
    if dead:
        listing = stack.script("dead-letters")
        dead_ids = [f"{rid} {rest}" for rid, rest in
                    re.findall(rf"^\s+({re.escape(tag)}-\S+)\s+(.*)$", listing, flags=re.M)]
    return Stored(students, ledger, items, orders, dead, dead_ids)


@dataclass
class Report:
    violations: dict[int, list[str]] = field(default_factory=lambda: {n: [] for n in INVARIANTS})

    def add(self, number: int, evidence: str) -> None:
        self.violations[number].append(evidence)

    @property
    def failed(self) -> bool:
        return any(self.violations.values())


def describe(sent: Call) -> str:
    tries = ",".join(str(a.status) for a in sent.attempts)
    status, answer = sent.outcome
    reuse = f" reuse={sent.reuse}" if sent.reuse else ""
    return (f"{sent.request_id} {sent.kind}{reuse} {json.dumps(sent.body)} tries=[{tries}] "
            f"final={status} {json.dumps(answer)[:160]}")


def check(clients: list[Client], hot: list[Hot], stored: Stored, faults: list[Fault], timeout_s: float,
          states_before: dict[str, tuple[str, int]], states_after: dict[str, tuple[str, int]],
          recovery_s: float | None) -> Report:
    report = Report()
    sent_all = [s for c in clients for s in c.shared.sent if s.client == c.number]
    writes = [s for s in sent_all if s.write]
    ledger = stored.ledger

    # ---- 4: every answer is the request's own ---------------------------------------------
    for sent in sent_all:
        for wrong in sent.wrong:
            report.add(4, f"{describe(sent)} :: {wrong}")

    def applied(sent: Call) -> bool | None:
        """As the client was told; for what it never learnt, as the ledger says."""
        known = sent.applied
        if known is not None:
            return known
        entry = ledger.get(sent.request_id)
        if entry is None:
            return False
        reply = entry[1]
        return bool(reply.get("ok")) and fits(sent, reply.get("result"))

    # ---- 2 and 3: every request ends in one outcome ----------------------------------------
    for sent in writes:
        retried = any(a.status in RETRY_STATUSES for a in sent.attempts)
        if sent.status == 202 and sent.resolved_status is None:
            report.add(2, f"{describe(sent)} :: GET /requests/{sent.request_id} never gave its answer; "
                          f"ledger: {ledger.get(sent.request_id)}")
        elif retried and sent.applied is None:
            report.add(3, f"{describe(sent)} :: no outcome after every retry; ledger: "
                          f"{ledger.get(sent.request_id)}")
        answer = sent.outcome[1]
        if (retried and sent.reuse == "" and isinstance(answer, dict)
                and answer.get("error") == "request_id_conflict"):
            report.add(3, f"{describe(sent)} :: its own retry was taken for another request")

    # ---- 1: every answered write is stored, as answered -----------------------------------
    order_rows = {rid: (oid, sku, q) for oid, sku, q, rid in stored.orders}
    # The SRNs deleted (a delete's own stored answer keeps the record): the ledger's answers
    # about them keep their status, not their data (docs/contract.md).
    deleted = {reply["result"]["deleted"]["SRN"] for key, reply in ledger.values()
               if key == "delete_record" and reply.get("ok")}
    for sent in writes:
        if sent.applied is not True:
            continue
        answer = sent.outcome[1]
        entry = ledger.get(sent.request_id)
        if entry is None:
            report.add(1, f"{describe(sent)} :: no ledger entry")
            continue
        key, reply = entry
        erased = reply.get("ok") and (reply.get("result") or {}).get("erased") is True
        if erased and key == ROUTING_KEY[sent.kind] and sent.srn in deleted:
            pass  # stored as answered, then erased with its student
        elif key != ROUTING_KEY[sent.kind] or not reply.get("ok") or reply.get("result") != answer:
            report.add(1, f"{describe(sent)} :: the ledger holds another answer: {key} "
                          f"{json.dumps(reply)[:200]}")
        if sent.kind == "order":
            placed = order_rows.get(sent.request_id)
            asked = (sent.body or {}).get("Quantity")
            if placed is None or placed[0] != answer["order"]["OrderID"] or placed[2] != asked:
                report.add(1, f"{describe(sent)} :: orders row {placed}")
        if sent.kind == "create_item" and stored.items.get(str(sent.sku), (0, ""))[1] != sent.request_id:
            report.add(1, f"{describe(sent)} :: items row {stored.items.get(str(sent.sku))}")
    # The records: each client knows what each of its SRNs must hold now.
    for client in clients:
        # Unresolved, or answered with somebody else's answer (counted under 4): not known.
        uncertain = set(client.busy) | {str(s.srn) for s in sent_all
                                        if s.client == client.number and s.srn and s.wrong}
        mine = {srn for srn in stored.students if srn.startswith(f"C{client.shared.tag}{client.number}X")}
        for srn, record in client.srns.items():
            if srn in uncertain:
                continue
            row = stored.students.get(srn)
            if row is None:
                report.add(1, f"{srn}: answered as {record}, but no row")
            elif (row[0], row[1]) != (record["Name"], record["Section"]):
                report.add(1, f"{srn}: answered as {record}, but the row holds {row}")
        for srn in sorted(mine - set(client.srns) - uncertain):
            report.add(1, f"{srn}: a row {stored.students[srn]} that no answer left there")

    # ---- 5: stock --------------------------------------------------------------------------
    by_sku: dict[str, list[Call]] = defaultdict(list)
    for sent in writes:
        if sent.kind in ("adjust", "order"):
            by_sku[str(sent.sku)].append(sent)
    for item in hot:
        expected = item.initial
        for sent in by_sku[item.sku]:
            if applied(sent):
                assert sent.body is not None
                expected += sent.body["Delta"] if sent.kind == "adjust" else -sent.body["Quantity"]
        quantity = stored.items.get(item.sku, (None, ""))[0]
        if quantity != expected:
            report.add(5, f"{item.sku}: stock {quantity}, expected {expected} (initial {item.initial}, "
                          f"{len(by_sku[item.sku])} changes and orders)")
        if quantity is not None and quantity < 0:
            report.add(5, f"{item.sku}: stock {quantity} below zero")
    ours = {s.request_id: s for s in writes if s.kind == "order"}
    for oid, sku, quantity, rid in stored.orders:
        asked = ours.get(rid)
        if asked is None or not applied(asked):
            report.add(5, f"order {oid} ({sku} x{quantity}, {rid}) that no client was told was placed: "
                          f"{describe(asked) if asked else 'unknown request'}")
    counts = Counter(rid for _, _, _, rid in stored.orders)
    for rid, n in counts.items():
        if n > 1:
            report.add(5, f"{rid}: {n} orders")

    # ---- 6: the ledger and the rows ----------------------------------------------------------
    srns_of: dict[str, set[str]] = {}  # what each request id asked about (two, for a shared id)
    for sent in writes:
        if sent.srn:
            srns_of.setdefault(sent.request_id, set()).add(sent.srn)
    for rid, (key, reply) in ledger.items():
        if not reply.get("ok"):
            continue
        result = reply.get("result", {})
        if result.get("erased"):
            # A deleted student's answers keep their status, not their data: its student was deleted.
            if not srns_of.get(rid, set()) & deleted:
                report.add(6, f"ledger {rid} ({key}) erased, but none of {srns_of.get(rid)} was deleted")
            continue
        if key == "insert_record":
            srn = result["record"]["SRN"]
            student = stored.students.get(srn)
            if srn not in deleted and (student is None or student[2] != rid):
                report.add(6, f"ledger {rid} inserted {srn}, the row: {student}")
        elif key == "place_order" and rid not in order_rows:
            report.add(6, f"ledger {rid} placed {result}, no orders row")
        elif key == "create_item" and stored.items.get(result["item"]["SKU"], (0, ""))[1] != rid:
            report.add(6, f"ledger {rid} created {result}, the items row: "
                          f"{stored.items.get(result['item']['SKU'])}")
    for srn, (_, _, rid) in stored.students.items():
        key, reply = ledger.get(rid, ("", {}))
        if key != "insert_record" or not reply.get("ok") or reply["result"]["record"]["SRN"] != srn:
            report.add(6, f"row {srn} written by {rid}, whose ledger entry is {key} "
                          f"{json.dumps(reply)[:160]}")
    for oid, sku, _, rid in stored.orders:
        key, reply = ledger.get(rid, ("", {}))
        if key != "place_order" or not reply.get("ok") or reply["result"]["order"]["OrderID"] != oid:
            report.add(6, f"order {oid} ({sku}) by {rid}, whose ledger entry is {key} "
                          f"{json.dumps(reply)[:160]}")

    # ---- 7: dead letters -------------------------------------------------------------------
    for queue, added in sorted(stored.dead.items()):
        report.add(7, f"{queue}: {added} message(s) more than before the run")
    for line in stored.dead_ids:
        report.add(7, f"dead-lettered: {line[:200]}")

    # ---- 8: waits ----------------------------------------------------------------------------
    windows = [(f.started, f.healed + PRODUCER_GRACE_S) for f in faults if f.stops_producer]
    for sent in sent_all:
        for attempt in sent.attempts:
            end = attempt.started + attempt.seconds
            if any(start <= end and attempt.started <= stop for start, stop in windows):
                continue
            if attempt.timed_out or (attempt.status and attempt.seconds > timeout_s + 1):
                at = attempt.started - clients[0].shared.started
                what = "no answer" if attempt.timed_out else attempt.status
                report.add(8, f"{sent.request_id} {sent.kind} sent at {at:.1f} s waited "
                              f"{attempt.seconds:.1f} s ({what})")

    # ---- 9: restarts and recovery ------------------------------------------------------------
    killed = {f.target for f in faults if f.kind == "kill"}
    everything = any(f.kind == "sigterm-all+up" for f in faults)
    for name, before in states_before.items():
        after = states_after.get(name)
        if after != before and name not in killed and not everything:
            report.add(9, f"{name} restarted without being killed: started/restarts {before} -> {after}")
    if recovery_s is None or recovery_s > RECOVERY_LIMIT_S:
        seconds = "not within 120" if recovery_s is None else f"{recovery_s:.1f}"
        report.add(9, f"every service answered again {seconds} s after the last fault was healed")
    return report


def render(seed: int, duration: float, nodes: int, clients: list[Client], lookups: list[Call],
           faults: list[Fault], skipped: Counter[str], report: Report, recovery_s: float | None,
           notes: list[str]) -> str:
    sent_all = [s for c in clients for s in c.shared.sent if s.client == c.number]
    lines = [f"## Chaos run: seed {seed}",
             "",
             f"Replay with `CHAOS_SEED={seed} CHAOS_DURATION={duration:g}"
             + (f" RABBITMQ_NODES={nodes}" if nodes > 1 else "") + " make chaos`. "
             f"{len(clients)} clients for {duration:g} s, {nodes} RabbitMQ node(s); "
             f"every service answered again {'-' if recovery_s is None else f'{recovery_s:.1f}'} s "
             "after the last fault was healed.",
             "", "| fault | injected | not injected (see notes) | skipped (target busy, or no time left) |",
             "|---|---|---|---|"]
    by_kind = Counter(f.name for f in faults if f.injected)
    refused = Counter(f.name for f in faults if not f.injected)
    for name in sorted(set(by_kind) | set(refused) | set(skipped)):
        lines.append(f"| {name} | {by_kind[name]} | {refused[name]} | {skipped[name]} |")
    kinds = Counter(f.kind for f in faults if f.injected)
    lines.append(f"| **all** ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) "
                 f"| {sum(by_kind.values())} | {sum(refused.values())} | {sum(skipped.values())} |")
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    for sent in [*sent_all, *lookups]:
        route = sent.kind + (f" (reuse {sent.reuse})" if sent.reuse else "")
        for attempt in sent.attempts:
            statuses[route][str(attempt.status) if attempt.status else "none"] += 1
    codes = sorted({code for c in statuses.values() for code in c})
    lines += ["", "| requests (HTTP attempts) | " + " | ".join(codes) + " | all |",
              "|---|" + "---|" * (len(codes) + 1)]
    for route in sorted(statuses):
        c = statuses[route]
        lines.append(f"| {route} | " + " | ".join(str(c[code]) for code in codes) + f" | {sum(c.values())} |")
    total = Counter[str]()
    for c in statuses.values():
        total.update(c)
    lines.append("| **all** | " + " | ".join(str(total[code]) for code in codes)
                 + f" | {sum(total.values())} |")
    lines += ["", "| # | invariant | violations |", "|---|---|---|"]
    for number, text in INVARIANTS.items():
        lines.append(f"| {number} | {text} | {len(report.violations[number])} |")
    lines += ["", "Faults in order (seconds from the start of the load):", ""]
    start = clients[0].shared.started if clients else 0.0
    for f in sorted(faults, key=lambda f: f.started):
        lines.append(f"- {f.started - start:6.1f} s {f.name}, held {f.hold_s:g} s, healed after "
                     f"{f.healed - f.started:.1f} s{'; ' + '; '.join(f.notes) if f.notes else ''}")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    for number, evidence in report.violations.items():
        if evidence:
            lines += ["", f"Invariant {number} ({INVARIANTS[number]}): {len(evidence)} violation(s)", ""]
            lines += [f"- {e}" for e in evidence[:25]]
            if len(evidence) > 25:
                lines.append(f"- ... and {len(evidence) - 25} more")
    return "\n".join(lines) + "\n"
