#!/usr/bin/env python3
"""Run the system: the one script behind every `make` target.

    python scripts/stack.py up      # RabbitMQ on its own network, then compose
    python scripts/stack.py test    # ruff, mypy, unit and integration tests
    python scripts/stack.py smoke   # ruff, mypy, unit tests, then the assignment's checklist
    python scripts/stack.py down    # stop compose, then RabbitMQ (data stays)
    python scripts/stack.py clean   # down, and delete the data volumes

Only the standard library, so a Windows user with Docker Desktop and Python
runs the same steps without make. `--env-file` selects another settings
file; the integration tests use it to run a copy of the system of their own.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
import venv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

# The one minimum Python for the host (the images bring their own); pyproject's target.
MIN_PYTHON = (3, 11)
if sys.version_info < MIN_PYTHON:
    sys.exit(f"scripts/stack.py needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; "
             f"this is Python {sys.version.split()[0]} ({sys.executable}). Install a newer one "
             "(python.org, or your package manager) and run it with that.")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import accounts, topology  # noqa: E402 (needs ROOT on the path; standard library only)

# The exchange of common/topology.py (this script imports nothing of the services).
EXCHANGE = "microservices"
# `make smoke`: after the unit tests, one pass of the assignment's checklist on a throwaway copy.
SMOKE_TESTS = ("tests/integration/test_assignment.py",)
# Each service's own password (RabbitMQ, and MySQL for those with a database job).
SERVICE_SECRETS = tuple(accounts.password_setting(service)
                        for service in (*accounts.SERVICES, accounts.MIGRATOR))
SECRETS = ("RABBITMQ_PASSWORD", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", *SERVICE_SECRETS)
# Generated with the passwords, but needed only by a RabbitMQ cluster (RABBITMQ_NODES > 1).
COOKIE = "RABBITMQ_ERLANG_COOKIE"
# On a cluster: how often (ms) each node polls its failure detector (RABBITMQ_NODE_DOWN_POLL_MS).
NODE_DOWN_POLL_MS = 1000
# The database image's entrypoint pastes these into SQL unescaped on its first start.
DATABASE_SETTINGS = ("MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "MYSQL_DATABASE")
# Quotes and backslashes break that SQL; `$` is compose's interpolation, `#` a comment in .env.
UNSAFE_CHARACTERS = "'\"\\`$#"
# Which engine and version made a database volume, written into it at the first healthy start.
ENGINE_FILE = "/var/lib/mysql/.made-by"
# Base images: setting, default (a pinned minor tag), kind of local stand-in.
IMAGES = (
    ("PYTHON_IMAGE", "python:3.12-slim", "python"),
    ("MYSQL_IMAGE", "mysql:9.7", "mysql"),
    ("RABBITMQ_IMAGE", "rabbitmq:4.1-management", "rabbitmq"),
)


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = True,
        capture: bool = False, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), env=dict(env) if env is not None else None, text=True,
        stdout=subprocess.PIPE if capture or quiet else None,
        stderr=subprocess.PIPE if capture or quiet else None,
    )
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip() if (capture or quiet) else ""
        fail(f"`{' '.join(args[:3])} ...` failed ({result.returncode}){': ' + detail if detail else ''}")
    return result


def exec_with_input(container: str, command: Sequence[str], text: str) -> None:
    """`docker exec -i container command` with `text` on its standard input (a secret stays
    off every command line)."""
    result = subprocess.run(["docker", "exec", "-i", container, *command], input=text + "\n",
                            capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"`{' '.join(command[:3])} ...` in {container} failed ({result.returncode}): "
             f"{result.stderr.strip()}")


@functools.cache
def docker_desktop() -> bool:
    """Whether the engine is Docker Desktop's (in a VM), not one running on this host."""
    found = run(["docker", "info", "--format", "{{.OperatingSystem}}"], check=False, capture=True)
    return "Docker Desktop" in found.stdout


def docker_ok(*args: str) -> bool:
    return run(["docker", *args], check=False, quiet=True).returncode == 0


# ---- settings ---------------------------------------------------------------

class Node(NamedTuple):
    """One RabbitMQ node: node 1 has the configured names, node n the same with "-n" / "_n"."""

    number: int
    container: str
    hostname: str
    volume: str
    port: int

    @property
    def name(self) -> str:
        return f"rabbit@{self.hostname}"


def node_ports(values: Mapping[str, str]) -> list[int]:
    """Each RabbitMQ node's AMQP port on the host: RABBITMQ_AMQP_PORTS, else RABBITMQ_AMQP_PORT, +1, +2 ..."""
    count = int(values.get("RABBITMQ_NODES") or 1)
    listed = values.get("RABBITMQ_AMQP_PORTS", "").strip()
    if listed:
        ports = [int(port) for port in listed.split(",")]
        if len(ports) != count:
            fail(f"RABBITMQ_AMQP_PORTS lists {len(ports)} ports for RABBITMQ_NODES={count}")
        return ports
    first = int(values.get("RABBITMQ_AMQP_PORT") or 5672)
    return [first + n for n in range(count)]


