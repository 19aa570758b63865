"""Ours against the straightforward design in alternating rounds: where G1, G2 and G3 come from.

Both designs run at once: our system, and bench/straight.py's app and consumer
next to it (sharing our RabbitMQ and MySQL). First each container's CPU per
second with no load is measured (its background: health probes, timers, the
broker's own work). Then, in each round, each design in turn, the order swapped
every round so that neither always follows a pause:

- `top` clients of inserts by wrk: inserts per second, and CPU per insert of the
  four containers on an insert's way (HTTP app, RabbitMQ, consumer, MySQL), read
  from the host's cgroup files over the load's own window, idle taken off;
- the CPU canary (bench.system.canary_ms): how fast the machine itself is just then;
- one client of inserts: p50 latency;
- the floor right after it: one client of GET /livez (the HTTP part), a round
  trip through a quorum queue (persistent, confirmed, acknowledged after the
  reply) and a single-row commit with the consumers' driver. Measured next to
  each design's p50 rather than once a round, so that a p50 and its floor are
  taken seconds apart on a machine whose speed drifts.

Every figure is the median of the rounds with its range; a ratio is the median
of each round's ratio, so that a drift of the machine falls on both sides of it.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import wrk
from bench.ceilings import Ceilings
from bench.load import progress
from bench.system import BENCH_TAG, CpuMeter, System, canary_ms, idle_cost

# What the bench's tables and the targets call the two designs.
OURS, STRAIGHT = "ours", "straightforward"
# Each container of a design, by its role on an insert's way.
ROLES = ("producer", "rabbitmq", "consumer", "db")
# A pause between two loads, for the last one's messages to be consumed.
SETTLE_S = 1.0


@dataclass
class Design:
    name: str
    base: str
    containers: dict[str, str]  # role -> container id or name
    srn_prefix: str  # of the records its inserts create


def insert_cell(base: str, containers: dict[str, str], idle: dict[str, float], clients: int, seconds: float,
                srn_prefix: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One design's (or variant's) turn in a round: `clients` of inserts by wrk with the CPU per
    insert of `containers` (idle taken off), then the CPU canary, then one client of inserts
    with the same. Returns both wrk rows (the one-client row with the canary's `canary_ms`
    and its own CPU figures as `cpu`) and the CPU figures of the first."""
    meter = CpuMeter(containers, idle)
    many = wrk.load(base, clients, seconds, insert_prefix=f"{srn_prefix}M")
    cpu = meter.per_request(many["requests"])
    time.sleep(SETTLE_S)
    canary = canary_ms()
    meter = CpuMeter(containers, idle)
    one = wrk.load(base, 1, seconds, insert_prefix=f"{srn_prefix}O")
    return many, cpu, {**one, "canary_ms": canary, "cpu": meter.per_request(one["requests"])}


