"""What the .dead queues hold: list it without losing it, replay it once the cause is fixed.

Runs inside any consumer container, which has the broker's address and
credentials (`make dead-letters`, `make replay-dead QUEUE=insert_record`):

    python -m common.deadletters list [ROUTING_KEY ...]
    python -m common.deadletters replay ROUTING_KEY

Every message is moved, never dropped: it is published (with a publisher
confirm) to where it goes, and only then acknowledged where it was. Listing
moves each message back to the tail of its own .dead queue, so the queue
holds the same messages in the same order afterwards; peeking with a requeue
instead would count towards the queue's delivery limit.

A listing that is killed (or loses its connection) leaves every message it
had not moved yet back in its queue, and at most one duplicate: the message
whose copy RabbitMQ had confirmed and whose original was not acknowledged
yet. A duplicate carries the same request id, so replaying both does the work
once (the consumers' request ledger answers the second from the first). Each
return counts as a delivery on a quorum queue; the .dead queues have no
delivery limit (the dead-letter-queues policy `make up` sets), so no number
of interrupted listings drops a dead letter.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from common import amqp, topology
from common.config import AmqpSettings

PREVIEW_BYTES = 60
# AMQP's largest prefetch; a deeper .dead queue is listed (or replayed) this many at a time.
PREFETCH_MAX = 65535
Message = tuple[Any, pika.BasicProperties, bytes]


def take_all(channel: BlockingChannel, queue: str) -> list[Message]:
    """Every message the queue holds now (up to PREFETCH_MAX), delivered and not yet acknowledged.

    The prefetch is the depth read first: a dead letter that arrives meanwhile is never
    delivered to this listing, so it stays where it is, untouched, when the listing cancels.
    """
    depth = min(channel.queue_declare(queue, passive=True).method.message_count, PREFETCH_MAX)
    taken: list[Message] = []
    if depth == 0:
        return taken
    channel.basic_qos(prefetch_count=depth)
    for method, props, body in channel.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        taken.append((method, props, body))
        if len(taken) >= depth:
            break
    channel.cancel()
    return taken


def move(channel: BlockingChannel, messages: list[Message], exchange: str, routing_key: str) -> None:
    """Publish each message, confirmed, then acknowledge it where it came from."""
    for method, props, body in messages:
        channel.basic_publish(exchange, routing_key, body, props, mandatory=True)  # raises if not confirmed
        channel.basic_ack(method.delivery_tag)


def describe(props: pika.BasicProperties, body: bytes) -> str:
    headers = props.headers or {}
    reason = headers.get("x-first-death-reason", "?")
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    preview = body[:PREVIEW_BYTES].decode("utf-8", errors="replace").replace("\n", " ")
    more = f" ... ({len(body)} bytes)" if len(body) > PREVIEW_BYTES else ""
    return f"  {props.message_id or '(no id)'}  {reason}  {preview}{more}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"list", "replay"} or (argv[0] == "replay" and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    command, keys = argv[0], argv[1:] or list(topology.ROUTING_KEYS)
    unknown = [k for k in keys if k not in topology.ROUTING_KEYS]
    if unknown:
        print(f"unknown routing key {unknown[0]!r}; one of {', '.join(topology.ROUTING_KEYS)}",
              file=sys.stderr)
        return 2
    settings = AmqpSettings.from_env(os.environ)
    connection = pika.BlockingConnection(amqp.parameters(settings, "deadletters"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for key in keys:
            dead = topology.dead_letter_queue(key)
            messages = take_all(channel, dead)
            if command == "list":
                print(f"{dead}: {len(messages)} message(s)")
                for _, props, body in messages:
                    print(describe(props, body))
                move(channel, messages, "", dead)  # back where they were, in the same order
            else:
                move(channel, messages, topology.EXCHANGE, key)
                print(f"{dead}: replayed {len(messages)} message(s) to {key}")
    finally:
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
