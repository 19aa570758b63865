"""The RabbitMQ topology of the contract, declared once by the operator's `topology` job.

A queue is declared with the arguments that can never change (its type, its
durability). What an operator may tune (the delivery limit, dead-lettering,
overflow, the maximum length) is the queues' policy, `work_queue_policy`, which
`make up` applies: a changed setting reaches running queues without a redeclare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.messages import FINGERPRINT_PATTERN, MESSAGE_MAX, REQUEST_ID_PATTERN
from common.models import (
    ITEM,
    ITEM_ROW,
    ORDER,
    ORDER_ID,
    ORDER_ROW,
    RECORD,
    RECORD_ROW,
    STOCK_CHANGE,
    STORED_KEY,
    TEXT,
    UPDATE,
    Model,
    obj,
    or_erased,
    page_reply,
    page_request,
)

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


@dataclass(frozen=True)
class Kind:
    """One message kind of the contract, declared once: everything else that lists kinds
    (the queues, the producer's routes and success statuses, each service's queue
    permissions, the OpenAPI and AsyncAPI documents, the tests' lists) is made from KINDS,
    and what is written by hand is checked against it (tests/unit/test_kinds.py)."""

    key: str  # the routing key, and the name of its durable quorum queue
    method: str  # the HTTP request the producer turns into this message
    path: str  # (a Flask rule)
    service: str  # the compose service whose consumer handles it
    write: bool = False  # recorded in the request ledger; a 202 when its consumer is late
    status: int = 200  # the HTTP status of its success
    # The model of a write's JSON body, which is also its payload on the bus as cleaned.
    body: Model | None = None
    # Without a body model: the JSON Schema of its payload on the bus (None: no parameters).
    payload: dict[str, Any] | None = field(default=None, compare=False)
    # The JSON Schema of its reply's `result` (for a write, the body of its HTTP success).
    reply: dict[str, Any] = field(default_factory=lambda: {"type": "object"}, compare=False)
    # What its handler may do in MySQL, (privileges, table) as a GRANT says them: its service's
    # account gets these (common/accounts.py), and a write's the ledger's reading and adding.
    grants: tuple[tuple[str, str], ...] = ()

    def message_schema(self) -> dict[str, Any]:
        """The JSON Schema of its message's payload, as its consumer takes it off the queue."""
        if self.body is not None:
            return self.body.cleaned_schema()
        schema = self.payload or obj({})
        if self.write:
            return schema
        # A read expires: the producer stamps the time it sends one (common.messages.stamped).
        return {**schema, "properties": {**schema["properties"], "sent_at": SENT_AT},
                "required": [*schema["required"], "sent_at"]}


SENT_AT = {"type": "number",
           "description": "Unix time the request was sent; older than REQUEST_TIMEOUT_S is dropped."}
RECORD_REPLY = or_erased(obj({"record": RECORD_ROW}))
ITEM_REPLY = obj({"item": ITEM_ROW})


KINDS = (
    Kind(HEALTH_CHECK, "GET", "/health_check", "consumer_one",
         payload=obj({"message": {"type": "string", "minLength": 1, "maxLength": MESSAGE_MAX}}),
         reply=obj({"status": {"const": "ok"}, "message": TEXT, "consumer": {"const": "consumer_one"}})),
    Kind(INSERT_RECORD, "POST", "/insert_record", "consumer_two", write=True, status=201, body=RECORD,
         reply=RECORD_REPLY, grants=(("INSERT", "students"),)),
    # A delete erases the student's data from the ledger's answers (UPDATE of the answer and its
    # subject); its service also deletes expired entries (DELETE). SELECT ... FOR UPDATE needs
    # SELECT and one of UPDATE, DELETE or LOCK TABLES.
    Kind(DELETE_RECORD, "GET", "/delete_record", "consumer_three", write=True,
         payload=obj({"SRN": STORED_KEY}), reply=or_erased(obj({"deleted": RECORD_ROW})),
         grants=(("SELECT, DELETE", "students"), ("UPDATE (reply, subject), DELETE", "requests"))),
    Kind(READ_DATABASE, "GET", "/read_database", "consumer_four",
         payload=page_request(STORED_KEY), reply=page_reply("records", RECORD_ROW, STORED_KEY),
         grants=(("SELECT", "students"),)),
    Kind(UPDATE_RECORD, "POST", "/update_record", "consumer_five", write=True, body=UPDATE,
         reply=RECORD_REPLY, grants=(("SELECT, UPDATE (name, section)", "students"),)),
    # The answer a finished write was given, as its ledger entry keeps it (ok and result, or error).
    Kind(REQUEST_STATUS, "GET", "/requests/<request_id>", "consumer_four",
         payload=obj({"request_id": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN.pattern}$"},
                      "asked": {"type": "string", "pattern": f"^{FINGERPRINT_PATTERN.pattern}$"}}),
         reply=obj({"routing_key": TEXT, "reply": {"type": "object", "required": ["ok"]}}),
         grants=(("SELECT", "requests"),)),
    Kind(CREATE_ITEM, "POST", "/items", "inventory_items", write=True, status=201, body=ITEM,
         reply=ITEM_REPLY, grants=(("SELECT, INSERT", "items"),)),
    Kind(READ_ITEMS, "GET", "/items", "inventory_items",
         payload=page_request(STORED_KEY), reply=page_reply("items", ITEM_ROW, STORED_KEY),
         grants=(("SELECT", "items"),)),
    Kind(ADJUST_STOCK, "POST", "/items/<sku>/stock", "inventory_items", write=True, body=STOCK_CHANGE,
         reply=ITEM_REPLY, grants=(("SELECT, UPDATE (quantity)", "items"),)),
    # An order takes its stock in the same transaction.
    Kind(PLACE_ORDER, "POST", "/orders", "inventory_orders", write=True, status=201, body=ORDER,
         reply=obj({"order": ORDER_ROW}),
         grants=(("SELECT, INSERT", "orders"), ("SELECT, UPDATE (quantity)", "items"))),
    Kind(READ_ORDERS, "GET", "/orders", "inventory_orders",
         payload=page_request(ORDER_ID), reply=page_reply("orders", ORDER_ROW, ORDER_ID),
         grants=(("SELECT", "orders"),)),
)
KIND = {kind.key: kind for kind in KINDS}
# One durable quorum queue per routing key, bound under its own name.
ROUTING_KEYS = tuple(KIND)
# The services that consume, in the order of their first kind.
CONSUMERS = tuple(dict.fromkeys(kind.service for kind in KINDS))


