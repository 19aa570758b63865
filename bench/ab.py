"""One service's code against the code before it, in alternating rounds on one running system.

    python bench/ab.py --env-file .env --service consumer_two --before IMAGE [--rounds 5] [--duration 5]

IMAGE is the service's image built from the code before the change (tag it before
rebuilding: `docker tag <the running container's image> local/consumer_two:before`).
A container of it runs beside the service's own (same network, environment and
command). For a consumer, in each round one of the two is stopped while the other
serves the queue (the order swapped every round), so the same RabbitMQ, MySQL and
producer serve both; for the producer (`--service producer`) both run, the twin's
HTTP port published on 127.0.0.1, and each round loads one then the other.
Each variant's rounds: inserts at 32 clients by wrk (throughput, and CPU
per insert of the producer, RabbitMQ, the variant's container and MySQL from the
host's cgroup files, each container's idle CPU measured first and taken off) and at
one client (p50, CPU per insert), the CPU canary just before it (how fast the machine itself was: see
bench.system.canary_ms). Prints each round, then medians and ranges and the median of each
round's after/before ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import wrk  # noqa: E402
from bench.load import wait_for_http  # noqa: E402
from bench.report import show  # noqa: E402
from bench.system import BENCH_TAG, System, idle_cost, published  # noqa: E402
from bench.versus import insert_cell, spread  # noqa: E402
from scripts.stack import Stack  # noqa: E402

# No variant serves before its consumer is on the queue; none waits longer than this.
START_TIMEOUT_S = 60.0


def twin(system: System, service: str, image: str, publish: bool, settings: dict[str, str]) -> str:
    """A stopped container of `image` with the service container's network, environment, command
    and log driver (its port 5000 published on 127.0.0.1 when `publish`); its name. Values travel
    as `--env NAME` from this process's environment, never on the command line."""
    setup = system.service_setup(service)
    env = {**setup.env, **settings}
    name = f"{system.stack.project}-ab-{service}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "create", "--name", name, "--network", setup.network, *setup.logging,
                    *(["--publish", "127.0.0.1::5000"] if publish else []),
                    *(a for key in env for a in ("--env", key)), image, *setup.command],
                   env={**os.environ, **env}, capture_output=True, check=True)
    return name


def serve_with(system: System, queue: str, running: str, stopped: str) -> None:
    """Only `running` consumes `queue` once this returns."""
    subprocess.run(["docker", "stop", "--time", "10", stopped], capture_output=True, check=True)
    subprocess.run(["docker", "start", running], capture_output=True, check=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if system.consumers(queue) == 1:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{running} did not consume {queue} within {START_TIMEOUT_S:.0f} s")


def other(variant: str) -> str:
    return "after" if variant == "before" else "before"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--service", default="consumer_two")
    parser.add_argument("--queue", default="insert_record")
    parser.add_argument("--before", required=True, help="the service's image built from the code before")
    parser.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the twin that differs from the service's (to compare settings, "
                        "with --before the service's own image)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    stack = Stack(args.env_file.resolve())
    stack.load()
    system = System(stack)
    producer = args.service == "producer"
    after = system.container(args.service)
    before = twin(system, args.service, args.before, publish=producer,
                  settings=dict(item.split("=", 1) for item in args.before_env))
    variants = {"before": before, "after": after}
    shared = {"rabbitmq": stack.get("RABBITMQ_CONTAINER"), "db": system.container("db")}
    others = {"consumer": system.container("consumer_two")} if producer else {
        "producer": system.container("producer")}
    base = {"after": system.base, "before": system.base}
    role = "producer" if producer else "consumer"
    tag = str(int(time.time()) % 100000)
    rows: list[dict[str, Any]] = []
    try:
        if producer:
            subprocess.run(["docker", "start", before], capture_output=True, check=True)
            base["before"] = published(before)
            wait_for_http(f"{base['before']}/livez")
        idle: dict[str, dict[str, float]] = {}
        for name, container in variants.items():
            if not producer:
                serve_with(system, args.queue, container, variants[other(name)])
            wrk.load(base[name], args.clients, 2, insert_prefix=f"{BENCH_TAG}{tag}AW{name[0]}")  # warm-up
            time.sleep(1)
            idle[name] = idle_cost({**shared, **others, role: container}, args.idle)
        for number in range(args.rounds):
            order = list(variants) if number % 2 == 0 else list(variants)[::-1]
            for name in order:
                container = variants[name]
                if not producer:
                    serve_with(system, args.queue, container, variants[other(name)])
                containers = {**shared, **others, role: container}
                many, cpu, one = insert_cell(base[name], containers, idle[name], args.clients, args.duration,
                                             f"{BENCH_TAG}{tag}A{number}{name[0]}")
                rows.append({"variant": name, "round": number + 1, "inserts_per_s": many["per_s"],
                             "cpu_ms": cpu["total"], "cpu_consumer": cpu["consumer"], "cpu_db": cpu["db"],
                             "cpu_rabbitmq": cpu["rabbitmq"], "cpu_producer": cpu["producer"],
                             "docker_daemons": cpu.get("docker_daemons", float("nan")),
                             "p50_ms": one["p50_ms"], "cpu_ms_at_1": one["cpu"]["total"],
                             "canary_ms": one["canary_ms"],
                             "errors": many["errors"] + one["errors"],
                             "steal_pct": cpu.get("steal_pct", "")})
                time.sleep(1)
    finally:
        if not producer:
            serve_with(system, args.queue, after, before)
        subprocess.run(["docker", "rm", "-f", before], capture_output=True)
    keys = ["inserts_per_s", "cpu_ms", "cpu_producer", "cpu_rabbitmq", "cpu_consumer", "cpu_db",
            "docker_daemons", "p50_ms", "cpu_ms_at_1", "canary_ms"]
    show(rows, ["variant", "round", *keys, "errors", "steal_pct"], f"{args.service}: each round")
    summary = []
    for key in keys:
        of = {name: [float(r[key]) for r in rows if r["variant"] == name] for name in variants}
        ratios = [a / b for a, b in zip(of["after"], of["before"], strict=True) if b]
        summary.append({"figure": key, "before": spread(of["before"]), "after": spread(of["after"]),
                        "after / before": spread(ratios)})
    show(summary, ["figure", "before", "after", "after / before"],
         f"{args.service}: median (range) of {args.rounds} rounds; the ratio is the median of each round's")
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
