"""inventory_items: creates items, lists them, and changes their stock level."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Write, paged_read
from common.db import Cursor, insert_new
from common.inventory import change_stock
from common.messages import Refused
from common.models import ITEM, STOCK_CHANGE
from common.topology import ADJUST_STOCK, CREATE_ITEM, READ_ITEMS


def item(sku: str, name: str, quantity: int) -> dict[str, Any]:
    return {"SKU": sku, "Name": name, "Quantity": int(quantity)}


def create(message: Message, db: Cursor) -> dict[str, Any]:
    new = message.payload
    insert_new(
        db, "INSERT INTO items (sku, name, quantity, request_id) VALUES (%s, %s, %s, %s)",
        (new["SKU"], new["Name"], new["Quantity"], message.request_id),
        Refused("duplicate_sku", f"An item with SKU {new['SKU']} already exists."),
    )
    return {"item": item(new["SKU"], new["Name"], new["Quantity"])}


def adjust(message: Message, db: Cursor) -> dict[str, Any]:
    sku = message.payload["SKU"]
    name, quantity = change_stock(db, sku, message.payload["Delta"])
    return {"item": item(sku, name, quantity)}


CREATE = Write(CREATE_ITEM, ITEM.clean, create)
# Items with their stock a page at a time, by SKU (keyset paging, as read_database's records).
READ = paged_read(READ_ITEMS, "items", "sku, name, quantity", "sku", field="items", by="SKU", row=item)
ADJUST = Write(ADJUST_STOCK, STOCK_CHANGE.clean, adjust)

if __name__ == "__main__":
    run("inventory_items", CREATE, READ, ADJUST)