class Engine(NamedTuple):
    """A database server: "mysql" or "mariadb", and its version (major.minor.patch)."""

    name: str
    version: tuple[int, ...]

    def __str__(self) -> str:
        label = "MariaDB" if self.name == "mariadb" else "MySQL"
        return f"{label} {'.'.join(map(str, self.version))}" if self.version else label

    @classmethod
    def parse(cls, text: str) -> Engine | None:
        """From `mysqld --version` / `mariadbd --version`, or the volume's record ("mysql 9.7.4")."""
        name = "mariadb" if "mariadb" in text.lower() else "mysql"
        version = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
        if not version and not re.fullmatch(r"\s*(mysql|mariadb)\s*", text.lower()):
            return None
        return cls(name, tuple(map(int, version.groups())) if version else ())


def database_volume_problem(volume: Engine, image: Engine, volume_name: str, setting: str) -> str:
    """Why the image must not be started on the volume ('' when it may)."""
    if volume.name == image.name and volume.version[:2] <= image.version[:2]:
        return ""  # the same engine, the same series or an upgrade
    what = "another engine" if volume.name != image.name else "an older version"
    return (
        f"the database volume {volume_name} was made by {volume}, and {setting} is {image}: {what} "
        "cannot safely open that data (the image skips its setup when the volume holds a database, "
        "then fails or misbehaves). Nothing was started or changed. Set MYSQL_IMAGE back to a "
        f"{volume} image (or newer, same engine), or move the data: docs/troubleshooting.md"
    )


def unsafe_database_settings(values: Mapping[str, str]) -> list[str]:
    """The database settings the image's first start would paste into broken SQL."""
    return [f"{key} contains {' '.join(sorted({c for c in values.get(key, '') if c in UNSAFE_CHARACTERS}))}"
            for key in DATABASE_SETTINGS if any(c in UNSAFE_CHARACTERS for c in values.get(key, ""))]


