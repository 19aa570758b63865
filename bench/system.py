"""What the bench reads from Docker: containers, cgroup counters, logs, RabbitMQ's statistics, the machine.

Scripts that need MySQL run inside the compose network (MySQL is not published on the host).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import requests

from bench.load import progress
from scripts.copies import root_sql
from scripts.stack import Stack, service_container


@dataclass(frozen=True)
class ServiceSetup:
    """What a compose service's container runs with, for a container beside it to run alike."""

    image: str
    network: str  # the compose network
    env: dict[str, str]
    command: list[str]
    logging: list[str]  # `docker run` options: the same log driver, so its lines cost the same


def published(container: str) -> str:
    """The base URL of a container's port 5000 on 127.0.0.1."""
    port = subprocess.run(["docker", "port", container, "5000/tcp"], capture_output=True, text=True,
                          check=True).stdout.split()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{port}"


# Scripts that run inside the compose network start with this.
# The driver is the consumers' own choice: its C extension where the image has it (common/db.py).
DB_CONNECT = """
import json, os, time, mysql.connector
from common.db import USE_PURE
c = mysql.connector.connect(host="db", user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"],
    database=os.environ.get("MYSQL_DATABASE", "school"), charset="utf8mb4", collation="utf8mb4_unicode_ci",
    use_pure=USE_PURE)
"""
# Every row the bench writes into `students` has an SRN starting with this.
BENCH_TAG = "BENCH"
# RabbitMQ's management statistics interval (collect_statistics_interval, 5 s by default), and a margin.
STATS_INTERVAL_S = 5.5
# Our containers on an insert's way, as the CPU figures name them.
INSERT_PATH = ("producer", "consumer_two", "rabbitmq", "db")


class System:
    """A running copy of the system, as the bench sees it from outside."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.base = f"http://127.0.0.1:{stack.get('PRODUCER_PORT')}"
        self.amqp = pika.ConnectionParameters(
            "127.0.0.1", int(stack.get("RABBITMQ_AMQP_PORT")),
            credentials=pika.PlainCredentials(stack.get("RABBITMQ_USER"), stack.get("RABBITMQ_PASSWORD")))

    @functools.cached_property
    def bench_account(self) -> dict[str, str]:
        """The bench's own MySQL account (the services' may do only their jobs): it seeds,
        counts and cleans up the rows the bench writes, and runs the straightforward design."""
        password = secrets.token_urlsafe(18)
        database = self.stack.get("MYSQL_DATABASE")
        self.root_sql(f"CREATE USER IF NOT EXISTS 'bench'@'%' IDENTIFIED BY '{password}';"
                      f" ALTER USER 'bench'@'%' IDENTIFIED BY '{password}';"
                      f" GRANT SELECT, INSERT, DELETE ON `{database}`.`students` TO 'bench'@'%'")
        return {"MYSQL_USER": "bench", "MYSQL_PASSWORD": password}

    @property
    def administrator(self) -> dict[str, str]:
        """RabbitMQ's administrator: the bench's own apps declare queues, which no service may."""
        return {"RABBITMQ_USER": self.stack.get("RABBITMQ_USER"),
                "RABBITMQ_PASSWORD": self.stack.get("RABBITMQ_PASSWORD")}

    def container(self, service: str) -> str:
        found = service_container(self.stack.project, service)
        if found is None:
            raise RuntimeError(f"no container for {service} in {self.stack.project}")
        return found

    def insert_path(self) -> dict[str, str]:
        """Name -> container id of our containers on an insert's way."""
        return {"producer": self.container("producer"), "consumer_two": self.container("consumer_two"),
                "rabbitmq": self.stack.get("RABBITMQ_CONTAINER"), "db": self.container("db")}

    def in_network(self, script: str) -> str:
        """Run a Python script in consumer_two's container, on the compose network; its output."""
        account = self.bench_account  # its values travel in the environment, not on the command line
        return subprocess.run(["docker", "exec", "-i", *(a for key in account for a in ("--env", key)),
                               self.container("consumer_two"), "python", "-"],
                              input=script, capture_output=True, text=True, check=True,
                              env={**os.environ, **account}).stdout

    def root_sql(self, sql: str) -> str:
        """SQL run as MySQL's root inside the db container (for what the app user may not do)."""
        return root_sql(self.container("db"), sql)

    def consumers(self, queue: str) -> int:
        """How many consumers `queue` has now (a passive declare: the management API's figure
        lags by its statistics interval)."""
        connection = pika.BlockingConnection(self.amqp)
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
        finally:
            connection.close()

    def delete_queue(self, queue: str) -> None:
        connection = pika.BlockingConnection(self.amqp)
        try:
            connection.channel().queue_delete(queue)
        finally:
            connection.close()

    def service_setup(self, service: str = "producer") -> ServiceSetup:
        """How a compose service's container runs (the producer's: what a baseline runs from)."""
        inspect = json.loads(subprocess.run(["docker", "inspect", self.container(service)],
                                            capture_output=True, text=True, check=True).stdout)[0]
        log = inspect["HostConfig"]["LogConfig"]
        return ServiceSetup(
            image=inspect["Image"], network=next(iter(inspect["NetworkSettings"]["Networks"])),
            env=dict(item.split("=", 1) for item in inspect["Config"]["Env"]),
            command=list(inspect["Config"]["Cmd"] or []),
            logging=["--log-driver", log["Type"], *(option for key, value in (log.get("Config") or {}).items()
                                                    for option in ("--log-opt", f"{key}={value}"))])

    def logs(self, service: str, since: float) -> list[dict[str, Any]]:
        """The JSON lines a compose service has logged since `since` (a time.time())."""
        out = subprocess.run(["docker", "logs", "--since", f"{since:.3f}", self.container(service)],
                             capture_output=True, text=True, check=True)
        lines = []
        for line in (out.stdout + out.stderr).splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

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


