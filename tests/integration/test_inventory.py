"""The contract's Inventory section against the real containers: items, stock, orders."""

from __future__ import annotations

import concurrent.futures
import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
import requests

from common.models import ORDER
from tests.support import SystemCopy, check_refusal, docker, json_of, status_path, unique_srn, wait_until

Api = Callable[..., requests.Response]
JSON_TYPE = {"Content-Type": "application/json"}

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/items", {"json": {"Name": "No SKU"}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": ""}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "has space", "Name": "N"}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N" * 101}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N", "Quantity": -1}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N", "Quantity": "5"}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N", "Quantity": 1.5}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N", "Quantity": True}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N", "Quantity": 10**12}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "sku": "T", "Name": "N"}}, 400, "invalid_item"),
    ("POST", "/items", {"json": {"SKU": "S", "Name": "N", "Price": 3}}, 400, "invalid_item"),
    ("POST", "/items", {"json": ["SKU", "S"]}, 400, "malformed_body"),
    ("POST", "/items", {"data": "{broken", "headers": JSON_TYPE}, 400, "malformed_body"),
    ("POST", "/items", {"data": {"SKU": "S", "Name": "N"}}, 415, "unsupported_media_type"),
    ("POST", "/items", {"data": "x" * (16 * 1024 + 1), "headers": JSON_TYPE}, 413, "body_too_large"),
    ("POST", "/items/S/stock", {"json": {}}, 400, "invalid_stock_change"),
    ("POST", "/items/S/stock", {"json": {"Delta": 0}}, 400, "invalid_stock_change"),
    ("POST", "/items/S/stock", {"json": {"Delta": "1"}}, 400, "invalid_stock_change"),
    ("POST", "/items/S/stock", {"json": {"Delta": 1, "SKU": "T"}}, 400, "invalid_stock_change"),
    ("POST", "/items/not%20a%20sku/stock", {"json": {"Delta": 1}}, 400, "invalid_parameter"),
    ("GET", "/items/S/stock", {}, 405, "method_not_allowed"),
    ("POST", "/orders", {"json": {"SKU": "S"}}, 400, "invalid_order"),
    ("POST", "/orders", {"json": {"SKU": "S", "Quantity": 0}}, 400, "invalid_order"),
    ("POST", "/orders", {"json": {"Quantity": 1}}, 400, "invalid_order"),
    ("POST", "/orders", {"json": {"SKU": "S", "Quantity": 1, "Status": "placed"}}, 400, "invalid_order"),
    ("POST", "/orders", {"data": "SKU=S&Quantity=1",
                         "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415,
     "unsupported_media_type"),
    ("DELETE", "/orders", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_REQUESTS,
                         ids=[f"{c[1]}-{c[4]}-{i}" for i, c in enumerate(BAD_REQUESTS)])
def test_every_refusal_is_json_and_changes_nothing(
    stack: SystemCopy, api: Api, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    body = check_refusal(stack, lambda: api(method, path, **kwargs), status, code)
    if code.startswith("invalid_") and code != "invalid_parameter":
        assert body["details"], body  # names the bad field(s)


def new_item(api: Api, quantity: int, prefix: str = "K") -> str:
    sku = unique_srn(prefix)
    response = api("POST", "/items", json={"SKU": sku.lower(), "Name": f"Item {sku}", "Quantity": quantity})
    assert response.status_code == 201, response.text
    return sku


def stock_of(stack: SystemCopy, sku: str) -> int:
    [[quantity]] = stack.sql(f"SELECT quantity FROM items WHERE sku = '{sku}'")
    return int(quantity)


def test_an_item_is_created_listed_and_its_stock_changed(stack: SystemCopy, api: Api) -> None:
    sku = unique_srn("K")
    created = api("POST", "/items", json={"sku": f"  {sku.lower()} ", "name": "Blue pen"})
    assert created.status_code == 201
    assert created.json() == {"item": {"SKU": sku, "Name": "Blue pen", "Quantity": 0}}

    duplicate = api("POST", "/items", json={"SKU": sku, "Name": "Another pen", "Quantity": 9})
    assert duplicate.status_code == 409 and json_of(duplicate)["error"] == "duplicate_sku"

    added = api("POST", f"/items/{sku.lower()}/stock", json={"Delta": 5})
    assert added.status_code == 200 and added.json() == {"item": {"SKU": sku, "Name": "Blue pen",
                                                                   "Quantity": 5}}
    taken = api("POST", f"/items/{sku}/stock", json={"delta": -2})
    assert taken.status_code == 200 and taken.json()["item"]["Quantity"] == 3

    before = stack.snapshot()
    too_much = api("POST", f"/items/{sku}/stock", json={"Delta": -4})
    assert too_much.status_code == 409 and json_of(too_much)["error"] == "insufficient_stock"
    assert stack.snapshot()[:1] + stack.snapshot()[2:] == before[:1] + before[2:]  # only the ledger grew
    assert stock_of(stack, sku) == 3

    listed = api("GET", "/items")
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == len(body["items"])
    assert {"SKU": sku, "Name": "Blue pen", "Quantity": 3} in body["items"]
    assert [item["SKU"] for item in body["items"]] == sorted(item["SKU"] for item in body["items"])

    missing = api("POST", f"/items/{unique_srn('NONE')}/stock", json={"Delta": 1})
    assert missing.status_code == 404 and json_of(missing)["error"] == "not_found"


def test_an_order_takes_its_stock_in_the_same_transaction(stack: SystemCopy, api: Api) -> None:
    sku = new_item(api, quantity=3)
    placed = api("POST", "/orders", json={"SKU": sku.lower(), "Quantity": 2})
    assert placed.status_code == 201, placed.text
    order = placed.json()["order"]
    assert order == {"OrderID": order["OrderID"], "SKU": sku, "Quantity": 2, "Status": "placed"}
    assert isinstance(order["OrderID"], int)
    assert stock_of(stack, sku) == 1
    assert stack.sql(f"SELECT order_id, quantity FROM orders WHERE sku = '{sku}'") == [
        [str(order["OrderID"]), "2"]]

    before = stack.snapshot()
    refused = api("POST", "/orders", json={"SKU": sku, "Quantity": 2})
    assert refused.status_code == 409 and json_of(refused)["error"] == "insufficient_stock"
    after = stack.snapshot()
    assert (after[2], after[3]) == (before[2], before[3])  # no order, no stock taken

    unknown = api("POST", "/orders", json={"SKU": unique_srn("NONE"), "Quantity": 1})
    assert unknown.status_code == 404 and json_of(unknown)["error"] == "not_found"

    listed = api("GET", "/orders")
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == len(body["orders"]) and order in body["orders"]
    ids = [o["OrderID"] for o in body["orders"]]
    assert ids == sorted(ids)


def test_a_retried_order_is_placed_once_and_its_answer_is_stored(stack: SystemCopy, api: Api) -> None:
    sku = new_item(api, quantity=10)
    request_id = f"order-{unique_srn()}"
    first = api("POST", "/orders", json={"SKU": sku, "Quantity": 4}, headers={"X-Request-ID": request_id})
    again = api("POST", "/orders", json={"SKU": sku, "Quantity": 4}, headers={"X-Request-ID": request_id})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert stock_of(stack, sku) == 6
    stored = api("GET", first.headers["Content-Location"])
    assert stored.status_code == 201 and stored.json() == first.json()

    other = api("POST", "/orders", json={"SKU": sku, "Quantity": 1}, headers={"X-Request-ID": request_id})
    assert other.status_code == 409 and json_of(other)["error"] == "request_id_conflict"
    assert stock_of(stack, sku) == 6

    change_id = f"stock-{unique_srn()}"
    for _ in range(2):
        changed = api("POST", f"/items/{sku}/stock", json={"Delta": 7}, headers={"X-Request-ID": change_id})
        assert changed.status_code == 200 and changed.json()["item"]["Quantity"] == 13
    assert api("GET", changed.headers["Content-Location"]).json() == changed.json()


@pytest.mark.parametrize(("routing_key", "payload"), [
    ("place_order", {"Quantity": 2}),
    ("adjust_stock", {"Delta": -2}),
])
def test_a_redelivered_message_acts_once(stack: SystemCopy, api: Api, routing_key: str,
                                         payload: dict[str, Any]) -> None:
    """The same message twice, as RabbitMQ redelivers it after a consumer dies before its ack."""
    sku = new_item(api, quantity=10)
    message_id = f"twice-{unique_srn()}"
    body = json.dumps({"SKU": sku, **payload}).encode()
    with stack.amqp_channel() as channel:
        for _ in range(2):
            channel.basic_publish("microservices", routing_key, body, pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=message_id,
                correlation_id=message_id), mandatory=True)
    wait_until(lambda: stack.sql(f"SELECT COUNT(*) FROM requests WHERE request_id = '{message_id}'")
               == [["1"]])
    wait_until(lambda: stack.queue_depth(routing_key) == 0)
    assert stock_of(stack, sku) == 8
    orders = stack.sql(f"SELECT COUNT(*) FROM orders WHERE request_id = '{message_id}'")
    assert orders == [["1" if routing_key == "place_order" else "0"]]


# ---- many orders at once for one item: never oversold -------------------------------------------

ORDERS, STOCK = 200, 50


Answer = tuple[str, int, Any]  # request id, HTTP status, body


def order_burst(stack: SystemCopy, sku: str, during: Callable[[], None] | None = None) -> list[Answer]:
    """ORDERS concurrent orders of one unit; `during` runs once the burst is under way."""
    started: list[int] = []  # list.append is atomic across threads

    def one(number: int) -> Answer:
        request_id = f"burst-{sku}-{number}"
        started.append(number)
        with requests.Session() as session:
            response = session.post(f"{stack.base_url}/orders", json={"SKU": sku, "Quantity": 1},
                                    headers={"X-Request-ID": request_id}, timeout=30)
        return request_id, response.status_code, json_of(response)

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(one, n) for n in range(ORDERS)]
        if during is not None:
            wait_until(lambda: len(started) >= ORDERS // 4, timeout=30, interval=0.01)
            during()
        return [future.result() for future in futures]


def settled_orders(stack: SystemCopy, sku: str) -> set[str]:
    """The request ids of the item's orders, once nothing is left on the queue."""
    wait_until(lambda: stack.queue_depth("place_order") == 0, timeout=60)
    return {request_id for [request_id] in stack.sql(f"SELECT request_id FROM orders WHERE sku = '{sku}'")}


def finished(api: Api, path: str) -> requests.Response | None:
    """The stored answer of a write (its status_path), once there is one."""
    response = api("GET", path)
    return None if response.status_code == 404 else response


def check_never_oversold(stack: SystemCopy, api: Api, sku: str, answers: list[Answer]) -> Counter[int]:
    statuses = Counter(status for _, status, _ in answers)
    placed = settled_orders(stack, sku)
    assert len(placed) == STOCK and stock_of(stack, sku) == 0, statuses
    assert {request_id for request_id, status, _ in answers if status == 201} <= placed
    for request_id, status, body in answers:
        if status == 409:
            assert body["error"] == "insufficient_stock" and request_id not in placed
        elif status == 202:  # confirmed but not answered in time: its stored answer says what became of it
            path = status_path(request_id, "place_order", ORDER.clean({"SKU": sku, "Quantity": 1}))
            stored = wait_until(functools.partial(finished, api, path), timeout=60)
            assert (stored.status_code == 201) == (request_id in placed), stored.text
        else:
            assert status == 201, (status, body)
    return statuses


Scale = Callable[[int], list[str]]


@pytest.fixture
def scale_orders(stack: SystemCopy) -> Iterator[Scale]:
    """Run `n` inventory_orders instances (their containers); back to one afterwards."""
    def scale(n: int) -> list[str]:
        stack.compose_with({}, "up", "-d", "--no-deps", "--no-recreate", "--scale",
                           f"inventory_orders={n}", "inventory_orders")
        containers = stack.containers("inventory_orders")
        assert len(containers) == n
        wait_until(lambda: stack.management("queues/%2F/place_order").get("consumers") == n, timeout=90)
        return containers

    yield scale
    scale(1)


@pytest.mark.parametrize("consumers", [1, 3])
def test_200_concurrent_orders_for_50_in_stock(stack: SystemCopy, api: Api,
                                               scale_orders: Scale, consumers: int) -> None:
    scale_orders(consumers)
    sku = new_item(api, quantity=STOCK, prefix="C")
    statuses = check_never_oversold(stack, api, sku, order_burst(stack, sku))
    assert statuses == Counter({201: STOCK, 409: ORDERS - STOCK}), statuses
    print(f"\n{consumers} orders consumer(s): {dict(statuses)}, final stock {stock_of(stack, sku)}")


def test_200_concurrent_orders_with_an_order_consumer_killed(stack: SystemCopy, api: Api,
                                                             scale_orders: Scale) -> None:
    victim = scale_orders(3)[0]
    sku = new_item(api, quantity=STOCK, prefix="C")

    def kill() -> None:
        docker("kill", victim)  # SIGKILL: whatever it held unacknowledged goes to another instance
        time.sleep(1)
        docker("start", victim)

    answers = order_burst(stack, sku, during=kill)
    statuses = check_never_oversold(stack, api, sku, answers)
    assert statuses[503] == 0 and sum(statuses.values()) == ORDERS, statuses
    print(f"\n3 orders consumers, one killed: {dict(statuses)}, orders in the database "
          f"{len(settled_orders(stack, sku))}, final stock {stock_of(stack, sku)}")
