"""What Erlang's scheduler busy-waiting costs an idle RabbitMQ node, measured side by side.

    python bench/busy_wait.py [--rounds 7] [--seconds 10]

Two throwaway RabbitMQ containers of the image `make up` uses run at once, one
as it is and one with the busy-wait off (RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS,
read by the official image and the stand-in alike). Both are read from their
cgroups on the host over the same windows, so the machine's noise falls on
both alike; each round's CPU is milliseconds per second, printed as median and
range. Both containers are deleted at the end, whatever happens.
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

from scripts.stack import IMAGES, docker_ok

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10.0, help="each round's window")
    args = parser.parse_args()
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