def cgroup_read(container: str, script: str) -> str:
    """What a shell `script` reading the container's own cgroup files prints (cgroup v2 or v1)."""
    return subprocess.run(["docker", "exec", container, "sh", "-c", script],
                          capture_output=True, text=True).stdout.strip()


@functools.cache
def cgroup_cpu_file(container: str) -> Path | None:
    """The file on this machine counting the container's CPU time: cpuacct.usage (cgroup v1, ns) or
    cpu.stat (v2, usage_usec). None where the engine runs in a VM (Docker Desktop) or /proc is not ours."""
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container],
                         capture_output=True, text=True).stdout.strip()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            candidates.insert(0, Path("/sys/fs/cgroup", controllers, path.lstrip("/"), "cpuacct.usage"))
        elif controllers == "":
            candidates.append(Path("/sys/fs/cgroup", path.lstrip("/"), "cpu.stat"))
    return next((c for c in candidates if c.exists()), None)


def container_cpu_seconds(container: str) -> float:
    """CPU time the container has used since it started: from the host's cgroup files where they
    can be read (no process started, so many containers are read within a millisecond of each
    other), else from inside the container."""
    path = cgroup_cpu_file(container)
    try:
        if path is not None and path.name == "cpuacct.usage":
            return int(path.read_text()) / 1e9
        if path is not None:
            usage = next(line for line in path.read_text().splitlines() if line.startswith("usage_usec"))
            return int(usage.split()[1]) / 1e6
    except (OSError, ValueError, StopIteration):
        pass
    out = cgroup_read(container, "grep usage_usec /sys/fs/cgroup/cpu.stat 2>/dev/null"
                                 " || echo usage_nsec $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage)").split()
    unit = {"usage_usec": 1e6, "usage_nsec": 1e9}.get(out[0] if out else "")
    return int(out[1]) / unit if unit and len(out) == 2 and out[1].isdigit() else float("nan")


def cpu_seconds(containers: dict[str, str]) -> dict[str, float]:
    """CPU time each container (name -> id) has used since it started."""
    return {name: container_cpu_seconds(container) for name, container in containers.items()}