def keys_of(service: str) -> tuple[str, ...]:
    """The routing keys a service consumes: the queues it alone may read."""
    return tuple(kind.key for kind in KINDS if kind.service == service)


# The policies' names, and their defaults (DELIVERY_LIMIT and QUEUE_MAX_LENGTH in .env).
WORK_QUEUE_POLICY = "work-queue-limits"
DEAD_QUEUE_POLICY = "dead-letter-queues"
DELIVERY_LIMIT = 5
QUEUE_MAX_LENGTH = 50000
# The arguments of a quorum queue that a policy may set instead: a queue declared with
# them by an earlier version keeps them (RabbitMQ never changes a queue's arguments).
TUNABLE_ARGUMENTS = frozenset({
    "x-delivery-limit", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-dead-letter-strategy", "x-overflow", "x-max-length",
})


def dead_letter_queue(routing_key: str) -> str:
    return f"{routing_key}.dead"


def queue_arguments() -> dict[str, Any]:
    """What a queue is declared with: what can never change. The rest is its policy."""
    return {"x-queue-type": "quorum"}


def legacy_queue_arguments(routing_key: str) -> dict[str, Any]:
    """What versions before the policies declared a work queue with (their tunables fixed)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def work_queue_policy(delivery_limit: int = DELIVERY_LIMIT,
                      max_length: int = QUEUE_MAX_LENGTH) -> dict[str, Any]:
    """The work queues' policy. A message redelivered `delivery_limit` times goes to
    <queue>.dead (the dead-letter exchange routes it by its own routing key, the queue's
    name); at-least-once dead-lettering never drops one on the way, and RabbitMQ requires
    reject-publish overflow for it: a full queue refuses new messages (the producer's 503)."""
    return {
        "delivery-limit": delivery_limit,
        "dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
        "max-length": max_length,
    }


# The .dead queues: no delivery limit. They have no dead-letter exchange of their own, so
# RabbitMQ 4's default limit (20) would drop a dead letter returned that often (a listing
# killed halfway returns what it held). No maximum length: no dead letter is refused.
DEAD_QUEUE_DEFINITION: dict[str, Any] = {"delivery-limit": -1}