def write_private(path: Path, text: str) -> None:
    """Write a file that holds passwords, readable and writable by its owner only (0600).

    Created with that mode, never widened afterwards: no moment where others can read it.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


LOOPBACK_BINDS = ("127.", "localhost", "::1", "[::1]")


def open_producer_problem(values: Mapping[str, str]) -> str:
    """Why the HTTP API must not be published as configured ('' when it may)."""
    bind = (values.get("PRODUCER_BIND") or "127.0.0.1").strip()
    if bind.startswith(LOOPBACK_BINDS) or values.get("API_TOKEN", "").strip():
        return ""
    return (f"PRODUCER_BIND={bind} would publish the HTTP API beyond this machine while API_TOKEN is "
            "empty: anyone who reaches the port could read and delete every record. Set API_TOKEN "
            "in .env (every client then sends 'Authorization: Bearer <token>'), and ALLOWED_HOSTS to "
            "the names clients use, or keep PRODUCER_BIND=127.0.0.1. Nothing was started. "
            "docs/security.md")


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


class Stack:
    """The settings of one copy of the system, and the commands that run it."""

    def __init__(self, env_file: Path):
        self.env_file = env_file
        self.defaults = parse_env_file(ROOT / ".env.example")
        self.values: dict[str, str] = {}
        # Found at `up`: the gateway IP and the base images compose builds from.
        self.discovered: dict[str, str] = {"RABBITMQ_HOST": "-"}

    def load(self) -> None:
        # As in compose: the shell's environment wins over the file.
        file_values = parse_env_file(self.env_file) if self.env_file.exists() else {}
        merged = {**self.defaults, **file_values}
        self.values = {key: os.environ.get(key, value) for key, value in merged.items()}

    def get(self, key: str) -> str:
        return self.values.get(key) or self.defaults.get(key, "")

    @property
    def project(self) -> str:
        return self.get("COMPOSE_PROJECT_NAME")

    @property
    def db_volume(self) -> str:
        return f"{self.project}_db_data"

    def nodes(self, count: int | None = None) -> list[Node]:
        """The RabbitMQ nodes: RABBITMQ_NODES of them, or `count`."""
        ports = node_ports({k: self.get(k) for k in ("RABBITMQ_NODES", "RABBITMQ_AMQP_PORTS",
                                                     "RABBITMQ_AMQP_PORT")})
        count = len(ports) if count is None else count
        ports += [0] * (count - len(ports))  # nodes beyond RABBITMQ_NODES (left over): no port
        container, hostname, volume = (self.get(k) for k in (
            "RABBITMQ_CONTAINER", "RABBITMQ_HOSTNAME", "RABBITMQ_VOLUME"))
        return [Node(1, container, hostname, volume, ports[0])] + [
            Node(n, f"{container}-{n}", f"{hostname}-{n}", f"{volume}_{n}", ports[n - 1])
            for n in range(2, count + 1)]

    def process_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.values, **extra}

    # ---- .env ---------------------------------------------------------------

    def ensure_env_file(self) -> None:
        if self.env_file.exists():
            if os.name == "posix" and self.env_file.stat().st_mode & 0o077:
                # An .env from before 0600: it holds every password of the system.
                os.chmod(self.env_file, 0o600)
                say(f"{self.env_file.name} was readable by others: now by you only (chmod 600)")
            self.load()
            unsafe = unsafe_database_settings(self.values)
            if unsafe:
                fail(f"{self.env_file.name}: {'; '.join(unsafe)}. The database image pastes these into "
                     f"SQL without escaping, so its first start would break. Use letters, digits and "
                     f"- _ . @ % + = , : / only (make up generates such passwords).")
            self.add_service_passwords()
            missing = [key for key in SECRETS if not self.get(key)]
            if missing:
                fail(f"{self.env_file} does not set {', '.join(missing)}")
            if len(self.nodes()) > 1 and not self.get(COOKIE):
                # An .env from before clusters: add the one setting a cluster needs.
                with self.env_file.open("a", encoding="utf-8") as env:
                    env.write(f"{COOKIE}={secrets.token_urlsafe(24)}\n")
                say(f"added a generated {COOKIE} to {self.env_file}")
                self.load()
            return
        self.load()
        volumes = (self.db_volume, *(node.volume for node in self.nodes()))
        leftovers = [v for v in volumes if docker_ok("volume", "inspect", v)]
        if leftovers:
            fail(
                f"{self.env_file.name} is missing, but data volumes of an earlier one still exist "
                f"({', '.join(leftovers)}). New passwords would not match the ones stored in them. "
                f"Put the old {self.env_file.name} back, or delete the data with "
                "`make clean` (python scripts/stack.py clean) and run `make up` again."
            )
        lines = []
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
            key = line.partition("=")[0].strip()
            if key in (*SECRETS, COOKIE) and not line.partition("=")[2].strip():
                line = f"{key}={secrets.token_urlsafe(24)}"
            lines.append(line)
        write_private(self.env_file, "\n".join(lines) + "\n")
        say(f"created {self.env_file} from .env.example with freshly generated passwords "
            "(readable by you only)")
        self.load()
        self.add_service_passwords()

    def add_service_passwords(self) -> None:
        """A generated password for each service that has none in the settings file yet:
        an .env from before each service had its own account, or a service added since."""
        added = [key for key in SERVICE_SECRETS if not self.get(key)]
        if added:
            with self.env_file.open("a", encoding="utf-8") as env:
                env.writelines(f"{key}={secrets.token_urlsafe(24)}\n" for key in added)
            say(f"added generated passwords to {self.env_file.name}: {', '.join(added)}")
            self.load()

    # ---- images -------------------------------------------------------------

    def resolve_images(self) -> dict[str, str]:
        """Each base image as configured; a local stand-in only where none can be had."""
        chosen = {}
        policy = self.get("OFFLINE_STANDINS") or "auto"
        for setting, default, kind in IMAGES:
            name = self.get(setting) or default
            if policy != "always":
                if docker_ok("image", "inspect", name):
                    chosen[setting] = name
                    continue
                say(f"pulling {name}")
                if docker_ok("pull", name):
                    chosen[setting] = name
                    continue
                if policy == "never":
                    fail(f"cannot pull {name} and OFFLINE_STANDINS=never")
                say(f"{name} cannot be pulled here: using a local stand-in (offline/README.md)")
            from offline.standins import build_standin, standin_kind

            chosen[setting] = build_standin(standin_kind(name, kind), log=say)
        return chosen

    # ---- RabbitMQ, outside compose ---------------------------------------------

    def start_rabbitmq(self, image: str) -> str:
        """Start RabbitMQ (one node, or a cluster) on its own network; return that network's gateway IP."""
        network = self.get("RABBITMQ_NETWORK")
        if not docker_ok("network", "inspect", network):
            say(f"creating network {network}")
            run(["docker", "network", "create", "--driver", "bridge", network], quiet=True)
        nodes = self.nodes()
        clustered = len(nodes) > 1
        # Every node first, then the waits: a restarted cluster node waits for its peers.
        for node in nodes:
            state = run(["docker", "inspect", "-f", "{{.State.Running}} {{json .Config.Env}}",
                         node.container], check=False, capture=True)
            if state.returncode == 0 and clustered and not (
                    f'"{COOKIE}=' in state.stdout and f'"{self.cluster_erl_args()}"' in state.stdout):
                # A node from a single-node run has a cookie of its own, one from an older
                # .env other settings; its data stays in the volume.
                say(f"re-creating {node.container} with the cluster's Erlang cookie and settings")
                run(["docker", "stop", "--time", "30", node.container], quiet=True)
                run(["docker", "rm", node.container], quiet=True)
                state = run(["docker", "inspect", node.container], check=False, quiet=True)
            if state.returncode != 0:
                say(f"starting RabbitMQ ({image}) as {node.container} on {network}")
                self.create_rabbitmq_node(image, node, clustered=clustered)
            elif not state.stdout.startswith("true"):
                say(f"starting the existing {node.container} container")
                run(["docker", "start", node.container], quiet=True)
        for node in nodes:
            self.wait_for_rabbitmq(node)
        if len(nodes) > 1:
            self.form_cluster(nodes)
        self.rabbitmq_definitions(nodes[0])
        return self.gateway_ip()

    def rabbitmq_definitions(self, node: Node, *, with_accounts: bool = True) -> None:
        """Each service's own RabbitMQ user with only its permissions (common/accounts.py),
        and the queues' policies, in one `rabbitmqctl import_definitions`; idempotent.

        One import, not a rabbitmqctl call per user and step: each call starts an Erlang
        VM (about 1.4 s), and 28 of them made up most of a `make up`. Users, permissions
        and policies are the cluster's, so one node is asked. A password goes in as its
        salted hash only, on standard input, never on a command line.

        The policies hold what an operator may tune (DELIVERY_LIMIT, QUEUE_MAX_LENGTH,
        dead-lettering, overflow), not the queues' arguments, which can never change
        (common/topology.py), and apply to running queues at once. A full work queue
        refuses new messages, which the producer answers 503 at once, instead of growing
        until RabbitMQ's memory or disk alarm stops every publisher.
        """
        vhost = self.get("RABBITMQ_VHOST") or "/"
        work = accounts.names_pattern(list(topology.ROUTING_KEYS))
        dead = accounts.names_pattern([topology.dead_letter_queue(key) for key in topology.ROUTING_KEYS])
        limits = topology.work_queue_policy(
            delivery_limit=self.positive_setting("DELIVERY_LIMIT", topology.DELIVERY_LIMIT),
            max_length=self.positive_setting("QUEUE_MAX_LENGTH", topology.QUEUE_MAX_LENGTH))
        policies = ((topology.WORK_QUEUE_POLICY, work, limits),
                    (topology.DEAD_QUEUE_POLICY, dead, topology.DEAD_QUEUE_DEFINITION))
        definitions: dict[str, list[dict[str, Any]]] = {"policies": [
            {"vhost": vhost, "name": name, "pattern": pattern, "apply-to": "queues", "priority": 0,
             "definition": applied} for name, pattern, applied in policies]}
        if with_accounts:
            hashed = {service: accounts.rabbitmq_password_hash(self.get(accounts.password_setting(service)))
                      for service in accounts.SERVICES}
            definitions["users"] = [
                {"name": service, "tags": [], "hashing_algorithm": accounts.RABBITMQ_HASHING,
                 "password_hash": hashed[service]} for service in accounts.SERVICES]
            definitions["permissions"] = [
                dict(zip(("configure", "write", "read"), accounts.rabbitmq_permissions(service), strict=True),
                     user=service, vhost=vhost)
                for service in accounts.SERVICES]
        # The node reads the file itself, as its own user: a private temporary file it owns.
        exec_with_input(node.container, [
            "sh", "-c", 'f=$(mktemp) && cat > "$f" && chown rabbitmq "$f" && '
                        'rabbitmqctl -q import_definitions "$f"; status=$?; rm -f "$f"; exit $status'],
            json.dumps(definitions))
        if with_accounts:
            say(f"RabbitMQ accounts: {', '.join(accounts.SERVICES)} (each only its own rights)")
        say(f"queue policies: delivery limit {limits['delivery-limit']}, "
            f"at most {limits['max-length']} ready messages per work queue")

    def positive_setting(self, key: str, default: int) -> int:
        raw = self.get(key) or str(default)
        if not raw.isdigit() or int(raw) < 1:
            fail(f"{key}={raw}: say a whole number of at least 1")
        return int(raw)

    def create_rabbitmq_node(self, image: str, node: Node, *, clustered: bool = False,
                             extra_env: tuple[str, ...] = ()) -> None:
        """`docker run` of one node, its credentials passed on from this process's environment."""
        run(self.rabbitmq_run_command(image, node, clustered=clustered, extra_env=extra_env),
            env=self.process_env(RABBITMQ_DEFAULT_USER=self.get("RABBITMQ_USER"),
                                 RABBITMQ_DEFAULT_PASS=self.get("RABBITMQ_PASSWORD")), quiet=True)

    def rabbitmq_run_command(self, image: str, node: Node, *, clustered: bool = False,
                             extra_env: tuple[str, ...] = ()) -> list[str]:
        """The node's `docker run`; `extra_env` (NAME=value, no secret) adds settings of a
        measurement's own (bench/busy_wait.py) to those `make up` gives it."""
        # Credentials go in as `-e NAME` (value from the environment), never on
        # the command line.
        first = node.number == 1
        return [
            "docker", "run", "--detach",
            "--name", node.container,
            "--hostname", node.hostname,
            "--network", self.get("RABBITMQ_NETWORK"),
            # The node name is rabbit@<hostname>: its peers find it by that name.
            "--network-alias", node.hostname,
            "--restart", "unless-stopped",
            # The hardening the compose services have, and bounds sized from measured peaks.
            "--security-opt", "no-new-privileges:true",
            "--memory", self.get("RABBITMQ_MEMORY_LIMIT") or "2g",
            "--pids-limit", self.get("RABBITMQ_PIDS_LIMIT") or "256",
            *(arg for bind in self.amqp_binds() for arg in ("--publish", f"{bind}:{node.port}:5672")),
            # The management UI and metrics of node 1 show the whole cluster.
            *(["--publish", f"127.0.0.1:{self.get('RABBITMQ_MANAGEMENT_PORT')}:15672",
               "--publish", f"127.0.0.1:{self.get('RABBITMQ_PROMETHEUS_PORT')}:15692"] if first else []),
            "--volume", f"{node.volume}:/var/lib/rabbitmq",
            "--env", "RABBITMQ_DEFAULT_USER", "--env", "RABBITMQ_DEFAULT_PASS",
            # Nodes of a cluster must share the Erlang cookie (read by RabbitMQ itself).
            *(["--env", COOKIE] if clustered else []),
            # How soon a quorum queue whose leader's node went silent elects another.
            *(["--env", self.cluster_erl_args()] if clustered else []),
            *(arg for setting in extra_env for arg in ("--env", setting)),
            image,
        ]

    def cluster_erl_args(self) -> str:
        """What a cluster's node is started with beyond the image's defaults, as NAME=value.

        A quorum queue elects a new leader once its failure detector (aten) says the old
        leader's node is down, and aten decides that at each poll: every 5 s in RabbitMQ's
        defaults, which left a node cut off stalling its queues for up to 9 s in our tests.
        """
        poll_ms = self.positive_setting("RABBITMQ_NODE_DOWN_POLL_MS", NODE_DOWN_POLL_MS)
        return f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-aten poll_interval {poll_ms}"

    def amqp_binds(self) -> list[str]:
        """Where each node's AMQP port is published on the host: RABBITMQ_AMQP_BIND, or with
        `auto` loopback (this machine's tools) and the gateway IP of the RabbitMQ network (the
        compose services' way in) on a Linux engine, so the LAN cannot reach it; 0.0.0.0 on
        Docker Desktop, whose engine runs in a VM: neither of those addresses is the host's."""
        bind = (self.get("RABBITMQ_AMQP_BIND") or "auto").strip()
        if bind != "auto":
            return [bind]
        if docker_desktop():
            return ["0.0.0.0"]  # noqa: S104 (Docker Desktop: the one address its proxy answers on)
        return ["127.0.0.1", self.gateway_ip()]

    def form_cluster(self, nodes: Sequence[Node]) -> None:
        """Join every node to node 1 (RabbitMQ's own join_cluster), then replicate every quorum queue.

        A node that has joined once remembers its cluster in its volume and
        rejoins by itself when started again, so this does nothing then.
        """
        first = nodes[0]
        for node in nodes[1:]:
            if first.name in self.cluster_nodes(node):
                continue
            say(f"joining {node.container} to the cluster of {first.container}")
            for command in (["stop_app"], ["join_cluster", first.name], ["start_app"]):
                run(["docker", "exec", node.container, "rabbitmqctl", "-q", *command], capture=True)
            self.wait_for_rabbitmq(node)
        # Queues declared before a node joined (an earlier single-node run) get
        # a member on it; with every member present already, this changes nothing.
        for node in nodes:
            run(["docker", "exec", first.container, "rabbitmq-queues", "-q", "grow", node.name, "all"],
                capture=True)
        running = self.cluster_nodes(first, key="running_nodes")
        missing = [n.name for n in nodes if n.name not in running]
        if missing:
            fail(f"RabbitMQ nodes not running in the cluster: {', '.join(missing)}")
        say(f"RabbitMQ cluster of {len(nodes)} nodes: {', '.join(sorted(running))}")

    def cluster_nodes(self, node: Node, key: str = "disk_nodes") -> list[str]:
        """The members (or with key="running_nodes", the running ones) of `node`'s cluster."""
        out = run(["docker", "exec", node.container, "rabbitmqctl", "-q", "cluster_status",
                   "--formatter", "json"], capture=True).stdout
        return [str(name) for name in json.loads(out).get(key, [])]

    def wait_for_rabbitmq(self, node: Node | None = None, timeout: float = 180) -> None:
        # A TCP probe would pass through docker-proxy while RabbitMQ is still
        # booting, so wait until the application user can really log in.
        node = node or self.nodes()[0]
        say(f"waiting until {self.get('RABBITMQ_USER')} can log in to RabbitMQ on port {node.port}")
        deadline = time.monotonic() + timeout
        error = ""
        while time.monotonic() < deadline:
            error = amqp_login("127.0.0.1", node.port, self.get("RABBITMQ_USER"),
                               self.get("RABBITMQ_PASSWORD"))
            if not error:
                return
            time.sleep(1)
        logs = run(["docker", "logs", "--tail", "30", node.container], check=False, capture=True)
        fail(f"RabbitMQ did not accept a login within {timeout:.0f} s ({error}).\n{logs.stdout}{logs.stderr}")

    def gateway_ip(self) -> str:
        result = run(["docker", "network", "inspect", "-f", "{{json .IPAM.Config}}",
                      self.get("RABBITMQ_NETWORK")], capture=True)
        for config in json.loads(result.stdout) or []:
            gateway = config.get("Gateway", "")
            if gateway and ":" not in gateway:
                return str(gateway)
        fail(f"network {self.get('RABBITMQ_NETWORK')} has no IPv4 gateway")
        raise AssertionError  # unreachable

    # ---- compose --------------------------------------------------------------

    @property
    def compose_cli(self) -> list[str]:
        return compose_command(self.get("COMPOSE_CLI") or None)

    def compose(self, *args: str, check: bool = True,
                capture: bool = False) -> subprocess.CompletedProcess[str]:
        base = [
            *self.compose_cli, "--project-directory", str(ROOT),
            "--file", str(ROOT / "docker-compose.yml"), "--project-name", self.project,
        ]
        if self.env_file.exists():
            base += ["--env-file", str(self.env_file)]
        return run([*base, *args], env=self.process_env(**self.discovered), check=check,
                   capture=capture)

    def wait_until_healthy(self, timeout: float = 240) -> None:
        say("waiting for every container to be healthy")
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while time.monotonic() < deadline:
            ids = project_containers(self.project)
            states = [container_state(i) for i in ids]
            broken = [s for s in states if (s.status in {"exited", "dead"} and s.exit_code != 0)
                      or s.status == "restarting"]
            if broken:
                for state in broken:
                    logs = run(["docker", "logs", "--tail", "40", state.id], check=False, capture=True)
                    print(f"--- {state.name} ---\n{logs.stdout}{logs.stderr}", file=sys.stderr)
                fail(f"{', '.join(s.name for s in broken)} failed to start")
            pending = [s.name for s in states if not (
                s.health == "healthy" or (s.health == "" and s.status == "running")
                or (s.status == "exited" and s.exit_code == 0))]
            if ids and not pending:
                return
            time.sleep(2)
        fail(f"not healthy after {timeout:.0f} s: {', '.join(pending)}")

    # ---- commands ---------------------------------------------------------------

    def up(self) -> None:
        say(f"using {compose_version(self.compose_cli)}")
        self.ensure_env_file()
        problem = open_producer_problem(self.values)
        if problem:
            fail(problem)
        images = self.resolve_images()
        database = self.check_database_volume(images["MYSQL_IMAGE"])
        gateway = self.start_rabbitmq(images["RABBITMQ_IMAGE"])
        ports = ",".join(str(node.port) for node in self.nodes())
        say(f"RabbitMQ is reachable from compose at {gateway}, port {ports} "
            f"(gateway of {self.get('RABBITMQ_NETWORK')})")
        self.discovered = {"RABBITMQ_HOST": gateway, **images}
        if len(self.nodes()) > 1:
            self.discovered["RABBITMQ_PORTS"] = ports
        if self.compose("up", "--detach", "--build", "--remove-orphans", check=False).returncode != 0:
            # A one-shot job that failed (a topology conflict, a migration) says why in its log.
            self.compose("logs", "--no-color", "--tail", "5", "migrate", "topology", check=False)
            fail("compose up failed: the one-shot jobs' last lines are above (docs/troubleshooting.md)")
        self.wait_until_healthy()
        self.compose("exec", "-T", "db", "sh", "-c", f'echo "$0" > {ENGINE_FILE}',
                     f"{database.name} {'.'.join(map(str, database.version))}", capture=True)
        port = self.get("PRODUCER_PORT")
        say(f"up: http://localhost:{port}/health_check?message=hello  "
            f"(RabbitMQ UI: http://localhost:{self.get('RABBITMQ_MANAGEMENT_PORT')})")

    def check_database_volume(self, image: str) -> Engine:
        """The engine of the database image; stop if the data volume was made by another one.

        The official images start on a volume that holds any database at all,
        so a volume made by MariaDB handed to MySQL (or the reverse, or a
        downgrade) would fail to start or misbehave: refuse it, before anything runs.
        """
        found = run(["docker", "run", "--rm", "--entrypoint", "sh", image, "-c",
                     "mariadbd --version 2>/dev/null || mysqld --version"], capture=True, check=False)
        engine = Engine.parse(found.stdout)
        if found.returncode != 0 or engine is None:
            fail(f"{image} has neither mysqld nor mariadbd: MYSQL_IMAGE must be a MySQL or MariaDB image")
            raise AssertionError  # unreachable
        if not docker_ok("volume", "inspect", self.db_volume):
            return engine
        # A volume from before the record: MySQL 8+ keeps its dictionary in mysql.ibd,
        # MariaDB has Aria's control file.
        record = run(["docker", "run", "--rm", "--volume", f"{self.db_volume}:/var/lib/mysql:ro",
                      "--entrypoint", "sh", image, "-c",
                      f"cat {ENGINE_FILE} 2>/dev/null"
                      " || { test -f /var/lib/mysql/aria_log_control && echo mariadb; }"
                      " || { test -f /var/lib/mysql/mysql.ibd && echo mysql; }"],
                     capture=True, check=False).stdout.strip()
        made_by = Engine.parse(record) if record else None
        if made_by is not None:
            problem = database_volume_problem(made_by, engine, self.db_volume, f"MYSQL_IMAGE={image}")
            if problem:
                fail(problem)
        return engine

    def status(self) -> None:
        """Each container's state and health, each queue's depth and consumers, the exchange's bindings."""
        rows = [("container", "state", "health")]
        rabbitmq = self.get("RABBITMQ_CONTAINER")
        nodes = [node.container for node in self.nodes()]
        for container in [*project_containers(self.project), *nodes]:
            if docker_ok("container", "inspect", container):
                state = container_state(container)
                name = state.name or container
                rows.append((name, f"{state.status} ({state.exit_code})" if state.status == "exited"
                             else state.status, state.health or "-"))
        print_table(rows)
        queues = run(["docker", "exec", rabbitmq, "rabbitmqctl", "-q", "list_queues", "name", "messages",
                      "consumers", "--no-table-headers"], check=False, capture=True)
        if queues.returncode != 0:
            print(f"\nRabbitMQ ({rabbitmq}) is not answering: {queues.stderr.strip()}")
            return
        print()
        lines = sorted(tuple(line.split()) for line in queues.stdout.splitlines() if line.strip())
        print_table([("queue", "messages", "consumers"), *lines])
        bindings = run(["docker", "exec", rabbitmq, "rabbitmqctl", "-q", "list_bindings", "source_name",
                        "destination_name", "routing_key", "--no-table-headers"], check=False, capture=True)
        ours = sorted(tuple(fields) for fields in (line.split() for line in bindings.stdout.splitlines())
                      if len(fields) == 3 and fields[0] == EXCHANGE)
        print()
        print_table([("exchange", "queue", "routing key"), *ours])

    def down(self, *, volumes: bool = False) -> None:
        self.load()
        say(f"stopping compose project {self.project}")
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), check=False)
        # Every node there is, also those of an earlier run with more nodes
        # than RABBITMQ_NODES says now; node 1 last.
        def exists(node: Node) -> bool:
            return any(docker_ok(kind, "inspect", name) for kind, name in (
                ("container", node.container), ("volume", node.volume)))
        nodes = [n for n in self.nodes(count=9) if n.number == 1 or exists(n)]
        for node in reversed(nodes):
            if docker_ok("container", "inspect", node.container):
                say(f"stopping RabbitMQ ({node.container})")
                run(["docker", "stop", "--time", "30", node.container], check=False, quiet=True)
                run(["docker", "rm", node.container], check=False, quiet=True)
        if docker_ok("network", "inspect", self.get("RABBITMQ_NETWORK")):
            run(["docker", "network", "rm", self.get("RABBITMQ_NETWORK")], check=False, quiet=True)
        for node in nodes if volumes else []:
            if docker_ok("volume", "inspect", node.volume):
                say(f"deleting volume {node.volume}")
                run(["docker", "volume", "rm", node.volume], check=False, quiet=True)


