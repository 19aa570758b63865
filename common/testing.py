"""A consumer's real dispatch with RabbitMQ in memory, for unit tests.

    queue = InMemoryQueue(insertion.HANDLER, database=my_database)
    reply = queue.call("insert_record", {"Name": "A", "SRN": "S1", "Section": "B"}, request_id="r-1")
    queue.publish("insert_record", record, request_id="r-2")   # several waiting: one batch
    queue.publish("insert_record", other, request_id="r-3")
    replies = queue.deliver()
    queue.log    # [("reply", correlation id, body), ("ack", tag, multiple), ("reject", tag, requeue), ...]

Each message goes through what a delivery from RabbitMQ goes through (parse,
expiry, the ledger, the transaction, the reply, the acknowledgement after the
commit, dead-lettering), in `common.consumer.Worker`, so a test says what a
message becomes without reaching into the loop. Every answer of a declared
kind is held to the kind's declared reply (`Kind.reply`, a JSON Schema): a
handler whose answer drifts from its declaration fails the test that ran it.
The database is any object with `run(work)` and `close()`, as
`common.db.Database`: the real one, or a stand-in of the test's. Waits are
recorded in `sleeps`, never slept, unless `waits` asks for the consumer's own
(on `connection`'s `sleep`).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from pika.spec import Basic, BasicProperties

from common import logs
from common.config import Settings
from common.consumer import Delivery, Worker
from common.core import Handler
from common.messages import CONTENT_TYPE
from common.topology import KIND

SETTINGS_ENV = {"RABBITMQ_HOST": "in-memory", "RABBITMQ_USER": "test", "RABBITMQ_PASSWORD": "test",
                "MYSQL_USER": "test", "MYSQL_PASSWORD": "test"}


def held_to_its_declaration(routing_key: str, reply: dict[str, Any]) -> None:
    """Raise AssertionError if the answer of a declared kind is not what the kind declares."""
    kind = KIND.get(routing_key)
    if kind is None or reply.get("ok") is not True:
        return
    # Imported here: a test dependency (schemathesis' too), and this module is for tests only.
    from jsonschema import Draft202012Validator

    errors = [error.message for error in Draft202012Validator(kind.reply).iter_errors(reply.get("result"))]
    if errors:
        raise AssertionError(f"{routing_key}'s answer is not its declared reply: {errors}")


class RecordingChannel:
    """A consumer's channel that records what the consumer does on it: its replies (and their
    request ids), acknowledgements and rejections, appended to `log` in order."""

    def __init__(self, log: list[tuple[Any, ...]], reply_ids: list[str]) -> None:
        self.log, self.reply_ids = log, reply_ids

    def basic_publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: BasicProperties) -> None:
        self.log.append(("reply", properties.correlation_id, json.loads(body)))
        self.reply_ids.append(properties.message_id)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.log.append(("ack", delivery_tag, multiple))

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self.log.append(("reject", delivery_tag, requeue))


class InMemoryQueue:
    """The queues of `handlers`, served by one consumer whose broker is this object."""

    def __init__(self, *handlers: Handler, database: Any = None, connection: Any = None, waits: bool = False,
                 service: str = "consumer_test", log: logging.Logger | None = None) -> None:
        settings = Settings.from_env(service, needs_db=any(h.uses_db for h in handlers), env=SETTINGS_ENV)
        self.worker = Worker(settings, handlers, logs.EventLogger(log or logging.getLogger("test"), {}))
        self.worker.db = database
        self.connection = connection  # what the consumer keeps alive while it waits (None: nothing)
        self.log: list[tuple[Any, ...]] = []
        self.reply_ids: list[str] = []  # the message_id (the client's request id) of each reply
        self.sleeps: list[float] = []
        if not waits:  # its backoffs recorded, not slept
            self.worker._sleep = self._sleep  # type: ignore[method-assign]
        self._inbox: deque[Delivery] = deque()
        self._tags = 0
        self._keys: dict[str, str] = {}  # correlation id -> routing key, to check each reply

    def _sleep(self, seconds: float, connection: Any = None, healthy: bool = True) -> None:
        self.sleeps.append(seconds)
        if connection is not None:
            connection.sleep(0)  # a lost connection shows here, as it would while waiting

    def publish(self, routing_key: str, payload: dict[str, Any] | bytes, *, request_id: str | None = None,
                redelivered: bool = False, correlation_id: str | None = None,
                content_type: str = CONTENT_TYPE) -> int:
        """Put a message in the queue as the producer sends it; its delivery tag."""
        self._tags += 1
        request_id = request_id or f"m{self._tags}"
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        props = BasicProperties(content_type=content_type, message_id=request_id,
                                correlation_id=correlation_id or request_id, reply_to="caller")
        self._keys[props.correlation_id] = routing_key
        method = Basic.Deliver(delivery_tag=self._tags, redelivered=redelivered, routing_key=routing_key)
        self._inbox.append(Delivery(self.worker.handlers[routing_key], method, props, body))
        return self._tags

    def deliver(self) -> list[dict[str, Any]]:
        """The consumer takes every message waiting (as one prefetch) and settles each; the
        replies it sent, in order. An error that would make it reconnect is raised."""
        start, channel = len(self.log), RecordingChannel(self.log, self.reply_ids)
        while self._inbox:
            self.worker._process_next(self.connection, channel, self._inbox)
        replies = [entry for entry in self.log[start:] if entry[0] == "reply"]
        for _, correlation_id, reply in replies:
            held_to_its_declaration(self._keys.get(correlation_id, ""), reply)
        return [reply for _, _, reply in replies]

    def call(self, routing_key: str, payload: dict[str, Any] | bytes, **options: Any) -> dict[str, Any]:
        """One message published and delivered alone; its reply."""
        self.publish(routing_key, payload, **options)
        [reply] = self.deliver()
        return reply

    def calls(self, routing_key: str, messages: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Several messages (request id, payload) waiting together, delivered as one prefetch."""
        for request_id, payload in messages:
            self.publish(routing_key, payload, request_id=request_id)
        return self.deliver()
