"""Faults injected with the Docker CLI under a bounded load: no confirmed write is lost.

Each test drives inserts at the test copy, injects its fault, lets the system
settle and asks the database what became of every request. The table of each
run is printed at the end of the session and kept in tests/artifacts/faults.md.
The last test stops the whole copy, so it stays last.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator

import pika
import pytest
import requests

from scripts.stack import amqp_login
from tests.faults.load import OTHER_REPORTS, Load, Table, account, record, settle
from tests.support import (
    SystemCopy,
    cut_broker_path,
    docker,
    every_consumer_answers,
    healthy,
    pause,
    restart_counts,
    status_path,
    unique_srn,
    wait_until,
)

CONSUMERS = ("consumer_one", "consumer_two", "consumer_three", "consumer_four")
QUEUES = ("health_check", "insert_record", "delete_record", "read_database", "request_status")


def assert_nothing_lost(table: Table, *, every_request_answered: bool = True) -> None:
    assert table.lost == 0, table.row()
    assert table.duplicated == 0, table.row()
    if every_request_answered:  # the producer stayed up: no connection error, no odd status
        assert table.statuses["other"] == 0, table.row()


@pytest.fixture
def no_restarts(stack: SystemCopy) -> Iterator[None]:
    before = restart_counts(stack)
    yield
    assert restart_counts(stack) == before, "a container was restarted"


def test_consumer_two_killed_mid_load(stack: SystemCopy) -> None:
    load = Load(stack, count=5000, clients=16)
    running = load.start()
    load.wait_for(1000)
    docker("kill", stack.container("consumer_two"))  # SIGKILL: no goodbye, no ack
    time.sleep(2)
    docker("start", stack.container("consumer_two"))
    running.result(timeout=900)
    settle(stack)
    table = record(account(stack, load, "consumer_two killed (SIGKILL) mid-load, started again"))
    assert_nothing_lost(table)
    assert table.statuses["503"] == table.statuses["504"] == table.present_but_503 == 0, table.row()
    assert table.statuses["201"] + table.statuses["202"] == load.count


@pytest.mark.usefixtures("no_restarts")
def test_rabbitmq_restarted_mid_load(stack: SystemCopy) -> None:
    load = Load(stack, count=2000, clients=16)
    running = load.start()
    load.wait_for(500)
    rabbitmq = stack.values["RABBITMQ_CONTAINER"]
    docker("stop", rabbitmq)
    docker("start", rabbitmq)
    wait_until(lambda: amqp_login("127.0.0.1", stack.amqp_port, stack.values["RABBITMQ_USER"],
                                  stack.values["RABBITMQ_PASSWORD"]) == "", timeout=120)
    back = time.monotonic()
    wait_until(functools.partial(every_consumer_answers, stack), timeout=60, interval=0.2)
    recovered_s = time.monotonic() - back
    running.result(timeout=900)
    refused = [s for s in load.sent if s.first_status == 503]
    assert refused, "the restart did not refuse anything"
    assert max(s.seconds for s in refused) <= 2, "a request hung while RabbitMQ was down"
    load.retry_unconfirmed()
    settle(stack)
    table = record(account(stack, load, f"RabbitMQ restarted mid-load (back in {recovered_s:.1f} s)"))
    assert recovered_s <= 10
    assert_nothing_lost(table)
    # After a retry with its own X-Request-ID, every request has exactly one outcome.
    assert [s for s in load.sent if s.status not in (201, 202)] == []


@pytest.mark.usefixtures("no_restarts")
def test_database_paused_under_load(stack: SystemCopy) -> None:
    dead_before = stack.queue_depth("insert_record.dead")
    load = Load(stack, count=1500, clients=16)
    running = load.start()
    load.wait_for(300)
    db = stack.container("db")
    pause(db)
    time.sleep(10)
    docker("unpause", db)
    running.result(timeout=900)
    settle(stack)
    table = record(account(stack, load, "MySQL paused 10 s under load"))
    assert_nothing_lost(table)
    assert table.statuses["503"] == table.statuses["504"] == table.present_but_503 == 0, table.row()
    assert table.statuses["202"] > 0, "the pause did not make anything wait"
    for item in [s for s in load.sent if s.status == 202]:
        stored = requests.get(stack.base_url + status_path(item.request_id, "insert_record", {
            "Name": f"Load {item.srn}", "SRN": item.srn, "Section": "L"}), timeout=15)
        assert stored.status_code == 201 and stored.json()["record"]["SRN"] == item.srn
    assert stack.queue_depth("insert_record.dead") == dead_before


@pytest.mark.usefixtures("no_restarts")
def test_malformed_messages_are_dead_lettered_while_serving(stack: SystemCopy) -> None:
    before = {q: stack.queue_depth(f"{q}.dead") for q in QUEUES}
    variants: list[tuple[bytes, str | None, bool]] = [  # body, content type, with a message id
        (b"{not json", "application/json", True),
        (json.dumps({"Name": 7, "SRN": ["x"], "Section": None, "message": 5, "request_id": 3}).encode(),
         "application/json", True),
        (b"{}", "application/json", False),
        (json.dumps({"Name": "x" * 65536}).encode(), "application/json", True),
        (json.dumps({"Name": "A", "SRN": "S", "Section": "B"}).encode(), "text/plain", True),
    ]
    served: list[int] = []
    with stack.amqp_channel() as channel:
        for n in range(1000):
            for queue in QUEUES:
                body, content_type, with_id = variants[n % len(variants)]
                channel.basic_publish("microservices", queue, body, pika.BasicProperties(
                    content_type=content_type, delivery_mode=2,
                    message_id=f"poison-{queue}-{n}" if with_id else None), mandatory=True)
            if n % 100 == 0:  # normal requests are served in the middle of it
                served.append(requests.get(f"{stack.base_url}/health_check", params={"message": str(n)},
                                           timeout=15).status_code)

    def all_dead_lettered() -> bool:
        depths = stack.queue_depths()
        return all(depths[f"{q}.dead"] >= before[q] + 1000 for q in QUEUES)

    wait_until(all_dead_lettered, timeout=180, interval=1)
    srn = unique_srn("A")
    after = requests.post(f"{stack.base_url}/insert_record",
                          json={"Name": "After poison", "SRN": srn, "Section": "A"}, timeout=15)
    dead = {q: stack.queue_depth(f"{q}.dead") - before[q] for q in QUEUES}
    report = ("| queue | poisoned | dead-lettered |\n|---|---|---|\n"
              + "".join(f"| {q} | 1000 | {dead[q]} |\n" for q in QUEUES)
              + f"\nnormal requests during the poison: {served.count(200)}/{len(served)} answered 200; "
              f"insert after it: {after.status_code}")
    OTHER_REPORTS.append(report)
    print("\n" + report)
    assert served == [200] * 10 and after.status_code == 201
    assert dead == {q: 1000 for q in QUEUES}
    for service in CONSUMERS:
        assert healthy(stack, service)


@pytest.mark.usefixtures("no_restarts")
def test_rabbitmq_paused_under_load(stack: SystemCopy) -> None:
    timeout_s = float(stack.values["REQUEST_TIMEOUT_S"])
    load = Load(stack, count=1500, clients=16)
    running = load.start()
    load.wait_for(300)
    rabbitmq = stack.values["RABBITMQ_CONTAINER"]
    pause(rabbitmq)
    time.sleep(10)
    docker("unpause", rabbitmq)
    running.result(timeout=900)
    load.retry_unconfirmed()
    settle(stack)
    table = record(account(stack, load, "RabbitMQ paused 10 s under load"))
    assert table.slowest_s <= timeout_s + 1, table.row()
    assert_nothing_lost(table)
    assert [s for s in load.sent if s.status not in (201, 202)] == []


@pytest.mark.parametrize("service", ["producer", "consumer_two"])
def test_a_service_cut_off_from_rabbitmq_alone_under_load(stack: SystemCopy, service: str,
                                                          no_restarts: None) -> None:
    """The path from `service` to RabbitMQ goes silent for 15 s (its packets dropped, MySQL still
    reachable): requests wait no longer than their timeout, nothing confirmed is lost or done
    twice, every 503 retried with its id ends in one outcome, and the service is back by itself."""
    timeout_s = float(stack.values["REQUEST_TIMEOUT_S"])
    load = Load(stack, count=2000, clients=16)
    running = load.start()
    load.wait_for(300)
    heal = cut_broker_path(stack, service)
    try:
        time.sleep(15)
    finally:
        heal()
    healed = time.monotonic()
    wait_until(functools.partial(every_consumer_answers, stack), timeout=60, interval=0.5)
    back_s = time.monotonic() - healed
    running.result(timeout=900)
    load.retry_unconfirmed()
    settle(stack)
    table = record(account(stack, load, f"{service} cut off from RabbitMQ alone 15 s under load "
                                        f"(its packets dropped; back {back_s:.1f} s after the heal)"))
    assert table.slowest_s <= timeout_s + 1, table.row()
    assert_nothing_lost(table)
    assert [s for s in load.sent if s.status not in (201, 202)] == []


def test_a_message_redelivered_after_commit_writes_once(stack: SystemCopy) -> None:
    srn = unique_srn("X")
    with stack.amqp_channel() as channel:
        for _ in range(2):  # what a redelivery after a crash between commit and ack looks like
            channel.basic_publish("microservices", "insert_record",
                                  json.dumps({"Name": "Twice", "SRN": srn, "Section": "A"}).encode(),
                                  pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                       message_id=f"twice-{srn}"), mandatory=True)
    settle(stack)
    rows = stack.sql(f"SELECT COUNT(*) FROM students WHERE srn = '{srn}'")[0][0]
    ledger = stack.sql(f"SELECT COUNT(*) FROM requests WHERE request_id = 'twice-{srn}'")[0][0]
    report = ("| same insert message published | rows written | ledger entries |\n|---|---|---|\n"
              f"| 2 | {rows} | {ledger} |")
    OTHER_REPORTS.append(report)
    print("\n" + report)
    assert (rows, ledger) == ("1", "1")


def test_sigterm_under_load_then_down_and_up(stack: SystemCopy) -> None:
    load = Load(stack, count=2000, clients=16)
    running = load.start()
    load.wait_for(300)
    started = time.monotonic()
    stack.compose("stop")  # SIGTERM to every service, 10 s grace each
    stopped_in = time.monotonic() - started
    states = [json.loads(docker("inspect", c))[0] for c in stack.containers()]
    codes = {state["Name"]: state["State"]["ExitCode"] for state in states}
    running.result(timeout=900)
    stack.run_script("down")
    stack.run_script("up")
    settle(stack)
    table = record(account(stack, load, f"SIGTERM to all (stopped in {stopped_in:.1f} s), down, up"))
    assert not [name for name, code in codes.items() if code == 137], codes  # none had to be killed
    # Once the producer has stopped, the rest of the load finds nobody listening ("other").
    assert_nothing_lost(table, every_request_answered=False)
    assert table.statuses["201"] + table.statuses["202"] > 0