class ContainerState(NamedTuple):
    id: str
    name: str
    status: str
    health: str
    exit_code: int


def container_state(container_id: str) -> ContainerState:
    fmt = ("{{json (index .Config.Labels \"com.docker.compose.service\")}} {{json .State.Status}} "
           "{{if .State.Health}}{{json .State.Health.Status}}{{else}}\"\"{{end}} {{.State.ExitCode}}")
    out = run(["docker", "inspect", "-f", fmt, container_id], capture=True).stdout.split()
    return ContainerState(container_id, json.loads(out[0]), json.loads(out[1]),
                          json.loads(out[2]), int(out[3]))


def containers_command(project: str, service: str | None = None) -> list[str]:
    """The Docker CLI command that lists a compose project's containers (or one service's),
    running or stopped, by compose's labels. Compose v1 and v2 both label what they make,
    while their `ps -q` differ: v2 leaves out stopped containers (the exited `migrate`)."""
    normalized = re.sub(r"[^-_a-z0-9]", "", project.lower())  # as compose names its project
    return ["docker", "ps", "--all", "--no-trunc", "--format", "{{.Names}}\t{{.ID}}",
            "--filter", f"label=com.docker.compose.project={normalized}",
            *(["--filter", f"label=com.docker.compose.service={service}"] if service else []),
            "--filter", "label=com.docker.compose.oneoff=False"]


