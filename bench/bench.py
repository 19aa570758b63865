"""make bench: the system's speed and memory next to ceilings measured in the same run.

    python scripts/stack.py bench [--duration 5] [--clients 1,8,32] [--skip-100k]
    python scripts/stack.py bench --copy             # in a throwaway copy (MSTEST_PROJECT names it)
    python scripts/stack.py bench --nodes 1,3        # inserts on one RabbitMQ node against a cluster
    python scripts/stack.py bench --versus-only      # only the rounds against the straightforward design

Absolute numbers on a shared 2-core machine drift by tens of percent between
runs, so every figure is reported next to what RabbitMQ, MySQL and gunicorn
do alone in this same run, as a ratio. Traffic goes to this machine only
(127.0.0.1 and Docker's own networks), and every loop stops by itself after
a fixed time or count. Prints a table and writes bench/results/latest.json.

The parts, by job:
    bench/versus.py     ours against the straightforward design in alternating rounds (G1-G3)
    bench/wrk.py        the load generator: wrk with bench/http.lua, the Python one where wrk is missing
    bench/load.py       the Python load generator (closed-loop HTTP clients)
    bench/system.py     what is read from Docker: containers, cgroup CPU and memory, logs
    bench/ceilings.py   raw ceilings: the broker, the database and gunicorn alone
    bench/ours.py       the system end to end
    bench/baselines.py  other designs of the same contract, run next to ours:
                        bench/naive.py (a connection per request) and
                        bench/straight.py (the straightforward design, the baseline of G1-G3)
    bench/breakdown.py  an insert's latency step by step, from the services' logs
    bench/ab.py         (alone) one service's code against the code before it, in alternating rounds
    bench/report.py     tables and the results file
    bench/reference.json  the CPU per insert that later runs are compared with (--set-reference)
    scripts/copies.py   the throwaway copy of the system (shared with the tests)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The repository root is on the path only now.
from bench import baselines, wrk  # noqa: E402
from bench.breakdown import breakdown  # noqa: E402
from bench.ceilings import QUORUM_ROUND_TRIP, ROUND_TRIP, SINGLE_ROW, Ceilings  # noqa: E402
from bench.load import progress  # noqa: E402
from bench.ours import Ours  # noqa: E402
from bench.report import RESULTS, judge, ratio, show, write  # noqa: E402
from bench.system import System  # noqa: E402
from bench.versus import OURS, ROLES, STRAIGHT, compare  # noqa: E402
from scripts.copies import copy_values, throwaway_copy  # noqa: E402
from scripts.stack import Stack  # noqa: E402

REFERENCE = ROOT / "bench" / "reference.json"


def reference() -> dict[str, Any] | None:
    """The recorded CPU per insert (summed over our containers) that this run is compared with."""
    if not REFERENCE.exists():
        return None
    figure: dict[str, Any] = json.loads(REFERENCE.read_text())["cpu_per_insert_ms"]
    return figure


def set_reference(cpu: dict[str, Any], note: str) -> None:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    REFERENCE.write_text(json.dumps({"cpu_per_insert_ms": {
        **cpu, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit, "note": note,
    }}, indent=2) + "\n")
    print(f"\nthis run's CPU per insert written to {REFERENCE} as the reference")


def measure(stack: Stack, args: argparse.Namespace, clients: list[int]) -> int:
    system = System(stack)
    ceiling = Ceilings(system, args.duration)
    ours = Ours(system, args.duration)
    tag = str(int(time.time()) % 100000)
    ours.clean_up()

    versus: dict[str, Any] = {}
    if not args.skip_straight:
        print(f"\nours against the straightforward design (bench/straight.py, {args.straight_worker}), "
              f"{args.rounds} alternating rounds (bench/versus.py)", file=sys.stderr)
        with baselines.straight_design(system, args.straight_worker) as (base, containers):
            versus = compare(system, base, containers, count=args.rounds, seconds=args.duration,
                             top=max(clients), idle_s=args.idle, tag=tag)
        show_versus(versus, args.straight_worker)
    if args.versus_only:
        ours.clean_up()
        write("versus.json", {"duration_s": args.duration, "rounds": args.rounds, "clients": max(clients),
                              "straight_worker": args.straight_worker}, **versus)
        return 0


    print("\nceilings (same run, same containers, no project code)", file=sys.stderr)
    ceilings = [ceiling.confirmed_publish(), ceiling.round_trip(), ceiling.round_trip(durable=True),
                *ceiling.database(), *(ceiling.http_floor(c) for c in clients)]
    if wrk.available():  # the same floor by wrk: how much the Python generator itself caps it
        ceilings += [wrk.load(system.base, c, args.duration, name="HTTP floor: GET /livez, by wrk")
                     for c in clients]

    naive = []
    if not args.skip_naive:
        print("\nthe naive design: a new connection per request (bench/naive.py)", file=sys.stderr)
        naive = baselines.naive(system, clients, args.duration)

    print("\nend to end", file=sys.stderr)
    created_before = system.connections_created(settled=True)
    end_to_end: list[dict[str, Any]] = []
    inserted = {}
    cpu_per_insert: list[dict[str, Any]] = []
    for c in clients:
        row, cpu = ours.inserts_with_cpu(c, tag)
        end_to_end.append(row)
        cpu_per_insert.append(cpu)
        inserted[c] = row["requests"]
    print("\nlatency breakdown of an insert at one client (the services' logs)", file=sys.stderr)
    steps_run, steps = breakdown(system, f"{tag}L", args.duration)
    end_to_end.append(steps_run)
    ours.seed(1000)
    rows = ours.rows_in_table()
    for c in clients:
        end_to_end.append(ours.reads(c, rows))
    for c in clients:
        end_to_end.append(ours.deletes(c, tag, inserted[c]))
        end_to_end.append(ours.health(c))
    if not args.skip_100k:
        ours.seed(100_000)
        ceilings.append(ceiling.raw_read())
        rows = ours.rows_in_table()
        for c in clients:
            end_to_end.append(ours.reads(c, rows))
    requests_sent = sum(r["requests"] for r in end_to_end)
    created = system.connections_created(settled=True) - created_before
    memory = system.peak_memory_mib()
    ours.clean_up()
    progress("done")

    floor = {r["clients"]: r["per_s"] for r in ceilings if r["what"] == "HTTP floor: GET /livez"}
    single = next(r for r in ceilings if r["what"] == SINGLE_ROW)
    rpc = next(r for r in ceilings if r["what"] == ROUND_TRIP)
    quorum_rpc = next(r for r in ceilings if r["what"] == QUORUM_ROUND_TRIP)
    insert = {r["clients"]: r for r in end_to_end if r["what"] == "insert_record"}
    targets = []
    top = max(clients)
    cpu_top = next(r for r in cpu_per_insert if r["clients"] == top)
    ref = reference()
    if top in insert and top in floor:
        targets.append({"target": f"P1 inserts @{top} / HTTP floor >= 0.5",
                        "ratio": ratio(insert[top]["per_s"], floor[top])})
        targets.append({"target": f"P1 inserts @{top} / raw single-row inserts >= 1.0",
                        "ratio": ratio(insert[top]["per_s"], single["per_s"])})
    if 1 in insert:
        targets.append({"target": "P2 insert p50 @1 / (round trip p50 + insert p50) <= 2.5",
                        "ratio": ratio(insert[1]["p50_ms"], rpc["p50_ms"] + single["p50_ms"])})
        targets.append({"target": "insert p50 @1 / (quorum round trip p50 + single-row commit p50) <= 2",
                        "ratio": ratio(insert[1]["p50_ms"], quorum_rpc["p50_ms"] + single["p50_ms"])})
    raw_read = next((r for r in ceilings if "rows" in r), None)
    big_read = next((r for r in end_to_end
                     if raw_read and r.get("rows") == raw_read["rows"] and r["clients"] == 1), None)
    if raw_read and big_read:
        targets.append({"target": "P3 read of every row @1 / (SELECT + JSON) <= 2",
                        "ratio": ratio(big_read["p50_ms"], raw_read["p50_ms"])})
    targets.append({"target": "P4 AMQP connections opened per request == 0",
                    "ratio": round(created / max(1, requests_sent), 4)})
    if ref is not None:
        same = ref.get("clients") == top
        at = "" if same else f" @{ref.get('clients')}"
        # The reference is the code before the performance round: the aim is 40 % below it.
        targets.append({"target": f"CPU per insert @{top}, summed / reference ({ref['total']} ms{at}, "
                        f"{ref.get('commit', '?')}) <= 0.6",
                        "ratio": ratio(cpu_top["total"], ref["total"]) if same else "n/a"})
    for row in naive:
        if row["clients"] in insert:
            targets.append({"target": f"P4 inserts @{row['clients']} / naive design's >= 5",
                            "ratio": ratio(insert[row["clients"]]["per_s"], max(row["per_s"], 0.1))})
    judge(targets)

    show(ceilings, ["what", "clients", "per_s", "p50_ms", "p99_ms", "json_mib", "errors"])
    show(end_to_end, ["what", "clients", "requests", "per_s", "p50_ms", "p95_ms", "p99_ms", "errors"])
    if naive:
        show(naive, ["what", "clients", "requests", "per_s", "p50_ms", "p95_ms", "p99_ms", "errors",
                     "connections_per_request"])
    show(steps, ["step", "p50_ms"], f"latency breakdown of an insert at one client, from the services' logs "
         f"({steps_run['joined']} inserts joined by request id; medians)")
    show(cpu_per_insert, ["clients", "producer", "rabbitmq", "consumer_two", "db", "total", "host_busy_pct"],
         "CPU per insert (ms), by container and summed over our containers, "
         "and how busy the whole machine was during the run")
    whole = ["total", "generator", "docker_proxy", "docker_daemons", "elsewhere", "machine"]
    show([{"design": "ours", **r} for r in cpu_per_insert]
         , ["design", "clients", *whole],
         "CPU per insert of the whole machine (ms): the containers of the design (total), the load "
         "generator, Docker's port proxy, Docker's daemons (logs, exec), the rest; both designs pay the "
         "same generator and proxy for every request")
    print(f"\nCPU per insert summed over our containers @{top}: {cpu_top['total']} ms"
          + (f" (reference {ref['total']} ms @{ref.get('clients')}, {ref.get('when', '?')})" if ref else
             " (no reference yet: --set-reference records this run's)"))
    print(f"\npeak memory (MiB): {memory}; AMQP connections opened during the end-to-end run: {created}")
    show(targets + versus.get("targets", []), ["target", "ratio", "met"])
    write("latest.json", {"duration_s": args.duration, "clients": clients},
          ceilings=ceilings, naive=naive, versus=versus,
          end_to_end=end_to_end, latency_breakdown_ms=steps, cpu_per_insert_ms=cpu_per_insert,
          cpu_per_insert_summed_ms={"clients": top, "total": cpu_top["total"], "reference": ref},
          peak_memory_mib=memory, connections_created=created, targets=targets)
    if args.set_reference:
        set_reference(cpu_top, args.set_reference)
    return 0


def show_versus(versus: dict[str, Any], worker_class: str) -> None:
    """The alternating rounds' tables: every round, the summary, the idle cost, targets G1-G3."""
    generator = versus["rounds"][0]["generator"]
    columns = ["design", "round", "inserts_per_s", "cpu_ms", *(f"cpu_{r}" for r in ROLES), "canary_ms",
               "p50_ms", "cpu_ms_at_1", "floor_ms", "errors", "busy_pct", "steal_pct"]
    show(versus["rounds"], columns, f"each round (load by {generator}; CPU in ms per insert from the host's "
         "cgroup files, idle taken off)")
    show(versus["figures"], ["figure", OURS, STRAIGHT, "ratio"],
         f"ours against the straightforward design ({worker_class}): median (range) of the rounds; "
         "the ratio is the median of each round's")
    show([{"container": name, "ms_per_s": value} for name, value in versus["idle_ms_per_s"].items()],
         ["container", "ms_per_s"], "idle CPU per second, measured before the rounds and taken off")
    judge(versus["targets"])
    show(versus["targets"], ["target", "ratio", "range", "straightforward", "met"])


