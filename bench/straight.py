"""The straightforward design of the same contract: a baseline for `make bench`, never part of the product.

What a careful first version of the assignment does, with nothing clever:
gunicorn (the producer's 2 workers x 16 threads), and in every request thread
a pika BlockingConnection of its own (thread-local, kept open). Per insert it
publishes persistent with a publisher confirm to the contract's durable
direct exchange, waits for the confirm, then waits for the consumer's reply on
direct reply-to. Its consumer (`python -m bench.straight consume`) is a plain
pika BlockingConnection consumer that inserts each row in its own transaction
(autocommit), then replies and acknowledges.

To stay harmless it uses names of its own: routing key and quorum queue
`bench.straight`, table `bench_straight`; `bench/baselines.py` creates the
table, runs both parts in the producer's image on the compose network, and
removes the queue and the table afterwards. Every loop has a deadline.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from typing import Any

import pika
import pika.exceptions
from flask import Flask, Response, request

EXCHANGE = "microservices"
QUEUE = ROUTING_KEY = "bench.straight"
TABLE = "bench_straight"
REPLY_TO = "amq.rabbitmq.reply-to"
TIMEOUT_S = 5.0
# The consumer stops by itself after this long, should the bench not remove it.
CONSUMER_LIFETIME_S = float(os.environ.get("BENCH_STRAIGHT_LIFETIME_S", "3600"))


def parameters() -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=os.environ["RABBITMQ_HOST"], port=int(os.environ.get("RABBITMQ_PORT", "5672")),
        credentials=pika.PlainCredentials(os.environ["RABBITMQ_USER"], os.environ["RABBITMQ_PASSWORD"]))


class Link:
    """One request thread's connection and channel (confirm mode, consuming its direct reply-to)."""

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(parameters())
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.replies: dict[str, bytes] = {}
        self.channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)

    def _on_reply(self, _ch: Any, _method: Any, props: pika.BasicProperties, body: bytes) -> None:
        self.replies[props.correlation_id] = body

    def call(self, body: bytes) -> bytes | None:
        """Publish, wait for the confirm (basic_publish returns then), then for the reply."""
        correlation_id = uuid.uuid4().hex
        self.channel.basic_publish(EXCHANGE, ROUTING_KEY, body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json", message_id=correlation_id,
            correlation_id=correlation_id, reply_to=REPLY_TO), mandatory=True)
        deadline = time.monotonic() + TIMEOUT_S
        while correlation_id not in self.replies and (left := deadline - time.monotonic()) > 0:
            self.connection.process_data_events(time_limit=min(left, 1.0))
        return self.replies.pop(correlation_id, None)


def create_app() -> Flask:
    app = Flask(__name__)
    local = threading.local()

    def link() -> Link:
        current: Link | None = getattr(local, "link", None)
        if current is None or not current.connection.is_open:
            current = local.link = Link()
        return current

    @app.post("/insert_record")
    def insert_record() -> Response:
        record = request.get_json(force=True, silent=True)
        if not isinstance(record, dict) or not all(
                isinstance(record.get(k), str) and record[k] for k in ("Name", "SRN", "Section")):
            return Response('{"error": "invalid_record"}', status=400, content_type="application/json")
        try:
            reply = link().call(json.dumps(record).encode())
        except (pika.exceptions.AMQPError, OSError):
            local.link = None  # the next request connects anew
            return Response('{"error": "broker_unavailable"}', status=503, content_type="application/json")
        if reply is None:
            return Response('{"error": "consumer_timeout"}', status=504, content_type="application/json")
        answer = json.loads(reply)
        if not answer.get("ok"):
            return Response(json.dumps({"error": answer.get("error")}), status=409,
                            content_type="application/json")
        return Response(json.dumps(answer["result"]), status=201, content_type="application/json")

    @app.get("/livez")
    def livez() -> Response:
        return Response('{"status": "alive"}', content_type="application/json")

    return app


def consume() -> None:
    """The consumer: one row per autocommit transaction, then the reply, then the ack."""
    import mysql.connector  # only the consumer needs it

    db = mysql.connector.connect(
        host=os.environ.get("MYSQL_HOST", "db"), user=os.environ["MYSQL_USER"],
        password=os.environ["MYSQL_PASSWORD"], database=os.environ.get("MYSQL_DATABASE", "school"),
        charset="utf8mb4", collation="utf8mb4_unicode_ci", autocommit=True)
    cursor = db.cursor()
    connection = pika.BlockingConnection(parameters())
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, passive=True)  # the contract's exchange, as the system declared it
    channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(QUEUE, EXCHANGE, ROUTING_KEY)
    channel.basic_qos(prefetch_count=int(os.environ.get("CONSUMER_PREFETCH", "10")))

    def on_message(ch: Any, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        record = json.loads(body)
        try:
            cursor.execute(f"INSERT INTO {TABLE} (srn, name, section, request_id) VALUES (%s, %s, %s, %s)",
                           (record["SRN"], record["Name"], record["Section"], props.message_id or ""))
            reply: dict[str, Any] = {"ok": True, "result": {"record": record}}
        except mysql.connector.IntegrityError:
            reply = {"ok": False, "error": "duplicate_srn"}
        if props.reply_to:
            ch.basic_publish("", props.reply_to, json.dumps(reply).encode(),
                             pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(QUEUE, on_message)
    print("consuming", flush=True)
    deadline = time.monotonic() + CONSUMER_LIFETIME_S
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=1)
    connection.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["consume"]:
        consume()
