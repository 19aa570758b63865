"""inventory_orders: places orders, taking their stock in the same transaction, and lists them."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Read, Write
from common.db import Cursor, page_rows
from common.inventory import change_stock
from common.messages import page_message, page_reply
from common.models import ORDER
from common.topology import PLACE_ORDER, READ_ORDERS


def order(order_id: int, sku: str, quantity: int, status: str) -> dict[str, Any]:
    return {"OrderID": int(order_id), "SKU": sku, "Quantity": int(quantity), "Status": status}


def place(message: Message, db: Cursor) -> dict[str, Any]:
    sku, wanted = message.payload["SKU"], message.payload["Quantity"]
    # Stock and order in one transaction: a refused order keeps nothing, and
    # the item's row lock lines up every concurrent order for it.
    change_stock(db, sku, -wanted)
    db.execute(
        "INSERT INTO orders (sku, quantity, request_id) VALUES (%s, %s, %s)",
        (sku, wanted, message.request_id),
    )
    return {"order": order(int(db.lastrowid or 0), sku, wanted, "placed")}


def parse_read(payload: dict[str, Any]) -> dict[str, Any]:
    return page_message(payload, by="OrderID")


def read(message: Message, db: Cursor) -> dict[str, Any]:
    """One page of orders after the cursor, oldest first (keyset paging on the OrderID)."""
    limit, after = message.payload["limit"], message.payload["after"]
    found = page_rows(db, "order_id, sku, quantity, status", "orders", "order_id", after, limit)
    return page_reply("orders", [order(*row) for row in found], limit, "OrderID")


PLACE = Write(PLACE_ORDER, ORDER.clean, place)
READ = Read(READ_ORDERS, parse_read, read)

if __name__ == "__main__":
    run("inventory_orders", PLACE, READ)
