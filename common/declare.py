"""Declare the contract's topology once, as the operator: the one-shot `topology` service.

    python -m common.declare

The services themselves declare nothing: declaring a queue needs the configure
permission on it, which would also let them delete it. This job runs before
any of them (compose's `service_completed_successfully`), on every `up`, and
is idempotent; it waits for RabbitMQ up to TOPOLOGY_WAIT_S (default 120 s),
and retries a declare refused for another reason than a conflict as long: a
cluster that is still forming can refuse a quorum queue (541 INTERNAL_ERROR,
cluster_not_formed) and take it a moment later.

A queue or exchange that exists in another form (RabbitMQ's 406
PRECONDITION_FAILED) is no outage to wait out: the job says which one, which
argument and the command that fixes it, once, and exits 3, so `make up` stops
there (docs/troubleshooting.md). A work queue declared by an earlier version,
with the tunables as arguments, is kept as it is and works as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker

from common import amqp, logs, topology
from common.config import AmqpSettings, ConfigError

PRECONDITION_FAILED = 406
# Exit status of a conflict: a person must act, retrying cannot help.
CONFLICT_EXIT = 3


class Conflict(Exception):
    """An exchange or queue exists with another argument than the contract's (AMQP 406)."""

    PATTERN = re.compile(r"inequivalent arg '(?P<argument>[^']+)' for (?P<kind>queue|exchange) "
                         r"'(?P<name>[^']+)'[^:]*: (?P<detail>.*)")

    def __init__(self, reply_text: str):
        super().__init__(reply_text)
        found = self.PATTERN.search(reply_text)
        self.argument = found["argument"] if found else "?"
        self.kind = found["kind"] if found else "?"
        self.name = found["name"] if found else "?"
        self.detail = found["detail"] if found else reply_text

    def fix(self) -> str:
        """The command that fixes it, for the log line and docs/troubleshooting.md."""
        verb = "delete_queue" if self.kind == "queue" else "delete_exchange"
        return (f"move its messages away if you need them, then run `docker exec <RabbitMQ container> "
                f"rabbitmqctl {verb} {self.name}` and `make up` again (docs/troubleshooting.md)")


class Declarer:
    """Declarations on one connection, each refused one followed by a fresh channel
    (RabbitMQ closes the channel of a refused declare)."""

    def __init__(self, connection: BlockingConnection):
        self.connection = connection
        self.channel: BlockingChannel = connection.channel()

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Call one of the channel's declare or bind methods; a 406 becomes Conflict."""
        try:
            getattr(self.channel, method)(*args, **kwargs)
        except ChannelClosedByBroker as exc:
            self.channel = self.connection.channel()
            if exc.reply_code == PRECONDITION_FAILED:
                raise Conflict(exc.reply_text) from exc
            raise


def declare(connection: BlockingConnection,
            routing_keys: tuple[str, ...] = topology.ROUTING_KEYS) -> list[str]:
    """Declare the exchanges, the work queues and their dead-letter queues, and bind them.
    Returns the work queues kept as an earlier version declared them; raises Conflict."""
    run = Declarer(connection)
    for exchange in (topology.EXCHANGE, topology.DEAD_LETTER_EXCHANGE):
        run("exchange_declare", exchange, "direct", durable=True)
    kept = []
    for key in routing_keys:
        try:
            run("queue_declare", key, durable=True, arguments=topology.queue_arguments())
        except Conflict as conflict:
            if conflict.argument not in topology.TUNABLE_ARGUMENTS:
                raise
            # An earlier version's queue: usable as it is, if it is exactly that queue.
            try:
                run("queue_declare", key, durable=True, arguments=topology.legacy_queue_arguments(key))
            except Conflict:
                raise conflict from None
            kept.append(key)
        run("queue_bind", key, topology.EXCHANGE, routing_key=key)
        dead = topology.dead_letter_queue(key)
        run("queue_declare", dead, durable=True, arguments=topology.queue_arguments())
        run("queue_bind", dead, topology.DEAD_LETTER_EXCHANGE, routing_key=key)
    return kept


def main() -> int:
    log = logs.setup("topology")
    try:
        settings = AmqpSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"topology: configuration error: {exc}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + float(os.environ.get("TOPOLOGY_WAIT_S", "120"))
    attempt = 0
    while True:
        try:
            kept = declare_once(settings)
        except Conflict as conflict:
            fields: dict[str, Any] = {conflict.kind: conflict.name}  # queue=... or exchange=...
            log.error("topology_conflict", **fields, argument=conflict.argument, detail=conflict.detail,
                      fix=conflict.fix())
            return CONFLICT_EXIT
        except pika.exceptions.AMQPError as exc:
            # RabbitMQ not up yet, or a cluster still forming: a quorum queue's declare can be
            # refused for a while (541 INTERNAL_ERROR, cluster_not_formed) and then succeed.
            if time.monotonic() >= deadline:
                log.error("broker_unavailable", error=repr(exc))
                return 1
            log.info("waiting_for_broker", error=repr(exc))
            time.sleep(amqp.backoff(attempt))
            attempt += 1
            continue
        for key in kept:
            # It works as before: the policy's delivery limit applies to it only below the
            # argument's (RabbitMQ takes the lower), the rest of the policy where it has none.
            log.warning("queue_keeps_old_arguments", queue=key,
                        arguments=topology.legacy_queue_arguments(key),
                        fix=f"under the {topology.WORK_QUEUE_POLICY} policy whole: stop the producer, let it "
                            f"drain, `rabbitmqctl delete_queue {key}`, `make up` (docs/troubleshooting.md)")
        log.info("topology_declared", exchange=topology.EXCHANGE, queues=len(topology.ROUTING_KEYS),
                 kept_as_they_were=kept or None)
        return 0


def declare_once(settings: AmqpSettings) -> list[str]:
    """One connection, the whole topology declared on it (see `declare`), closed."""
    connection = pika.BlockingConnection(amqp.parameters(settings, "topology"))
    try:
        return declare(connection, topology.ROUTING_KEYS)
    finally:
        if connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()


if __name__ == "__main__":
    sys.exit(main())
