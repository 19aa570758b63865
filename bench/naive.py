"""The naive design, as a baseline for `make bench` only: never part of the product.

What peer projects of this assignment do: a Flask route that opens a new pika
BlockingConnection for every request, declares the exchange and its queue,
publishes the record and closes. No publisher confirm, no answer from a
consumer (so it does less than our producer, not more).

To stay harmless it publishes to the contract's exchange under a routing key
of its own, `bench.naive`, bound to a bench-only queue that no consumer reads
and that the bench deletes afterwards: the students table never sees it.
`bench/baselines.py` runs it under gunicorn with the producer's worker and thread
settings, in the producer's image, on the compose network.
"""

from __future__ import annotations

import json
import os

import pika
from flask import Flask, Response, request

EXCHANGE = "microservices"
QUEUE = ROUTING_KEY = "bench.naive"


def create_app() -> Flask:
    app = Flask(__name__)
    params = pika.ConnectionParameters(
        host=os.environ["RABBITMQ_HOST"], port=int(os.environ.get("RABBITMQ_PORT", "5672")),
        credentials=pika.PlainCredentials(os.environ["RABBITMQ_USER"], os.environ["RABBITMQ_PASSWORD"]))

    @app.post("/insert_record")
    def insert_record() -> Response:
        body = json.dumps(request.get_json(force=True))
        connection = pika.BlockingConnection(params)  # the anti-pattern under measurement
        try:
            channel = connection.channel()
            channel.exchange_declare(EXCHANGE, "direct", durable=True)
            channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(QUEUE, EXCHANGE, ROUTING_KEY)
            channel.basic_publish(EXCHANGE, ROUTING_KEY, body,
                                  pika.BasicProperties(delivery_mode=2, content_type="application/json"))
        finally:
            connection.close()
        return Response('{"status": "published"}', status=201, content_type="application/json")

    @app.get("/livez")
    def livez() -> Response:
        return Response('{"status": "alive"}', content_type="application/json")

    return app
