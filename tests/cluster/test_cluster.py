"""A copy of the system on a three-node RabbitMQ cluster: a node lost, a node cut off, competing consumers.

The copy has a compose project of its own (`<MSTEST_PROJECT>cluster`), so it
runs beside the single-node copy of the other tests. Its load tables join the
fault tables printed at the end of the session (tests/artifacts/faults.md).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from scripts.stack import Node
from tests.faults.load import Load, Table, account, record, settle
from tests.support import (
    PROJECT,
    SystemCopy,
    copy_of_the_system,
    cut_node,
    docker,
    every_consumer_answers,
    restart_counts,
    wait_until,
)

NODES = 3
QUEUES = ("health_check", "insert_record", "delete_record", "read_database", "request_status")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SystemCopy]:
    yield from copy_of_the_system("cluster", f"{PROJECT}cluster", nodes=NODES)


def running_nodes(stack: SystemCopy) -> set[str]:
    return set(json.loads(stack.rabbitmqctl("cluster_status", "--formatter", "json"))["running_nodes"])


def queue_column(stack: SystemCopy, column: str) -> dict[str, str]:
    """One column of list_queues (leader, members, ...) by queue name."""
    out = stack.rabbitmqctl("list_queues", "name", column, "--no-table-headers")
    return {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines() if line}


def node_named(stack: SystemCopy, name: str) -> Node:
    return next(node for node in stack.nodes() if node.name == name)


def rejoined(stack: SystemCopy, node: Node) -> bool:
    """The node runs in the cluster again, and is an online member of every queue.

    While the node rejoins, list_queues can answer without some queues (their
    details did not come back in time): not known to be back yet, so not yet.
    """
    online = queue_column(stack, "online")
    return node.name in running_nodes(stack) and all(node.name in online.get(q, "") for q in QUEUES)


def handled(stack: SystemCopy, container: str, queue: str) -> float:
    """Messages one consumer instance has handled from `queue`, from its own metrics."""
    script = ("import urllib.request; print(urllib.request.urlopen("
              "'http://127.0.0.1:9100/metrics', timeout=10).read().decode())")
    metrics = docker("exec", container, "python", "-c", script)
    prefix = f'consumer_messages_total{{outcome="ok",queue="{queue}"}}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


@dataclass
class Cut:
    """What a load saw while one node was cut off (times from the cut, in seconds)."""

    table: Table
    load: Load
    held_s: float
    rejoined_s: float  # from the heal until the node was an online member of every queue again
    answers_503: list[float]  # when each first answer that was a 503 came
    confirmed_while_cut: list[float]  # when each 201 or 202 that came during the cut came

    @property
    def last_503_s(self) -> float:
        return max(self.answers_503, default=0.0)

    @property
    def span_503_s(self) -> float:
        return self.last_503_s - min(self.answers_503, default=0.0)


def cut_off_under_load(cluster: SystemCopy, node: Node, role: str, hold_s: float = 20) -> Cut:
    """`node` taken off the RabbitMQ network (alive, silent) for `hold_s` under 8 clients'
    inserts, then back; every request without a confirmation retried with its own id."""
    clients_on_it = sum(1 for c in cluster.management("connections") if c["node"] == node.name)
    restarts = restart_counts(cluster)
    load = Load(cluster, count=3000, clients=8)
    running = load.start()
    load.wait_for(300)
    heal = cut_node(cluster, node)
    cut = time.monotonic()
    try:
        time.sleep(hold_s)
    finally:
        heal()
    held_s = time.monotonic() - cut
    wait_until(lambda: rejoined(cluster, node), timeout=120, interval=1)
    rejoined_s = time.monotonic() - cut - held_s
    running.result(timeout=900)
    load.retry_unconfirmed()
    settle(cluster)
    answers_503 = [s.answered_at - cut for s in load.sent if s.first_status == 503]
    confirmed = [s.answered_at - cut for s in load.sent
                 if s.first_status in (201, 202) and 0 < s.answered_at - cut < held_s]
    table = record(account(cluster, load, f"{role} ({node.number} of {NODES}, {clients_on_it} client "
                                          f"connections on it) cut off {held_s:.0f} s under load "
                                          f"(503s until {max(answers_503, default=0):.1f} s after the "
                                          f"cut; a member again {rejoined_s:.1f} s after the heal)"))
    assert restart_counts(cluster) == restarts, "a compose container was restarted"
    return Cut(table, load, held_s, rejoined_s, answers_503, confirmed)


def assert_one_outcome_each(cut: Cut) -> None:
    """0 confirmed writes lost, none twice, and after a retry with its own X-Request-ID every
    request has exactly one outcome."""
    assert cut.table.lost == cut.table.duplicated == 0, cut.table.row()
    assert cut.table.statuses["other"] == 0, cut.table.row()
    assert [s for s in cut.load.sent if s.status not in (201, 202)] == [], cut.table.row()


def test_every_queue_is_replicated_on_every_node(cluster: SystemCopy) -> None:
    names = {node.name for node in cluster.nodes()}
    assert len(names) == NODES and running_nodes(cluster) == names
    members = queue_column(cluster, "members")
    for queue in (*QUEUES, *(f"{q}.dead" for q in QUEUES)):
        assert {m.strip() for m in members[queue].strip("[]").split(",")} == names, (queue, members[queue])


def test_cutting_off_the_node_that_leads_insert_record(cluster: SystemCopy) -> None:
    """The leader goes silent for 20 s: 503s for a while, then the majority serves; the node is
    a member again within 60 s of the heal, with nothing restarted.

    How long the 503s last (the aim: 10 s) is measured and printed, not asserted: it is a
    latency of a shared 2-core machine. It is mostly the time the majority takes to elect a
    new leader: 2.8-2.9 s with the failure detector polled every second (the cluster's
    RABBITMQ_NODE_DOWN_POLL_MS), 6.6-13.1 s at RabbitMQ's default of 5 s.
    """
    leader = node_named(cluster, queue_column(cluster, "leader")["insert_record"])
    cut = cut_off_under_load(cluster, leader, "RabbitMQ node leading insert_record")
    assert_one_outcome_each(cut)
    assert cut.last_503_s < cut.held_s, cut.table.row()
    assert [t for t in cut.confirmed_while_cut if t > cut.last_503_s], "the majority served nothing"
    assert cut.rejoined_s <= 60, cut.table.row()


def test_scaled_consumers_compete_and_write_once(cluster: SystemCopy) -> None:
    services = ("consumer_two", "consumer_four")
    up = ("up", "--detach", "--no-deps", "--no-recreate")  # the running instances stay as they are
    cluster.compose_with({}, *up, "--scale", "consumer_two=3", "--scale", "consumer_four=2", *services)
    try:
        instances = {s: cluster.containers(s) for s in services}
        assert [len(instances["consumer_two"]), len(instances["consumer_four"])] == [3, 2]

        def all_healthy() -> bool:
            ids = [*instances["consumer_two"], *instances["consumer_four"]]
            return all(docker("inspect", "-f", "{{.State.Health.Status}}", i).strip() == "healthy"
                       for i in ids)

        wait_until(all_healthy, timeout=90, interval=1)
        before = {i: handled(cluster, i, "insert_record") for i in instances["consumer_two"]}
        reads_before = {i: handled(cluster, i, "read_database") for i in instances["consumer_four"]}
        load = Load(cluster, count=600, clients=16)
        running = load.start()
        with requests.Session() as session:
            reads = [session.get(f"{cluster.base_url}/read_database", timeout=15).status_code
                     for _ in range(40)]
        running.result(timeout=300)
        settle(cluster)
        table = record(account(cluster, load,
                               "consumer_two x3 and consumer_four x2 competing, 3 RabbitMQ nodes"))
        inserts = {i: handled(cluster, i, "insert_record") - before[i] for i in instances["consumer_two"]}
        read = {i: handled(cluster, i, "read_database") - reads_before[i] for i in instances["consumer_four"]}
        print(f"\ninserts per consumer_two instance: {list(inserts.values())}; "
              f"reads per consumer_four instance: {list(read.values())}")
        assert reads == [200] * len(reads)
        assert table.lost == table.duplicated == 0, table.row()
        assert table.rows == table.statuses["201"] == load.count, table.row()
        assert all(n > 0 for n in inserts.values()), inserts
        assert all(n > 0 for n in read.values()), read
        assert sum(inserts.values()) >= load.count
    finally:
        cluster.compose_with({}, *up, "--scale", "consumer_two=1", "--scale", "consumer_four=1", *services)


def test_killing_the_node_that_leads_insert_record_loses_nothing(cluster: SystemCopy) -> None:
    leader = node_named(cluster, queue_column(cluster, "leader")["insert_record"])
    clients_on_it = sum(1 for c in cluster.management("connections") if c["node"] == leader.name)
    restarts = restart_counts(cluster)
    load = Load(cluster, count=3000, clients=16)
    running = load.start()
    load.wait_for(600)
    docker("kill", leader.container)  # SIGKILL: no goodbye to its clients or its peers
    killed = time.monotonic()
    wait_until(functools.partial(every_consumer_answers, cluster), timeout=60, interval=0.2)
    recovered_s = time.monotonic() - killed
    running.result(timeout=900)
    load.retry_unconfirmed()
    docker("start", leader.container)
    wait_until(lambda: rejoined(cluster, leader), timeout=120, interval=1)
    settle(cluster)
    confirmed = sum(1 for s in load.sent if s.first_status in (201, 202))
    table = record(account(cluster, load, f"RabbitMQ node leading insert_record, {clients_on_it} client "
                                          f"connections on it, killed ({confirmed} confirmed at once; "
                                          f"service back in {recovered_s:.1f} s)"))
    assert table.lost == table.duplicated == 0, table.row()
    assert table.statuses["other"] == 0, table.row()
    # After a retry with its own X-Request-ID, every request has exactly one outcome.
    assert [s for s in load.sent if s.status not in (201, 202)] == []
    assert recovered_s <= 10, table.row()
    assert restart_counts(cluster) == restarts, "a compose container was restarted"


def test_cutting_off_a_follower_no_client_uses(cluster: SystemCopy) -> None:
    """A node that leads no insert_record and serves no client goes silent: no 503, or under 2 s."""
    used = {c["node"] for c in wait_until(lambda: cluster.management("connections"), timeout=60)}
    leader = queue_column(cluster, "leader")["insert_record"]
    followers = [n for n in cluster.nodes() if n.name not in used and n.name != leader]
    assert followers, f"every follower has clients: {used}"
    cut = cut_off_under_load(cluster, followers[-1], "RabbitMQ node following insert_record")
    assert_one_outcome_each(cut)
    assert cut.span_503_s < 2, cut.table.row()
    assert cut.rejoined_s <= 60, cut.table.row()


def test_stopping_a_node_no_client_uses_is_not_an_error(cluster: SystemCopy) -> None:
    # The management API (node 1's) may still be starting after the test before.
    used = {c["node"] for c in wait_until(lambda: cluster.management("connections"), timeout=60)}
    idle = [node for node in cluster.nodes() if node.name not in used]
    assert idle, f"every node has clients: {used}"
    node = idle[-1]
    restarts = restart_counts(cluster)
    load = Load(cluster, count=1500, clients=16)
    running = load.start()
    load.wait_for(300)
    docker("stop", node.container)
    running.result(timeout=900)
    settle(cluster)
    table = record(account(cluster, load, f"RabbitMQ node without clients ({node.number} of {NODES}) "
                                          "stopped under load"))
    docker("start", node.container)
    wait_until(lambda: rejoined(cluster, node), timeout=120, interval=1)
    assert table.statuses["201"] == load.count, table.row()
    assert table.lost == table.duplicated == 0, table.row()
    assert restart_counts(cluster) == restarts, "a compose container was restarted"