def machine_ticks() -> dict[str, int] | None:
    """This machine's CPU ticks so far from /proc/stat (Linux only): busy (steal not included),
    steal (time the hypervisor gave to other machines), and the total."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    return {"busy": user + nice + system + irq + softirq, "steal": steal, "total": sum(fields)}


# Processes of this machine outside the containers that work for every request: Docker's
# port proxy (the HTTP port on 127.0.0.1 and the AMQP port on the gateway), and the
# daemons that carry the containers' logs and `docker exec`.
HOST_PROCESSES = {"docker_proxy": ("docker-proxy",),
                  "docker_daemons": ("dockerd", "containerd", "containerd-shim")}


def host_cpu_seconds() -> dict[str, float]:
    """CPU time used so far by the processes of HOST_PROCESSES, by group, and by the bench's own
    process (the load generator's threads), from /proc (Linux only; empty elsewhere)."""
    if not Path("/proc/self/stat").exists():
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(HOST_PROCESSES, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        for group, names in HOST_PROCESSES.items():
            if comm in names:
                used[group] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    own = os.times()
    used["generator"] = own.user + own.system
    return used


class CpuMeter:
    """CPU per request (ms) of each container over a stretch of work, and of the whole machine:
    the load generator, Docker's port proxy and daemons, and what else ran.

    `idle_ms_per_s` (each container's CPU per second with no load, from `idle_cost`, in the
    same run) is taken off each container's figure: health probes, timers and the
    broker's background are a cost per second, not per request. The machine's busy
    share leaves out steal (time the hypervisor gave to other machines), reported apart.
    """

    def __init__(self, containers: dict[str, str], idle_ms_per_s: dict[str, float] | None = None):
        self.containers = containers
        self.idle = idle_ms_per_s or {}
        self.ticks_before = machine_ticks()
        self.host_before = host_cpu_seconds()
        self.before = cpu_seconds(containers)
        self.started = time.monotonic()

    def per_request(self, requests_done: int) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        after = cpu_seconds(self.containers)
        host_after = host_cpu_seconds()
        ticks_after = machine_ticks()
        count = max(1, requests_done)
        used_ms = {name: (after[name] - self.before[name]) * 1000 for name in self.before}
        cpu: dict[str, Any] = {name: round((ms - self.idle.get(name, 0.0) * elapsed) / count, 3)
                               for name, ms in used_ms.items()}
        cpu["total"] = round(sum(v for k, v in cpu.items()), 3)  # the design's containers only
        for group, seconds in host_after.items():
            cpu[group] = round((seconds - self.host_before.get(group, seconds)) * 1000 / count, 2)
        if self.ticks_before and ticks_after:
            busy, steal, total = (ticks_after[k] - self.ticks_before[k] for k in ("busy", "steal", "total"))
            cpu["host_busy_pct"] = round(100 * busy / max(1, total))
            cpu["steal_pct"] = round(100 * steal / max(1, total), 1)
            cpu["machine"] = round(busy / os.sysconf("SC_CLK_TCK") * 1000 / count, 2)
            accounted = sum(used_ms.values()) / count + sum(cpu.get(group, 0.0) for group in host_after)
            cpu["elsewhere"] = round(cpu["machine"] - accounted, 2)
        return cpu


def idle_cost(containers: dict[str, str], seconds: float) -> dict[str, float]:
    """Each container's CPU per second (ms/s) over `seconds` with no load: its background."""
    before, started = cpu_seconds(containers), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cpu_seconds(containers), time.monotonic() - started
    return {name: round((after[name] - before[name]) * 1000 / elapsed, 2) for name in containers}


# The CPU canary: a fixed piece of pure Python work, timed on the host. On a VM the
# vCPU's own speed moves with the host's load (here up to 2x within seconds, with
# nothing of ours running), which no container's figure shows: a cell run while the
# canary was slow ran on a slower machine.
CANARY_LOOPS = 1_000_000


def canary_ms(repeat: int = 3) -> float:
    """The fastest of `repeat` runs of the canary, in ms: lower is a faster machine."""
    best = float("inf")
    for _ in range(repeat):
        started, total = time.perf_counter(), 0
        for number in range(CANARY_LOOPS):
            total += number * 3
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


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
