"""The producer's link to RabbitMQ: one connection per gunicorn worker process.

pika connections are not thread-safe, so the connection belongs to one I/O
thread and request threads never touch it: they hand each message over with
`add_callback_threadsafe` and wait on events with a deadline. Because that
thread runs pika's event loop all the time, heartbeats are answered even when
no request comes for hours, a broker restart is noticed at once, and several
requests are in flight on the channel together instead of one confirm at a
time. Nothing waits longer than its deadline, even on a frozen broker.
Under gunicorn's gevent worker (the default) the same code runs on greenlets:
gevent patches `threading`, `select` and `socket` before the app is loaded, so
the I/O "thread" and the requests share one hub and one OS thread.

A request is published persistent, with `mandatory` and a publisher
confirm, and answered on RabbitMQ's direct reply-to pseudo-queue, matched by
correlation id. The correlation id is new for every publish and never the
client's: clients may send one X-Request-ID with several requests at once,
and each must get its own answer. The request id travels as the message_id.

A write whose request id is already in flight in this process is not
published again: with the same body it shares the first one's outcome, with
another body it is a RequestIdConflict. (Across processes the consumers'
request ledger does the same.)

When the caller passes `marks`, it gets the wall-clock times (time.time())
at which its message was published, confirmed and answered, for the
request's log line: three floats per request, no log line of their own.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.frame
from pika.spec import Basic, BasicProperties

from common import amqp, logs, topology
from common.config import AmqpSettings
from common.messages import encode, fingerprint

# How long a request waits for a connection that is being (re)established
# before it is told that the broker is unavailable.
CONNECT_GRACE_S = 1.0
# With several nodes, how often the I/O thread asks its node for a sign of life (a
# basic.qos round trip, about a millisecond): a node cut off or frozen answers nothing, and
# neither TCP nor the heartbeat says so for a minute. After RABBITMQ_SILENCE_S without an
# answer the connection is dropped and the next node taken. Never on slow confirms: a queue
# electing a new leader confirms late while its node answers at once.
PROBE_EVERY_S = 0.5


class BrokerUnavailable(Exception):
    """RabbitMQ did not confirm the message: down, unreachable or frozen."""


class RequestIdConflict(Exception):
    """A write with this request id and another body is in flight here."""


@dataclass(eq=False)
class _Call:
    request_id: str
    routing_key: str
    body: bytes
    # What a write asks for: a second write with its request id must ask the same.
    asked: str | None = None
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    confirmed: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None
    returned: bool = False
    reply: dict[str, Any] | None = None
    # Wall-clock times (time.time()) set by the I/O thread; 0.0 until they happen.
    published: float = 0.0
    confirmed_at: float = 0.0
    replied: float = 0.0


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class Broker:
    def __init__(self, settings: AmqpSettings, name: str, log: logs.EventLogger,
                 clock: Callable[[], float] = time.monotonic):
        # One per RabbitMQ node; the I/O thread connects to `_node` and moves on
        # to the next one whenever a connection fails or is lost.
        self._params = amqp.parameters(settings, name)
        self._node = 0
        self._silence_s = settings.silence_s
        self._clock = clock  # the probe's (a test sets its own: producer/testing.py)
        # Owned by the I/O thread: when the unanswered probe went out (on `_clock`), and
        # whether RabbitMQ has blocked the connection (an alarm: silent on purpose).
        self._probe_sent: float | None = None
        self._probe_due = 0.0  # when the next probe call is due: one much later means a stall here
        self._blocked = False
        self._log = log
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._connection: pika.SelectConnection | None = None
        # Owned by the I/O thread: delivery tag -> call waiting for its confirm.
        self._channel: pika.channel.Channel | None = None
        self._unconfirmed: dict[int, _Call] = {}
        self._next_tag = 0
        # Shared with request threads, under the lock: correlation id -> call awaiting its
        # reply, and request id -> the write in flight with it.
        self._lock = threading.Lock()
        self._awaiting: dict[str, _Call] = {}
        self._writes: dict[str, _Call] = {}

    # ---- request threads -------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread (idempotent; must run after gunicorn's fork)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="amqp-io", daemon=True)
                self._thread.start()

    def ready(self) -> bool:
        return self._ready.is_set()

    def call(
        self, routing_key: str, payload: dict[str, Any], request_id: str, timeout: float,
        *, write: bool = False, marks: dict[str, float] | None = None,
    ) -> dict[str, Any] | None:
        """Publish a request and wait for its reply.

        Returns the reply, or None when RabbitMQ confirmed the message but no
        reply came within `timeout` (the work will still be carried out).
        Raises BrokerUnavailable when RabbitMQ did not confirm it in time, and
        RequestIdConflict (before publishing) for a `write` whose request id is
        in flight with another body; with the same body it shares that outcome.
        `marks` gets the times of "published", "confirmed" and "reply_received"
        that happened.
        """
        self.start()
        deadline = time.monotonic() + timeout
        if not self._ready.wait(min(CONNECT_GRACE_S, timeout)):
            raise BrokerUnavailable("not connected to RabbitMQ")
        # Checked before a write can share another's outcome: with no connection that one
        # will not be confirmed, and waiting on it would take this call's whole timeout.
        connection = self._connection
        if connection is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        call = _Call(request_id, routing_key, encode(payload),
                     asked=fingerprint(routing_key, payload) if write else None)
        with self._lock:
            first = self._writes.get(request_id) if write else None
            if first is not None:
                if first.asked != call.asked:
                    raise RequestIdConflict(request_id)
                shared = True
            else:
                shared = False
                self._awaiting[call.correlation_id] = call
                if write:
                    self._writes[request_id] = call
        if shared:
            assert first is not None
            self._log.info("request_shared", request_id=request_id, routing_key=routing_key)
            return self._outcome(first, deadline)
        try:
            connection.ioloop.add_callback_threadsafe(functools.partial(self._publish, call))
            return self._outcome(call, deadline)
        finally:
            if marks is not None:
                for name, at in (("published", call.published), ("confirmed", call.confirmed_at),
                                 ("reply_received", call.replied)):
                    if at:
                        marks[name] = at
            with self._lock:
                self._awaiting.pop(call.correlation_id, None)
                if self._writes.get(request_id) is call:
                    del self._writes[request_id]

    @staticmethod
    def _outcome(call: _Call, deadline: float) -> dict[str, Any] | None:
        """Wait for a call's confirm and then its reply, until the deadline."""
        if not call.confirmed.wait(_left(deadline)):
            raise BrokerUnavailable("RabbitMQ did not confirm the message in time")
        if call.failure is not None:
            raise BrokerUnavailable(call.failure)
        call.answered.wait(_left(deadline))
        return call.reply

    def stop(self) -> None:
        """Close the connection cleanly (gunicorn's worker_exit)."""
        self._stopping = True
        connection = self._connection
        if connection is not None:
            connection.ioloop.add_callback_threadsafe(self._close)

    # ---- the I/O thread --------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            params = self._params[self._node]
            try:
                # The topology is declared by the operator's one-shot job (common/declare.py):
                # this account may publish to the exchange, not configure it.
                connection = pika.SelectConnection(
                    params,
                    on_open_callback=self._on_open,
                    on_open_error_callback=self._on_open_error,
                    on_close_callback=self._on_closed,
                )
                connection.add_on_connection_blocked_callback(self._on_blocked)
                connection.add_on_connection_unblocked_callback(self._on_unblocked)
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._log.warning("broker_unavailable", host=params.host, port=params.port, error=repr(exc))
            else:
                self._connection = connection
                connection.ioloop.start()  # returns once the connection has closed
                self._connection = None
                if self._channel is not None:  # it had been serving: retry quickly
                    attempt = 0
                self._channel = None
            self._ready.clear()
            self._fail_all("the connection to RabbitMQ was lost")
            # Whether the node refused us or went away, the next one is as good a
            # choice as any; with one node this is the same address again.
            self._node = (self._node + 1) % len(self._params)
            if not self._stopping:
                time.sleep(amqp.backoff(attempt))
                attempt += 1

    def _close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        self._log.warning("broker_unavailable", error=repr(error))
        connection.ioloop.stop()

    def _on_closed(self, connection: pika.SelectConnection, reason: BaseException) -> None:
        self._ready.clear()
        if not self._stopping:
            self._log.warning("broker_connection_lost", error=repr(reason))
        connection.ioloop.stop()

    def _on_channel_open(self, channel: pika.channel.Channel) -> None:
        self._channel = channel
        self._next_tag = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: pika.frame.Method) -> None:
        assert self._channel is not None
        self._channel.basic_consume(
            amqp.DIRECT_REPLY_TO, self._on_reply, auto_ack=True, callback=self._on_consuming
        )

    def _on_consuming(self, _frame: pika.frame.Method) -> None:
        self._ready.set()
        params = self._params[self._node]
        self._log.info("broker_connected", host=params.host, port=params.port)
        if len(self._params) > 1:  # with one node there is nowhere better to go
            assert self._channel is not None
            self._probe_sent, self._blocked, self._probe_due = None, False, self._clock()
            self._probe(self._channel)

    def _probe(self, channel: pika.channel.Channel) -> None:
        """Every PROBE_EVERY_S on this channel's connection: a probe out, or, when the last one
        has gone unanswered for RABBITMQ_SILENCE_S, the node given up as silent."""
        connection = self._connection
        replaced = self._channel is not channel
        if connection is None or replaced or not channel.is_open:
            return  # a closed channel's probes stop; the next channel starts its own
        now = self._clock()
        # Called late, this process was what stalled (CPU starved, a long pause): the answer
        # may be in the socket unread. Judge at the next call, after the loop has read it.
        stalled = now - self._probe_due > PROBE_EVERY_S
        self._probe_due = now + PROBE_EVERY_S
        if self._probe_sent is None:
            self._probe_sent = now
            channel.basic_qos(prefetch_count=0, callback=self._on_probe_answered)
        elif now - self._probe_sent > self._silence_s and not self._blocked and not stalled:
            params = self._params[self._node]
            self._log.warning("broker_silent", host=params.host, port=params.port,
                              silent_s=round(now - self._probe_sent, 2))
            self._ready.clear()
            # What pika's own heartbeat check does with a stale connection: drop the socket at
            # once (a clean close would wait for the silent node), which ends in _on_closed.
            connection._terminate_stream(pika.exceptions.StreamLostError("RabbitMQ node silent"))
            return
        connection.ioloop.call_later(PROBE_EVERY_S, functools.partial(self._probe, channel))

    def _on_probe_answered(self, _frame: pika.frame.Method) -> None:
        self._probe_sent = None

    def _on_blocked(self, _connection: pika.connection.Connection, _frame: pika.frame.Method) -> None:
        self._blocked = True  # a resource alarm: the node is alive, and so are its peers' alarms

    def _on_unblocked(self, _connection: pika.connection.Connection, _frame: pika.frame.Method) -> None:
        self._blocked = False
        self._probe_sent = None  # the probe waited behind the block; judge from a new one

    def _on_channel_closed(self, _channel: pika.channel.Channel, reason: BaseException) -> None:
        # Without its channel the connection is of no use: close it and start over.
        self._ready.clear()
        self._log.warning("broker_channel_closed", error=repr(reason))
        self._close()

    def _publish(self, call: _Call) -> None:
        channel = self._channel
        if channel is None or not channel.is_open or not self._ready.is_set():
            call.failure = "not connected to RabbitMQ"
            call.confirmed.set()
            return
        try:
            channel.basic_publish(
                exchange=topology.EXCHANGE,
                routing_key=call.routing_key,
                body=call.body,
                properties=amqp.request_properties(
                    call.request_id, call.correlation_id, reply_to=amqp.DIRECT_REPLY_TO
                ),
                mandatory=True,
            )
        except pika.exceptions.AMQPError as exc:
            call.failure = f"publish failed: {exc!r}"
            call.confirmed.set()
            return
        call.published = time.time()
        self._next_tag += 1
        self._unconfirmed[self._next_tag] = call

    def _on_return(
        self,
        _channel: pika.channel.Channel,
        _method: Basic.Return,
        props: BasicProperties,
        _body: bytes,
    ) -> None:
        # An unroutable message comes back before its confirm does.
        for call in self._unconfirmed.values():
            if call.correlation_id == props.correlation_id:
                call.returned = True

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag = method.delivery_tag
        tags = [t for t in self._unconfirmed if t <= tag] if method.multiple else [tag]
        now = time.time()
        for t in tags:
            call = self._unconfirmed.pop(t, None)
            if call is None:
                continue
            if isinstance(method, Basic.Nack):
                call.failure = "RabbitMQ refused the message"
            elif call.returned:
                call.failure = "no queue is bound for this message"
            call.confirmed_at = now
            call.confirmed.set()

    def _on_reply(
        self,
        _channel: pika.channel.Channel,
        _method: Basic.Deliver,
        props: BasicProperties,
        body: bytes,
    ) -> None:
        try:
            reply = json.loads(body)
        except ValueError:
            self._log.error("reply_unreadable", request_id=props.message_id,
                            correlation_id=props.correlation_id)
            return
        with self._lock:
            # Only the call that published this correlation id: never another with the same request id.
            call = self._awaiting.get(props.correlation_id or "")
            if call is not None and call.reply is None:
                call.replied = time.time()
                call.reply = reply
                call.answered.set()
                return
        self._log.info("reply_too_late", request_id=props.message_id, correlation_id=props.correlation_id)

    def _fail_all(self, reason: str) -> None:
        """Release every waiting request: unconfirmed ones fail, confirmed ones stop waiting."""
        for call in self._unconfirmed.values():
            call.failure = reason
            call.confirmed.set()
        self._unconfirmed.clear()
        with self._lock:
            for call in self._awaiting.values():  # calls that share one wait on it too
                if not call.confirmed.is_set():  # handed to a loop that has stopped
                    call.failure = reason
                    call.confirmed.set()
                call.answered.set()
