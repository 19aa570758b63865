"""The one declaration of the message kinds (common/topology.py's KINDS) and what must follow it.

What is made from KINDS at run time (the queues, the producer's routes and
success statuses, each service's queue permission, the tests' lists) is
checked here through the running code (the AsyncAPI document too); what is
written by hand (the OpenAPI document's written-out routes, the Postman
collection, the contract's route tables, docker-compose.yml) is checked
against KINDS, and a failure names the kind each one lacks.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from common import accounts, topology
from common.config import Settings
from common.core import Handler
from producer import asyncapi, producer
from producer.openapi import document
from tests.integration.test_postman import COLLECTION, _path_of, _pattern, _requests

ROOT = Path(__file__).resolve().parents[2]
ENV = {"RABBITMQ_HOST": "broker", "RABBITMQ_USER": "app", "RABBITMQ_PASSWORD": "pw"}


def compose_consumers() -> dict[str, str]:
    """Each compose service built as a consumer, and its handler module (its build args)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    found = {}
    for name, service in services.items():
        build = service.get("build") or {}
        args = build.get("args") or {} if isinstance(build, dict) else {}
        if build.get("target") == "consumer":
            found[name] = f"{args['SERVICE']}.{args['MODULE']}"
    return found


def handlers(module: str) -> list[Handler]:
    """The handlers of a consumer module."""
    return [value for value in vars(importlib.import_module(module)).values() if isinstance(value, Handler)]


def same_shape(path: str) -> str:
    """A path with each parameter, however written (`<sku>`, `{sku}`, `<id>`), as `<>`."""
    return re.sub(r"<[^>]*>|\{[^}]*\}", "<>", path)


@pytest.fixture
def client() -> FlaskClient:
    settings = Settings.from_env("producer", needs_db=False, env=ENV)
    return producer.create_app(settings, object()).test_client()  # type: ignore[arg-type]


def test_keys_are_unique_and_each_route_is_declared_once() -> None:
    keys = [kind.key for kind in topology.KINDS]
    routes = [(kind.method, kind.path) for kind in topology.KINDS]
    assert len(set(keys)) == len(keys) and len(set(routes)) == len(routes)
    assert all(kind.method in {"GET", "POST"} and kind.path.startswith("/") for kind in topology.KINDS)
    assert all(kind.write for kind in topology.KINDS if kind.status != 200)


def test_the_producer_serves_each_kind_at_its_declared_route(client: FlaskClient) -> None:
    rules = {(rule.rule, method): rule.endpoint for rule in client.application.url_map.iter_rules()
             for method in rule.methods or ()}
    for kind in topology.KINDS:
        view = producer.VIEWS[kind.key]
        assert rules.get((kind.path, kind.method)) == f"api.{view.__name__}", kind
    declared = {kind.key: kind.status for kind in topology.KINDS if kind.write}
    assert declared == producer.SUCCESS_STATUS


def test_a_kind_declared_without_a_route_stops_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer, "ROUTING_KEYS", (*topology.ROUTING_KEYS, "count_records"))
    settings = Settings.from_env("producer", needs_db=False, env=ENV)
    with pytest.raises(RuntimeError, match="no route serves count_records"):
        producer.create_app(settings, object())  # type: ignore[arg-type]


def test_each_consumer_in_compose_serves_exactly_its_declared_kinds() -> None:
    consumers = compose_consumers()
    assert set(consumers) == set(topology.CONSUMERS), "compose's consumers and KINDS' services differ"
    for service, module in consumers.items():
        served = {handler.routing_key for handler in handlers(module)}
        assert served == set(topology.keys_of(service)), service
        for handler in handlers(module):  # a declared write's answer is kept in the ledger, a read's is not
            assert handler.ledger == topology.KIND[handler.routing_key].write, handler.routing_key
        assert re.fullmatch(accounts.rabbitmq_permissions(service)[2], topology.keys_of(service)[0])


def test_a_write_with_a_model_is_parsed_by_that_model() -> None:
    """The kind's `body` is what its consumer takes off its queue (its handler's parse), and
    what the producer's declared view cleans a body with: one model, named once."""
    parsers = {handler.routing_key: handler.parse
               for module in compose_consumers().values() for handler in handlers(module)}
    modelled = [kind for kind in topology.KINDS if kind.body is not None]
    assert modelled, "no kind names its model"
    for kind in modelled:
        assert kind.body is not None
        assert parsers[kind.key] == kind.body.clean, kind.key


def test_the_openapi_document_has_each_kind_s_route() -> None:
    paths = {(same_shape(path), method.upper())
             for path, item in document()["paths"].items() for method in item}
    missing = [kind.key for kind in topology.KINDS if (same_shape(kind.path), kind.method) not in paths]
    assert not missing, f"producer/openapi.py has no route for: {', '.join(missing)}"


def _target(ref: str, document: dict[str, Any]) -> Any:
    """What a local $ref names in `document`."""
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_asyncapi_document_has_each_kind_s_channel_request_and_reply() -> None:
    """Made from KINDS: a channel, a send operation, the request as its consumer takes it and
    the answer as the kind declares it, for every kind; every $ref names something."""
    made = asyncapi.document()
    assert set(made["channels"]) == {*topology.ROUTING_KEYS, "reply"}
    for ref in _refs(made):
        _target(ref, made)  # a KeyError names a dangling reference
    for kind in topology.KINDS:
        channel = f"#/channels/{kind.key}"
        [operation] = [op for op in made["operations"].values() if op["channel"]["$ref"] == channel]
        assert operation["action"] == "send"
        request = _target(operation["messages"][0]["$ref"], made)
        assert _target(request["$ref"], made)["payload"] == kind.message_schema()
        replies = [_target(_target(m["$ref"], made)["$ref"], made) for m in operation["reply"]["messages"]]
        assert replies[0]["payload"]["properties"]["result"] == kind.reply
        assert replies[1]["payload"]["properties"]["ok"] == {"const": False}
        binding = made["channels"][kind.key]["bindings"]["amqp"]["exchange"]
        assert (binding["name"], binding["type"]) == (topology.EXCHANGE, "direct")
    for kind in topology.KINDS:  # a write's payload on the bus is its model, as cleaned
        if kind.body is not None:
            assert kind.message_schema() == kind.body.cleaned_schema()
        elif not kind.write:  # a read expires: it carries the time it was sent
            assert "sent_at" in kind.message_schema()["required"]


def test_the_producer_serves_the_asyncapi_document(client: FlaskClient) -> None:
    served = client.get("/asyncapi.json")
    assert served.status_code == 200 and served.get_json() == json.loads(json.dumps(asyncapi.document()))


def test_the_postman_collection_has_a_request_for_each_kind() -> None:
    collection: dict[str, Any] = json.loads(COLLECTION.read_text(encoding="utf-8"))
    calls = {(r["method"], _path_of(r)) for r in _requests(collection["item"])}
    missing = [kind.key for kind in topology.KINDS if not any(
        method == kind.method and _pattern(same_shape(kind.path).replace("<>", "{parameter}")).fullmatch(path)
        for method, path in calls)]
    assert not missing, f"{COLLECTION.name} has no request for: {', '.join(missing)}"


def test_the_contract_s_route_tables_name_each_kind_with_its_route_and_service() -> None:
    rows = [line for line in (ROOT / "docs" / "contract.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")]
    missing = [kind.key for kind in topology.KINDS if not any(
        f"`{kind.method} {same_shape(kind.path)}" in same_shape(row)
        and f"`{kind.key}`, {kind.service}" in row for row in rows)]
    assert not missing, f"docs/contract.md has no table row for: {', '.join(missing)}"
