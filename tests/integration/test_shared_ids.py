"""One X-Request-ID on many requests at once: each gets its own answer, never another's.

Replies are matched by a correlation id new for every publish, not by the
client's request id; a write shares its id only with the same write.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.support import SystemCopy, json_of, unique_srn

ROUNDS = 40


def send_together(base: str, calls: list[tuple[str, str, dict[str, Any]]]) -> list[requests.Response]:
    """Every call at once, each on its own connection (so they spread over the producer's workers)."""
    start = threading.Barrier(len(calls))

    def send(call: tuple[str, str, dict[str, Any]]) -> requests.Response:
        method, path, kwargs = call
        with requests.Session() as session:
            start.wait()
            return session.request(method, base + path, timeout=20, **kwargs)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(send, calls))


def own_or_conflict(wanted: dict[str, Any], status: int, body: Any) -> bool:
    return (status == 201 and body == wanted) or (status == 409 and body["error"] == "request_id_conflict")


def judge(rid: str, hello: str, record: dict[str, Any], item: dict[str, Any] | None,
          responses: list[requests.Response]) -> list[str]:
    """What is wrong with one round's answers: each must be its own request's (or a conflict)."""
    health, read, items, orders, insert, again, *create = ((r.status_code, json_of(r)) for r in responses)
    checks = {
        "health_check": health[0] == 200 and health[1].get("message") == hello,
        "read_database": read[0] == 200 and set(read[1]) == {"records", "count", "next_after"},
        "items": items[0] == 200 and set(items[1]) == {"items", "count", "next_after"},
        "orders": orders[0] == 200 and set(orders[1]) == {"orders", "count", "next_after"},
    }
    if item is None:  # the same write twice, and no other: done once, both get its answer
        checks["insert_record"] = insert == (201, {"record": record})
        checks["insert_record again"] = again == insert
    else:  # and another write with the id: whichever came first is done, the other is refused
        checks["insert_record"] = own_or_conflict({"record": record}, *insert)
        checks["insert_record again"] = own_or_conflict({"record": record}, *again)
        checks["create_item"] = own_or_conflict({"item": item}, *create[0])
        checks["one of the two writes"] = (201 in (insert[0], again[0])) != (create[0][0] == 201)
    return [f"{name}: {r.status_code} {r.text[:200]}"
            for (name, ok), r in zip(checks.items(), [*responses, responses[-1]], strict=False)
            if not ok or r.headers.get("X-Request-ID") != rid]


@pytest.fixture
def prefix(stack: SystemCopy) -> Iterator[str]:
    prefix = unique_srn("SH")
    yield prefix
    stack.sql(f"DELETE FROM students WHERE srn LIKE '{prefix}%'")
    stack.sql(f"DELETE FROM orders WHERE sku LIKE '{prefix}%'")
    stack.sql(f"DELETE FROM items WHERE sku LIKE '{prefix}%'")


def test_requests_sharing_an_id_each_get_their_own_answer(stack: SystemCopy, prefix: str) -> None:
    run = secrets.token_hex(3)
    wrong: list[str] = []
    expected_rows: set[str] = set()
    for n in range(ROUNDS):
        rid = f"shared-{run}-{n}"
        header = {"X-Request-ID": rid}
        srn, sku = f"{prefix}-R{n:02d}", f"{prefix}-K{n:02d}"
        record = {"Name": f"Shared {n}", "SRN": srn, "Section": "S"}
        item = {"SKU": sku, "Name": f"Item {n}", "Quantity": n}
        hello = f"hello {rid}"
        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/health_check", {"params": {"message": hello}, "headers": header}),
            ("GET", "/read_database", {"params": {"limit": 1}, "headers": header}),
            ("GET", "/items", {"params": {"limit": 1}, "headers": header}),
            ("GET", "/orders", {"params": {"limit": 1}, "headers": header}),
            ("POST", "/insert_record", {"json": record, "headers": header}),
            ("POST", "/insert_record", {"json": record, "headers": header}),  # a retry, at the same time
        ]
        competing = n % 2 == 1  # every other round, another write with the same id too
        if competing:
            calls.append(("POST", "/items", {"json": item, "headers": header}))
        responses = send_together(stack.base_url, calls)
        judged = judge(rid, hello, record, item if competing else None, responses)
        wrong += [f"round {n}: {w}" for w in judged]
        if 201 in (responses[4].status_code, responses[5].status_code):
            expected_rows.add(srn)
        if competing and responses[6].status_code == 201:
            expected_rows.add(sku)
    # Exactly the writes answered 201 are stored.
    stored = {row[0] for row in stack.sql(f"SELECT srn FROM students WHERE srn LIKE '{prefix}%' "
                                          f"UNION ALL SELECT sku FROM items WHERE sku LIKE '{prefix}%'")}
    if stored != expected_rows:
        wrong.append(f"stored {sorted(stored ^ expected_rows)} differently from the answers")
    assert wrong == [], f"{len(wrong)} wrong answers in {ROUNDS} rounds: {wrong[:10]}"


def test_a_write_reusing_an_id_in_flight_for_another_body_is_409(stack: SystemCopy, prefix: str) -> None:
    """Two different writes with one id at once: one is done, the other is 409 and leaves nothing."""
    run = secrets.token_hex(3)
    kept_srns: set[str] = set()
    for n in range(20):
        rid = f"conflict-{run}-{n}"
        first = {"Name": "First", "SRN": f"{prefix}-A{n:02d}", "Section": "A"}
        second = {"Name": "Second", "SRN": f"{prefix}-B{n:02d}", "Section": "B"}
        header = {"X-Request-ID": rid}
        writes = [("POST", "/insert_record", {"json": body, "headers": header}) for body in (first, second)]
        responses = send_together(stack.base_url, writes)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409], [r.text for r in responses]
        winner, loser = (responses[0], responses[1]) if responses[0].status_code == 201 else (
            responses[1], responses[0])
        kept = first if winner is responses[0] else second
        assert json_of(winner) == {"record": kept}
        body = json_of(loser)
        assert body["error"] == "request_id_conflict" and body["message"] and body["request_id"] == rid
        assert loser.headers["X-Request-ID"] == rid
        other = second if kept is first else first
        kept_srns.add(kept["SRN"])
        # Later, the id keeps its first write's answer (the ledger's) and refuses any other.
        again = [requests.post(stack.base_url + "/insert_record", json=body, timeout=20,
                               headers={"X-Request-ID": rid}) for body in (kept, other)]
        assert (again[0].status_code, json_of(again[0])) == (201, {"record": kept})
        assert again[1].status_code == 409 and json_of(again[1])["error"] == "request_id_conflict"
    # Nothing of any refused write was stored.
    assert {row[0] for row in stack.sql(f"SELECT srn FROM students WHERE srn LIKE '{prefix}%'")} == kept_srns
