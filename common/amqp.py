"""Connection parameters and message properties shared by every service."""

from __future__ import annotations

import random
import time

import pika

from common.config import AmqpSettings
from common.messages import CONTENT_TYPE

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


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
