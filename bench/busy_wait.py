"""What Erlang's scheduler busy-waiting costs RabbitMQ: idle side by side, or under load.

    python bench/busy_wait.py [--rounds 7] [--seconds 10]
    python bench/busy_wait.py --env-file .env [--rounds 5] [--seconds 5]

Idle: two throwaway RabbitMQ containers of the image `make up` uses run at
once, one as it is and one with the busy-wait off (RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS,
read by the official image and the stand-in alike). Both are read from their
cgroups on the host over the same windows, so the machine's noise falls on
both alike; each round's CPU is milliseconds per second, printed as median and
range. Both containers are deleted at the end, whatever happens.

Under load (`--env-file`, a running single-node system: `make up`'s or a test
copy's): the system's own node is re-created with the busy-wait on and off in
turn (the order swapped every round; its data stays in its volume), and each
time, once the consumers are back, inserts by wrk at 32 clients (inserts/s, and
CPU per insert of the four containers on an insert's way, idle taken off) and
at one (p50, CPU per insert), as bench/versus.py's cells. At the end the node
is re-created as `make up` starts it.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import wrk
from bench.load import wait_for_http
from bench.system import System, idle_cost
from bench.versus import insert_cell, spread
from scripts.stack import IMAGES, Stack, docker_ok

BUSY_WAIT_OFF = "+sbwt none +sbwtdcpu none +sbwtdio none"


def image() -> str:
    """RabbitMQ's image as `make up` picks it: the official one, or the local stand-in."""
    [(name, kind)] = [(default, kind) for setting, default, kind in IMAGES if setting == "RABBITMQ_IMAGE"]
    if docker_ok("image", "inspect", name):
        return name
    from offline.standins import build_standin, standin_kind
    return build_standin(standin_kind(name, kind), log=print)