def rounds(system: System, designs: list[Design], count: int, seconds: float, top: int,
           idle_s: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """`count` rounds of both designs alternately: a row per design and round, and the idle cost."""
    every = {f"{d.name}:{role}": c for d in designs for role, c in d.containers.items()}
    for design in designs:  # the same warm-up for both: connections, caches, JIT-less but paged in
        wrk.load(design.base, top, 2, insert_prefix=f"{design.srn_prefix}W")
    time.sleep(SETTLE_S)
    progress(f"idle cost of each container over {idle_s:.0f} s")
    idle = idle_cost(every, idle_s)
    ceiling = Ceilings(system, seconds)
    rows = []
    for number in range(count):
        order = designs if number % 2 == 0 else designs[::-1]
        for design in order:
            progress(f"round {number + 1}/{count}: {design.name}")
            own_idle = {role: idle[f"{design.name}:{role}"] for role in design.containers}
            many, cpu, one = insert_cell(design.base, design.containers, own_idle, top, seconds,
                                         f"{design.srn_prefix}{number}")
            livez = wrk.load(design.base, 1, min(seconds, 3.0), path="/livez")
            quorum = ceiling.round_trip(count=300, durable=True)["p50_ms"]
            commit = next(r["p50_ms"] for r in ceiling.database(rows=400) if "p50_ms" in r)
            time.sleep(SETTLE_S)
            rows.append({
                "design": design.name, "round": number + 1, "inserts_per_s": many["per_s"],
                "cpu_ms": cpu["total"], **{f"cpu_{role}": cpu[role] for role in ROLES},
                "cpu_ms_at_1": one["cpu"]["total"],
                "docker_daemons_ms": cpu.get("docker_daemons", float("nan")),
                "p99_ms_top": many["p99_ms"], "p50_ms": one["p50_ms"], "livez_p50_ms": livez["p50_ms"],
                "quorum_p50_ms": quorum, "commit_p50_ms": commit,
                "floor_ms": round(livez["p50_ms"] + quorum + commit, 3),
                "errors": many["errors"] + one["errors"] + livez["errors"], "canary_ms": one["canary_ms"],
                "busy_pct": cpu.get("host_busy_pct", ""), "steal_pct": cpu.get("steal_pct", ""),
                "generator": many["generator"]})
    return rows, idle


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def spread(values: list[float]) -> str:
    """A median and its range: "12.3 (11.9-13.0)"."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


Row = dict[str, Any]


def per_round(rows: list[Row], figure: Callable[[Row, Row], float]) -> list[float]:
    """figure(ours' row, the straightforward design's row) of each round."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["design"]] = row
    return [figure(pair[OURS], pair[STRAIGHT]) for pair in by_round.values() if len(pair) == 2]


def ratio_of(key: str, ours: Row, theirs: Row) -> float:
    return float(ours[key]) / float(theirs[key]) if theirs[key] else float("nan")


def summary(rows: list[dict[str, Any]], top: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The table of figures (median and range of each design, and of their ratio), and the targets."""
    def of(design: str, key: str) -> list[float]:
        return [float(r[key]) for r in rows if r["design"] == design]

    figures = []
    for key, label in (("inserts_per_s", f"inserts/s @{top}"),
                       ("cpu_ms", f"CPU ms per insert @{top}, 4 containers, idle off"),
                       *((f"cpu_{role}", f"  of which {role}") for role in ROLES),
                       ("docker_daemons_ms", "CPU ms per insert @32 in Docker's daemons (logs)"),
                       ("p99_ms_top", f"insert p99 ms @{top}"), ("p50_ms", "insert p50 ms @1"),
                       ("cpu_ms_at_1", "CPU ms per insert @1, 4 containers, idle off"),
                       ("livez_p50_ms", "GET /livez p50 ms @1"),
                       ("floor_ms", "floor ms (/livez + quorum + commit)"),
                       ("canary_ms", "CPU canary ms before p50 @1 (lower: faster)"),
                       ("errors", "errors"), ("busy_pct", "machine busy %, steal excluded"),
                       ("steal_pct", "steal %")):
        ratios = per_round(rows, functools.partial(ratio_of, key))
        figures.append({"figure": label, OURS: spread(of(OURS, key)), STRAIGHT: spread(of(STRAIGHT, key)),
                        "ratio": spread(ratios) if key not in ("errors", "busy_pct", "steal_pct") else ""})
    g1 = [r["p50_ms"] / r["floor_ms"] for r in rows if r["design"] == OURS]
    g1_theirs = [r["p50_ms"] / r["floor_ms"] for r in rows if r["design"] == STRAIGHT]
    g2 = per_round(rows, lambda o, s: o["cpu_ms"] / s["cpu_ms"])
    g3 = per_round(rows, lambda o, s: o["inserts_per_s"] / s["inserts_per_s"])
    targets = [
        {"target": "G1 insert p50 @1 / floor <= 1.6", "ratio": median(g1), "range": spread(g1),
         "straightforward": spread(g1_theirs)},
        {"target": f"G2 CPU per insert @{top} / straightforward's <= 0.7", "ratio": median(g2),
         "range": spread(g2)},
        {"target": f"G3 inserts/s @{top} / straightforward's >= 1.2", "ratio": median(g3),
         "range": spread(g3)},
        {"target": "errors in the rounds == 0", "ratio": sum(int(r["errors"]) for r in rows), "range": ""},
    ]
    return figures, targets


def compare(system: System, straight_base: str, straight_containers: dict[str, str], *, count: int,
            seconds: float, top: int, idle_s: float, tag: str) -> dict[str, Any]:
    """The whole comparison: its rows, the summary, the targets and the idle costs."""
    if count < 1:
        raise ValueError("at least one round")
    if not wrk.available():
        print("wrk is not installed (apt-get install wrk): the Python generator loads the system "
              "instead, and costs more CPU than most of it", file=sys.stderr)
    ours = Design(OURS, system.base, {"producer": system.container("producer"),
                                      "rabbitmq": system.stack.get("RABBITMQ_CONTAINER"),
                                      "consumer": system.container("consumer_two"),
                                      "db": system.container("db")}, f"{BENCH_TAG}{tag}V")
    theirs = Design(STRAIGHT, straight_base, straight_containers, f"ST{tag}V")
    rows, idle = rounds(system, [ours, theirs], count, seconds, top, idle_s)
    figures, targets = summary(rows, top)
    return {"rounds": rows, "figures": figures, "targets": targets, "idle_ms_per_s": idle}
