"""The inventory's messages (items, stock changes, orders) and its one rule of stock.

Like the records in `messages`, the producer checks every body with these
functions before it publishes and the consumers check again what they take
off their queues. Field names are the contract's (`SKU`, `Name`, `Quantity`,
`Delta`); their lower-case spellings are accepted too, unknown fields are not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from common.db import Cursor, one
from common.messages import SRN_PATTERN, Invalid, Refused, clean_srn

NAME_MAX = 100
# Far above any real stock, and far below the column's range, so no sum overflows.
QUANTITY_MAX = 1_000_000_000

Rule = Callable[[Any], Any]
REQUIRED = object()  # a field's default, when it has none


def clean_sku(value: Any) -> str:
    """A SKU as stored: trimmed, upper-case, 1-32 of [A-Za-z0-9_-] (the SRN's rules)."""
    return clean_srn(value, field="SKU")


def _sku(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    sku = value.strip()
    if not SRN_PATTERN.fullmatch(sku):
        raise ValueError("must be 1-32 letters, digits, '-' or '_'")
    return sku.upper()


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    name = value.strip()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    return name


def _whole(low: int, high: int, *, zero: bool = True) -> Rule:
    def check(value: Any) -> int:
        # bool is an int to Python, never to a client.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        if value == 0 and not zero:
            raise ValueError("must not be 0")
        return value
    return check


ITEM: dict[str, tuple[Rule, Any]] = {
    "SKU": (_sku, REQUIRED),
    "Name": (_name, REQUIRED),
    "Quantity": (_whole(0, QUANTITY_MAX), 0),
}
DELTA: dict[str, tuple[Rule, Any]] = {"Delta": (_whole(-QUANTITY_MAX, QUANTITY_MAX, zero=False), REQUIRED)}
STOCK_CHANGE: dict[str, tuple[Rule, Any]] = {"SKU": (_sku, REQUIRED), **DELTA}
ORDER: dict[str, tuple[Rule, Any]] = {
    "SKU": (_sku, REQUIRED),
    "Quantity": (_whole(1, QUANTITY_MAX), REQUIRED),
}


def _clean(body: Mapping[str, Any], fields: dict[str, tuple[Rule, Any]], code: str,
           what: str) -> dict[str, Any]:
    """The body's fields, cleaned; `Invalid(code)` whose details name every bad one."""
    details: dict[str, str] = {}
    given: dict[str, list[Any]] = {}
    for key, value in body.items():
        name = next((field for field in fields if key in (field, field.lower())), None)
        if name is None:
            details[key] = "unknown field"
        else:
            given.setdefault(name, []).append(value)
    cleaned: dict[str, Any] = {}
    for name, (rule, default) in fields.items():
        values = given.get(name, [])
        if len(values) > 1:
            details[name] = "given more than once"
        elif not values and default is REQUIRED:
            details[name] = "required"
        elif not values:
            cleaned[name] = default
        else:
            try:
                cleaned[name] = rule(values[0])
            except ValueError as exc:
                details[name] = str(exc)
    if details:
        raise Invalid(code, f"The {what} is not valid.", details)
    return cleaned


def clean_item(body: Mapping[str, Any]) -> dict[str, Any]:
    return _clean(body, ITEM, "invalid_item", "item")


def clean_delta(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body of POST /items/<sku>/stock: the SKU is in the path."""
    return _clean(body, DELTA, "invalid_stock_change", "stock change")


def clean_stock_change(body: Mapping[str, Any]) -> dict[str, Any]:
    return _clean(body, STOCK_CHANGE, "invalid_stock_change", "stock change")


def clean_order(body: Mapping[str, Any]) -> dict[str, Any]:
    return _clean(body, ORDER, "invalid_order", "order")


def change_stock(cursor: Cursor, sku: str, delta: int) -> tuple[str, int]:
    """Add `delta` (negative: take) to an item's stock; its name and new quantity.

    The row lock makes check-and-change one step: every concurrent change of
    the item, on any number of consumer instances, waits for this transaction
    and then sees what it left, so stock never goes below zero.
    """
    cursor.execute("SELECT name, quantity FROM items WHERE sku = %s FOR UPDATE", (sku,))
    row = one(cursor)
    if row is None:
        raise Refused("not_found", f"No item with SKU {sku}.")
    name, quantity = str(row[0]), int(row[1])
    if quantity + delta < 0:
        raise Refused("insufficient_stock", f"Only {quantity} of {sku} in stock; {-delta} asked for.")
    cursor.execute("UPDATE items SET quantity = quantity + %s WHERE sku = %s", (delta, sku))
    return name, quantity + delta
