"""The baselines, measured by the same load generator in the same run: other designs of the same contract.

Each runs from the producer's image on the compose network, reaches RabbitMQ the way
the producer does, and uses bench-only names that the bench removes afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from typing import Any

from bench.load import inserts, wait_for_http
from bench.system import System
from scripts.stack import ROOT

AMQP_ENV = ("RABBITMQ_HOST", "RABBITMQ_PORT", "RABBITMQ_USER", "RABBITMQ_PASSWORD")


@contextlib.contextmanager
def container(system: System, name: str, command: list[str], env_keys: tuple[str, ...] = AMQP_ENV,
              http: bool = True) -> Iterator[str]:
    """A container of the producer's image on the compose network, with bench/ mounted, removed afterwards.

    Yields its base URL (an HTTP server's port published on 127.0.0.1), or its name when not `http`.
    Values travel as `--env NAME` from this process's environment, never on the command line.
    """
    image, network, env = system.producer_setup()
    passed = {k: env[k] for k in env_keys if k in env}
    full_name = f"{system.stack.project}-bench-{name}"
    subprocess.run(["docker", "rm", "-f", full_name], capture_output=True)
    subprocess.run([
        "docker", "run", "--detach", "--name", full_name, "--network", network,
        *(["--publish", "127.0.0.1::5000"] if http else []), "--volume", f"{ROOT / 'bench'}:/app/bench:ro",
        *(a for key in passed for a in ("--env", key)), image, *command,
    ], env={**os.environ, **passed}, capture_output=True, check=True)
    try:
        if not http:
            yield full_name
            return
        port = subprocess.run(["docker", "port", full_name, "5000/tcp"], capture_output=True, text=True,
                              check=True).stdout.split()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/livez")
        yield base
    finally:
        subprocess.run(["docker", "rm", "-f", full_name], capture_output=True)


def gunicorn(system: System, app: str) -> list[str]:
    """gunicorn with the producer's worker and thread settings, serving `app`."""
    return ["gunicorn", "--worker-class", "gthread", "--workers", system.stack.get("GUNICORN_WORKERS"),
            "--threads", system.stack.get("GUNICORN_THREADS"), "--keep-alive", "5", "--timeout", "30",
            "--bind", "0.0.0.0:5000", app]


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