def project_containers(project: str, service: str | None = None) -> list[str]:
    """The ids of a compose project's containers (or one service's), running or stopped,
    ordered by name. The Docker CLI answers in tens of ms, compose v1 (Python) in about a
    second, and the tests and the bench ask often (every sql(), every health poll)."""
    found = run(containers_command(project, service), capture=True).stdout
    return [line.split("\t")[1] for line in sorted(found.splitlines())]


def service_container(project: str, service: str) -> str | None:
    """A compose service's container: the first of `project_containers` for it."""
    ids = project_containers(project, service)
    return ids[0] if ids else None


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())



# Which Compose runs the stack: COMPOSE_CLI=v2 (`docker compose`), v1 (`docker-compose`),
# or auto: v2 where present, else v1. Both are tested (README, Prerequisites).
COMPOSE_CLIS = {"v2": ("docker", "compose"), "v1": ("docker-compose",)}


def compose_choice() -> str:
    return (os.environ.get("COMPOSE_CLI") or "auto").strip().lower()


@functools.cache
def compose_command(choice: str | None = None) -> list[str]:
    """The Compose command line: COMPOSE_CLI's choice (the shell's by default)."""
    choice = choice or compose_choice()
    if choice not in {"auto", *COMPOSE_CLIS}:
        fail(f"COMPOSE_CLI={choice}: say v2 (docker compose), v1 (docker-compose) or auto")
    v2_ok = choice in {"auto", "v2"} and docker_ok("compose", "version")
    if v2_ok:
        return list(COMPOSE_CLIS["v2"])
    if choice in {"auto", "v1"} and shutil.which("docker-compose"):
        return list(COMPOSE_CLIS["v1"])
    wanted = {"v2": "`docker compose` (Compose v2)", "v1": "`docker-compose` (Compose v1)"}
    fail(f"{wanted.get(choice, 'neither `docker compose` nor `docker-compose`')} is not installed")
    raise AssertionError  # unreachable


