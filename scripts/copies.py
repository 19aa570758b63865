"""A throwaway copy of the system: the one helper behind the tests' copies and the bench's.

    values = copy_values("mstest", nodes=1)
    with throwaway_copy(Path("tests/artifacts/stack.env"), values, logs_to=Path("tests/artifacts")) as copy:
        ...  # copy.env_file, copy.values, copy.run_script("status"), copy.script_stack()

A copy has its own compose project, RabbitMQ container(s), network, volumes,
free host ports and fresh passwords, so a user's running system is never
touched. It is brought up inside the `try`, so a copy that fails to start
still has its logs collected and is still deleted. Only the standard library.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from scripts.stack import COOKIE, ROOT, SECRETS, Stack, compose_command, write_private


def root_sql(db_container: str, query: str) -> str:
    """A query run as MySQL's root inside the db container, its rows tab-separated. In
    utf8mb4: the official MySQL image has no UTF-8 locale, so its client talks latin1.
    The query goes in on standard input: a password in it shows on no command line."""
    result = subprocess.run(
        ["docker", "exec", "-i", db_container, "sh", "-c",
         'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql --default-character-set=utf8mb4 -uroot -N -B '
         '"$MYSQL_DATABASE"'],
        input=query, capture_output=True, text=True)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(  # the server's message in what is printed
            result.returncode, f"root_sql: {query} ({result.stderr.strip()})", result.stdout, result.stderr)
    return result.stdout


# Below every system's ephemeral range (Linux 32768-60999, Windows and macOS from 49152): a
# port from that range (what binding port 0 gives) can become the local port of an outgoing
# connection in the seconds before the copy binds it, and `docker run` then finds it taken.
PORTS = range(20000, 32000)


def free_port(taken: frozenset[int] = frozenset()) -> int:
    """A port nothing listens on now, outside the ephemeral range, not in `taken`."""
    pick = secrets.SystemRandom()
    for _ in range(500):
        port = pick.choice(PORTS)
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {PORTS.start} to {PORTS.stop - 1}")


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(count):
        ports.append(free_port(frozenset(ports)))
    return ports


def copy_values(project: str, nodes: int = 1, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings of a new copy: `base` (if any) with the copy's own names, free ports and fresh secrets."""
    *ports, producer, management, prometheus = free_ports(nodes + 3)
    return {
        **(base or {}),
        "COMPOSE_PROJECT_NAME": project,
        "RABBITMQ_NETWORK": f"{project}_rabbitmq_net",
        "RABBITMQ_CONTAINER": f"{project}-rabbitmq",
        "RABBITMQ_HOSTNAME": f"{project}-rabbitmq",
        "RABBITMQ_VOLUME": f"{project}_rabbitmq_data",
        # Set even for one node: the copy's own count and ports, whatever the shell says.
        "RABBITMQ_NODES": str(nodes),
        "RABBITMQ_AMQP_PORTS": ",".join(map(str, ports)),
        "PRODUCER_BIND": "127.0.0.1",
        "PRODUCER_PORT": str(producer),
        "RABBITMQ_AMQP_PORT": str(ports[0]),
        "RABBITMQ_MANAGEMENT_PORT": str(management),
        "RABBITMQ_PROMETHEUS_PORT": str(prometheus),
        **{key: secrets.token_urlsafe(18) for key in SECRETS},
        **({COOKIE: secrets.token_urlsafe(24)} if nodes > 1 else {}),
    }


def read_values(env_file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


def write_values(env_file: Path, values: Mapping[str, str]) -> None:
    env_file.parent.mkdir(parents=True, exist_ok=True)
    write_private(env_file, "".join(f"{k}={v}\n" for k, v in values.items()))


class CopyFailed(Exception):
    """`stack.py up` failed on a copy; the message carries its last lines."""


@dataclass
class Copy:
    """A copy's settings file and values; its values win over the shell's environment.

    `root` is the source tree it is built from: this checkout, or a copy of it
    that a test changed (tests/integration/test_adding_a_service.py).
    """

    env_file: Path
    values: dict[str, str]
    root: Path = ROOT

    def process_env(self) -> dict[str, str]:
        """The environment for scripts/stack.py: the copy's settings win over the shell's."""
        return {**os.environ, **self.values}

    def script_command(self, *args: str) -> list[str]:
        """The command line of a scripts/stack.py command on this copy."""
        script = self.root / "scripts" / "stack.py"
        return [sys.executable, str(script), "--env-file", str(self.env_file), *args]

    def run_script(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A scripts/stack.py command on this copy, in a process of its own (its output shown)."""
        return subprocess.run(self.script_command(*args), env=self.process_env(), text=True, check=check)

    def up(self, label: str = "copy") -> None:
        """`stack.py up` on this copy, its output shown as it comes. Should it fail, the
        exception says why in one line (its `error:` line and the lines before it), so
        the reason is in a test report's summary, not only in a captured log."""
        process = subprocess.Popen(self.script_command("up"), env=self.process_env(), text=True,
                                   stderr=subprocess.PIPE)
        assert process.stderr is not None
        last: collections.deque[str] = collections.deque(maxlen=8)
        for line in process.stderr:
            sys.stderr.write(line)
            if line.strip():
                last.append(line.strip())
        if process.wait() != 0:
            raise CopyFailed(f"{label} did not come up: {' | '.join(last)}"[:1500])

    def script_stack(self) -> Stack:
        """scripts/stack.py's Stack for this copy, in this process, with the copy's values."""
        stack = Stack(self.env_file)
        stack.values = {**stack.defaults, **self.values}
        return stack

    def collect_logs(self, folder: Path, prefix: str = "") -> None:
        """Every RabbitMQ node's log and compose's logs, into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        for node in self.script_stack().nodes():
            logs = subprocess.run(["docker", "logs", node.container], capture_output=True, text=True)
            suffix = "" if node.number == 1 else f"-{node.number}"
            (folder / f"{prefix}rabbitmq{suffix}.log").write_text(logs.stdout + logs.stderr)
        compose = subprocess.run(
            [*compose_command(), "--project-directory", str(self.root), "--project-name",
             self.values["COMPOSE_PROJECT_NAME"], "--env-file", str(self.env_file),
             "logs", "--no-color", "--timestamps"],
            env={**self.process_env(), "RABBITMQ_HOST": "-"}, capture_output=True, text=True)
        (folder / f"{prefix}compose.log").write_text(compose.stdout + compose.stderr)


@contextlib.contextmanager
def throwaway_copy(env_file: Path, values: Mapping[str, str], *, keep: bool = False,
                   logs_to: Path | None = None, log_prefix: str = "",
                   label: str = "copy", root: Path = ROOT) -> Iterator[Copy]:
    """Write `values` to `env_file`, bring the copy up, yield it; afterwards collect its logs
    (into `logs_to`) and delete it with its volumes and settings file, unless `keep`.

    The `up` is inside the `try`: a copy that fails to start is cleaned up all the same.
    """
    write_values(env_file, values)
    copy = Copy(env_file, dict(values), root)
    if not keep:
        copy.run_script("clean", check=False)  # leftovers of an interrupted run
    try:
        started = time.monotonic()
        copy.up(label)
        print(f"\n{label} up in {time.monotonic() - started:.0f} s", file=sys.stderr)
        yield copy
    finally:
        if logs_to is not None:
            copy.collect_logs(logs_to, log_prefix)
        if not keep:
            copy.run_script("clean", check=False)
            env_file.unlink(missing_ok=True)
