"""Connection parameters and message properties shared by every service."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import pika
import pika.adapters.utils.io_services_utils
import pika.connection
from pika.adapters.blocking_connection import BlockingChannel

from common.config import AmqpSettings
from common.messages import CONTENT_TYPE

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def _emit_frames_together(connection: pika.connection.Connection, marshaled_frames: Sequence[bytes]) -> None:
    """pika hands a message's frames (method, header, body) to its transport one by one: a
    send() each, three TCP segments for RabbitMQ to read per message. The same bytes in
    one write are one of each."""
    connection.bytes_sent += sum(len(frame) for frame in marshaled_frames)
    connection.frames_sent += len(marshaled_frames)
    connection._adapter_emit_data(b"".join(marshaled_frames))


_send_buffered = pika.adapters.utils.io_services_utils._AsyncTransportBase._produce


def _send_buffered_together(transport: pika.adapters.utils.io_services_utils._AsyncTransportBase) -> None:
    """What waits in pika's transport buffer goes out in one send(), not one each: a
    consumer's replies to a batch and the acknowledgement after them reach RabbitMQ together."""
    buffered = transport._tx_buffers
    if len(buffered) > 1:
        joined = b"".join(buffered)
        buffered.clear()
        buffered.append(joined)
    _send_buffered(transport)


# Every service imports this module before it connects (pika is pinned: tests/unit/test_amqp.py
# checks that a message still goes out in one write, and buffered ones in one send).
pika.connection.Connection._output_marshaled_frames = _emit_frames_together
pika.adapters.utils.io_services_utils._AsyncTransportBase._produce = _send_buffered_together


def publish_with_next_flush(channel: BlockingChannel, exchange: str, routing_key: str, body: bytes,
                            properties: pika.BasicProperties) -> None:
    """basic_publish on a BlockingChannel without waiting for it to be written: the channel's next
    call that flushes (an ack, a reject) sends it, with its own frames, in one send()."""
    target = getattr(channel, "_impl", channel)  # the test's recording channel has no _impl
    target.basic_publish(exchange=exchange, routing_key=routing_key, body=body, properties=properties)


def parameters(settings: AmqpSettings, client_name: str) -> list[pika.ConnectionParameters]:
    """One set of parameters per RabbitMQ node, in the order to try them.

    pika's BlockingConnection takes the whole list and connects to the first
    node that answers; the producer's SelectConnection goes through it itself.
    """
    return [_node_parameters(settings, port, client_name) for port in settings.ports]


def _node_parameters(settings: AmqpSettings, port: int, client_name: str) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=settings.host,
        port=port,
        virtual_host=settings.vhost,
        credentials=pika.PlainCredentials(settings.user, settings.password),
        heartbeat=settings.heartbeat_s,
        # Bound every phase of connecting, so an unreachable or frozen broker
        # is an error after seconds, never a hang.
        socket_timeout=settings.connect_timeout_s,
        stack_timeout=settings.connect_timeout_s * 2,
        blocked_connection_timeout=settings.connect_timeout_s * 10,
        connection_attempts=1,
        client_properties={"connection_name": client_name},
    )


def request_properties(request_id: str, correlation_id: str, *, reply_to: str | None) -> pika.BasicProperties:
    """A request message: persistent, identified by the client's request id (message_id).

    The correlation id is the caller's own, new for every publish: clients may
    send one request id with several requests at once, so the request id can
    never tell their replies apart.
    """
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=request_id,
        correlation_id=correlation_id,
        reply_to=reply_to,
        timestamp=int(time.time()),
    )


def reply_properties(request: pika.BasicProperties) -> pika.BasicProperties:
    """A reply to `request`: its correlation id echoed, so the caller matches the reply to its call."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        correlation_id=request.correlation_id,
        message_id=request.message_id,
        timestamp=int(time.time()),
    )


def backoff(attempt: int, *, base: float = 0.5, cap: float = 4.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): exponential, jittered.

    The cap is low on purpose: a service is back within seconds of the broker
    or the database coming back, and a retry every few seconds costs nothing.
    """
    return float(random.uniform(0.5, 1.0) * min(cap, base * (2**attempt)))  # noqa: S311 (jitter, not crypto)
