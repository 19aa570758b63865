"""Prometheus metrics of the producer, each consumer and RabbitMQ move by what was done."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pika
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SystemCopy, json_of, unique_srn, wait_until

Api = Callable[..., requests.Response]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def producer_metrics(stack: SystemCopy) -> Samples:
    return parse(requests.get(f"{stack.base_url}/metrics", timeout=10).text)


def consumer_metrics(stack: SystemCopy, service: str) -> Samples:
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())"
    out = subprocess.run(["docker", "exec", stack.container(service), "python", "-c", script],
                         capture_output=True, text=True, check=True).stdout
    return parse(out)


def test_counters_move_by_what_was_done(stack: SystemCopy, api: Api) -> None:
    producer_before = producer_metrics(stack)
    two_before, one_before = consumer_metrics(stack, "consumer_two"), consumer_metrics(stack, "consumer_one")

    for n in range(3):
        assert api("GET", "/health_check", params={"message": f"m{n}"}).status_code == 200
    srn = unique_srn("M")
    record = {"Name": "Metric", "SRN": srn, "Section": "A"}
    assert api("POST", "/insert_record", json=record).status_code == 201
    assert api("POST", "/insert_record", json=record).status_code == 409
    assert api("POST", "/insert_record", json={"Name": ""}).status_code == 400  # never published
    with stack.amqp_channel() as channel:
        channel.basic_publish("microservices", "health_check", json.dumps({"nonsense": 1}).encode(),
                              pika.BasicProperties(content_type="application/json", message_id=unique_srn()))

    def one_dead_lettered() -> bool:
        after = consumer_metrics(stack, "consumer_one")
        return value(after, "consumer_dead_lettered_total", queue="health_check") == \
            value(one_before, "consumer_dead_lettered_total", queue="health_check") + 1

    wait_until(one_dead_lettered, timeout=30)

    producer_after = producer_metrics(stack)
    def moved(name: str, **labels: str) -> float:
        return value(producer_after, name, **labels) - value(producer_before, name, **labels)

    assert moved("http_requests_total", route="/health_check", method="GET", status="200") == 3
    assert moved("http_requests_total", route="/insert_record", method="POST", status="201") == 1
    assert moved("http_requests_total", route="/insert_record", method="POST", status="409") == 1
    assert moved("http_requests_total", route="/insert_record", method="POST", status="400") == 1
    assert moved("http_request_duration_seconds_count", route="/health_check") == 3

    two_after, one_after = consumer_metrics(stack, "consumer_two"), consumer_metrics(stack, "consumer_one")
    for outcome, count in (("ok", 1), ("refused", 1)):
        assert value(two_after, "consumer_messages_total", queue="insert_record", outcome=outcome) - \
            value(two_before, "consumer_messages_total", queue="insert_record", outcome=outcome) == count
    assert value(one_after, "consumer_messages_total", queue="health_check", outcome="ok") - \
        value(one_before, "consumer_messages_total", queue="health_check", outcome="ok") == 3
    assert value(one_after, "consumer_messages_total", queue="health_check", outcome="invalid") - \
        value(one_before, "consumer_messages_total", queue="health_check", outcome="invalid") == 1
    assert value(two_after, "consumer_handling_seconds_count", queue="insert_record") - \
        value(two_before, "consumer_handling_seconds_count", queue="insert_record") == 2


def test_rabbitmq_serves_prometheus_metrics(stack: SystemCopy) -> None:
    port = stack.values["RABBITMQ_PROMETHEUS_PORT"]
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert "rabbitmq_queue_messages" in response.text or "rabbitmq_queues" in response.text
    assert json_of(requests.get(f"{stack.base_url}/livez", timeout=10)) == {"status": "alive"}