def compose_version(command: Sequence[str]) -> str:
    """What `make up` says it uses, e.g. "Compose 2.26.1 (docker compose)"."""
    found = run([*command, "version", "--short"], check=False, capture=True).stdout.strip()
    return f"Compose {found.removeprefix('v') or '(version unknown)'} ({' '.join(command)})"


# ---- a real AMQP 0-9-1 login, with nothing but the standard library ---------------

def amqp_login(host: str, port: int, user: str, password: str, vhost: str = "/") -> str:
    """Log in and out over AMQP; '' on success, otherwise why it failed."""

    def frame(payload: bytes) -> bytes:
        return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"

    def shortstr(text: str) -> bytes:
        data = text.encode()
        return struct.pack(">B", len(data)) + data

    def longstr(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    def read_method(sock: socket.socket) -> tuple[tuple[int, int], bytes]:
        """(class id, method id) of the next method frame, and its arguments."""
        header = _read_exactly(sock, 7)
        kind, _, size = struct.unpack(">BHI", header)
        payload = _read_exactly(sock, size + 1)
        if kind != 1:
            return read_method(sock)  # skip heartbeats and the like
        return struct.unpack(">HH", payload[:4]), payload[4:-1]

    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if read_method(sock)[0] != (10, 10):
                return "no Connection.Start"
            response = b"\x00" + user.encode() + b"\x00" + password.encode()
            sock.sendall(frame(struct.pack(">HH", 10, 11) + longstr(b"") + shortstr("PLAIN")
                               + longstr(response) + shortstr("en_US")))
            method, tune = read_method(sock)
            if method != (10, 30):
                return "login refused"
            channel_max, frame_max, _heartbeat = struct.unpack(">HIH", tune[:8])
            sock.sendall(frame(struct.pack(">HHHIH", 10, 31, channel_max, frame_max, 0)))
            sock.sendall(frame(struct.pack(">HH", 10, 40) + shortstr(vhost) + shortstr("") + b"\x00"))
            if read_method(sock)[0] != (10, 41):
                return f"no access to vhost {vhost}"
            sock.sendall(frame(struct.pack(">HHH", 10, 50, 200) + shortstr("bye") + struct.pack(">HH", 0, 0)))
            read_method(sock)
            return ""
    except (OSError, struct.error, EOFError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


# ---- the developer tools: a virtualenv with pinned ruff, mypy and pytest ------------

def dev_python() -> str:
    """The project's .venv (created and kept in sync with requirements-dev.txt)."""
    env_dir = ROOT / ".venv"
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    requirements = ROOT / "requirements-dev.txt"
    stamp = env_dir / ".requirements"
    wanted = requirements.read_text(encoding="utf-8")
    if not python.exists():
        say("creating .venv for the tests")
        venv.EnvBuilder(with_pip=True).create(env_dir)
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != wanted:
        say("installing the test tools into .venv (requirements-dev.txt)")
        run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(requirements)])
        stamp.write_text(wanted, encoding="utf-8")
    return str(python)


