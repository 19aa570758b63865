"""The chaos run's faults: a plan drawn from one seed, carried out on the clock.

Each fault is injected, held for a bounded time and healed, alone or
overlapping another (never two on one target, at most two at once). The
SIGTERM of everything followed by `scripts/stack.py up` has the system to
itself. Whatever happens, `heal_everything` puts every container back
running, connected and unpaused, and the disk alarm cleared.

CHAOS_FAULTS=off plans and schedules the faults as always but injects none
(each only holds its time): the run must then fail, which shows that its
check of the faults carried out works.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from scripts.stack import amqp_login
from tests.support import (
    CONSUMERS,
    SystemCopy,
    cut_broker_path,
    cut_network,
    cut_node,
    docker,
    pause,
    take_out_cuts,
)

SERVICES = ("producer", "db", *CONSUMERS)
KINDS = {  # kind: weight in the plan
    "kill": 5,       # SIGKILL, then docker start
    "pause": 5,      # docker pause, then unpause
    "alarm": 1,      # a RabbitMQ disk alarm raised, then cleared
    "netcut": 2,     # a consumer cut off from everything (packets dropped), then healed
    "brokercut": 2,  # the producer or a consumer cut off from RabbitMQ alone (packets dropped), then healed
    "partition": 2,  # a RabbitMQ node off its network (alive, silent), then back: with several nodes only
}
# The kinds that need a cluster.
CLUSTER_KINDS = {"partition"}
ALL_STOP = "sigterm-all+up"
MAX_AT_ONCE = 2
# A fault whose time has passed by more than this (the all-stop held the system) is dropped.
LATE_S = 5.0
# rabbitmqctl set_disk_free_limit: far above any free disk, so the alarm goes off at once.
ALARM_LIMIT = "100000GB"
INJECT = os.environ.get("CHAOS_FAULTS", "on") != "off"


@dataclass
class Fault:
    at: float  # seconds after the start of the load
    kind: str
    target: str  # a compose service, or "rabbitmq" / "rabbitmq-2" ..., or "all"
    hold_s: float
    started: float = 0.0  # time.monotonic() of the injection
    healed: float = 0.0  # time.monotonic() once healed
    notes: list[str] = field(default_factory=list)
    failed: bool = False  # Docker refused to inject or to heal it (see notes)
    injected: bool = False  # it took effect: what the run claims to have survived

    @property
    def name(self) -> str:
        return f"{self.kind} {self.target}"

    @property
    def stops_producer(self) -> bool:
        """The producer itself cannot answer meanwhile (so its time limit cannot hold)."""
        return self.target in ("producer", "all")

    @property
    def restarts(self) -> set[str]:
        """The targets this fault restarts (and so may restart)."""
        return {self.target} if self.kind == "kill" else {"*"} if self.kind == ALL_STOP else set()


def plan(seed: int, duration: float, rabbit_nodes: list[str]) -> list[Fault]:
    """The faults of a run: when, what, on what, for how long; the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 (a replayable plan, not a secret)
    targets = [*SERVICES, *rabbit_nodes]
    faults: list[Fault] = []
    stop_at = duration - 15  # the last fault is healed before the load stops
    all_stop = rng.uniform(0.2, 0.45) * duration if duration >= 90 else None
    t = rng.uniform(2, 6)
    kinds = {kind: weight for kind, weight in KINDS.items()
             if len(rabbit_nodes) > 1 or kind not in CLUSTER_KINDS}
    while t < stop_at:
        kind = rng.choices(list(kinds), list(kinds.values()))[0]
        if kind in ("alarm", "partition"):
            target = rabbit_nodes[rng.randrange(len(rabbit_nodes))]
        elif kind == "netcut":
            target = rng.choice(CONSUMERS)
        elif kind == "brokercut":
            target = rng.choice(["producer", *CONSUMERS])
        else:
            target = rng.choice(targets)
        hold = {"kill": rng.uniform(1, 5), "pause": rng.uniform(2, 8), "alarm": rng.uniform(3, 10),
                "netcut": rng.uniform(3, 10), "brokercut": rng.uniform(3, 12),
                "partition": rng.uniform(5, 20)}[kind]
        hold = min(hold, max(1.0, stop_at - t))
        faults.append(Fault(round(t, 1), kind, target, round(hold, 1)))
        t += rng.uniform(1.5, 7)
    if all_stop is not None:
        faults.append(Fault(round(all_stop, 1), ALL_STOP, "all", 0))
        faults.sort(key=lambda f: f.at)
    return faults


