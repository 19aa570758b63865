"""The RabbitMQ topology of the contract, declared by every service.

Declarations are idempotent, so whichever service starts first creates it and
start order does not matter. Queue arguments can never change once a queue
exists, so they live here and nowhere else.
"""

from __future__ import annotations

from typing import Any, Protocol

EXCHANGE = "microservices"
DEAD_LETTER_EXCHANGE = "microservices.dlx"

HEALTH_CHECK = "health_check"
INSERT_RECORD = "insert_record"
DELETE_RECORD = "delete_record"
READ_DATABASE = "read_database"
UPDATE_RECORD = "update_record"
# The stored answer of a finished write (GET /requests/<id>), from the ledger.
REQUEST_STATUS = "request_status"
# The inventory: items and their stock, and orders that take from it.
CREATE_ITEM = "create_item"
READ_ITEMS = "read_items"
ADJUST_STOCK = "adjust_stock"
PLACE_ORDER = "place_order"
READ_ORDERS = "read_orders"

# One durable quorum queue per routing key, bound under its own name.
ROUTING_KEYS = (
    HEALTH_CHECK, INSERT_RECORD, DELETE_RECORD, READ_DATABASE, UPDATE_RECORD, REQUEST_STATUS,
    CREATE_ITEM, READ_ITEMS, ADJUST_STOCK, PLACE_ORDER, READ_ORDERS,
)

DELIVERY_LIMIT = 5


class Channel(Protocol):
    """The part of pika's BlockingChannel that declaring needs."""

    def exchange_declare(self, exchange: str, exchange_type: str, durable: bool) -> Any: ...

    def queue_declare(self, queue: str, durable: bool, arguments: dict[str, Any]) -> Any: ...

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> Any: ...


def dead_letter_queue(routing_key: str) -> str:
    return f"{routing_key}.dead"


def queue_arguments(routing_key: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": routing_key,
        # At-least-once dead-lettering never drops a message on its way to
        # the .dead queue; RabbitMQ requires reject-publish overflow for it.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def declare(channel: Channel, routing_keys: tuple[str, ...] = ROUTING_KEYS) -> None:
    """Declare the exchanges, the work queues and their dead-letter queues."""
    channel.exchange_declare(exchange=EXCHANGE, exchange_type="direct", durable=True)
    channel.exchange_declare(exchange=DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)
    for key in routing_keys:
        channel.queue_declare(queue=key, durable=True, arguments=queue_arguments(key))
        channel.queue_bind(queue=key, exchange=EXCHANGE, routing_key=key)
        dead = dead_letter_queue(key)
        channel.queue_declare(queue=dead, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue=dead, exchange=DEAD_LETTER_EXCHANGE, routing_key=key)
