"""The pure parts of the throwaway copy (scripts/copies.py) and of the bench's latency breakdown."""

from __future__ import annotations

from bench.breakdown import STEPS, joined
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
