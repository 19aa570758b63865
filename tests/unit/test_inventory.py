"""The inventory's validation, and the update's partial record."""

from __future__ import annotations

from typing import Any

import pytest

from common.inventory import clean_sku
from common.messages import Invalid
from common.models import ITEM, ORDER, STOCK_CHANGE, STOCK_DELTA, UPDATE


def details_of(clean: Any, body: dict[str, Any], code: str) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        clean(body)
    assert caught.value.code == code
    return caught.value.details


def test_an_item_is_trimmed_upper_cased_and_starts_with_no_stock() -> None:
    assert ITEM.clean({"sku": " pen-1 ", "name": " Blue pen "}) == {"SKU": "PEN-1", "Name": "Blue pen",
                                                                    "Quantity": 0}
    assert ITEM.clean({"SKU": "A", "Name": "B", "Quantity": 7})["Quantity"] == 7


def test_every_bad_item_field_is_named() -> None:
    details = details_of(ITEM.clean, {"SKU": "no spaces", "Name": "", "Quantity": -1, "Price": 1},
                         "invalid_item")
    assert details == {"SKU": "must be 1-32 letters, digits, '-' or '_'", "Name": "must not be empty",
                       "Quantity": "must be from 0 to 1000000000", "Price": "unknown field"}
    assert details_of(ITEM.clean, {}, "invalid_item") == {"SKU": "required", "Name": "required"}
    assert details_of(ITEM.clean, {"SKU": "A", "sku": "B", "Name": "N"}, "invalid_item") == {
        "SKU": "given more than once"}


@pytest.mark.parametrize("quantity", [True, "3", 1.0, None, [1], 10**9 + 1])
def test_a_quantity_is_a_whole_number_in_range(quantity: Any) -> None:
    assert "Quantity" in details_of(ITEM.clean, {"SKU": "A", "Name": "N", "Quantity": quantity},
                                    "invalid_item")


def test_a_stock_change_is_a_non_zero_whole_number() -> None:
    assert STOCK_DELTA.clean({"delta": -3}) == {"Delta": -3}
    assert STOCK_CHANGE.clean({"SKU": "a", "Delta": 5}) == {"SKU": "A", "Delta": 5}
    assert details_of(STOCK_DELTA.clean, {"Delta": 0}, "invalid_stock_change") == {"Delta": "must not be 0"}
    assert details_of(STOCK_DELTA.clean, {"Delta": 1, "SKU": "A"}, "invalid_stock_change") == {
        "SKU": "unknown field"}  # the SKU is in the path
    assert details_of(STOCK_CHANGE.clean, {"Delta": 1}, "invalid_stock_change") == {"SKU": "required"}


def test_an_order_is_of_at_least_one() -> None:
    assert ORDER.clean({"sku": "a", "quantity": 1}) == {"SKU": "A", "Quantity": 1}
    assert details_of(ORDER.clean, {"SKU": "A", "Quantity": 0}, "invalid_order") == {
        "Quantity": "must be from 1 to 1000000000"}
    assert details_of(ORDER.clean, {"SKU": "A"}, "invalid_order") == {"Quantity": "required"}


def test_a_sku_in_a_path_is_a_parameter() -> None:
    assert clean_sku(" ab-1 ") == "AB-1"
    with pytest.raises(Invalid) as caught:
        clean_sku("a b")
    assert caught.value.code == "invalid_parameter"


def test_an_update_names_the_srn_and_what_changes() -> None:
    assert UPDATE.clean({"srn": "s1", "Section": " B "}) == {"SRN": "S1", "Section": "B"}
    assert UPDATE.clean({"SRN": "S1", "Name": "N", "Section": "C"}) == {"SRN": "S1", "Name": "N",
                                                                           "Section": "C"}
    assert details_of(UPDATE.clean, {"SRN": "S1"}, "invalid_record") == {
        "Name": "give Name, Section or both", "Section": "give Name, Section or both"}
    assert details_of(UPDATE.clean, {"Name": "N"}, "invalid_record") == {"SRN": "required"}
    assert details_of(UPDATE.clean, {"SRN": "S1", "Name": ""}, "invalid_record") == {
        "Name": "must not be empty"}


def test_items_and_orders_are_read_a_page_at_a_time() -> None:
    from common.messages import page_message

    assert page_message({}, by="SKU") == {"limit": 10_000, "after": None}
    assert page_message({"limit": 2, "after": " pen-1 "}, by="SKU") == {"limit": 2, "after": "PEN-1"}
    assert page_message({"limit": 2, "after": 41}, by="OrderID") == {"limit": 2, "after": 41}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"after": "41"}, "OrderID"), ({"after": True}, "OrderID"), ({"after": -1}, "OrderID"),
        ({"after": "a b"}, "SKU"), ({"limit": 0}, "SKU"), ({"extra": 1}, "SKU")]
    for payload, by in bad:
        with pytest.raises(Invalid) as caught:
            page_message(payload, by=by)
        assert caught.value.code == "invalid_message", payload


class PageCursor:
    """The inventory readers' two statements over in-memory rows (ordered by their first column)."""

    def __init__(self, table: list[tuple[Any, ...]]) -> None:
        self.table = sorted(table)
        self.result: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        *after, limit = params
        self.result = [row for row in self.table if not after or row[0] > after[0]][:limit]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.result


@pytest.mark.parametrize(("reader", "field", "by", "table"), [
    ("items", "items", "SKU", [(f"K{i:02d}", f"item {i}", i) for i in range(7)]),
    ("orders", "orders", "OrderID", [(i, "K01", 1, "placed") for i in range(1, 8)]),
])
def test_a_walk_of_item_or_order_pages_returns_every_row_once(reader: str, field: str, by: str,
                                                              table: list[tuple[Any, ...]]) -> None:
    from common.core import Message
    from inventory_items import items
    from inventory_orders import orders

    module: Any = items if reader == "items" else orders
    db, seen, after = PageCursor(table), [], None
    while True:
        page = module.READ.handle(Message("p", module.READ.parse({"limit": 3, "after": after})), db)
        assert page["count"] == len(page[field]) <= 3
        seen += [row[by] for row in page[field]]
        after = page["next_after"]
        if after is None:
            break
        assert after == seen[-1]
    assert seen == [row[0] for row in table]
