"""The queues' tunables are a policy: changed on a running system, they apply at once; a queue
in another form is one clear error at declare, and an earlier version's queue keeps working."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from common import declare, topology
from tests.support import ROUTING_KEYS, SystemCopy, docker, healthy, unique_srn, wait_until


def queue_info(stack: SystemCopy, column: str) -> dict[str, dict[str, Any]]:
    """One rabbitmqctl list_queues column of tables (arguments, a policy's definition) of every
    queue, by name: rabbitmqctl's JSON gives a table as [key, (type,) value] lists."""
    listed = json.loads(stack.rabbitmqctl("list_queues", "name", column, "--formatter", "json"))
    return {entry["name"]: {pair[0]: pair[-1] for pair in entry[column]} for entry in listed}


def started_at(stack: SystemCopy, service: str) -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", stack.container(service)).strip()


def take_dead_letter(channel: Any, queue: str, message_id: str) -> Any:
    """The properties of the message `message_id` in <queue>.dead, taken off it (None: not there
    yet); the other dead letters, left by other tests, go back as they were."""
    others, found = [], None
    while found is None and (got := channel.basic_get(topology.dead_letter_queue(queue)))[0] is not None:
        method, props, _ = got
        if props.message_id == message_id:
            channel.basic_ack(method.delivery_tag)
            found = props
        else:
            others.append(method.delivery_tag)
    for tag in others:
        channel.basic_nack(tag, requeue=True)
    return found


@pytest.fixture
def admin(stack: SystemCopy) -> Iterator[pika.BlockingConnection]:
    """A connection as RabbitMQ's administrator; the probe queues it declares are deleted after."""
    credentials = pika.PlainCredentials(stack.values["RABBITMQ_USER"], stack.values["RABBITMQ_PASSWORD"])
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", stack.amqp_port,
                                                                   credentials=credentials))
    try:
        yield connection
    finally:
        channel = connection.channel()
        for name in ("conflict_probe", "legacy_probe"):
            for queue in (name, topology.dead_letter_queue(name)):
                channel.queue_delete(queue)
        connection.close()


def test_queues_carry_only_their_type_and_a_changed_limit_reaches_them_running(stack: SystemCopy) -> None:
    arguments = queue_info(stack, "arguments")
    for key in ROUTING_KEYS:
        assert arguments[key] == {"x-queue-type": "quorum"}, key
    effective = queue_info(stack, "effective_policy_definition")
    assert all(effective[key] == topology.work_queue_policy(max_length=effective[key]["max-length"])
               for key in ROUTING_KEYS), effective
    before = {service: started_at(stack, service) for service in ("producer", "consumer_one", "consumer_two")}
    probe = f"delivery-limit-{unique_srn()}"
    try:
        stack.script("policies", settings={"DELIVERY_LIMIT": "2"})
        changed = queue_info(stack, "effective_policy_definition")
        assert {key: changed[key]["delivery-limit"] for key in ROUTING_KEYS} == {
            key: 2 for key in ROUTING_KEYS}

        # It works, not only shows: a message returned twice goes to <queue>.dead.
        docker("stop", "--time", "10", stack.container("consumer_one"))
        with stack.amqp_channel() as channel:
            channel.basic_publish(topology.EXCHANGE, topology.HEALTH_CHECK, b'{"message": "limit"}',
                                  pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                       message_id=probe), mandatory=True)
            deliveries = 0
            while (got := channel.basic_get(topology.HEALTH_CHECK))[0] is not None:
                deliveries += 1
                assert deliveries <= 3, "the policy's delivery limit was not applied"
                channel.basic_nack(got[0].delivery_tag, requeue=True)
            props = wait_until(lambda: take_dead_letter(channel, topology.HEALTH_CHECK, probe), timeout=10)
            assert props.headers["x-first-death-reason"] in ("delivery_limit", b"delivery_limit")
    finally:
        stack.script("policies")  # the copy's own settings again
        docker("start", stack.container("consumer_one"))
    assert {key: queue_info(stack, "effective_policy_definition")[key]["delivery-limit"]
            for key in ROUTING_KEYS} == {key: topology.DELIVERY_LIMIT for key in ROUTING_KEYS}
    wait_until(lambda: healthy(stack, "consumer_one"), timeout=60)
    # Applied to the running queues: nothing else was restarted for it.
    assert {service: started_at(stack, service) for service in ("producer", "consumer_two")} == {
        service: before[service] for service in ("producer", "consumer_two")}


def test_a_queue_in_another_form_is_one_clear_error_within_seconds(
        stack: SystemCopy, admin: pika.BlockingConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    admin.channel().queue_declare("conflict_probe", durable=True, arguments={"x-queue-type": "classic"})
    started = time.monotonic()
    with pytest.raises(declare.Conflict) as raised:
        declare.declare(admin, ("conflict_probe",))
    assert time.monotonic() - started < 5
    conflict = raised.value
    assert (conflict.kind, conflict.name, conflict.argument) == ("queue", "conflict_probe", "x-queue-type")
    assert "rabbitmqctl delete_queue conflict_probe" in conflict.fix()

    # The topology job: the error logged once, with the fix, and no retry (exit status 3).
    settings = {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(stack.amqp_port), "TOPOLOGY_WAIT_S": "5",
                **{name: stack.values[name] for name in ("RABBITMQ_USER", "RABBITMQ_PASSWORD")}}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RABBITMQ_PORTS", raising=False)
    monkeypatch.setattr(topology, "ROUTING_KEYS", ("conflict_probe",))
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    started = time.monotonic()
    try:
        status = declare.main()
    finally:
        logging.getLogger().handlers.clear()
    assert status == declare.CONFLICT_EXIT and time.monotonic() - started < 10
    [line] = [json.loads(text) for text in out.getvalue().splitlines() if "topology_conflict" in text]
    assert (line["level"], line["queue"], line["argument"]) == ("ERROR", "conflict_probe", "x-queue-type")
    assert "rabbitmqctl delete_queue conflict_probe" in line["fix"]


def test_a_queue_an_earlier_version_declared_with_its_tunables_is_kept_working(
        stack: SystemCopy, admin: pika.BlockingConnection) -> None:
    admin.channel().queue_declare("legacy_probe", durable=True,
                                  arguments=topology.legacy_queue_arguments("legacy_probe"))
    assert declare.declare(admin, ("legacy_probe",)) == ["legacy_probe"]
    # Declared again (every `make up`), still no error; and it carries messages.
    assert declare.declare(admin, ("legacy_probe",)) == ["legacy_probe"]
    channel = admin.channel()
    channel.confirm_delivery()
    channel.basic_publish(topology.EXCHANGE, "legacy_probe", b"{}", mandatory=True)
    assert wait_until(lambda: channel.basic_get("legacy_probe", auto_ack=True)[0], timeout=10)
