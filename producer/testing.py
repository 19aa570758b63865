"""The producer's Broker with RabbitMQ in memory, for unit tests.

    rabbit = InMemoryRabbit()
    rabbit.broker.call("insert_record", record, "r-1", timeout=5, write=True)  # in a thread of the test
    rabbit.published           # [(routing key, properties, body), ...] as the broker sent them
    rabbit.confirm_all()       # RabbitMQ confirms every message published so far
    rabbit.answer(props, {"ok": True, "result": ...})   # a consumer's reply to one of them
    rabbit.lose_connection()   # the connection is lost: every waiting call is released
    rabbit.idle()              # no call waiting, no write in flight

The broker's I/O thread is whoever calls: what it would hand to its loop runs
at once, one callback at a time. With several nodes, `connect()` starts its
probe of the node, and `tick(at)` runs the probe's timer at a time of the
test's clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pika.spec import Basic, BasicProperties

from common import logs
from common.config import AmqpSettings
from producer.broker import Broker


class _Channel:
    is_open = True

    def __init__(self) -> None:
        self.published: list[tuple[str, BasicProperties, dict[str, Any]]] = []
        self.probes = 0
        self.lock = threading.Lock()

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties,
                      mandatory: bool) -> None:
        with self.lock:
            self.published.append((routing_key, properties, json.loads(body)))

    def basic_qos(self, prefetch_count: int, callback: Callable[[Any], None]) -> None:
        self.probes += 1  # the probe's round trip: answered when the test says so


class _Connection:
    """The connection and its I/O loop: callbacks run at once, under one lock; timers wait for `tick`."""

    def __init__(self) -> None:
        self.ioloop = self
        self.lock = threading.Lock()
        self.later: list[Callable[[], None]] = []
        self.dropped: list[BaseException] = []

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        with self.lock:  # one I/O thread: its callbacks never overlap
            callback()

    def call_later(self, _delay: float, callback: Callable[[], None]) -> None:
        self.later.append(callback)

    def _terminate_stream(self, error: BaseException) -> None:
        self.dropped.append(error)


class InMemoryRabbit:
    """A Broker connected to a RabbitMQ that is this object (and `nodes` node addresses)."""

    def __init__(self, nodes: int = 1, log: logging.Logger | None = None) -> None:
        settings = AmqpSettings.from_env({
            "RABBITMQ_HOST": "in-memory", "RABBITMQ_USER": "test", "RABBITMQ_PASSWORD": "test",
            "RABBITMQ_PORTS": ",".join(str(5672 + n) for n in range(nodes))})
        self.now = 0.0  # the probe's clock
        self.broker = Broker(settings, "test", logs.EventLogger(log or logging.getLogger("test"), {}),
                             clock=lambda: self.now)
        self._channel, self._connection = _Channel(), _Connection()
        self.broker._thread = threading.current_thread()  # start() must not start a real I/O thread
        self.broker._channel = self._channel
        self.broker._connection = self._connection
        self.broker._ready.set()

    @property
    def published(self) -> list[tuple[str, BasicProperties, dict[str, Any]]]:
        return self._channel.published

    @property
    def probes(self) -> int:
        return self._channel.probes

    @property
    def dropped(self) -> list[BaseException]:
        """The connections the broker dropped as silent."""
        return self._connection.dropped

    def confirm_all(self) -> None:
        """RabbitMQ confirms every message published so far (one multiple ack)."""
        frame = type("Frame", (), {"method": Basic.Ack(delivery_tag=self.broker._next_tag, multiple=True)})()
        self._connection.add_callback_threadsafe(lambda: self.broker._on_confirm(frame))

    def answer(self, props: BasicProperties, reply: dict[str, Any]) -> None:
        """A consumer's reply to the message published with `props`: its correlation id echoed."""
        back = BasicProperties(correlation_id=props.correlation_id, message_id=props.message_id)
        self.broker._on_reply(None, None, back, json.dumps(reply).encode())

    def lose_connection(self, reason: str = "the connection to RabbitMQ was lost") -> None:
        self.broker._fail_all(reason)

    @contextlib.contextmanager
    def disconnected(self) -> Iterator[None]:
        """No connection for a while (the I/O thread is between two), then the same one back."""
        self.broker._connection = None
        try:
            yield
        finally:
            self.broker._connection = self._connection

    def idle(self) -> bool:
        """No call waits for a reply and no write is in flight."""
        return not self.broker._awaiting and not self.broker._writes

    def connect(self) -> None:
        """The channel is consuming replies: the broker is ready (and with several nodes, probes)."""
        self.broker._on_consuming(None)

    def tick(self, at: float) -> None:
        """The loop runs the probe's next timer at `at` on the probe's clock."""
        self.now = at
        self._connection.later.pop()()

    def probe_answered(self) -> None:
        self.broker._on_probe_answered(None)
