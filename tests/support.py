"""Helpers for the tests that run against a complete copy of the system in Docker."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
import requests

from common import topology
from common.messages import fingerprint
from scripts.copies import Copy, copy_values, read_values, root_sql, throwaway_copy
from scripts.copies import free_port as free_port  # tests' public name
from scripts.stack import Node, compose_command, project_containers, service_container

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
# MSTEST_PROJECT lets two checkouts test side by side on one Docker engine.
PROJECT = os.environ.get("MSTEST_PROJECT", "mstest")
# The services of compose that run our code besides the producer, and the contract's
# routing keys: both from the one declaration of the message kinds.
CONSUMERS = topology.CONSUMERS
ROUTING_KEYS = topology.ROUTING_KEYS
# Short enough that the idle test sits through several heartbeat timeouts.
HEARTBEAT_S = 3


def wait_until(check: Callable[[], Any], timeout: float = 30, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, AssertionError, subprocess.SubprocessError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout} s; last answer: {last!r}")


@dataclass
class SystemCopy(Copy):
    """A copy of the system (scripts/copies.py), with what the tests ask of it."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.values['PRODUCER_PORT']}"

    @property
    def amqp_port(self) -> int:
        return int(self.values["RABBITMQ_AMQP_PORT"])

    def script(self, *args: str, settings: dict[str, str] | None = None) -> str:
        """The output of a scripts/stack.py command on this copy (with `settings` on top of its
        own, as an operator's edited .env), which must succeed."""
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "stack.py"), "--env-file", str(self.env_file), *args],
            capture_output=True, text=True, env={**self.process_env(), **(settings or {})}, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def compose(self, *args: str) -> str:
        """Compose on the test copy, for commands that start nothing (ps, logs, stop ...)."""
        return self._compose({"RABBITMQ_HOST": "-"}, args)

    def compose_with(self, settings: dict[str, str], *args: str) -> str:
        """Compose on the test copy, with `settings` on top of its own, and the real gateway IP."""
        nodes = self.nodes()
        ports = {"RABBITMQ_PORTS": ",".join(str(n.port) for n in nodes)} if len(nodes) > 1 else {}
        return self._compose({"RABBITMQ_HOST": self.rabbitmq_host(), **ports, **settings}, args)

    def nodes(self) -> list[Node]:
        """The copy's RabbitMQ nodes, named as scripts/stack.py names them."""
        return self.script_stack().nodes()

    def _compose(self, settings: dict[str, str], args: tuple[str, ...]) -> str:
        result = subprocess.run(
            [*compose_command(), "--project-directory", str(ROOT),
             "--project-name", self.values["COMPOSE_PROJECT_NAME"], "--env-file", str(self.env_file), *args],
            env={**os.environ, **self.values, **settings}, capture_output=True, text=True, check=True,
        )
        return result.stdout

    def rabbitmq_host(self) -> str:
        """The gateway IP of the RabbitMQ network, as `make up` passes it to compose."""
        out = subprocess.run(["docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                              self.values["RABBITMQ_NETWORK"]], capture_output=True, text=True)
        return out.stdout.strip() or "-"

    def containers(self, service: str | None = None) -> list[str]:
        """The copy's compose containers (or one service's), running or stopped, under
        Compose v1 and v2 alike (v2's `ps -q` leaves out stopped ones)."""
        return project_containers(self.values["COMPOSE_PROJECT_NAME"], service)

    def container(self, service: str) -> str:
        found = service_container(self.values["COMPOSE_PROJECT_NAME"], service)
        assert found, f"no container for {service}"
        return found

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query run as root inside the db container (tab-separated)."""
        return [line.split("\t") for line in root_sql(self.container("db"), query).splitlines()]

    def management(self, path: str) -> Any:
        response = requests.get(
            f"http://127.0.0.1:{self.values['RABBITMQ_MANAGEMENT_PORT']}/api/{path}",
            auth=(self.values["RABBITMQ_USER"], self.values["RABBITMQ_PASSWORD"]), timeout=10,
        )
        response.raise_for_status()
        return response.json()

    @contextlib.contextmanager
    def amqp_channel(self) -> Iterator[Any]:
        """A channel in confirm mode on the copy's RabbitMQ, as the application user."""
        credentials = pika.PlainCredentials(self.values["RABBITMQ_USER"], self.values["RABBITMQ_PASSWORD"])
        connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", self.amqp_port, credentials=credentials))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            yield channel
        finally:
            connection.close()

    def rabbitmqctl(self, *args: str) -> str:
        """rabbitmqctl on the first node that answers (in a cluster, one may be down on purpose)."""
        failure: subprocess.CalledProcessError | None = None
        for node in self.nodes():
            try:
                return subprocess.run(["docker", "exec", node.container, "rabbitmqctl", "-q", *args],
                                      capture_output=True, text=True, check=True, timeout=60).stdout
            except subprocess.CalledProcessError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def queue_depths(self, column: str = "messages") -> dict[str, int]:
        """Messages (ready and unacknowledged; or another column of list_queues, such as
        messages_ready) in every queue, exact: the management API's figures are samples up
        to five seconds old."""
        out = self.rabbitmqctl("list_queues", "name", column, "--no-table-headers")
        return {name: int(count) for name, count in (line.split() for line in out.splitlines() if line)}

    def queue_depth(self, queue: str) -> int:
        return self.queue_depths()[queue]

    def snapshot(self) -> tuple[list[list[str]], ...]:
        """Everything the system stores, to show that a refused request changed nothing."""
        return (self.sql("SELECT srn, name, section FROM students ORDER BY srn"),
                self.sql("SELECT request_id, reply FROM requests ORDER BY request_id"),
                self.sql("SELECT sku, name, quantity FROM items ORDER BY sku"),
                self.sql("SELECT order_id, sku, quantity, status, request_id FROM orders ORDER BY order_id"))


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def pause(container: str, refused: Callable[[str], None] | None = None, tries: int = 3) -> None:
    """`docker pause`: runc gives up ("unable to freeze") when the container's cgroup does
    not freeze in time, as when the database is in the middle of an fsync on a busy
    machine. That is Docker failing to inject the fault, not the system failing it:
    try again, a few times, and say so through `refused`."""
    for attempt in range(tries):
        try:
            docker("pause", container)
            return
        except subprocess.CalledProcessError as exc:
            if "unable to freeze" not in (exc.stderr or "") or attempt == tries - 1:
                raise
            if refused is not None:
                refused(f"docker pause refused: {(exc.stderr or '').strip()[-80:]}")
            time.sleep(0.5)


def broker_path_rules(stack: SystemCopy) -> list[list[str]]:
    """iptables rules dropping a container's AMQP traffic to and from RabbitMQ (the gateway IP's
    AMQP ports), both ways, without a word: what a cut cable or a switch port does."""
    gateway, ports = stack.rabbitmq_host(), ",".join(str(node.port) for node in stack.nodes())
    return [["OUTPUT", "-d", gateway, "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP"],
            ["INPUT", "-s", gateway, "-p", "tcp", "-m", "multiport", "--sports", ports, "-j", "DROP"]]


# Everything but loopback, both ways: the container's network silent, its address kept.
# (docker network disconnect/connect is not a cut: two containers cut at once can come back
# with each other's addresses, and a new address breaks every connection for good.)
ALL_TRAFFIC_RULES = [["OUTPUT", "!", "-o", "lo", "-j", "DROP"], ["INPUT", "!", "-i", "lo", "-j", "DROP"]]


def cut_traffic(container: str, rules: list[list[str]]) -> Callable[[], None]:
    """Drop the traffic `rules` match in the container's own network namespace. Returns the heal,
    which takes them out again (a container killed meanwhile has a new namespace without them)."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", container).strip()
    for rule in rules:
        subprocess.run(["nsenter", "-t", pid, "-n", "iptables", "-A", *rule], check=True, capture_output=True)

    def heal() -> None:
        for rule in rules:
            subprocess.run(["nsenter", "-t", pid, "-n", "iptables", "-D", *rule], check=False,
                           capture_output=True)
    return heal


def cut_broker_path(stack: SystemCopy, service: str) -> Callable[[], None]:
    """Cut `service` off from RabbitMQ and nothing else (MySQL stays reachable)."""
    return cut_traffic(stack.container(service), broker_path_rules(stack))


def cut_network(stack: SystemCopy, service: str) -> Callable[[], None]:
    """Cut `service` off from every other container and the host (RabbitMQ and MySQL alike)."""
    return cut_traffic(stack.container(service), ALL_TRAFFIC_RULES)


def cut_node(stack: SystemCopy, node: Node) -> Callable[[], None]:
    """A RabbitMQ node cut off, alive: off its network, so neither its peers nor any client
    reach it (established connections go silent). Returns the heal: back on the network,
    under the name its peers know it by.

    Off the network rather than its packets dropped (cut_traffic): peers and clients then
    learn at once that its address is unreachable, as they do when a machine drops off a
    LAN. Dropped packets, a black hole, hold the majority's traffic to the node until
    Erlang's net_ticktime gives up on it (docs/cluster.md, Partitions).
    """
    network = stack.values["RABBITMQ_NETWORK"]
    docker("network", "disconnect", network, node.container)

    def heal() -> None:
        docker("network", "connect", "--alias", node.hostname, network, node.container)
    return heal


def take_out_cuts(container: str) -> list[str]:
    """Delete the DROP rules left in the container's network namespace (a cut whose heal
    failed); returns them."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", container).strip()
    iptables = ["nsenter", "-t", pid, "-n", "iptables"]
    listed = subprocess.run([*iptables, "-S"], check=True, capture_output=True, text=True).stdout
    left = [line.split()[1:] for line in listed.splitlines() if line.startswith("-A ") and "DROP" in line]
    for rule in left:
        subprocess.run([*iptables, "-D", *rule], check=True, capture_output=True)
    return [" ".join(rule) for rule in left]


