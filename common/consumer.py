"""The run loop every consumer shares; a consumer file only supplies its handlers
(`Read` or `Write`, common/core.py), whose rules the loop carries out through the core.

The loop owns what is not a consumer's own job: connecting to RabbitMQ with
retry and backoff, declaring the topology, bounded prefetch, validating each
message, the request ledger (a redelivered or retried write is done once and
gets its first answer), acknowledging only after the database commit,
replying on `reply_to` with the request's correlation id, dead-lettering what
cannot be processed, waiting out a database outage with the message in hand,
and a clean stop on SIGTERM.

A broker error is always a broker error, even while a database outage is being
waited out: the loop reconnects and the unacknowledged message is redelivered,
never dead-lettered. A ledger conflict (another instance recorded the same
request id first) is retried with backoff, LEDGER_CONFLICT_RETRIES times; then
the message is given back to its queue, logged, and the queue's delivery limit
dead-letters it should it never settle.

A bug is never a crash: whatever a handler's `parse` or `handle` raises (but
`Invalid` and `Refused`), and a reply that cannot be encoded as JSON, answers
the caller `internal_error` and dead-letters that message alone (rejected
without requeue, never acknowledged, even after its commit: a write is in the
ledger then, so replaying it from <queue>.dead does nothing twice), with a
`handler_failed` log line and outcome "failed"; the loop goes on.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from types import FrameType
from typing import Any, NamedTuple

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from common import amqp, core, logs, metrics
from common.config import ConfigError, Settings
from common.core import INTERNAL_ERROR, Handler, Work
from common.db import Database, DatabaseAway, DatabaseMisconfigured, LedgerConflict, ledger_prune
from common.messages import Invalid, encode, error_reply
from common.probe import ALIVE_FILE  # fresh only while consuming

# Attempts after a LedgerConflict before the message is given back to its queue.
LEDGER_CONFLICT_RETRIES = 5
# Expired ledger entries deleted per transaction: each batch is short, and messages are
# served between batches, so pruning a large backlog never holds the queue up for long.
LEDGER_PRUNE_BATCH = 1000
# While a backlog lasts, the pause after a batch, as a multiple of the batch's own time:
# pruning takes at most a quarter of the time, so the writes keep most of the database.
LEDGER_PRUNE_PAUSE = 3.0


class Stopping(Exception):
    """SIGTERM arrived while the message in hand could not be finished."""


class Delivery(NamedTuple):
    """A message as RabbitMQ delivered it, with the handler of its queue."""

    handler: Handler
    method: Basic.Deliver
    props: BasicProperties
    body: bytes


class Worker:
    def __init__(self, settings: Settings, handlers: Sequence[Handler], log: logs.EventLogger,
                 prunes_ledger: bool = False):
        self.settings = settings
        self.handlers = {handler.routing_key: handler for handler in handlers}
        self.log = log
        self.db = Database(settings.db) if settings.db is not None else None
        # One consumer deletes the ledger's expired entries, between its messages.
        self.prunes_ledger = prunes_ledger and self.db is not None
        self.prune_due = 0.0  # time.monotonic() of the next pruning pass
        self.stopping = False
        # Since the last successful connect: the next retry's backoff grows with it.
        self.failed_connects = 0
        # Where the next connect starts in the list of nodes: one further after each lost or
        # failed connection, so a node that went silent is not the first one tried again.
        self.first_node = 0
        # Delivery tag -> when the message was delivered (time.time()), for its `at` in the log line.
        self.arrived: dict[int, float] = {}

    def stop(self, signum: int, _frame: FrameType | None = None) -> None:
        self.log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stopping = True

    def serve_forever(self) -> None:
        while not self.stopping:
            try:
                self._serve()
            except (pika.exceptions.AMQPError, OSError) as exc:
                ALIVE_FILE.unlink(missing_ok=True)
                self.first_node += 1
                delay = amqp.backoff(self.failed_connects)
                self.log.warning(
                    "broker_unavailable", error=repr(exc), retry_in_s=round(delay, 2)
                )
                self.failed_connects += 1
                self._sleep(delay)
            except Stopping:
                break
        ALIVE_FILE.unlink(missing_ok=True)
        if self.db is not None:
            self.db.close()
        self.log.info("stopped")

    def _sleep(self, seconds: float, connection: pika.BlockingConnection | None = None,
               healthy: bool = True) -> None:
        """Sleep, waking early on SIGTERM; with a connection, keep its heartbeats going
        (and, unless the consumer is not `healthy`, its health check passing)."""
        if not healthy:
            ALIVE_FILE.unlink(missing_ok=True)
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            if connection is not None:
                connection.sleep(min(left, 1.0))
                if healthy:
                    ALIVE_FILE.touch()
            else:
                time.sleep(min(left, 0.2))

    def _serve(self) -> None:
        params = amqp.parameters(self.settings.amqp, self.settings.service)
        start = self.first_node % len(params)
        connection = pika.BlockingConnection(params[start:] + params[:start])
        try:
            channel = connection.channel()  # the queues exist: the operator's job declared them
            channel.basic_qos(prefetch_count=self.settings.prefetch)
            inbox: deque[Delivery] = deque()
            self.arrived.clear()  # delivery tags start again on a new channel
            tags = []

            def deliver(handler: Handler, method: Basic.Deliver, props: BasicProperties, body: bytes) -> None:
                self.arrived[method.delivery_tag] = time.time()
                inbox.append(Delivery(handler, method, props, body))

            for queue, handler in self.handlers.items():
                tags.append(channel.basic_consume(
                    queue=queue,
                    on_message_callback=lambda _ch, method, props, body, handler=handler: deliver(
                        handler, method, props, body
                    ),
                ))
                self.log.info("consuming", queue=queue, prefetch=self.settings.prefetch)
            self.failed_connects = 0
            while not self.stopping:
                ALIVE_FILE.touch()
                # Wait for messages no longer than the next pruning pass is due.
                wait = min(1.0, max(0.0, self.prune_due - time.monotonic())) if self.prunes_ledger else 1.0
                connection.process_data_events(time_limit=wait)
                while inbox:
                    self._process_next(connection, channel, inbox)
                if self.prunes_ledger and self.prune_due <= time.monotonic():
                    self._prune_ledger()
            # SIGTERM: take no more, finish what was already delivered, then go.
            for tag in tags:
                channel.basic_cancel(tag)
            while inbox:
                self._process_next(connection, channel, inbox)
        finally:
            ALIVE_FILE.unlink(missing_ok=True)
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()

    def _prune_ledger(self) -> None:
        """One batch of expired ledger entries deleted; the next one soon while a backlog lasts
        (after LEDGER_PRUNE_PAUSE times this one's time), else after LEDGER_PRUNE_INTERVAL_S.
        A failure waits for the next pass."""
        assert self.db is not None
        every = self.settings.ledger_prune_every_s
        started = time.monotonic()
        try:
            pruned = self.db.run(functools.partial(
                ledger_prune, retention_s=self.settings.ledger_retention_s, batch=LEDGER_PRUNE_BATCH))
        except Exception as exc:  # the database away, or a bug: the messages go on regardless
            self.log.warning("ledger_prune_failed", error=repr(exc), retry_in_s=every)
            self.prune_due = time.monotonic() + every
            return
        if pruned:
            metrics.LEDGER_PRUNED.inc(pruned)
            self.log.info("ledger_pruned", entries=pruned,
                          retention_h=round(self.settings.ledger_retention_s / 3600, 3))
        now = time.monotonic()
        backlog = pruned >= LEDGER_PRUNE_BATCH
        # (A batch slowed by a lock wait does not stop the pruning for long.)
        self.prune_due = now + (min(1.0, (now - started) * LEDGER_PRUNE_PAUSE) if backlog else every)

    def _process_next(self, connection: pika.BlockingConnection, channel: BlockingChannel,
                      inbox: deque[Delivery]) -> None:
        """The next delivery, or for a batch handler every delivery of its queue waiting in line.

        A redelivered message is carried out alone: should it be poison that kills the
        consumer, it must not take messages that only shared its batch to their delivery limit.
        """
        first = inbox.popleft()
        batch = [first]
        if first.handler.batch and not first.handler.expires and not first.method.redelivered:
            while inbox and inbox[0].handler is first.handler and not inbox[0].method.redelivered:
                batch.append(inbox.popleft())
        if len(batch) == 1:
            self._process(connection, channel, *first)
        else:
            self._process_batch(connection, channel, batch)

    def _process_batch(self, connection: pika.BlockingConnection, channel: BlockingChannel,
                       batch: list[Delivery]) -> None:
        """Several messages of one queue in one transaction, acknowledged together after its commit.

        Deliveries are settled in the order they came, so when the batch is
        acknowledged with `multiple` every earlier delivery is settled already.
        Should one message break the transaction, it is rolled back whole and
        each message is carried out alone, so the bad one is set aside by
        itself and never takes the others with it.
        """
        handler = batch[0].handler
        started = time.monotonic()
        valid: list[tuple[Delivery, str, dict[str, Any]]] = []
        for delivery in batch:
            request_id = delivery.props.message_id or ""
            try:
                payload = core.parse(handler, request_id, delivery.props.content_type, delivery.body)
                valid.append((delivery, request_id, payload))
            except Exception:  # Invalid, or a bug in the parser
                self._process(connection, channel, *delivery)  # dead-letters it, as alone
        if not valid:
            return
        try:
            replies = self._carry_out(connection, handler, [(rid, payload) for _, rid, payload in valid])
        except (Stopping, pika.exceptions.AMQPError):
            raise  # the broker went away (while the database was waited out): reconnect, redelivered
        except Exception:  # a bug: find the message that has it, one transaction each
            self.log.warning("batch_rolled_back", queue=handler.routing_key, messages=len(valid),
                             request_ids=[rid for _, rid, _ in valid])
            for delivery, _, _ in valid:
                self._process(connection, channel, *delivery)
            return
        committed = time.time()
        answered = []
        for (delivery, request_id, _), reply in zip(valid, replies, strict=True):
            try:
                body = encode(reply)
            except Exception:  # a result with no JSON form: this message alone is set aside
                self._set_aside(channel, handler, delivery.method, delivery.props, request_id, "reply")
                continue
            self._reply(channel, delivery.props, body)
            answered.append((delivery, request_id, reply, time.time()))
        if not answered:
            return
        # Only now, after the commit; the last one answered, never one rejected already.
        channel.basic_ack(answered[-1][0].method.delivery_tag, multiple=True)
        seconds = time.monotonic() - started
        for delivery, request_id, reply, reply_sent in answered:
            metrics.MESSAGES.labels(handler.routing_key, "ok" if reply["ok"] else "refused").inc()
            metrics.HANDLING.labels(handler.routing_key).observe(seconds)
            self.log.info(
                "message_handled", request_id=request_id, queue=handler.routing_key,
                ok=reply["ok"], error=reply.get("error"), ms=round(seconds * 1000, 1), batch=len(valid),
                at=self._marks(handler, delivery.method.delivery_tag, committed, reply_sent),
            )

    def _process(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        handler: Handler,
        method: Basic.Deliver,
        props: BasicProperties,
        body: bytes,
    ) -> None:
        tag = method.delivery_tag
        request_id = props.message_id or ""  # the client's id; the correlation id is the caller's
        started = time.monotonic()
        try:
            payload = core.parse(handler, request_id, props.content_type, body)
        except Invalid as exc:
            self.arrived.pop(tag, None)
            # Poison never blocks the queue: it goes to <queue>.dead for a person.
            self.log.warning(
                "message_rejected", request_id=request_id or None, error=exc.code,
                reason=exc.message, details=exc.details or None, body_bytes=len(body),
            )
            self._dead_letter(channel, handler, method, props,
                              error_reply(exc.code, exc.message, exc.details), "invalid")
            return
        except Exception:  # a bug in the parser, not a bad message
            self._set_aside(channel, handler, method, props, request_id, "parse")
            return

        if core.expired(handler, payload, self.settings.request_timeout_s):
            self.arrived.pop(tag, None)
            self.log.info("message_expired", request_id=request_id)
            channel.basic_ack(tag)
            metrics.MESSAGES.labels(handler.routing_key, "expired").inc()
            return

        try:
            [reply] = self._carry_out(connection, handler, [(request_id, payload)],
                                      look_up=method.redelivered)
        except (Stopping, pika.exceptions.AMQPError):
            raise  # the broker went away (while the database was waited out): reconnect, redelivered
        except LedgerConflict:
            # Still conflicting after LEDGER_CONFLICT_RETRIES: give it back rather than drop it.
            # It comes back redelivered, and the queue's delivery limit dead-letters it
            # should it never settle, so a person sees it.
            self.log.warning("ledger_conflict_requeued", request_id=request_id, queue=handler.routing_key,
                             retries=LEDGER_CONFLICT_RETRIES)
            channel.basic_reject(tag, requeue=True)
            metrics.MESSAGES.labels(handler.routing_key, "requeued").inc()
            return
        except Exception:  # a bug, not the database: keep the message for a person
            self._set_aside(channel, handler, method, props, request_id, "handle")
            return
        committed = time.time()
        try:
            body = encode(reply)
        except Exception:  # a result with no JSON form (the transaction has committed)
            self._set_aside(channel, handler, method, props, request_id, "reply")
            return
        self._reply(channel, props, body)
        reply_sent = time.time()
        channel.basic_ack(tag)
        seconds = time.monotonic() - started
        metrics.MESSAGES.labels(handler.routing_key, "ok" if reply["ok"] else "refused").inc()
        metrics.HANDLING.labels(handler.routing_key).observe(seconds)
        self.log.info(
            "message_handled", request_id=request_id, queue=handler.routing_key,
            ok=reply["ok"], error=reply.get("error"), ms=round(seconds * 1000, 1),
            at=self._marks(handler, tag, committed, reply_sent),
        )

    def _marks(self, handler: Handler, tag: int, done: float, reply_sent: float) -> dict[str, float]:
        """Wall-clock times (time.time(), µs) of a handled message's steps, for its log line."""
        marks = {"consumer_received": self.arrived.pop(tag, 0.0),
                 "committed" if handler.uses_db and self.db is not None else "handled": done,
                 "reply_sent": reply_sent}
        return {name: round(at, 6) for name, at in marks.items() if at}

    def _set_aside(self, channel: BlockingChannel, handler: Handler, method: Basic.Deliver,
                   props: BasicProperties, request_id: str, step: str) -> None:
        """A bug at `step` (parse, handle, reply): logged with its traceback (call it in the
        `except`), the caller answered internal_error, the message dead-lettered; nothing raised."""
        self.arrived.pop(method.delivery_tag, None)
        self.log.exception("handler_failed", request_id=request_id or None, queue=handler.routing_key,
                           step=step)
        self._dead_letter(channel, handler, method, props, INTERNAL_ERROR, "failed")

    def _dead_letter(self, channel: BlockingChannel, handler: Handler, method: Basic.Deliver,
                     props: BasicProperties, reply: dict[str, Any], outcome: str) -> None:
        """Answer the caller, if any, and set the message aside in <queue>.dead for a person."""
        self._reply(channel, props, encode(reply))
        channel.basic_reject(method.delivery_tag, requeue=False)
        metrics.MESSAGES.labels(handler.routing_key, outcome).inc()
        metrics.DEAD_LETTERED.labels(handler.routing_key).inc()

    def _carry_out(
        self,
        connection: pika.BlockingConnection,
        handler: Handler,
        work: Work,
        look_up: bool = False,
    ) -> list[dict[str, Any]]:
        """The replies for messages (request id, payload), all in one transaction, retrying
        the database for as long as it is away.

        The ledger is read first only when `look_up` (a redelivered message) or after
        an attempt without it failed: a new request, by far the most common, needs no
        read, since its ledger entry's unique key at the end says whether it is new. A
        request done before fails there (or on a unique key of its own before), which
        rolls the whole transaction back; it is then carried out again, ledger first,
        and gets its first answer.
        """
        if self.db is None or not handler.uses_db:
            return core.transaction(handler, None, work)
        attempt = conflicts = 0
        while True:
            try:
                return self.db.run(functools.partial(core.transaction, handler, work=work, look_up=look_up,
                                                     replayed=self._replayed))
            except DatabaseAway as exc:
                if self.stopping:
                    raise Stopping() from exc
                delay = amqp.backoff(attempt)
                # A setup fault (access denied, unknown table) is no outage that
                # passes by itself: loud, and the container reports unhealthy.
                misconfigured = isinstance(exc, DatabaseMisconfigured)
                report = self.log.error if misconfigured else self.log.warning
                report(
                    "database_misconfigured" if misconfigured else "database_unavailable",
                    request_id=work[0][0], messages=len(work), error=str(exc), retry_in_s=round(delay, 2),
                )
                attempt += 1
                self._sleep(delay, connection, healthy=not misconfigured)
            except LedgerConflict:
                if not look_up:  # done before (a client's retry): answer from the ledger
                    look_up = True
                    continue
                # Another instance committed the same request first: its answer is in
                # the ledger now, and the next attempt returns it. Bounded, so a conflict
                # that never settles cannot spin the consumer: the caller gives the message back.
                if conflicts >= LEDGER_CONFLICT_RETRIES:
                    raise
                delay = amqp.backoff(conflicts, base=0.05, cap=1.0)
                self.log.info("ledger_conflict", request_id=work[0][0], messages=len(work),
                              retry_in_s=round(delay, 3))
                conflicts += 1
                self._sleep(delay, connection)
            except Exception:
                # Carried out before the ledger was read, a request done before can also fail
                # on its own unique keys (an order's request id) before its ledger entry does:
                # rolled back, ask the ledger first. What still fails then is a real failure.
                if look_up or not handler.ledger:
                    raise
                look_up = True

    def _replayed(self, request_id: str) -> None:
        self.log.info("request_replayed", request_id=request_id)

    def _reply(self, channel: BlockingChannel, props: BasicProperties, body: bytes) -> None:
        """Send an encoded reply: encoding it first (`encode`) is where a result with no JSON form fails.

        It leaves with the acknowledgement or rejection that every caller sends next (a batch's
        replies with its one ack), in one write.
        """
        if not props.reply_to:
            return
        # No `mandatory`: a caller that gave up waiting is not an error.
        amqp.publish_with_next_flush(
            channel,
            exchange="",
            routing_key=props.reply_to,
            body=body,
            properties=amqp.reply_properties(props),  # echoes the correlation id
        )


def run(service: str, *handlers: Handler, prunes_ledger: bool = False) -> None:
    """Entry point of a consumer process: serve its queues until SIGTERM (and, where
    `prunes_ledger`, delete the request ledger's expired entries between messages)."""
    try:
        settings = Settings.from_env(service, needs_db=any(h.uses_db for h in handlers))
    except ConfigError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    log = logs.setup(service, settings.log_level)
    worker = Worker(settings, handlers, log, prunes_ledger=prunes_ledger)
    # A Python PID 1 ignores SIGTERM unless it installs a handler.
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    metrics.serve(settings.metrics_port)
    log.info("starting", queues=[h.routing_key for h in handlers], rabbitmq_host=settings.amqp.host,
             rabbitmq_ports=list(settings.amqp.ports), metrics_port=settings.metrics_port)
    worker.serve_forever()
