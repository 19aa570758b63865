"""The pure parts of the throwaway copy (scripts/copies.py), of the bench's latency breakdown and of its
alternating rounds against the straightforward design."""

from __future__ import annotations

import pytest

from bench import system
from bench.breakdown import STEPS, joined
from bench.versus import OURS, ROLES, STRAIGHT, summary
from scripts.copies import copy_values
from scripts.stack import COOKIE, SECRETS, node_ports


def test_a_copy_has_its_own_names_ports_and_secrets() -> None:
    one, other = copy_values("benchunit"), copy_values("benchunit")
    assert one["COMPOSE_PROJECT_NAME"] == "benchunit"
    assert one["RABBITMQ_CONTAINER"] == "benchunit-rabbitmq"
    assert all(one[key] and one[key] != other[key] for key in SECRETS)
    assert COOKIE not in one
    assert node_ports(one) == [int(one["RABBITMQ_AMQP_PORT"])]


def test_a_cluster_copy_lists_every_node_and_has_a_cookie() -> None:
    values = copy_values("benchunit", nodes=3, base={"RABBITMQ_USER": "app", "RABBITMQ_NODES": "1"})
    assert values["RABBITMQ_USER"] == "app"
    assert len(node_ports(values)) == 3 and values[COOKIE]


def test_breakdown_joins_both_services_lines_by_request_id() -> None:
    producer = [
        {"event": "http_request", "path": "/insert_record", "request_id": "r1",
         "at": {"http_received": 10.0, "published": 10.001, "confirmed": 10.004, "reply_received": 10.006,
                "http_answered": 10.007}},
        {"event": "http_request", "path": "/insert_record", "request_id": "old",
         "at": {"http_received": 1.0, "http_answered": 1.1}},
        {"event": "http_request", "path": "/livez", "request_id": "r2", "at": {"http_received": 11.0}},
    ]
    consumer = [{"event": "message_handled", "queue": "insert_record", "request_id": "r1",
                 "at": {"consumer_received": 10.002, "committed": 10.004, "reply_sent": 10.005}}]
    [marks] = joined(producer, consumer, since=5.0)
    steps = [marks[end] - marks[start] for start, end, _ in STEPS]
    assert all(step > 0 for step in steps)
    assert abs(sum(steps) - 0.007) < 1e-9


def round_row(design: str, number: int, per_s: float, cpu: float, p50: float,
              floor: float) -> dict[str, float | str]:
    return {"design": design, "round": number, "inserts_per_s": per_s, "cpu_ms": cpu,
            **{f"cpu_{role}": cpu / 4 for role in ROLES}, "docker_daemons_ms": 0.2, "p99_ms_top": 9.0,
            "p50_ms": p50, "cpu_ms_at_1": p50, "livez_p50_ms": 0.4, "floor_ms": floor, "canary_ms": 60.0,
            "errors": 0, "busy_pct": 90, "steal_pct": 1.0}


def test_each_target_is_the_median_of_the_rounds_own_ratios() -> None:
    rows = [round_row(OURS, 1, 600, 1.4, 3.2, 2.0), round_row(STRAIGHT, 1, 500, 2.0, 3.0, 2.0),
            # the machine at half speed: both designs' figures drop, their ratio does not
            round_row(STRAIGHT, 2, 250, 4.0, 6.0, 4.0), round_row(OURS, 2, 300, 2.8, 6.4, 4.0),
            # noise on one side only: a ratio of the medians (550 / 300) would take it for a gain
            round_row(OURS, 3, 550, 1.5, 3.3, 2.0), round_row(STRAIGHT, 3, 300, 3.5, 5.0, 2.0)]
    figures, targets = summary(rows, top=32)
    g1, g2, g3, errors = (t["ratio"] for t in targets)
    assert (g1, g2, g3, errors) == (1.6, 0.7, 1.2, 0)
    assert targets[2]["range"] == "1.2 (1.2-1.83)"
    throughput = next(f for f in figures if f["figure"] == "inserts/s @32")
    assert throughput[OURS] == "550 (300-600)" and throughput[STRAIGHT] == "300 (250-500)"
    canary = next(f for f in figures if f["figure"].startswith("CPU canary"))
    assert canary[OURS] == "60 (60-60)"


def test_the_canary_times_its_fixed_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "CANARY_LOOPS", 1000)
    small = system.canary_ms(repeat=3)
    monkeypatch.setattr(system, "CANARY_LOOPS", 300_000)
    large = system.canary_ms(repeat=3)
    assert small >= 0 and small * 10 < large