def cpu_ns(container_id: str) -> int:
    """The container's CPU time so far, from its cgroup on the host (v1, or v2 either driver)."""
    for path, field in ((f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage", None),
                        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", "usage_usec"),
                        (f"/sys/fs/cgroup/docker/{container_id}/cpu.stat", "usage_usec")):
        with contextlib.suppress(FileNotFoundError):
            text = Path(path).read_text()
            if field is None:
                return int(text)
            return 1000 * int(next(line.split()[1] for line in text.splitlines() if line.startswith(field)))
    raise RuntimeError(f"no cgroup CPU counter found for {container_id[:12]}")


@contextlib.contextmanager
def rabbitmq(name: str, extra_args: str) -> Iterator[str]:
    env = ["--env", f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS={extra_args}"] if extra_args else []
    container_id = subprocess.run(["docker", "run", "--detach", "--name", name, *env, image()],
                                  check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield container_id
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True)


def wait_ready(name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_ok("exec", name, "rabbitmq-diagnostics", "-q", "check_running"):
            return
        time.sleep(2)
    raise TimeoutError(f"{name} did not start within {timeout:.0f} s")


def restart_node(stack: Stack, system: System, image: str, extra_args: str) -> None:
    """The system's node re-created with `extra_args` (none: as `make up` starts it); returns once
    consumer_two is back on its queue and the producer is ready."""
    [node] = stack.nodes()
    subprocess.run(["docker", "stop", "--time", "30", node.container], capture_output=True)
    subprocess.run(["docker", "rm", node.container], capture_output=True)
    stack.create_rabbitmq_node(image, node, extra_env=(
        (f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS={extra_args}",) if extra_args else ()))
    stack.wait_for_rabbitmq(node)
    deadline = time.monotonic() + 120
    while system.consumers("insert_record") < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("consumer_two did not come back within 120 s of RabbitMQ's restart")
        time.sleep(0.5)
    wait_for_http(f"{system.base}/readyz")


def under_load(env_file: Path, rounds: int, seconds: float) -> None:
    stack = Stack(env_file.resolve())
    stack.load()
    if len(stack.nodes()) != 1:
        raise SystemExit("under load, a single-node system only (RABBITMQ_NODES=1)")
    system = System(stack)
    [node] = stack.nodes()
    image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", node.container],
                           capture_output=True, text=True, check=True).stdout.strip()
    containers = {"producer": system.container("producer"), "rabbitmq": node.container,
                  "consumer": system.container("consumer_two"), "db": system.container("db")}
    designs = {"on": "", "off": BUSY_WAIT_OFF}
    tag = secrets.token_hex(3)
    rows: list[dict[str, float | str]] = []
    try:
        for number in range(rounds):
            for label in (designs if number % 2 == 0 else list(designs)[::-1]):
                restart_node(stack, system, image, designs[label])
                prefix = f"BW{tag}{number}{label}"
                wrk.load(system.base, 32, 2, insert_prefix=f"{prefix}W")  # warm-up
                time.sleep(1)
                idle = idle_cost(containers, 5)
                many, cpu, one = insert_cell(system.base, containers, idle, 32, seconds, prefix)
                rows.append({"busy_wait": label, "canary_ms": one["canary_ms"], "p50_ms_at_1": one["p50_ms"],
                             "cpu_ms_at_1": one["cpu"]["total"], "rabbitmq_ms_at_1": one["cpu"]["rabbitmq"],
                             "inserts_per_s_at_32": many["per_s"], "cpu_ms_at_32": cpu["total"],
                             "rabbitmq_ms_at_32": cpu["rabbitmq"], "errors": one["errors"] + many["errors"]})
                print(" ".join(f"{key} {value}" for key, value in rows[-1].items()), flush=True)
    finally:
        restart_node(stack, system, image, "")
    print(f"\nRabbitMQ under load ({image}), {rounds} rounds; CPU in ms per insert, idle taken off; "
          "off/on is the median of each round's ratio")
    for key in [k for k in rows[0] if k not in ("busy_wait", "errors")]:
        on = [float(r[key]) for r in rows if r["busy_wait"] == "on"]
        off = [float(r[key]) for r in rows if r["busy_wait"] == "off"]
        print(f"{key:<22} on {spread(on):<22} off {spread(off):<22} off/on "
              f"{spread([b / a for a, b in zip(on, off, strict=True)])}")
    print(f"errors: {sum(int(r['errors']) for r in rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10.0, help="each round's window")
    parser.add_argument("--env-file", type=Path, help="a running single-node system: measure under load")
    args = parser.parse_args()
    if args.env_file is not None:
        under_load(args.env_file, args.rounds, args.seconds)
        return
    tag = secrets.token_hex(3)
    designs = {"busy-wait on (default)": "", f"busy-wait off ({BUSY_WAIT_OFF})": BUSY_WAIT_OFF}
    with contextlib.ExitStack() as stack:
        ids = {label: stack.enter_context(rabbitmq(f"bench-busywait-{n}-{tag}", extra))
               for n, (label, extra) in enumerate(designs.items())}
        for n in range(len(designs)):
            wait_ready(f"bench-busywait-{n}-{tag}")
        time.sleep(args.seconds)  # past the start's own work
        per_s: dict[str, list[float]] = {label: [] for label in designs}
        for _ in range(args.rounds):
            before = {label: cpu_ns(i) for label, i in ids.items()}
            started = time.monotonic()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - started
            for label, i in ids.items():
                per_s[label].append((cpu_ns(i) - before[label]) / 1e6 / elapsed)
    print(f"idle RabbitMQ ({image()}), {args.rounds} rounds of {args.seconds:.0f} s, both at once")
    print(f"{'design':<56}  cpu_ms_per_s  range")
    for label, values in per_s.items():
        print(f"{label:<56}  {statistics.median(values):12.1f}  {min(values):.1f}-{max(values):.1f}")


if __name__ == "__main__":
    main()