def restart_counts(stack: SystemCopy) -> dict[str, int]:
    counts = {}
    for container in stack.containers():
        info = json.loads(docker("inspect", container))[0]
        counts[info["Name"]] = info["RestartCount"]
    return counts


def healthy(stack: SystemCopy, service: str) -> bool:
    return docker("inspect", "-f", "{{.State.Health.Status}}", stack.container(service)).strip() == "healthy"



def every_consumer_answers(stack: SystemCopy) -> bool:
    """One round trip through each of the assignment's four consumers: the producer and they have resumed."""
    srn, base = unique_srn("B"), stack.base_url
    return (requests.get(f"{base}/health_check", params={"message": "back"}, timeout=10).status_code == 200
            and requests.post(f"{base}/insert_record", json={"Name": "Back", "SRN": srn, "Section": "A"},
                              timeout=10).status_code == 201
            and requests.get(f"{base}/read_database", timeout=10).status_code == 200
            and requests.get(f"{base}/delete_record", params={"SRN": srn}, timeout=10).status_code == 200)


def stack_values(previous: Path, project: str = PROJECT, nodes: int = 1) -> dict[str, str]:
    """The settings of a test copy: the kept ones, or new names, free ports and fresh passwords."""
    if previous.exists():
        return read_values(previous)
    return copy_values(project, nodes, base={
        "RABBITMQ_USER": "app",
        "MYSQL_USER": "app",
        "MYSQL_DATABASE": "school",
        "RABBITMQ_HEARTBEAT_S": str(HEARTBEAT_S),
        "REQUEST_TIMEOUT_S": "5",
        # Expired ledger entries go within seconds (tests/integration/test_ledger.py).
        "LEDGER_PRUNE_INTERVAL_S": "2",
    })


