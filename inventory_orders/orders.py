"""inventory_orders: places orders, taking their stock in the same transaction, and lists them."""

from __future__ import annotations

from typing import Any

from common.consumer import Handler, Message, run
from common.db import Cursor, rows
from common.inventory import change_stock, clean_order
from common.messages import no_parameters
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


def read(_message: Message, db: Cursor) -> dict[str, Any]:
    db.execute("SELECT order_id, sku, quantity, status FROM orders ORDER BY order_id")
    orders = [order(*row) for row in rows(db)]
    return {"orders": orders, "count": len(orders)}


PLACE = Handler(PLACE_ORDER, clean_order, place, ledger=True)
READ = Handler(READ_ORDERS, no_parameters, read, expires=True)

if __name__ == "__main__":
    run("inventory_orders", PLACE, READ)
