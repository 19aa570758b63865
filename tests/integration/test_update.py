"""The contract's Update section: POST /update_record, served by consumer_five."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pika
import pytest
import requests

from tests.support import SystemCopy, check_refusal, json_of, unique_srn, wait_until

Api = Callable[..., requests.Response]

BAD_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"json": {"SRN": "S"}}, 400, "invalid_record"),  # nothing to change
    ({"json": {"Name": "Only a name"}}, 400, "invalid_record"),
    ({"json": {"SRN": "S", "Name": ""}}, 400, "invalid_record"),
    ({"json": {"SRN": "S", "Section": "S" * 17}}, 400, "invalid_record"),
    ({"json": {"SRN": "S", "Name": 5}}, 400, "invalid_record"),
    ({"json": {"SRN": "S", "Name": "N", "Age": 20}}, 400, "invalid_record"),
    ({"data": {"SRN": ["S", "T"], "Name": "N"}}, 400, "invalid_record"),
    ({"json": "SRN=S"}, 400, "malformed_body"),
    ({"data": "SRN=S&Name=N", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"data": "x" * (16 * 1024 + 1), "headers": {"Content-Type": "application/json"}}, 413,
     "body_too_large"),
]


@pytest.mark.parametrize(("kwargs", "status", "code"), BAD_REQUESTS,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(BAD_REQUESTS)])
def test_every_refusal_is_json_and_changes_nothing(
    stack: SystemCopy, api: Api, kwargs: dict[str, Any], status: int, code: str
) -> None:
    check_refusal(stack, lambda: api("POST", "/update_record", **kwargs), status, code)


def insert(api: Api) -> str:
    srn = unique_srn("U")
    response = api("POST", "/insert_record", json={"Name": "Before", "SRN": srn, "Section": "A"})
    assert response.status_code == 201
    return srn


def stored(stack: SystemCopy, srn: str) -> list[list[str]]:
    return stack.sql(f"SELECT name, section FROM students WHERE srn = '{srn}'")


@pytest.mark.parametrize("body_format", ["json", "data", "files"])
def test_update_changes_only_what_it_names(stack: SystemCopy, api: Api, body_format: str) -> None:
    srn = insert(api)
    if body_format == "files":  # multipart/form-data: fields as (None, value) parts
        response = api("POST", "/update_record", files={"srn": (None, srn.lower()), "Section": (None, " B ")})
    else:
        response = api("POST", "/update_record", **{body_format: {"srn": srn.lower(), "Section": " B "}})
    assert response.status_code == 200, response.text
    assert response.json() == {"record": {"Name": "Before", "SRN": srn, "Section": "B"}}
    assert stored(stack, srn) == [["Before", "B"]]

    both = api("POST", "/update_record", json={"SRN": srn, "Name": "After", "Section": "C"})
    assert both.json() == {"record": {"Name": "After", "SRN": srn, "Section": "C"}}
    assert stored(stack, srn) == [["After", "C"]]
    assert api("GET", "/read_database").json()["records"].count(both.json()["record"]) == 1


def test_an_unknown_srn_is_404_and_changes_nothing(stack: SystemCopy, api: Api) -> None:
    before = stack.snapshot()
    response = api("POST", "/update_record", json={"SRN": unique_srn("NONE"), "Name": "Nobody"})
    assert response.status_code == 404 and json_of(response)["error"] == "not_found"
    after = stack.snapshot()
    assert after[0] == before[0] and after[2:] == before[2:]  # only the ledger holds the answer


def test_a_retried_update_is_done_once_and_its_answer_is_stored(stack: SystemCopy, api: Api) -> None:
    srn, request_id = insert(api), f"update-{unique_srn()}"
    change = {"SRN": srn, "Name": "Retried"}
    first = api("POST", "/update_record", json=change, headers={"X-Request-ID": request_id})
    # Someone else changes the record in between; the retry must not undo that.
    api("POST", "/update_record", json={"SRN": srn, "Name": "Later"})
    again = api("POST", "/update_record", json=change, headers={"X-Request-ID": request_id})
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert stored(stack, srn) == [["Later", "A"]]
    assert api("GET", first.headers["Content-Location"]).json() == first.json()
    conflict = api("POST", "/update_record", json={**change, "Name": "Other"},
                   headers={"X-Request-ID": request_id})
    assert conflict.status_code == 409 and json_of(conflict)["error"] == "request_id_conflict"


def test_a_redelivered_update_acts_once(stack: SystemCopy, api: Api) -> None:
    srn, message_id = insert(api), f"twice-{unique_srn()}"
    with stack.amqp_channel() as channel:
        channel.basic_publish("microservices", "update_record",
                              json.dumps({"SRN": srn, "Section": "R"}).encode(),
                              pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                   message_id=message_id), mandatory=True)
        wait_until(lambda: stored(stack, srn) == [["Before", "R"]])
        api("POST", "/update_record", json={"SRN": srn, "Section": "Z"})
        channel.basic_publish("microservices", "update_record",  # the same message again
                              json.dumps({"SRN": srn, "Section": "R"}).encode(),
                              pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                   message_id=message_id), mandatory=True)
    wait_until(lambda: stack.queue_depth("update_record") == 0)
    assert stored(stack, srn) == [["Before", "Z"]]

