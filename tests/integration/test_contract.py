"""docs/contract.md's promises: every refusal changes nothing, ids, retries, dead letters, idling."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from typing import Any

import pika
import pytest
import requests

from tests.support import HEARTBEAT_S, SystemCopy, check_refusal, docker, json_of, unique_srn, wait_until

Api = Callable[..., requests.Response]
BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("GET", "/health_check", {}, 400, "missing_parameter"),
    ("GET", "/health_check", {"params": {"message": ""}}, 400, "missing_parameter"),
    ("GET", "/health_check", {"params": {"message": "x" * 257}}, 400, "invalid_parameter"),
    ("GET", "/delete_record", {}, 400, "missing_parameter"),
    ("GET", "/delete_record", {"params": {"SRN": "no spaces allowed"}}, 400, "invalid_parameter"),
    ("POST", "/insert_record", {"json": {"Name": "N", "SRN": "S"}}, 400, "invalid_record"),
    ("POST", "/insert_record", {"json": {"Name": "", "SRN": "S", "Section": "A"}}, 400, "invalid_record"),
    ("POST", "/insert_record", {"json": {"Name": "N" * 101, "SRN": "S", "Section": "A"}}, 400,
     "invalid_record"),
    ("POST", "/insert_record", {"json": {"Name": "N", "SRN": 7, "Section": "A"}}, 400, "invalid_record"),
    ("POST", "/insert_record", {"json": {"Name": "N", "SRN": "S", "Section": "A", "Sectoin": "B"}}, 400,
     "invalid_record"),
    ("POST", "/insert_record", {"json": [{"Name": "N", "SRN": "S", "Section": "A"}]}, 400, "malformed_body"),
    ("POST", "/insert_record", {"data": "{broken", "headers": {"Content-Type": "application/json"}}, 400,
     "malformed_body"),
    ("POST", "/insert_record", {"data": "Name=N&SRN=S", "headers": {"Content-Type": "text/plain"}}, 415,
     "unsupported_media_type"),
    ("POST", "/insert_record", {"data": "x" * (16 * 1024 + 1),
                                "headers": {"Content-Type": "application/json"}}, 413, "body_too_large"),
    ("GET", "/insert_record", {}, 405, "method_not_allowed"),
    ("GET", "/no_such_route", {}, 404, "not_found"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_REQUESTS,
                         ids=[f"{c[1]}-{c[4]}-{i}" for i, c in enumerate(BAD_REQUESTS)])
def test_every_refusal_is_json_and_changes_nothing(
    stack: SystemCopy, api: Api, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    check_refusal(stack, lambda: api(method, path, **kwargs), status, code)


def test_duplicate_srn_is_409_and_keeps_the_first_record(stack: SystemCopy, api: Api) -> None:
    srn = unique_srn("D")
    first = api("POST", "/insert_record", json={"Name": "First", "SRN": srn, "Section": "A"})
    assert first.status_code == 201
    before = stack.snapshot()[0]
    second = api("POST", "/insert_record", json={"Name": "Second", "SRN": srn.lower(), "Section": "B"})
    assert second.status_code == 409 and json_of(second)["error"] == "duplicate_srn"
    assert stack.snapshot()[0] == before


def test_request_id_follows_the_request_and_a_retry_is_done_once(stack: SystemCopy, api: Api) -> None:
    srn, request_id = unique_srn("I"), f"retry-{unique_srn()}"
    record = {"Name": "Retried", "SRN": srn, "Section": "A"}
    first = api("POST", "/insert_record", json=record, headers={"X-Request-ID": request_id})
    again = api("POST", "/insert_record", json=record, headers={"X-Request-ID": request_id})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert first.headers["X-Request-ID"] == request_id
    rows = stack.sql(f"SELECT COUNT(*), MIN(request_id) FROM students WHERE srn = '{srn}'")
    assert rows == [["1", request_id]]

    other = api("POST", "/insert_record", json={**record, "Name": "Someone else"},
                headers={"X-Request-ID": request_id})
    assert other.status_code == 409 and json_of(other)["error"] == "request_id_conflict"

    deleted = api("GET", "/delete_record", params={"SRN": srn}, headers={"X-Request-ID": f"del-{request_id}"})
    retried = api("GET", "/delete_record", params={"SRN": srn}, headers={"X-Request-ID": f"del-{request_id}"})
    assert deleted.status_code == retried.status_code == 200 and deleted.json() == retried.json()

    # The same id is on the producer's log line and on the consumer's.
    producer_logs = stack.compose("logs", "--no-color", "producer")
    consumer_logs = stack.compose("logs", "--no-color", "consumer_two")
    assert request_id in producer_logs and request_id in consumer_logs


def test_a_malformed_message_is_dead_lettered_and_the_consumer_keeps_serving(stack: SystemCopy,
                                                                            api: Api) -> None:
    poison = [
        (b"{not json", "application/json"),
        (json.dumps({"Name": 1, "SRN": [], "Section": None}).encode(), "application/json"),
        (json.dumps({"Name": "A", "SRN": "S", "Section": "B"}).encode(), "text/plain"),
    ]
    before = stack.queue_depth("insert_record.dead")
    with stack.amqp_channel() as channel:
        for number, (body, content_type) in enumerate(poison):
            channel.basic_publish(
                "microservices", "insert_record", body,
                pika.BasicProperties(content_type=content_type, delivery_mode=2,
                                     message_id=f"poison-{number}-{unique_srn()}"),
                mandatory=True,
            )
    wait_until(lambda: stack.queue_depth("insert_record.dead") >= before + len(poison))
    srn = unique_srn("P")
    response = api("POST", "/insert_record", json={"Name": "Still Served", "SRN": srn, "Section": "A"})
    assert response.status_code == 201
    assert docker("inspect", "-f", "{{.State.Status}}", stack.container("consumer_two")).strip() == "running"


def burst(api: Api, size: int) -> list[int]:
    def one(number: int) -> int:
        if number % 2:
            return api("GET", "/health_check", params={"message": f"burst {number}"}).status_code
        return api("GET", "/read_database").status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=size) as pool:
        return list(pool.map(one, range(size)))


def test_first_requests_after_an_idle_spell_succeed(api: Api) -> None:
    assert burst(api, 24) == [200] * 24
    # Several heartbeat timeouts of silence: a connection that did not answer
    # heartbeats has been closed by the broker by now.
    time.sleep(HEARTBEAT_S * 4)
    assert burst(api, 24) == [200] * 24
