"""make bench: the system's speed and memory next to ceilings measured in the same run.

    python scripts/stack.py bench [--duration 5] [--clients 1,8,32] [--skip-100k]
    python scripts/stack.py bench --nodes 1,3    # inserts on one RabbitMQ node against a cluster

Absolute numbers on a shared 2-core machine drift by tens of percent between
runs, so every figure is reported next to what RabbitMQ, MySQL and gunicorn
do alone in this same run, as a ratio. Traffic goes to this machine only
(127.0.0.1 and Docker's own networks), and every loop stops by itself after
a fixed time or count. Prints a table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.stack import COOKIE, SECRETS, Stack, print_table  # noqa: E402  (the repository root is on the path only now)

RESULTS = ROOT / "bench" / "results"
# Scripts that run inside the compose network (MySQL is not published on the host) start with this.
DB_CONNECT = """
import json, os, time, mysql.connector
c = mysql.connector.connect(host="db", user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"],
    database=os.environ.get("MYSQL_DATABASE", "school"), charset="utf8mb4", collation="utf8mb4_unicode_ci",
    use_pure=True)
"""
BENCH_TAG = "BENCH"
# The round-trip ceiling (P2), as its row is named.
ROUND_TRIP = "request/reply over direct reply-to, sequential"
# RabbitMQ's management statistics interval (collect_statistics_interval, 5 s by default), and a margin.
STATS_INTERVAL_S = 5.5


def progress(message: str) -> None:
    """One line that rewrites itself on a terminal; nothing in a log file."""
    if sys.stderr.isatty():
        print(f"\r\033[K  {message}", end="", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    """A closed-loop load: `clients` threads, each sending its next request when the last is answered."""

    name: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    def go(self, request: Callable[[requests.Session, int], bool], max_requests: int = 1_000_000) -> Run:
        lock = threading.Lock()
        counter = iter(range(max_requests))
        deadline = time.monotonic() + self.seconds

        def client() -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                started = time.monotonic()
                try:
                    ok = request(session, number)
                except requests.RequestException:
                    ok = False
                took = time.monotonic() - started
                with lock:
                    self.latencies.append(took)
                    if not ok:
                        self.errors += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(self.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            progress(f"{self.name} @{self.clients}: {len(self.latencies)} requests")
            time.sleep(0.25)
        self.elapsed = time.monotonic() - started
        return self

    def row(self) -> dict[str, Any]:
        ms = [x * 1000 for x in self.latencies]
        return {
            "what": self.name, "clients": self.clients, "requests": len(ms),
            "per_s": round(len(ms) / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(percentile(ms, 0.50), 2), "p95_ms": round(percentile(ms, 0.95), 2),
            "p99_ms": round(percentile(ms, 0.99), 2), "errors": self.errors,
        }


class Bench:
    def __init__(self, stack: Stack, duration: float, clients: list[int]):
        self.stack = stack
        self.duration = duration
        self.clients = clients
        self.base = f"http://127.0.0.1:{stack.get('PRODUCER_PORT')}"
        self.amqp = pika.ConnectionParameters(
            "127.0.0.1", int(stack.get("RABBITMQ_AMQP_PORT")),
            credentials=pika.PlainCredentials(stack.get("RABBITMQ_USER"), stack.get("RABBITMQ_PASSWORD")))

    # ---- ceilings: the broker, the database and gunicorn alone --------------------

    def confirmed_publish(self, count: int = 2000) -> dict[str, Any]:
        connection = pika.BlockingConnection(self.amqp)
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

    def round_trip(self, count: int = 1000, *, durable: bool = False) -> dict[str, Any]:
        """Request/reply over direct reply-to against an echo consumer: no HTTP, no database.

        The issue's ceiling uses a transient classic queue. With `durable`, the request
        goes the way the product's do: persistent, publisher-confirmed, through a durable
        quorum queue (a Raft log write before it is confirmed or delivered), acknowledged
        by the echo after it replies, which shows what the queue type alone costs.
        """
        queue = "bench.echo.quorum" if durable else "bench.echo"
        ready, done = threading.Event(), threading.Event()

        def echo() -> None:
            connection = pika.BlockingConnection(self.amqp)
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
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not done.is_set():
                connection.process_data_events(time_limit=0.2)
            if durable:
                channel.queue_delete(queue)
            connection.close()

        thread = threading.Thread(target=echo, daemon=True)
        thread.start()
        ready.wait(30)
        connection = pika.BlockingConnection(self.amqp)
        channel = connection.channel()
        if durable:
            channel.confirm_delivery()  # basic_publish now returns once RabbitMQ has confirmed
        replies: list[bytes] = []
        channel.basic_consume("amq.rabbitmq.reply-to", lambda *a: replies.append(a[3]), auto_ack=True)
        latencies = []
        for n in range(count):
            started = time.monotonic()
            channel.basic_publish("", queue, b"ping", pika.BasicProperties(
                reply_to="amq.rabbitmq.reply-to", correlation_id=str(n), delivery_mode=2 if durable else 1))
            while len(replies) <= n:
                connection.process_data_events(time_limit=1)
            latencies.append((time.monotonic() - started) * 1000)
        connection.close()
        done.set()
        thread.join(10)
        total = sum(latencies) / 1000
        what = ROUND_TRIP
        if durable:
            what += ", confirmed, quorum queue"
        return {"what": what, "per_s": round(count / total, 1),
                "p50_ms": round(percentile(latencies, 0.5), 3),
                "p99_ms": round(percentile(latencies, 0.99), 3)}

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
        figures = json.loads(self.in_network(script))
        return [
            {"what": "MySQL insert, one row per autocommit", "per_s": round(figures["single"], 1),
             "p50_ms": round(figures["p50"], 3)},
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
        figures = json.loads(self.in_network(script))
        return {"what": f"SELECT {figures['rows']} rows + JSON encoding", "rows": figures["rows"],
                "per_s": round(1000 / figures["ms"], 2), "p50_ms": round(figures["ms"], 1),
                "json_mib": round(figures["bytes"] / 2**20, 1)}

    def http_floor(self, clients: int) -> dict[str, Any]:
        run = Run("HTTP floor: GET /livez", clients, self.duration).go(
            lambda session, _: session.get(f"{self.base}/livez", timeout=10).status_code == 200)
        return run.row()

    def http_floor_wrk(self, clients: int) -> dict[str, Any] | None:
        """The same floor measured by wrk, where it is installed: does the Python generator cap it?

        Only a cross-check: every ratio is taken against the floor of the same (Python) generator.
        """
        wrk = shutil.which("wrk")
        if wrk is None:
            return None
        seconds = f"{max(1, round(self.duration))}s"
        out = subprocess.run([wrk, "-t", str(min(clients, 2)), "-c", str(clients), "-d", seconds, "--latency",
                              f"{self.base}/livez"], capture_output=True, text=True, timeout=600).stdout
        figures = dict(re.findall(r"^\s*(50|99)%\s+(\S+)$", out, re.MULTILINE))
        rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
        if rate is None:
            return None
        return {"what": "HTTP floor: GET /livez, by wrk", "clients": clients, "per_s": float(rate.group(1)),
                "p50_ms": wrk_ms(figures.get("50", "")), "p99_ms": wrk_ms(figures.get("99", ""))}

    # ---- the system, end to end -------------------------------------------------------

    def inserts(self, clients: int, tag: str) -> dict[str, Any]:
        def insert(session: requests.Session, n: int) -> bool:
            record = {"Name": "Bench", "SRN": f"{BENCH_TAG}{tag}{clients:02d}{n:07d}", "Section": "B"}
            return session.post(f"{self.base}/insert_record", json=record, timeout=30).status_code == 201
        return Run("insert_record", clients, self.duration).go(insert).row()

    def deletes(self, clients: int, tag: str, inserted: int) -> dict[str, Any]:
        """Delete what the insert run at the same concurrency created (and nothing more)."""
        def delete(session: requests.Session, n: int) -> bool:
            srn = f"{BENCH_TAG}{tag}{clients:02d}{n:07d}"
            response = session.get(f"{self.base}/delete_record", params={"SRN": srn}, timeout=30)
            return response.status_code == 200
        return Run("delete_record", clients, self.duration).go(delete, max_requests=inserted).row()

    def reads(self, clients: int, rows: int) -> dict[str, Any]:
        row = Run(f"read_database ({rows} rows)", clients, self.duration).go(
            lambda session, _: session.get(f"{self.base}/read_database", timeout=60).status_code == 200).row()
        return {**row, "rows": rows}

    def health(self, clients: int) -> dict[str, Any]:
        return Run("health_check", clients, self.duration).go(
            lambda session, n: session.get(f"{self.base}/health_check", params={"message": str(n)},
                                           timeout=30).status_code == 200).row()

    def rows_in_table(self) -> int:
        reply = requests.get(f"{self.base}/read_database", timeout=120).json()
        return int(reply["count"])

    def seed(self, total: int) -> None:
        """Fill `students` up to `total` rows, straight into MySQL (the API is not what is measured here)."""
        missing = total - self.rows_in_table()
        if missing <= 0:
            return
        script = DB_CONNECT + f"""
