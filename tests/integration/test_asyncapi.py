"""The AsyncAPI document the producer serves (GET /asyncapi.json) against real traffic: messages
captured from the exchange, and real replies, each held to its kind's declared shapes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support import ROUTING_KEYS, SystemCopy, status_path, unique_srn


class Document:
    """The served document, and a validator of each channel's request and of its replies."""

    def __init__(self, served: dict[str, Any]) -> None:
        self.served = served
        self.registry = Registry().with_resource(
            "urn:asyncapi", Resource.from_contents(served, default_specification=DRAFT202012))

    def _payload(self, channel_message_ref: str) -> Draft202012Validator:
        """The payload schema of a channel's message, named by its `#/channels/...` $ref."""
        channel, _, message = channel_message_ref.removeprefix("#/channels/").partition("/messages/")
        component = self.served["channels"][channel]["messages"][message]["$ref"].removeprefix("#")
        return Draft202012Validator({"$ref": f"urn:asyncapi#{component}/payload"}, registry=self.registry)

    def operation(self, key: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [op for op in self.served["operations"].values()
                                       if op["channel"]["$ref"] == f"#/channels/{key}"]
        assert len(found) == 1, key
        return found[0]

    def request(self, key: str) -> Draft202012Validator:
        return self._payload(self.operation(key)["messages"][0]["$ref"])

    def reply(self, key: str, ok: bool) -> Draft202012Validator:
        """The kind's answer when `ok`, otherwise the error every kind may answer."""
        answer, error = self.operation(key)["reply"]["messages"]
        return self._payload((answer if ok else error)["$ref"])


@pytest.fixture(scope="module")
def document(stack: SystemCopy) -> Document:
    served = requests.get(f"{stack.base_url}/asyncapi.json", timeout=15)
    assert served.status_code == 200 and served.json()["asyncapi"] == "3.0.0"
    return Document(served.json())


@pytest.fixture
def channel(stack: SystemCopy) -> Iterator[Any]:
    with stack.amqp_channel() as opened:
        yield opened


def drain(channel: Any, queue: str, expected: int, timeout: float = 15) -> list[tuple[Any, Any, bytes]]:
    got: list[tuple[Any, Any, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        method, props, body = channel.basic_get(queue, auto_ack=True)  # our own tap: nobody else reads it
        if method is None:
            time.sleep(0.1)
        else:
            got.append((method, props, body))
    return got


def test_document_names_the_real_topology(stack: SystemCopy, document: Document) -> None:
    for key in ROUTING_KEYS:
        binding = document.served["channels"][key]["bindings"]["amqp"]["exchange"]
        assert (binding["name"], binding["type"]) == ("microservices", "direct")
    bound = {b["routing_key"] for b in stack.management("exchanges/%2F/microservices/bindings/source")}
    assert bound == set(ROUTING_KEYS)


def test_captured_requests_match_the_document(stack: SystemCopy, document: Document, channel: Any) -> None:
    tap = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    for key in ROUTING_KEYS:
        channel.queue_bind(tap, "microservices", key)
    base, srn = stack.base_url, unique_srn("Y")
    calls: list[Callable[[], requests.Response]] = [
        lambda: requests.get(f"{base}/health_check", params={"message": "tapped"}, timeout=15),
        lambda: requests.post(f"{base}/insert_record", json={"Name": "Tapped", "SRN": srn.lower(),
                                                              "Section": "T"}, timeout=15,
                              headers={"X-Request-ID": f"tap-{srn}"}),
        lambda: requests.post(f"{base}/update_record", data={"SRN": srn, "Section": "U"}, timeout=15),
        lambda: requests.get(f"{base}/read_database", timeout=15),
        lambda: requests.get(base + status_path(f"tap-{srn}", "insert_record",
                                                {"Name": "Tapped", "SRN": srn, "Section": "T"}), timeout=15),
        lambda: requests.get(f"{base}/delete_record", params={"SRN": srn}, timeout=15),
        lambda: requests.post(f"{base}/items", json={"sku": srn.lower(), "name": "Tap", "Quantity": 2},
                              timeout=15),
        lambda: requests.post(f"{base}/items/{srn}/stock", json={"Delta": -1}, timeout=15),
        lambda: requests.post(f"{base}/orders", json={"SKU": srn, "Quantity": 1}, timeout=15),
        lambda: requests.get(f"{base}/items", timeout=15),
        lambda: requests.get(f"{base}/orders", timeout=15),
    ]
    assert [call().status_code for call in calls] == [200, 201, 200, 200, 201, 200, 201, 200, 201, 200, 200]
    captured = drain(channel, tap, expected=len(calls))
    assert sorted(m.routing_key for m, _, _ in captured) == sorted(ROUTING_KEYS)
    # A correlation id of its own for every message, never the request id (the message_id).
    assert len({props.correlation_id for _, props, _ in captured}) == len(captured)
    for method, props, body in captured:
        payload = json.loads(body)
        errors = [e.message for e in document.request(method.routing_key).iter_errors(payload)]
        assert errors == [], (method.routing_key, payload)
        assert props.content_type == "application/json" and props.delivery_mode == 2
        # RabbitMQ hands the consumer the caller's own reply-to address (a suffix per channel).
        assert re.fullmatch("[0-9a-f]{32}", props.correlation_id) and props.correlation_id != props.message_id
        if method.routing_key == "insert_record":
            assert props.message_id == f"tap-{srn}"
        assert props.reply_to.startswith("amq.rabbitmq.reply-to.")


def test_real_replies_match_the_document(stack: SystemCopy, document: Document, channel: Any) -> None:
    replies = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    srn = unique_srn("Z")
    requests_sent = {
        "health_check": {"message": "asked directly", "sent_at": time.time()},
        "insert_record": {"Name": "Direct", "SRN": srn, "Section": "D"},
        "update_record": {"SRN": srn, "Name": "Directly updated"},
        "read_database": {"sent_at": time.time()},
        "request_status": {"request_id": "never-seen-before", "asked": "0" * 64, "sent_at": time.time()},
        "delete_record": {"SRN": srn},
        "create_item": {"SKU": srn, "Name": "Direct", "Quantity": 1},
        "adjust_stock": {"SKU": srn, "Delta": 2},
        "place_order": {"SKU": srn, "Quantity": 3},
        "read_items": {"sent_at": time.time()},
        "read_orders": {"sent_at": time.time()},
    }
    for key, payload in requests_sent.items():  # in this order: the insert precedes its delete
        assert document.request(key).is_valid(payload)
        channel.basic_publish("microservices", key, json.dumps(payload).encode(), pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=f"direct-{key}-{srn}",
            correlation_id=f"call-{key}", reply_to=replies))
        [(_, props, body)] = drain(channel, replies, expected=1)
        reply = json.loads(body)
        # An answer is its kind's declared reply; a refusal, the error every kind may answer.
        errors = [e.message for e in document.reply(key, ok=reply.get("ok") is True).iter_errors(reply)]
        assert errors == [], (key, reply)
        # The reply echoes the request's correlation id; its message_id is the request id.
        assert (props.correlation_id, props.message_id) == (f"call-{key}", f"direct-{key}-{srn}")
        assert reply["ok"] is (key != "request_status"), reply  # the unknown id is refused