def test(pytest_args: Sequence[str]) -> int:
    python = dev_python()
    os.chdir(ROOT)
    timings = []
    for label, command in (
        ("ruff", [python, "-m", "ruff", "check", "."]),
        ("mypy", [python, "-m", "mypy"]),
        ("pytest", [python, "-m", "pytest", *pytest_args]),
    ):
        say(label)
        started = time.monotonic()
        code = subprocess.run(command).returncode
        timings.append(f"{label} {time.monotonic() - started:.0f}s")
        if code != 0:
            say(f"{label} failed ({code}); " + ", ".join(timings))
            return code
    say("all checks passed; " + ", ".join(timings))
    return 0


def smoke(pytest_args: Sequence[str]) -> int:
    """ruff, mypy and the unit tests, then the assignment's checklist end to end on a throwaway copy."""
    code = test(["-m", "unit", *pytest_args])
    if code != 0:
        return code
    say("the assignment's checklist, on a copy of its own")
    return subprocess.run([dev_python(), "-m", "pytest", *SMOKE_TESTS, *pytest_args]).returncode


# What CI runs on MariaDB besides the whole suite on MySQL: the assignment, the
# contract, the inventory, the update, and the schema and engine handling.
MARIADB_IMAGE = "mariadb:11.8"
MARIADB_TESTS = tuple(f"tests/integration/test_{name}.py" for name in (
    "assignment", "contract", "inventory", "update", "migrations", "database_engines", "ledger"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env",
                        help="settings file (default: .env, created from .env.example)")
    parser.add_argument("command", choices=[
        "up", "down", "clean", "test", "test-mariadb", "smoke", "bench", "status", "dead-letters",
        "replay-dead", "logs", "ps", "policies"])
    args, rest = parser.parse_known_args(argv)
    stack = Stack(args.env_file.resolve())
    if args.command == "up":
        stack.up()
    elif args.command == "down":
        stack.down()
    elif args.command == "clean":
        stack.down(volumes=True)
    elif args.command == "test":
        return test(rest)
    elif args.command == "test-mariadb":
        os.environ["MYSQL_IMAGE"] = MARIADB_IMAGE
        say(f"on MariaDB (MYSQL_IMAGE={MARIADB_IMAGE}): {', '.join(MARIADB_TESTS)}")
        return test([*MARIADB_TESTS, *rest])
    elif args.command == "smoke":
        return smoke(rest)
    elif args.command == "bench":
        return subprocess.run([dev_python(), str(ROOT / "bench" / "bench.py"),
                               "--env-file", str(args.env_file), *rest]).returncode
    elif args.command == "status":
        stack.load()
        stack.status()
    elif args.command == "policies":  # DELIVERY_LIMIT or QUEUE_MAX_LENGTH changed: onto the running queues
        stack.load()
        stack.rabbitmq_definitions(stack.nodes()[0], with_accounts=False)
    elif args.command in {"dead-letters", "replay-dead"}:
        if args.command == "replay-dead" and len(rest) != 1:
            fail("say which queue: replay-dead <routing key>  (make replay-dead QUEUE=insert_record)")
        stack.load()
        # In a one-off container of the operator's job: the only account allowed the .dead queues.
        stack.discovered = {"RABBITMQ_HOST": stack.gateway_ip()}
        if len(stack.nodes()) > 1:
            stack.discovered["RABBITMQ_PORTS"] = ",".join(str(node.port) for node in stack.nodes())
        verb = "list" if args.command == "dead-letters" else "replay"
        return stack.compose("run", "--rm", "--no-deps", "-T", "topology", "python", "-m",
                             "common.deadletters", verb, *rest, check=False).returncode
    elif args.command in {"logs", "ps"}:
        stack.load()
        # `ps --all`: stopped containers too (the exited `migrate`), under v1 and v2 alike.
        extra = ["--follow", "--tail", "50"] if args.command == "logs" else ["--all"]
        stack.compose(args.command, *extra, *rest, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
