"""The inventory's messages (items, stock changes, orders) and its one rule of stock.

Like the records, the bodies are models (`common/models.py`): the producer
checks every body before it publishes and the consumers check again what they
take off their queues. Field names are the contract's (`SKU`, `Name`, `Quantity`,
`Delta`); their lower-case spellings are accepted too, unknown fields are not.
"""

from __future__ import annotations

from typing import Any

from common.db import Cursor, one
from common.messages import Refused, clean_srn


def clean_sku(value: Any) -> str:
    """A SKU as stored: trimmed, upper-case, 1-32 of [A-Za-z0-9_-] (the SRN's rules)."""
    return clean_srn(value, field="SKU")


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
