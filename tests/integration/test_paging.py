"""GET /read_database?limit=&after=: keyset pages; and a plain answer larger than a RabbitMQ message."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from tests.support import SystemCopy, json_of, restart_counts, unique_srn

Api = Callable[..., requests.Response]
BROKER_MESSAGE_LIMIT = 16 * 2**20  # RabbitMQ 4's default max_message_size


def test_a_cursor_walk_returns_every_row_once_in_order(api: Api) -> None:
    prefix = unique_srn("P")
    for i in range(12):
        record = {"Name": f"Pager {i}", "SRN": f"{prefix}-{i:02d}", "Section": "P"}
        assert api("POST", "/insert_record", json=record).status_code == 201
    try:
        walked, after, pages = [], None, 0
        while True:
            params = {"limit": 5, **({"after": after} if after else {})}
            page = json_of(api("GET", "/read_database", params=params))
            assert set(page) == {"records", "count", "next_after"}
            assert page["count"] == len(page["records"]) <= 5
            walked += page["records"]
            pages += 1
            after = page["next_after"]
            if after is None:
                break
            assert after == walked[-1]["SRN"]
        plain = json_of(api("GET", "/read_database"))
        assert walked == plain["records"] and plain["count"] == len(walked)
        srns = [r["SRN"] for r in walked]
        assert srns == sorted(srns) and len(set(srns)) == len(srns)
        ours = [f"{prefix}-{i:02d}" for i in range(12)]
        assert [r["SRN"] for r in walked if r["SRN"].startswith(prefix)] == ours
        assert pages == -(-len(walked) // 5)  # the last page says it is the last: no empty page after it
        # A cursor in the middle of our rows: the page starts right after it, lower case is the same SRN.
        middle = json_of(api("GET", "/read_database", params={"limit": 3, "after": f"{prefix}-04".lower()}))
        assert [r["SRN"] for r in middle["records"]] == [f"{prefix}-{i:02d}" for i in (5, 6, 7)]
        assert middle["next_after"] == f"{prefix}-07"
    finally:
        for i in range(12):
            api("GET", "/delete_record", params={"SRN": f"{prefix}-{i:02d}"})


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=ten", "limit=", "limit=2.5", "limit=-3",
                                   "after=", "after=not%20an%20srn", "limit=1&limit=2"])
def test_a_bad_page_is_400_and_changes_nothing(stack: SystemCopy, api: Api, query: str) -> None:
    before = stack.snapshot()
    response = api("GET", f"/read_database?{query}")
    assert response.status_code == 400, response.text
    body = json_of(response)
    assert body["error"] == "invalid_parameter" and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert stack.snapshot() == before


@pytest.fixture
def big_table(stack: SystemCopy) -> Iterator[int]:
    """Rows enough that the whole table's JSON is larger than one RabbitMQ message may be."""
    rows = 130_000  # about 145 bytes of JSON each: some 18 MiB
    # 0..999,999 from six tables of digits: plain SQL that MySQL 8 and MariaDB both run.
    digits = "(" + " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10)) + ")"
    number = " + ".join(f"t{k}.d * {10**k}" for k in range(6))
    tables = ", ".join(f"{digits} AS t{k}" for k in range(6))
    stack.sql(
        "INSERT INTO students (srn, name, section, request_id) "
        "SELECT CONCAT('BIGTABLE', LPAD(i, 7, '0')), REPEAT('x', 100), 'BIG', 'test-big-table' "
        f"FROM (SELECT {number} AS i FROM {tables}) AS n WHERE i < {rows}")
    try:
        yield int(stack.sql("SELECT COUNT(*) FROM students")[0][0])
    finally:
        stack.sql("DELETE FROM students WHERE request_id = 'test-big-table'")


def test_an_answer_larger_than_a_broker_message_still_comes_whole(stack: SystemCopy, api: Api,
                                                                   big_table: int) -> None:
    restarts = restart_counts(stack)
    response = api("GET", "/read_database", timeout=120)
    assert response.status_code == 200
    assert len(response.content) > BROKER_MESSAGE_LIMIT
    body = json_of(response)
    assert body["count"] == len(body["records"]) == big_table
    srns = [r["SRN"] for r in body["records"]]
    assert srns == sorted(srns) and len(set(srns)) == len(srns)
    # Nothing broke on the way: no service restarted, and the next answers are normal.
    assert restart_counts(stack) == restarts
    assert api("GET", "/health_check", params={"message": "after the big read"}).status_code == 200
    assert json_of(api("GET", "/read_database", params={"limit": 1}))["count"] == 1


def walk(api: Api, path: str, field: str, by: str, limit: int) -> tuple[list[dict[str, object]], int]:
    """Every row of GET path, a page of `limit` at a time; and how many pages it took."""
    walked: list[dict[str, object]] = []
    after: object = None
    pages = 0
    while True:
        params = {"limit": limit, **({"after": after} if after is not None else {})}
        page = json_of(api("GET", path, params=params))
        assert set(page) == {field, "count", "next_after"}
        assert page["count"] == len(page[field]) <= limit
        walked += page[field]
        pages += 1
        after = page["next_after"]
        if after is None:
            return walked, pages
        assert after == walked[-1][by]


def test_items_and_orders_are_walked_by_cursor_like_records(stack: SystemCopy, api: Api) -> None:
    prefix = unique_srn("PI")
    skus = [f"{prefix}-{i:02d}" for i in range(12)]
    try:
        for sku in skus:
            assert api("POST", "/items", json={"SKU": sku, "Name": "Paged", "Quantity": 1}).status_code == 201
        orders = [json_of(api("POST", "/orders", json={"SKU": sku, "Quantity": 1}))["order"]["OrderID"]
                  for sku in skus]
        tables = (("/items", "items", "SKU", skus), ("/orders", "orders", "OrderID", orders))
        for path, field, by, ours in tables:
            walked, pages = walk(api, path, field, by, 5)
            plain = json_of(api("GET", path))
            assert walked == plain[field] and plain["count"] == len(walked) and set(plain) == {field, "count"}
            keys = [row[by] for row in walked]
            assert keys == sorted(keys) and len(set(keys)) == len(keys)  # type: ignore[type-var]
            assert [k for k in keys if k in set(ours)] == ours
            assert pages == -(-len(walked) // 5)
        middle = json_of(api("GET", "/items", params={"limit": 3, "after": skus[4].lower()}))
        assert [i["SKU"] for i in middle["items"]] == skus[5:8] and middle["next_after"] == skus[7]
        after_order = json_of(api("GET", "/orders", params={"limit": 2, "after": orders[3]}))
        assert [o["OrderID"] for o in after_order["orders"]] == orders[4:6]
    finally:
        stack.sql(f"DELETE FROM orders WHERE sku LIKE '{prefix}%'")
        stack.sql(f"DELETE FROM items WHERE sku LIKE '{prefix}%'")


@pytest.mark.parametrize("query", ["/items?limit=0", "/items?limit=10001", "/items?after=not%20a%20sku",
                                   "/items?limit=1&limit=2", "/orders?after=x", "/orders?after=-1",
                                   "/orders?limit=ten", "/orders?after="])
def test_a_bad_page_of_items_or_orders_is_400_and_changes_nothing(stack: SystemCopy, api: Api,
                                                                  query: str) -> None:
    before = stack.snapshot()
    response = api("GET", query)
    assert response.status_code == 400, response.text
    body = json_of(response)
    assert body["error"] == "invalid_parameter" and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert stack.snapshot() == before
