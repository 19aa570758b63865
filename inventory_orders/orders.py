"""inventory_orders: places orders, taking their stock in the same transaction, and lists them."""

from __future__ import annotations

from typing import Any

from common.consumer import Handler, Message, run
from common.db import Cursor, one, rows
from common.inventory import clean_order
from common.messages import Refused, no_parameters
from common.topology import PLACE_ORDER, READ_ORDERS


def order(order_id: int, sku: str, quantity: int, status: str) -> dict[str, Any]:
    return {"OrderID": int(order_id), "SKU": sku, "Quantity": int(quantity), "Status": status}


def place(message: Message, db: Cursor) -> dict[str, Any]:
    sku, wanted = message.payload["SKU"], message.payload["Quantity"]
    # The item's row lock orders every concurrent order for it: each one sees
    # the stock the previous one left, so stock is never oversold, on any
    # number of consumer instances. Nothing is kept when the order is refused.
    db.execute("SELECT quantity FROM items WHERE sku = %s FOR UPDATE", (sku,))
    row = one(db)
    if row is None:
        raise Refused("not_found", f"No item with SKU {sku}.")
    (in_stock,) = row
    if in_stock < wanted:
        raise Refused("insufficient_stock", f"Only {in_stock} of {sku} in stock; {wanted} ordered.")
    db.execute("UPDATE items SET quantity = quantity - %s WHERE sku = %s", (wanted, sku))
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