def compare_nodes(stack: Stack, counts: list[int], clients: list[int], duration: float) -> int:
    """Insert throughput and latency on copies with 1 and 3 RabbitMQ nodes, side by side in one run.

    Both copies run at once and the measurements alternate between them, so
    the noise of a shared machine falls on both alike.
    """
    stack.load()
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as copies:
        systems = {}
        for n in counts:
            project = f"{stack.project}bench{n}n"
            copy = copies.enter_context(throwaway_copy(
                RESULTS / f"{project}.env", copy_values(project, n, base=stack.values), label=project))
            systems[n] = Ours(System(copy.script_stack()), duration)
        tag = str(int(time.time()) % 100000)
        for c in clients:
            for n, ours in systems.items():
                rows.append({"nodes": n, **ours.inserts(c, f"{tag}N{n}")})
    progress("done")
    show(rows, ["what", "nodes", "clients", "requests", "per_s", "p50_ms", "p99_ms", "errors"])
    base, *others = counts
    ratios = []
    for n in others:
        for c in clients:
            one = next(r for r in rows if r["nodes"] == base and r["clients"] == c)
            many = next(r for r in rows if r["nodes"] == n and r["clients"] == c)
            ratios.append({"what": f"{n} nodes / {base} node", "clients": c,
                           "per_s": ratio(many["per_s"], one["per_s"]),
                           "p99_ms": ratio(many["p99_ms"], one["p99_ms"])})
    show(ratios, ["what", "clients", "per_s", "p99_ms"])
    write("nodes.json", {"duration_s": duration, "clients": clients, "nodes": counts},
          inserts=rows, ratios=ratios)
    return 0 if all(r["errors"] == 0 for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients (default 1,8,32)")
    parser.add_argument("--skip-100k", action="store_true", help="skip reading with 100,000 rows")
    parser.add_argument("--nodes", help="only compare inserts on copies with these RabbitMQ node counts, "
                        "e.g. 1,3 (each a copy of its own, deleted afterwards)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive design's baseline (P4)")
    parser.add_argument("--skip-straight", action="store_true",
                        help="skip the straightforward design's baseline (G1-G3)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of ours and the straightforward design (default 5)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds with no load to measure each container's idle CPU over (default 10)")
    parser.add_argument("--straight-worker", choices=("gthread", "gevent"), default="gthread",
                        help="the straightforward design's gunicorn worker class (default gthread, its best "
                        "measured)")
    parser.add_argument("--versus-only", action="store_true",
                        help="only the alternating rounds against the straightforward design (G1-G3)")
    parser.add_argument("--set-reference", metavar="NOTE",
                        help="record this run's CPU per insert (summed, at the top client count) in "
                        "bench/reference.json, with NOTE saying what it is")
    parser.add_argument("--copy", action="store_true",
                        help="run in a throwaway copy of the system (named by MSTEST_PROJECT, default "
                        "'benchcopy'), deleted afterwards, instead of the system of --env-file")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]

    stack = Stack(args.env_file.resolve())
    if args.nodes:
        return compare_nodes(stack, [int(n) for n in args.nodes.split(",")], clients, args.duration)
    if args.copy:
        project = os.environ.get("MSTEST_PROJECT", "benchcopy")
        with throwaway_copy(RESULTS / f"{project}.env", copy_values(project), label=project) as copy:
            return measure(copy.script_stack(), args, clients)
    stack.up()  # idempotent: starts the system if it is not running
    return measure(stack, args, clients)


if __name__ == "__main__":
    sys.exit(main())
