"""The baselines, measured by the same load generator in the same run: other designs of the same contract.

Each runs from the producer's image on the compose network, reaches RabbitMQ the way
the producer does, and uses bench-only names that the bench removes afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from bench import straight
from bench.load import inserts, wait_for_http
from bench.system import System, published
from scripts.stack import ROOT

AMQP_ENV = ("RABBITMQ_HOST", "RABBITMQ_PORT", "RABBITMQ_USER", "RABBITMQ_PASSWORD")
DB_ENV = ("MYSQL_HOST", "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD")


@contextlib.contextmanager
def container(system: System, name: str, command: list[str], env_keys: tuple[str, ...] = AMQP_ENV,
              http: bool = True, more_env: dict[str, str] | None = None) -> Iterator[str]:
    """A container of the producer's image on the compose network, with bench/ mounted, removed afterwards.

    Yields its base URL (an HTTP server's port published on 127.0.0.1), or its name when not `http`.
    Values travel as `--env NAME` from this process's environment, never on the command line.
    """
    setup = system.service_setup()
    passed = {**{k: setup.env[k] for k in env_keys if k in setup.env}, **system.administrator,
              **(more_env or {})}
    full_name = f"{system.stack.project}-bench-{name}"
    subprocess.run(["docker", "rm", "-f", full_name], capture_output=True)
    subprocess.run([
        # --no-healthcheck: the image's probe asks the producer's /readyz, which a baseline does not serve.
        "docker", "run", "--detach", "--no-healthcheck", "--name", full_name, "--network", setup.network,
        *setup.logging,  # the producer's log driver: a baseline's lines cost what ours do
        *(["--publish", "127.0.0.1::5000"] if http else []), "--volume", f"{ROOT / 'bench'}:/app/bench:ro",
        *(a for key in passed for a in ("--env", key)), setup.image, *command,
    ], env={**os.environ, **passed}, capture_output=True, check=True)
    try:
        if not http:
            yield full_name
            return
        base = published(full_name)
        wait_for_http(f"{base}/livez")
        yield base
    finally:
        subprocess.run(["docker", "rm", "-f", full_name], capture_output=True)


def gunicorn(system: System, app: str, worker_class: str = "gthread") -> list[str]:
    """gunicorn with the producer's worker count serving `app`: `gthread` with the producer's
    threads per worker, or `gevent` with its connections per worker."""
    per_worker = (["--threads", system.stack.get("GUNICORN_THREADS")] if worker_class == "gthread" else
                  ["--worker-connections", system.stack.get("GUNICORN_WORKER_CONNECTIONS")])
    return ["gunicorn", "--worker-class", worker_class, "--workers", system.stack.get("GUNICORN_WORKERS"),
            *per_worker, "--keep-alive", "5", "--timeout", "30", "--bind", "0.0.0.0:5000", app]


def naive(system: System, clients: list[int], duration: float) -> list[dict[str, Any]]:
    """bench/naive.py: a new AMQP connection per request, in the producer's image and gunicorn settings."""
    try:
        with container(system, "naive", gunicorn(system, "bench.naive:create_app()")) as base:
            rows = []
            for c in clients:
                before = system.connections_created()
                row = inserts(base, "naive: insert_record, a connection per request", c, duration, "NAIVE")
                row["connections_per_request"] = round(
                    (system.connections_created(settled=True) - before) / max(1, row["requests"]), 3)
                rows.append(row)
            return rows
    finally:
        system.delete_queue("bench.naive")


@contextlib.contextmanager
def straight_design(system: System, worker_class: str = "gthread") -> Iterator[tuple[str, dict[str, str]]]:
    """bench/straight.py running, its consumer included, next to our system: yields its base URL
    and the four containers on its inserts' way (app, consumer, RabbitMQ, MySQL; the last two ours).

    Its table and queue are bench-only and removed afterwards, whatever happens.
    """
    user, database = system.bench_account["MYSQL_USER"], system.stack.get("MYSQL_DATABASE")
    system.root_sql(
        f"CREATE TABLE IF NOT EXISTS {straight.TABLE} ("
        " srn VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
        " name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,"
        " section VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,"
        " request_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
        " PRIMARY KEY (srn)) ENGINE = InnoDB;"
        f" DELETE FROM {straight.TABLE};"
        f" GRANT INSERT ON `{database}`.`{straight.TABLE}` TO '{user}'@'%'")
    consumer_env = system.service_setup("consumer_two").env
    db_env = {**{k: consumer_env[k] for k in (*DB_ENV, "CONSUMER_PREFETCH") if k in consumer_env},
              **system.bench_account}
    app = gunicorn(system, "bench.straight:create_app()", worker_class)
    try:
        with container(system, "straight-consumer", ["python", "-m", "bench.straight", "consume"],
                       http=False, more_env=db_env) as consumer, container(system, "straight", app) as base:
            wait_for_queue(system, consumer)
            yield base, {"producer": f"{system.stack.project}-bench-straight", "consumer": consumer,
                         "rabbitmq": system.stack.get("RABBITMQ_CONTAINER"), "db": system.container("db")}
    finally:
        system.delete_queue(straight.QUEUE)
        system.root_sql(f"REVOKE INSERT ON `{database}`.`{straight.TABLE}` FROM '{user}'@'%';"
                        f" DROP TABLE IF EXISTS {straight.TABLE}")


def wait_for_queue(system: System, consumer: str, timeout: float = 60) -> None:
    """Until the straightforward consumer says it is consuming (it declares and binds its queue first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = subprocess.run(["docker", "logs", consumer], capture_output=True, text=True)
        if "consuming" in logs.stdout:
            return
        if "Traceback" in logs.stderr:
            raise RuntimeError(f"the straightforward consumer failed:\n{logs.stderr[-2000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"the straightforward consumer did not start within {timeout:.0f} s")
