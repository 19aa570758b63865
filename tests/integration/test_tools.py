"""The operator's commands of scripts/stack.py, on the test copy."""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import subprocess
import threading
import time

import pika
import pytest

from common import accounts, amqp, deadletters
from common.config import AmqpSettings
from tests.support import CONSUMERS, ROUTING_KEYS, SystemCopy, healthy, unique_srn, wait_until


def test_status_shows_health_queues_and_bindings(stack: SystemCopy) -> None:
    for service in ("producer", *CONSUMERS, "db"):
        wait_until(functools.partial(healthy, stack, service), timeout=60)  # whatever ran before
    out = stack.script("status")
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    for service in ("producer", *CONSUMERS, "db"):
        assert lines[service] == ["running", "healthy"], out
    assert lines["migrate"] == ["exited", "(0)", "-"]
    for queue in ROUTING_KEYS:
        assert lines[queue][1] == "1", out  # one consumer each
        assert lines[f"{queue}.dead"][1] == "0", out
    bindings = [line.split() for line in out.splitlines() if line.startswith("microservices ")]
    assert sorted(bindings) == sorted(["microservices", key, key] for key in ROUTING_KEYS), out


def test_dead_letters_are_listed_in_place_and_replayed_once(stack: SystemCopy) -> None:
    dead = "delete_record.dead"
    before = stack.queue_depth(dead)
    ids = [f"poison-{unique_srn()}" for _ in range(3)]
    with stack.amqp_channel() as channel:
        for message_id in ids:
            channel.basic_publish("microservices", "delete_record", b'{"SRN": ["not", "an", "srn"]}',
                                  pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                       message_id=message_id), mandatory=True)
    wait_until(lambda: stack.queue_depth(dead) == before + 3)

    listing = stack.script("dead-letters")
    for message_id in ids:
        assert f"{message_id}  rejected  " in listing, listing
    assert f"{dead}: {before + 3} message(s)" in listing
    assert stack.queue_depth(dead) == before + 3  # listed, not taken
    assert stack.script("dead-letters").count("poison-") >= 3  # and again: still there

    # Nothing was fixed, so the replayed messages come back to the .dead queue: none lost, none doubled.
    replayed = stack.script("replay-dead", "delete_record")
    assert f"{dead}: replayed {before + 3} message(s) to delete_record" in replayed
    wait_until(lambda: stack.queue_depth(dead) == before + 3 and stack.queue_depth("delete_record") == 0)
    time.sleep(1)  # nothing more arrives
    assert stack.queue_depth(dead) == before + 3
    final = stack.script("dead-letters", "delete_record")
    assert all(final.count(message_id) == 1 for message_id in ids), final


def test_every_log_line_of_our_services_is_one_json_object(stack: SystemCopy) -> None:
    for service in ("producer", *CONSUMERS, "migrate"):
        logs = subprocess.run(["docker", "logs", stack.container(service)], capture_output=True, text=True,
                              check=True)
        lines = [line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
        assert lines, service
        for line in lines:
            entry = json.loads(line)  # fails on any line that is not JSON
            assert {"time", "level", "service", "request_id", "event"} <= set(entry), (service, line)
            assert entry["service"] == service, (service, line)


def test_dead_letters_survive_being_looked_at(stack: SystemCopy, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Listed 50 times, listed while new dead letters arrive, and listings killed more often
    than RabbitMQ 4's default delivery limit (20): none lost, none doubled. A listing killed
    between a copy's confirm and the original's ack leaves that one message twice, no more."""
    key, dead = "update_record", "update_record.dead"
    operator = {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(stack.amqp_port), "RABBITMQ_PORTS": "",
                "RABBITMQ_USER": accounts.OPERATOR,
                "RABBITMQ_PASSWORD": stack.values[accounts.password_setting(accounts.OPERATOR)]}
    for name, value in operator.items():
        monkeypatch.setenv(name, value)  # as the dead-letter tools run: the operator's account

    def poison(ids: list[str], pause_s: float = 0.0) -> None:
        with stack.amqp_channel() as channel:
            for message_id in ids:
                channel.basic_publish("microservices", key, b'{"SRN": ["not", "an", "srn"]}',
                                      pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                           message_id=message_id), mandatory=True)
                time.sleep(pause_s)

    def listed() -> collections.Counter[str]:
        capsys.readouterr()
        assert deadletters.main(["list", key]) == 0
        return collections.Counter(re.findall(r"^  (poison-\S+)", capsys.readouterr().out, re.MULTILINE))

    before = stack.queue_depth(dead)
    ids = [f"poison-{unique_srn()}" for _ in range(5)]
    poison(ids)
    wait_until(lambda: stack.queue_depth(dead) == before + 5)
    for _ in range(50):
        assert {i: n for i, n in listed().items() if i in ids} == dict.fromkeys(ids, 1)

    more = [f"poison-{unique_srn()}" for _ in range(5)]
    arriving = threading.Thread(target=poison, args=(more, 0.2))
    arriving.start()
    while arriving.is_alive():
        seen = listed()
        assert {i: seen[i] for i in ids} == dict.fromkeys(ids, 1), seen
        assert all(seen[i] <= 1 for i in more), seen  # those that have arrived yet, once each
    wait_until(lambda: stack.queue_depth(dead) == before + 10)
    assert {i: n for i, n in listed().items() if i in ids + more} == dict.fromkeys(ids + more, 1)

    settings = AmqpSettings.from_env(os.environ)
    for _ in range(25):  # killed after taking everything, before moving anything
        connection = pika.BlockingConnection(amqp.parameters(settings, "killed-listing"))
        assert len(deadletters.take_all(connection.channel(), dead)) == before + 10
        connection.close()  # what a kill does: every unacknowledged message goes back,
        wait_until(lambda: stack.queue_depths("messages_ready")[dead] == before + 10)  # once seen
    assert {i: n for i, n in listed().items() if i in ids + more} == dict.fromkeys(ids + more, 1)

    connection = pika.BlockingConnection(amqp.parameters(settings, "killed-listing"))
    channel = connection.channel()
    channel.confirm_delivery()
    taken = deadletters.take_all(channel, dead)
    first = taken[0][1].message_id
    channel.basic_publish("", dead, taken[0][2], taken[0][1], mandatory=True)  # its copy, confirmed ...
    connection.close()  # ... and killed before the original's ack
    wait_until(lambda: stack.queue_depths("messages_ready")[dead] == before + 11)
    seen = listed()
    assert seen[first] == 2 and all(seen[i] == 1 for i in ids + more if i != first), seen
    assert stack.queue_depth(dead) == before + 11
