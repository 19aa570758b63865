"""inventory_items: creates items, lists them, and changes their stock level."""

from __future__ import annotations

from typing import Any

from common.consumer import Handler, Message, run
from common.db import Cursor, is_duplicate_key, one, rows
from common.inventory import clean_item, clean_stock_change
from common.messages import Refused, no_parameters
from common.topology import ADJUST_STOCK, CREATE_ITEM, READ_ITEMS


def item(sku: str, name: str, quantity: int) -> dict[str, Any]:
    return {"SKU": sku, "Name": name, "Quantity": int(quantity)}


def create(message: Message, db: Cursor) -> dict[str, Any]:
    new = message.payload
    try:
        db.execute(
            "INSERT INTO items (sku, name, quantity, request_id) VALUES (%s, %s, %s, %s)",
            (new["SKU"], new["Name"], new["Quantity"], message.request_id),
        )
    except Exception as exc:
        if is_duplicate_key(exc):
            raise Refused("duplicate_sku", f"An item with SKU {new['SKU']} already exists.") from exc
        raise
    return {"item": item(new["SKU"], new["Name"], new["Quantity"])}


def read(_message: Message, db: Cursor) -> dict[str, Any]:
    db.execute("SELECT sku, name, quantity FROM items ORDER BY sku")
    items = [item(*row) for row in rows(db)]
    return {"items": items, "count": len(items)}


def adjust(message: Message, db: Cursor) -> dict[str, Any]:
    sku, delta = message.payload["SKU"], message.payload["Delta"]
    # The row lock makes check-then-update one step for every concurrent change.
    db.execute("SELECT name, quantity FROM items WHERE sku = %s FOR UPDATE", (sku,))
    row = one(db)
    if row is None:
        raise Refused("not_found", f"No item with SKU {sku}.")
    name, quantity = row
    if quantity + delta < 0:
        raise Refused("insufficient_stock", f"Only {quantity} of {sku} in stock; cannot take {-delta}.")
    db.execute("UPDATE items SET quantity = quantity + %s WHERE sku = %s", (delta, sku))
    return {"item": item(sku, name, quantity + delta)}


CREATE = Handler(CREATE_ITEM, clean_item, create, ledger=True)
READ = Handler(READ_ITEMS, no_parameters, read, expires=True)
ADJUST = Handler(ADJUST_STOCK, clean_stock_change, adjust, ledger=True)

if __name__ == "__main__":
    run("inventory_items", CREATE, READ, ADJUST)