cur = c.cursor()
start = {int(time.time())}
rows = [("{BENCH_TAG}S%d%07d" % (start, i), "Seeded Student", "S", "bench-seed") for i in range({missing})]
for i in range(0, len(rows), 1000):
    cur.executemany("INSERT INTO students (srn, name, section, request_id) VALUES (%s, %s, %s, %s)",
                    rows[i:i + 1000])
c.commit()
"""
        self.in_network(script)

    def clean_up(self) -> None:
        self.in_network(DB_CONNECT + f"""
c.cursor().execute("DELETE FROM students WHERE srn LIKE '{BENCH_TAG}%'")
c.commit()
""")

    def in_network(self, script: str) -> str:
        """Run a Python script in consumer_two's container, on the compose network; its output."""
        return subprocess.run(["docker", "exec", "-i", self.container("consumer_two"), "python", "-"],
                              input=script, capture_output=True, text=True, check=True).stdout

    # ---- the naive design, as the baseline of P4 -----------------------------------------

    def naive(self) -> list[dict[str, Any]]:
        """bench/naive.py: a new AMQP connection per request, in the producer's image and gunicorn settings.

        It runs on the compose network and reaches RabbitMQ the way the producer does, and the
        same load generator measures it at the same client counts.
        """
        producer = self.container("producer")
        inspect = json.loads(subprocess.run(["docker", "inspect", producer], capture_output=True, text=True,
                                            check=True).stdout)[0]
        network = next(iter(inspect["NetworkSettings"]["Networks"]))
        env = dict(item.split("=", 1) for item in inspect["Config"]["Env"])
        passed = {k: env[k] for k in ("RABBITMQ_HOST", "RABBITMQ_PORT", "RABBITMQ_USER", "RABBITMQ_PASSWORD")}
        name = f"{self.stack.project}-bench-naive"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        # Values travel as `--env NAME` from this process's environment, never on the command line.
        subprocess.run([
            "docker", "run", "--detach", "--name", name, "--network", network,
            "--publish", "127.0.0.1::5000", "--volume", f"{ROOT / 'bench'}:/app/bench:ro",
            *(a for key in passed for a in ("--env", key)), inspect["Image"],
            "gunicorn", "--worker-class", "gthread", "--workers", self.stack.get("GUNICORN_WORKERS"),
            "--threads", self.stack.get("GUNICORN_THREADS"), "--keep-alive", "5", "--timeout", "30",
            "--bind", "0.0.0.0:5000", "bench.naive:create_app()",
        ], env={**os.environ, **passed}, capture_output=True, check=True)
        try:
            port = subprocess.run(["docker", "port", name, "5000/tcp"], capture_output=True, text=True,
                                  check=True).stdout.split()[0].rsplit(":", 1)[1]
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{base}/livez", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.5)
            rows = []
            for clients in self.clients:
                before = self.connections_created()

                def insert(session: requests.Session, n: int, clients: int = clients) -> bool:
                    record = {"Name": "Bench", "SRN": f"NAIVE{clients:02d}{n:07d}", "Section": "B"}
                    return session.post(f"{base}/insert_record", json=record, timeout=30).status_code == 201

                run = Run("naive: insert_record, a connection per request", clients, self.duration)
                row = run.go(insert).row()
                row["connections_per_request"] = round(
                    (self.connections_created(settled=True) - before) / max(1, row["requests"]), 3)
                rows.append(row)
            return rows
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
            connection = pika.BlockingConnection(self.amqp)
            connection.channel().queue_delete("bench.naive")
            connection.close()

    def container(self, service: str) -> str:
        return self.stack.compose("ps", "-q", service, capture=True).stdout.split()[0]

    # ---- what the run cost -------------------------------------------------------------

    def connections_created(self, settled: bool = False) -> int:
        """RabbitMQ's count of connections opened since it started (management API).

        The management API refreshes it every few seconds; `settled` waits until it stops moving.
        """
        port = self.stack.get("RABBITMQ_MANAGEMENT_PORT")

        def read() -> int:
            overview = requests.get(f"http://127.0.0.1:{port}/api/overview", timeout=10, auth=(
                self.stack.get("RABBITMQ_USER"), self.stack.get("RABBITMQ_PASSWORD"))).json()
            return int(overview.get("churn_rates", {}).get("connection_created", 0))

        value = read()
        deadline = time.monotonic() + 30
        while settled and time.monotonic() < deadline:
            progress("waiting for RabbitMQ's connection statistics to settle")
            time.sleep(STATS_INTERVAL_S)
            value, last = read(), value
            if value == last:
                break
        return value

    def peak_memory_mib(self) -> dict[str, float]:
        peaks = {}
        for service in ("producer", "consumer_two", "consumer_four"):
            out = cgroup_read(self.container(service),
                              "cat /sys/fs/cgroup/memory.peak 2>/dev/null"
                              " || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes")
            peaks[service] = round(int(out) / 2**20, 1) if out.isdigit() else float("nan")
        return peaks

    def inserts_with_cpu(self, clients: int, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """An insert run, and the CPU each container spent per insert during it (ms)."""
        containers = {"producer": self.container("producer"), "consumer_two": self.container("consumer_two"),
                      "rabbitmq": self.stack.get("RABBITMQ_CONTAINER"), "db": self.container("db")}
        before = cpu_seconds(containers)
        busy_before = host_busy()
        row = self.inserts(clients, tag)
        busy_after = host_busy()
        after = cpu_seconds(containers)
        count = max(1, row["requests"])
        cpu = {"clients": clients, **{name: round((after[name] - before[name]) * 1000 / count, 2)
                                      for name in before}}
        if busy_before and busy_after:
            busy, total = (a - b for a, b in zip(busy_after, busy_before, strict=True))
            cpu["host_busy_pct"] = round(100 * busy / max(1, total))
        return row, cpu


def cgroup_read(container: str, script: str) -> str:
    """What a shell `script` reading the container's own cgroup files prints (cgroup v2 or v1)."""
    return subprocess.run(["docker", "exec", container, "sh", "-c", script],
                          capture_output=True, text=True).stdout.strip()


def cpu_seconds(containers: dict[str, str]) -> dict[str, float]:
    """CPU time each container (name -> id) has used since it started."""
    used = {}
    for name, container in containers.items():
        out = cgroup_read(container,
                          "grep usage_usec /sys/fs/cgroup/cpu.stat 2>/dev/null"
                          " || echo usage_nsec $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage)").split()
        unit = {"usage_usec": 1e6, "usage_nsec": 1e9}.get(out[0] if out else "")
        used[name] = int(out[1]) / unit if unit and len(out) == 2 and out[1].isdigit() else float("nan")
    return used


def host_busy() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of this machine so far, from /proc/stat (Linux only)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def throwaway_copy(stack: Stack, nodes: int) -> Stack:
    """A copy of the system with `nodes` RabbitMQ nodes, its own names, free ports and fresh secrets."""
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    project = f"{stack.project}bench{nodes}n"
    ports = [free_port() for _ in range(nodes)]
    values = {
        **stack.values,
        "COMPOSE_PROJECT_NAME": project, "RABBITMQ_NETWORK": f"{project}_rabbitmq_net",
        "RABBITMQ_CONTAINER": f"{project}-rabbitmq", "RABBITMQ_HOSTNAME": f"{project}-rabbitmq",
        "RABBITMQ_VOLUME": f"{project}_rabbitmq_data", "RABBITMQ_NODES": str(nodes),
        "RABBITMQ_AMQP_PORT": str(ports[0]), "RABBITMQ_AMQP_PORTS": ",".join(map(str, ports)),
        "PRODUCER_PORT": str(free_port()), "RABBITMQ_MANAGEMENT_PORT": str(free_port()),
        "RABBITMQ_PROMETHEUS_PORT": str(free_port()),
        **{key: secrets.token_urlsafe(24) for key in (*SECRETS, COOKIE)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    env_file = RESULTS / f"{project}.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return Stack(env_file)


def compare_nodes(stack: Stack, counts: list[int], clients: list[int], duration: float) -> int:
    """Insert throughput and latency on copies with 1 and 3 RabbitMQ nodes, side by side in one run.

    Both copies run at once and the measurements alternate between them, so
    the noise of a shared machine falls on both alike.
    """
    stack.load()
    copies = {n: throwaway_copy(stack, n) for n in counts}
    for n, copy in copies.items():
        copy.load()
        if len(copy.nodes()) != n:  # the shell's RABBITMQ_NODES / RABBITMQ_AMQP_PORTS win over a file
            print(f"error: unset RABBITMQ_NODES and RABBITMQ_AMQP_PORTS to compare {counts} nodes",
                  file=sys.stderr)
            for unused in copies.values():
                unused.env_file.unlink(missing_ok=True)
            return 2
    rows: list[dict[str, Any]] = []
    try:
        for copy in copies.values():
            copy.up()
        benches = {n: Bench(copy, duration, clients) for n, copy in copies.items()}
        tag = str(int(time.time()) % 100000)
        for c in clients:
            for n, bench in benches.items():
                rows.append({"nodes": n, **bench.inserts(c, f"{tag}N{n}")})
    finally:
        for copy in copies.values():
            copy.down(volumes=True)
            copy.env_file.unlink(missing_ok=True)
    progress("done")
    show(rows, ["what", "nodes", "clients", "requests", "per_s", "p50_ms", "p99_ms", "errors"])
    base, *others = counts
    ratios = []
    for n in others:
        for c in clients:
            one = next(r for r in rows if r["nodes"] == base and r["clients"] == c)
            many = next(r for r in rows if r["nodes"] == n and r["clients"] == c)
            ratios.append({"what": f"{n} nodes / {base} node", "clients": c,
                           "per_s": round(many["per_s"] / one["per_s"], 2) if one["per_s"] else "",
                           "p99_ms": round(many["p99_ms"] / one["p99_ms"], 2) if one["p99_ms"] else ""})
    show(ratios, ["what", "clients", "per_s", "p99_ms"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nodes.json").write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "settings": {"duration_s": duration, "clients": clients, "nodes": counts},
        "inserts": rows, "ratios": ratios}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'nodes.json'}")
    return 0 if all(r["errors"] == 0 for r in rows) else 1
def wrk_ms(text: str) -> float:
    """wrk's latency ("850.00us", "1.23ms", "2.01s") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        return float("nan")
    return round(float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)], 2)


def machine() -> dict[str, Any]:
    def version(*command: str) -> str:
        try:
            return subprocess.run(list(command), capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            return "?"
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(), "docker": version("docker", "version", "-f",
                                                                   "{{.Server.Version}}")}


def show(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print()
    print_table([columns, *([str(row.get(c, "")) for c in columns] for row in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients (default 1,8,32)")
    parser.add_argument("--skip-100k", action="store_true", help="skip reading with 100,000 rows")
    parser.add_argument("--nodes", help="only compare inserts on copies with these RabbitMQ node counts, "
                        "e.g. 1,3 (each a copy of its own, deleted afterwards)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive design's baseline (P4)")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]

    stack = Stack(args.env_file.resolve())
    if args.nodes:
        return compare_nodes(stack, [int(n) for n in args.nodes.split(",")], clients, args.duration)
    stack.up()  # idempotent: starts the system if it is not running
    bench = Bench(stack, args.duration, clients)
    tag = str(int(time.time()) % 100000)
    bench.clean_up()

    print("\nceilings (same run, same containers, no project code)", file=sys.stderr)
    ceilings = [bench.confirmed_publish(), bench.round_trip(), bench.round_trip(durable=True),
                *bench.database(),
                *(bench.http_floor(c) for c in clients)]
    ceilings += [row for c in clients if (row := bench.http_floor_wrk(c)) is not None]

    naive = []
    if not args.skip_naive:
        print("\nthe naive design: a new connection per request (bench/naive.py)", file=sys.stderr)
        naive = bench.naive()

    print("\nend to end", file=sys.stderr)
    created_before = bench.connections_created(settled=True)
    end_to_end: list[dict[str, Any]] = []
    inserted = {}
    cpu_per_insert: list[dict[str, Any]] = []
    for c in clients:
        row, cpu = bench.inserts_with_cpu(c, tag)
        end_to_end.append(row)
        cpu_per_insert.append(cpu)
        inserted[c] = row["requests"]
    bench.seed(1000)
    rows = bench.rows_in_table()
    for c in clients:
        end_to_end.append(bench.reads(c, rows))
    for c in clients:
        end_to_end.append(bench.deletes(c, tag, inserted[c]))
        end_to_end.append(bench.health(c))
    if not args.skip_100k:
        bench.seed(100_000)
        ceilings.append(bench.raw_read())
        rows = bench.rows_in_table()
        for c in clients:
            end_to_end.append(bench.reads(c, rows))
    requests_sent = sum(r["requests"] for r in end_to_end)
    created = bench.connections_created(settled=True) - created_before
    memory = bench.peak_memory_mib()
    bench.clean_up()
    progress("done")

    floor = {r["clients"]: r["per_s"] for r in ceilings if r["what"] == "HTTP floor: GET /livez"}
    single = next(r for r in ceilings if "one row per autocommit" in r["what"])
    rpc = next(r for r in ceilings if r["what"] == ROUND_TRIP)
    insert = {r["clients"]: r for r in end_to_end if r["what"] == "insert_record"}
    targets = []
    top = max(clients)
    if top in insert and top in floor:
        targets.append({"target": f"P1 inserts @{top} / HTTP floor >= 0.5",
                        "ratio": round(insert[top]["per_s"] / floor[top], 2)})
        targets.append({"target": f"P1 inserts @{top} / raw single-row inserts >= 1.0",
                        "ratio": round(insert[top]["per_s"] / single["per_s"], 2)})
    if 1 in insert:
        budget = 2.5 * (rpc["p50_ms"] + single["p50_ms"])
        targets.append({"target": "P2 insert p50 @1 / (round trip p50 + insert p50) <= 2.5",
                        "ratio": round(insert[1]["p50_ms"] / (budget / 2.5), 2)})
    raw_read = next((r for r in ceilings if "rows" in r), None)
    big_read = next((r for r in end_to_end
                     if raw_read and r.get("rows") == raw_read["rows"] and r["clients"] == 1), None)
    if raw_read and big_read:
        targets.append({"target": "P3 read of every row @1 / (SELECT + JSON) <= 2",
                        "ratio": round(big_read["p50_ms"] / raw_read["p50_ms"], 2)})
    targets.append({"target": "P4 AMQP connections opened per request == 0",
                    "ratio": round(created / max(1, requests_sent), 4)})
    for row in naive:
        if row["clients"] in insert:
            targets.append({"target": f"P4 inserts @{row['clients']} / naive design's >= 5",
                            "ratio": round(insert[row["clients"]]["per_s"] / max(row["per_s"], 0.1), 2)})
    for t in targets:
        limit = float(t["target"].rsplit(" ", 1)[1])
        t["met"] = "yes" if (t["ratio"] >= limit if ">=" in t["target"] else
                             t["ratio"] <= limit if "<=" in t["target"] else t["ratio"] == limit) else "no"

    show(ceilings, ["what", "clients", "per_s", "p50_ms", "p99_ms", "json_mib"])
    show(end_to_end, ["what", "clients", "requests", "per_s", "p50_ms", "p95_ms", "p99_ms", "errors"])
    if naive:
        show(naive, ["what", "clients", "requests", "per_s", "p50_ms", "p95_ms", "p99_ms", "errors",
                     "connections_per_request"])
    print("\nCPU per insert (ms), by container, and how busy the whole machine was during the run")
    show(cpu_per_insert, ["clients", "producer", "rabbitmq", "consumer_two", "db", "host_busy_pct"])
    print(f"\npeak memory (MiB): {memory}; AMQP connections opened during the end-to-end run: {created}")
    show(targets, ["target", "ratio", "met"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "settings": {"duration_s": args.duration, "clients": clients},
        "ceilings": ceilings, "naive": naive, "end_to_end": end_to_end, "cpu_per_insert_ms": cpu_per_insert,
        "peak_memory_mib": memory,
        "connections_created": created, "targets": targets}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
