"""The assignment's checklist, against the real containers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import requests

from tests.support import CONSUMERS, ROUTING_KEYS, SystemCopy, json_of, unique_srn

# migrate and topology are one-shot jobs: they end with exit code 0.
JOBS = {"migrate", "topology"}
SERVICES = {"db", *JOBS, "producer", *CONSUMERS}
Api = Callable[..., requests.Response]


def inspect(container: str) -> dict[str, Any]:
    result = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout)[0])


def test_every_container_is_up_and_healthy(stack: SystemCopy) -> None:
    seen = {}
    for container in stack.containers():
        info = inspect(container)
        service = info["Config"]["Labels"]["com.docker.compose.service"]
        state = info["State"]
        seen[service] = "exited 0" if service in JOBS and state["Status"] == "exited" \
            and state["ExitCode"] == 0 else state.get("Health", {}).get("Status")
    assert set(seen) == SERVICES
    assert seen == {s: "exited 0" if s in JOBS else "healthy" for s in SERVICES}
    assert inspect(stack.values["RABBITMQ_CONTAINER"])["State"]["Running"]


def test_two_networks_and_the_gateway_path(stack: SystemCopy) -> None:
    rabbit_net = stack.values["RABBITMQ_NETWORK"]
    rabbit = inspect(stack.values["RABBITMQ_CONTAINER"])
    assert set(rabbit["NetworkSettings"]["Networks"]) == {rabbit_net}

    compose_networks = set()
    for container in stack.containers():
        compose_networks |= set(inspect(container)["NetworkSettings"]["Networks"])
    assert len(compose_networks) == 1 and rabbit_net not in compose_networks

    network = subprocess.run(["docker", "network", "inspect", rabbit_net], capture_output=True,
                             text=True, check=True)
    gateway = json.loads(network.stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    producer_env = inspect(stack.container("producer"))["Config"]["Env"]
    assert f"RABBITMQ_HOST={gateway}" in producer_env

    # Every service holds its connection to RabbitMQ, all of them through that address.
    names = {c["client_properties"].get("connection_name") for c in stack.management("connections")}
    assert {"producer", *CONSUMERS} <= names


def test_exchange_queues_and_bindings_as_rabbitmq_reports_them(stack: SystemCopy) -> None:
    exchange = stack.management("exchanges/%2F/microservices")
    assert (exchange["type"], exchange["durable"]) == ("direct", True)
    bindings = {(b["destination"], b["routing_key"])
                for b in stack.management("exchanges/%2F/microservices/bindings/source")}
    assert bindings == {(key, key) for key in ROUTING_KEYS}
    for key in ROUTING_KEYS:
        queue = stack.management(f"queues/%2F/{key}")
        assert queue["durable"] is True
        assert queue["arguments"]["x-queue-type"] == "quorum"
        # What an operator may tune is the queues' policy, in effect on every work queue.
        assert queue["policy"] == "work-queue-limits"
        assert queue["effective_policy_definition"]["delivery-limit"] == 5
        assert queue["effective_policy_definition"]["dead-letter-exchange"] == "microservices.dlx"
        dead = stack.management(f"queues/%2F/{key}.dead")
        assert dead["durable"] is True and dead["arguments"]["x-queue-type"] == "quorum"
    # Consumer counts from rabbitmqctl, which asks the queues themselves: the management
    # API's figure is a statistic refreshed every few seconds and reads 0 just after a start.
    out = stack.rabbitmqctl("list_queues", "name", "consumers", "--no-table-headers")
    consumers = {name: int(count) for name, count in (line.split() for line in out.splitlines())}
    assert {key: consumers[key] >= 1 for key in ROUTING_KEYS} == {key: True for key in ROUTING_KEYS}


def test_health_check_round_trip(api: Api) -> None:
    response = api("GET", "/health_check", params={"message": "is anyone there?"})
    assert response.status_code == 200
    assert json_of(response) == {"status": "ok", "message": "is anyone there?", "consumer": "consumer_one"}


def test_insert_in_every_body_format_then_read_then_delete(api: Api) -> None:
    json_srn, form_srn, multipart_srn = unique_srn("J"), unique_srn("F"), unique_srn("M")
    inserts = [
        api("POST", "/insert_record", json={"Name": "Json Person", "SRN": json_srn, "Section": "A"}),
        api("POST", "/insert_record", data={"Name": "Form Person", "SRN": form_srn, "Section": "B"}),
        api("POST", "/insert_record", files={"Name": (None, "Multipart Person"),
                                              "SRN": (None, multipart_srn), "Section": (None, "C")}),
    ]
    assert [r.status_code for r in inserts] == [201, 201, 201], [r.text for r in inserts]
    assert json_of(inserts[1]) == {"record": {"Name": "Form Person", "SRN": form_srn, "Section": "B"}}

    records = json_of(api("GET", "/read_database"))
    stored = {r["SRN"]: r for r in records["records"]}
    assert records["count"] == len(records["records"])
    assert [r["SRN"] for r in records["records"]] == sorted(stored)
    assert stored[multipart_srn] == {"Name": "Multipart Person", "SRN": multipart_srn, "Section": "C"}
    assert {json_srn, form_srn, multipart_srn} <= set(stored)

    deleted = api("GET", "/delete_record", params={"SRN": json_srn.lower()})
    assert deleted.status_code == 200
    assert json_of(deleted) == {"deleted": {"Name": "Json Person", "SRN": json_srn, "Section": "A"}}
    after = {r["SRN"] for r in json_of(api("GET", "/read_database"))["records"]}
    assert json_srn not in after and form_srn in after

    again = api("GET", "/delete_record", params={"SRN": json_srn})
    assert again.status_code == 404 and json_of(again)["error"] == "not_found"
