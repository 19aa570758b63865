"""Raw ceilings: what RabbitMQ, MySQL and gunicorn do alone, in the same run, with no project code."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pika

from bench.load import http_floor, percentile
from bench.system import BENCH_TAG, DB_CONNECT, System

# The round-trip ceiling (P2), as its row is named.
ROUND_TRIP = "request/reply over direct reply-to, sequential"
QUORUM_ROUND_TRIP = ROUND_TRIP + ", confirmed, quorum queue"
SINGLE_ROW = "MySQL insert, one row per autocommit"
# No round-trip loop runs longer than this, even against a broker that stopped answering.
ROUND_TRIP_DEADLINE_S = 60.0


class Ceilings:
    def __init__(self, system: System, duration: float):
        self.system = system
        self.duration = duration

    def confirmed_publish(self, count: int = 2000) -> dict[str, Any]:
        connection = pika.BlockingConnection(self.system.amqp)
        channel = connection.channel()
        queue = "bench.ceiling"
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        started = time.monotonic()
        for n in range(count):
            channel.basic_publish("", queue, b'{"n": %d}' % n, pika.BasicProperties(delivery_mode=2))
        elapsed = time.monotonic() - started
        channel.queue_delete(queue)
        connection.close()
        return {"what": "publish, confirmed one by one (quorum queue)", "per_s": round(count / elapsed, 1)}

    def round_trip(self, count: int = 1000, *, durable: bool = False,
                   deadline_s: float = ROUND_TRIP_DEADLINE_S) -> dict[str, Any]:
        """Request/reply over direct reply-to against an echo consumer: no HTTP, no database.

        The issue's ceiling uses a transient classic queue. With `durable`, the request
        goes the way the product's do: persistent, publisher-confirmed, through a durable
        quorum queue (a Raft log write before it is confirmed or delivered), acknowledged
        by the echo after it replies, which shows what the queue type alone costs.
        The loop stops at `deadline_s` whatever happens; the requests it did not get
        through are counted as errors.
        """
        queue = "bench.echo.quorum" if durable else "bench.echo"
        ready, done = threading.Event(), threading.Event()
        deadline = time.monotonic() + deadline_s

        def echo() -> None:
            connection = pika.BlockingConnection(self.system.amqp)
            channel = connection.channel()
            if durable:
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
            else:
                channel.queue_declare(queue, auto_delete=True)

            def answer(ch: Any, method: Any, props: Any, body: bytes) -> None:
                ch.basic_publish("", props.reply_to, body,
                                 pika.BasicProperties(correlation_id=props.correlation_id))
                if durable:
                    ch.basic_ack(method.delivery_tag)

            channel.basic_consume(queue, answer, auto_ack=not durable)
            ready.set()
            while time.monotonic() < deadline + 5 and not done.is_set():
                connection.process_data_events(time_limit=0.2)
            if durable:
                channel.queue_delete(queue)
            connection.close()

        thread = threading.Thread(target=echo, daemon=True)
        thread.start()
        ready.wait(30)
        connection = pika.BlockingConnection(self.system.amqp)
        channel = connection.channel()
        if durable:
            channel.confirm_delivery()  # basic_publish now returns once RabbitMQ has confirmed
        replies: list[bytes] = []
        channel.basic_consume("amq.rabbitmq.reply-to", lambda *a: replies.append(a[3]), auto_ack=True)
        latencies = []
        try:
            for n in range(count):
                if time.monotonic() >= deadline:
                    break
                started = time.monotonic()
                channel.basic_publish("", queue, b"ping", pika.BasicProperties(
                    reply_to="amq.rabbitmq.reply-to", correlation_id=str(n),
                    delivery_mode=2 if durable else 1))
                while len(replies) <= n and (left := deadline - time.monotonic()) > 0:
                    connection.process_data_events(time_limit=min(1.0, max(0.01, left)))
                if len(replies) <= n:
                    break
                latencies.append((time.monotonic() - started) * 1000)
        finally:
            connection.close()
            done.set()
            thread.join(10)
        total = sum(latencies) / 1000
        return {"what": QUORUM_ROUND_TRIP if durable else ROUND_TRIP,
                "per_s": round(len(latencies) / total, 1) if total else 0.0,
                "p50_ms": round(percentile(latencies, 0.5), 3),
                "p99_ms": round(percentile(latencies, 0.99), 3), "errors": count - len(latencies)}

    def database(self, rows: int = 1000) -> list[dict[str, Any]]:
        """Single-row autocommit and batched inserts into `students`, from inside the compose network."""
        script = DB_CONNECT + f"""
c.autocommit = True
cur = c.cursor()
rows = [("{BENCH_TAG}DB%06d" % i, "Bench", "B", "bench") for i in range({rows})]
lat = []
t0 = time.monotonic()
for row in rows[: {rows} // 2]:
    s = time.monotonic()
    cur.execute("INSERT INTO students (srn, name, section, request_id) VALUES (%s, %s, %s, %s)", row)
    lat.append((time.monotonic() - s) * 1000)
single = ({rows} // 2) / (time.monotonic() - t0)
c.autocommit = False
t0 = time.monotonic()
rest = rows[{rows} // 2:]
for i in range(0, len(rest), 100):
    cur.executemany("INSERT INTO students (srn, name, section, request_id) VALUES (%s, %s, %s, %s)",
                    rest[i:i + 100])
    c.commit()
batched = len(rest) / (time.monotonic() - t0)
cur.execute("DELETE FROM students WHERE srn LIKE '{BENCH_TAG}DB%'")
c.commit()
lat.sort()
print(json.dumps({{"single": single, "batched": batched, "p50": lat[len(lat) // 2]}}))
"""
        figures = json.loads(self.system.in_network(script))
        return [
            {"what": SINGLE_ROW, "per_s": round(figures["single"], 1), "p50_ms": round(figures["p50"], 3)},
            {"what": "MySQL insert, executemany batches of 100", "per_s": round(figures["batched"], 1)},
        ]

    def raw_read(self) -> dict[str, Any]:
        """P3's ceiling: SELECT every row, encode the answer as JSON (the consumers' client library)."""
        script = DB_CONNECT + """
cur = c.cursor()
times = []
for _ in range(3):
    t0 = time.monotonic()
    cur.execute("SELECT name, srn, section FROM students ORDER BY srn")
    records = [{"Name": n, "SRN": s, "Section": x} for n, s, x in cur.fetchall()]
    body = json.dumps({"records": records, "count": len(records)})
    times.append(time.monotonic() - t0)
print(json.dumps({"rows": len(records), "ms": sorted(times)[1] * 1000, "bytes": len(body)}))
"""
        figures = json.loads(self.system.in_network(script))
        return {"what": f"SELECT {figures['rows']} rows + JSON encoding", "rows": figures["rows"],
                "per_s": round(1000 / figures["ms"], 2), "p50_ms": round(figures["ms"], 1),
                "json_mib": round(figures["bytes"] / 2**20, 1)}

    def http_floor(self, clients: int) -> dict[str, Any]:
        return http_floor(self.system.base, clients, self.duration)
