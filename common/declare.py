"""Declare the contract's topology once, as the operator: the one-shot `topology` service.

    python -m common.declare

The services themselves declare nothing: declaring a queue needs the configure
permission on it, which would also let them delete it. This job runs before
any of them (compose's `service_completed_successfully`), on every `up`, and
is idempotent; it waits for RabbitMQ up to TOPOLOGY_WAIT_S (default 120 s).
"""

from __future__ import annotations

import os
import sys
import time

import pika

from common import amqp, logs, topology
from common.config import AmqpSettings, ConfigError


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
            connection = pika.BlockingConnection(amqp.parameters(settings, "topology"))
        except pika.exceptions.AMQPConnectionError as exc:
            if time.monotonic() > deadline:
                log.error("broker_unavailable", error=repr(exc))
                return 1
            log.info("waiting_for_broker", error=repr(exc))
            time.sleep(amqp.backoff(attempt))
            attempt += 1
            continue
        try:
            topology.declare(connection.channel())
        finally:
            connection.close()
        log.info("topology_declared", exchange=topology.EXCHANGE, queues=len(topology.ROUTING_KEYS))
        return 0


if __name__ == "__main__":
    sys.exit(main())
