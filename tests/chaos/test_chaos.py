"""Chaos: a mixed load for CHAOS_DURATION seconds while seeded random faults come and go.

    make chaos                                  # a new seed, printed
    CHAOS_SEED=1234 CHAOS_DURATION=60 make chaos  # the same faults and choices again, shorter
    RABBITMQ_NODES=3 make chaos                  # on a three-node RabbitMQ cluster

The copy has a compose project of its own (`<MSTEST_PROJECT>chaos`). When the
load stops and every fault is healed, the system settles, every 202 is looked
up and every 503 retried with its id, and the checker compares what the
clients were told with what MySQL and RabbitMQ hold. The table is printed at
the end of the session and kept in tests/artifacts/chaos.md.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.chaos.faults import Injector, containers_state, plan
from tests.chaos.invariants import REPORTS, check, read_stored, render
from tests.chaos.load import Client, Hot, Sent, Shared
from tests.faults.load import settle
from tests.support import ARTIFACTS, PROJECT, Stack, copy_of_the_system, unique_srn

NODES = int(os.environ.get("RABBITMQ_NODES") or 1)
DURATION_S = float(os.environ.get("CHAOS_DURATION") or 160)
CLIENTS = int(os.environ.get("CHAOS_CLIENTS") or 6)
HOT_SKUS, HOT_STOCK = 3, 40


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[Stack]:
    yield from copy_of_the_system("chaos", f"{PROJECT}chaos", nodes=NODES)


def every_service_answers(stack: Stack) -> bool:
    """One round trip through every consumer, the producer and each queue they serve."""
    base, srn = stack.base_url, unique_srn("P")
    with requests.Session() as s:
        def ok(response: requests.Response, status: int = 200) -> bool:
            return response.status_code == status
        inserted = s.post(f"{base}/insert_record", json={"Name": "Probe", "SRN": srn, "Section": "P"},
                          headers={"X-Request-ID": f"probe-{srn}"}, timeout=10)
        return (ok(s.get(f"{base}/health_check", params={"message": "probe"}, timeout=10))
                and ok(inserted, 201)
                and ok(s.get(f"{base}/requests/probe-{srn}", timeout=10), 201)
                and ok(s.get(f"{base}/read_database", params={"limit": "1", "after": srn}, timeout=10))
                and ok(s.post(f"{base}/update_record", json={"SRN": srn, "Section": "Q"}, timeout=10))
                and ok(s.get(f"{base}/delete_record", params={"SRN": srn}, timeout=10))
                and ok(s.get(f"{base}/items", timeout=10))
                and ok(s.get(f"{base}/orders", timeout=10)))


def wait_for_answers(stack: Stack, timeout: float) -> float | None:
    """Seconds until every service answers, or None if not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if every_service_answers(stack):
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return None


def test_chaos(chaos_stack: Stack) -> None:
    stack = chaos_stack
    seed = int(os.environ.get("CHAOS_SEED") or secrets.randbelow(10**6))
    print(f"\nchaos seed {seed} (CHAOS_SEED={seed} replays it), {DURATION_S:g} s, {CLIENTS} clients, "
          f"{NODES} RabbitMQ node(s)", file=sys.stderr, flush=True)
    # This run's ids and SRNs: not from the seed, since a kept copy holds earlier runs.
    tag = secrets.token_hex(3).upper()
    assert wait_for_answers(stack, 120) is not None, "the copy does not answer before the run"
    timeout_s = float(stack.values["REQUEST_TIMEOUT_S"])

    hot = []
    for n in range(HOT_SKUS):
        sku = f"K{tag}H{n}"
        created = requests.post(f"{stack.base_url}/items", json={"SKU": sku, "Name": f"Hot {n}",
                                                                 "Quantity": HOT_STOCK},
                                headers={"X-Request-ID": f"{tag}-setup-{n}"}, timeout=15)
        assert created.status_code == 201, created.text
        hot.append(Hot(sku, HOT_STOCK, f"{tag}-setup-{n}"))
    dead_before = {q: n for q, n in stack.queue_depths().items() if q.endswith(".dead")}
    states_before = containers_state(stack)
    rabbit = ["rabbitmq", *(f"rabbitmq-{node.number}" for node in stack.nodes()[1:])]

    start = time.monotonic()
    shared = Shared(stack, tag, start, start + DURATION_S, hot)
    clients = [Client(shared, n, seed * 100 + n) for n in range(CLIENTS)]
    injector = Injector(stack, plan(seed, DURATION_S, rabbit), start, shared.deadline)
    for thread in [*clients, injector]:
        thread.start()

    injector.join(DURATION_S + 400)
    notes = [f"healed afterwards: {done}" for done in injector.heal_everything()]
    last_heal = max((f.healed for f in injector.faults), default=start)
    answered_in = wait_for_answers(stack, 120)
    recovery_s = None if answered_in is None else time.monotonic() - last_heal
    for client in clients:
        client.join(DURATION_S + 120)
        if client.is_alive():
            notes.append(f"client {client.number} still running at the end")

    try:
        settle(stack, timeout=180)
    except AssertionError as exc:
        notes.append(f"queues not idle within 180 s: {exc}")
    resolve_deadline = time.monotonic() + 120
    while time.monotonic() < resolve_deadline:
        pending = [(c, s) for c in clients for s in c.pending]
        if not pending:
            break
        for client, sent in pending:
            client.resolve(sent)
        time.sleep(1)
    try:
        settle(stack, timeout=60)
    except AssertionError as exc:
        notes.append(f"queues not idle after the retries: {exc}")

    stored = read_stored(stack, tag, dead_before)
    report = check(clients, hot + [h for h in shared.hot if h not in hot], stored, injector.faults, timeout_s,
                   states_before, containers_state(stack), recovery_s)
    lookups: list[Sent] = shared.lookups
    text = render(seed, DURATION_S, NODES, clients, lookups, injector.faults, injector.skipped, report,
                  recovery_s, notes)
    REPORTS.append(text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "chaos.md").write_text(text)
    print("\n" + text, file=sys.stderr, flush=True)
    assert not report.failed, text