class Injector(threading.Thread):
    """Carries out a plan against the copy; `faults` are those actually injected."""

    def __init__(self, stack: SystemCopy, faults: list[Fault], start: float, stop: float):
        super().__init__(name="chaos-faults", daemon=True)
        self.stack, self.plan, self.start_time, self.stop_time = stack, faults, start, stop
        self.faults: list[Fault] = []
        self.skipped: Counter[str] = Counter()
        self.busy: set[str] = set()
        self.workers: list[threading.Thread] = []
        self.lock = threading.Lock()

    # ---- the schedule ---------------------------------------------------------

    def run(self) -> None:
        for fault in self.plan:
            wait = self.start_time + fault.at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif -wait > LATE_S:
                self.skipped[fault.name] += 1
                continue
            if fault.kind == ALL_STOP:
                for worker in self.workers:  # everything else healed first
                    worker.join()
                if time.monotonic() + 60 > self.stop_time:
                    self.skipped[fault.name] += 1
                    continue
                self.carry_out(fault)
                continue
            if time.monotonic() + fault.hold_s > self.stop_time - 5:
                self.skipped[fault.name] += 1
                continue
            with self.lock:
                target = fault.target
                rabbit = {n for n in self.busy if n.startswith("rabbitmq")}
                if (target in self.busy or len(self.busy) >= MAX_AT_ONCE
                        # an alarm and a stopped or frozen node of the same RabbitMQ muddle each other
                        or (fault.kind == "alarm" and rabbit) or (target.startswith("rabbitmq") and any(
                            f.kind == "alarm" for f in self.faults if not f.healed))):
                    self.skipped[fault.name] += 1
                    continue
                self.busy.add(target)
            worker = threading.Thread(target=self.carry_out, args=(fault,), daemon=True)
            self.workers.append(worker)
            worker.start()
        for worker in self.workers:
            worker.join()

    def carry_out(self, fault: Fault) -> None:
        fault.started = time.monotonic()
        self.faults.append(fault)
        target = fault.target
        try:
            if INJECT:
                getattr(self, fault.kind.replace("sigterm-all+up", "all_stop"))(fault)
            else:
                fault.notes.append("not injected (CHAOS_FAULTS=off)")
                time.sleep(fault.hold_s)
        except subprocess.CalledProcessError as exc:
            fault.failed = True
            fault.notes.append(f"failed: {' '.join(exc.cmd[:3])}: {(exc.stderr or '').strip()}"[:300])
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            fault.failed = True
            fault.notes.append(f"failed: {exc!r}"[:300])
        finally:
            fault.healed = time.monotonic()
            with self.lock:
                self.busy.discard(target)

    # ---- the faults -------------------------------------------------------------

    def container(self, target: str) -> str:
        if target.startswith("rabbitmq"):
            return self.rabbit_container(target)
        return self.stack.container(target)

    def rabbit_container(self, target: str) -> str:
        number = int(target.rpartition("-")[2]) if "-" in target else 1
        return next(node.container for node in self.stack.nodes() if node.number == number)

    def kill(self, fault: Fault) -> None:
        container = self.container(fault.target)
        docker("kill", "--signal", "KILL", container)
        fault.injected = True
        try:
            time.sleep(fault.hold_s)
        finally:
            docker("start", container)
            started = time.monotonic()
            ready = self.wait_ready(fault.target, container)
            fault.notes.append(f"{'ready' if ready else 'NOT ready'} {time.monotonic() - started:.1f} s "
                               "after its start")

    def wait_ready(self, target: str, container: str, timeout: float = 120) -> bool:
        """Until a started container does its job again: the fault lasts until then.

        The producer serves (its workers have loaded the app), RabbitMQ accepts a
        login, MySQL passes its health check; a consumer's own start is part of
        the system's recovery.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if target == "producer":
                    if requests.get(f"{self.stack.base_url}/livez", timeout=2).status_code == 200:
                        return True
                elif target.startswith("rabbitmq"):
                    port = next(n.port for n in self.stack.nodes() if n.container == container)
                    if not amqp_login("127.0.0.1", port, self.stack.values["RABBITMQ_USER"],
                                      self.stack.values["RABBITMQ_PASSWORD"]):
                        return True
                elif target == "db":
                    if docker("inspect", "-f", "{{.State.Health.Status}}", container).strip() == "healthy":
                        return True
                else:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.5)
        return False

    @staticmethod
    def hold(fault: Fault, heal: Callable[[], object]) -> None:
        """The fault is in: keep it for its hold time, then `heal` it, whatever happens meanwhile."""
        fault.injected = True
        try:
            time.sleep(fault.hold_s)
        finally:
            heal()

    def pause(self, fault: Fault) -> None:
        container = self.container(fault.target)
        pause(container, refused=fault.notes.append)
        self.hold(fault, lambda: docker("unpause", container))

    def alarm(self, fault: Fault) -> None:
        container = self.rabbit_container(fault.target)
        limit = rabbitmqctl(container, "eval", "rabbit_disk_monitor:get_disk_free_limit().").strip()
        fault.notes.append(f"disk_free_limit was {limit}")
        rabbitmqctl(container, "set_disk_free_limit", ALARM_LIMIT)
        self.hold(fault, lambda: rabbitmqctl(container, "set_disk_free_limit",
                                             limit if limit.isdigit() else "50MB"))

    def netcut(self, fault: Fault) -> None:
        self.hold(fault, cut_network(self.stack, fault.target))

    def brokercut(self, fault: Fault) -> None:
        self.hold(fault, cut_broker_path(self.stack, fault.target))

    def partition(self, fault: Fault) -> None:
        container = self.rabbit_container(fault.target)
        node = next(n for n in self.stack.nodes() if n.container == container)
        self.hold(fault, cut_node(self.stack, node))

    def all_stop(self, fault: Fault) -> None:
        """SIGTERM to every container (compose services, then RabbitMQ), then `scripts/stack.py up`."""
        started = time.monotonic()
        self.stack.compose("stop")  # SIGTERM, 10 s grace each
        for node in reversed(self.stack.nodes()):
            docker("stop", "--time", "30", node.container)
        fault.injected = True
        stopped = time.monotonic() - started
        killed = [name for name, code in exit_codes(self.stack).items() if code == 137]
        fault.notes.append(f"stopped in {stopped:.1f} s" + (f"; needed SIGKILL: {killed}" if killed else ""))
        result = subprocess.run(
            [*self.stack_command(), "up"], env=self.stack.process_env(), capture_output=True, text=True,
            timeout=300)
        fault.notes.append(f"up in {time.monotonic() - started - stopped:.1f} s (exit {result.returncode})")
        if result.returncode != 0:
            fault.notes.append((result.stdout + result.stderr)[-500:])

    def stack_command(self) -> list[str]:
        import sys

        from tests.support import ROOT
        return [sys.executable, str(ROOT / "scripts" / "stack.py"), "--env-file", str(self.stack.env_file)]

    def heal_everything(self) -> list[str]:
        """Whatever a failed heal left behind: every container running, unpaused, connected; no alarm."""
        done: list[str] = []
        containers = {s: self.stack.container(s) for s in SERVICES}
        containers.update({n.hostname: n.container for n in self.stack.nodes()})
        for target, container in containers.items():
            try:
                state = json.loads(docker("inspect", "-f", "{{json .State}}", container))
                if state.get("Paused"):
                    docker("unpause", container)
                    done.append(f"unpaused {target}")
                elif not state.get("Running"):
                    docker("start", container)
                    done.append(f"started {target}")
            except subprocess.SubprocessError as exc:
                done.append(f"could not heal {target}: {exc!r}"[:300])
        for target, container in containers.items():
            try:
                done += [f"took a cut's rule out of {target}: {rule}" for rule in take_out_cuts(container)]
            except subprocess.SubprocessError as exc:
                done.append(f"could not look for cuts left in {target}: {exc!r}"[:300])
        for node in self.stack.nodes():  # a partition takes a node off its network
            try:
                networks = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", node.container)
                if not json.loads(networks):
                    network = self.stack.values["RABBITMQ_NETWORK"]
                    docker("network", "connect", "--alias", node.hostname, network, node.container)
                    done.append(f"connected {node.container}")
            except subprocess.SubprocessError as exc:
                done.append(f"could not connect {node.container}: {exc!r}"[:300])
        for node in self.stack.nodes():
            try:  # a node started a moment ago is still booting
                subprocess.run(["docker", "exec", node.container, "rabbitmqctl", "-q", "await_startup",
                                "--timeout", "120"], capture_output=True, timeout=130, check=False)
                alarms = rabbitmqctl(node.container, "eval", "rabbit_alarm:get_alarms().")
                if "disk" in alarms:
                    rabbitmqctl(node.container, "set_disk_free_limit", "50MB")
                    done.append(f"cleared the disk alarm on {node.container}")
            except subprocess.SubprocessError as exc:
                done.append(f"could not ask {node.container} for its alarms: {exc!r}"[:300])
        return done


def rabbitmqctl(container: str, *args: str) -> str:
    return subprocess.run(["docker", "exec", container, "rabbitmqctl", "-q", *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def exit_codes(stack: SystemCopy) -> dict[str, int]:
    states = [json.loads(docker("inspect", c))[0] for c in stack.containers()]
    return {state["Name"]: state["State"]["ExitCode"] for state in states}


def containers_state(stack: SystemCopy) -> dict[str, tuple[str, int]]:
    """Each compose service's and RabbitMQ node's (start time, restart count), by name."""
    found: dict[str, tuple[str, int]] = {}
    ids = {s: stack.container(s) for s in SERVICES}
    for node in stack.nodes():
        ids["rabbitmq" if node.number == 1 else f"rabbitmq-{node.number}"] = node.container
    for name, container in ids.items():
        info = json.loads(docker("inspect", container))[0]
        found[name] = (info["State"]["StartedAt"], int(info["RestartCount"]))
    return found
