"""inventory_orders: places orders, taking their stock in the same transaction, and lists them."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Write, paged_read
from common.db import Cursor
from common.inventory import change_stock
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


PLACE = Write(PLACE_ORDER, ORDER.clean, place)
# Orders a page at a time, oldest first (keyset paging on the OrderID).
READ = paged_read(READ_ORDERS, "orders", "order_id, sku, quantity, status", "order_id", field="orders",
                  by="OrderID", row=order)

if __name__ == "__main__":
    run("inventory_orders", PLACE, READ)