def status_path(request_id: str, routing_key: str, payload: dict[str, Any]) -> str:
    """GET /requests/<id> with the proof of what the request asked for (`asked`), as a client
    that kept the request computes it: the fingerprint of the message the producer published."""
    return f"/requests/{request_id}?asked={fingerprint(routing_key, payload)}"


def needed(what: str) -> None:
    """Skip with one line saying what is missing and how to install it; under CI (CI set), fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (required because CI is set)")
    pytest.skip(what)


def unique_srn(prefix: str = "T") -> str:
    return f"{prefix}{secrets.token_hex(5)}".upper()


def check_refusal(stack: SystemCopy, send: Callable[[], requests.Response], status: int, code: str) -> Any:
    """Send a request that must be refused: the contract's JSON error, and nothing stored changed."""
    before = stack.snapshot()
    response = send()
    body = json_of(response)
    assert response.status_code == status, body
    assert body["error"] == code and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.text
    assert stack.snapshot() == before
    return body


def json_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON ({response.status_code}): {response.text[:200]}") from exc


def copy_of_the_system(name: str, project: str, nodes: int = 1) -> Iterator[SystemCopy]:
    """Bring up a copy of the system (settings in tests/artifacts/<name>.env), yield it, delete it.

    scripts/copies.py does the work: the copy comes up inside its `try`, so one that
    fails to start still leaves its logs in tests/artifacts and is deleted all the same.
    """
    keep = os.environ.get("MSTEST_KEEP") == "1"
    env_file = ARTIFACTS / f"{name}.env"
    values = stack_values(env_file if keep else ARTIFACTS / "does-not-exist", project, nodes)
    prefix = "" if name == "stack" else f"{name}-"
    with throwaway_copy(env_file, values, keep=keep, logs_to=ARTIFACTS, log_prefix=prefix,
                        label=f"{name} copy") as copy:
        yield SystemCopy(copy.env_file, copy.values)
