"""The operator's commands of scripts/stack.py, on the test copy."""

from __future__ import annotations

import functools
import json
import subprocess
import time

import pika

from tests.support import CONSUMERS, ROUTING_KEYS, Stack, healthy, unique_srn, wait_until


def test_status_shows_health_queues_and_bindings(stack: Stack) -> None:
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


def test_dead_letters_are_listed_in_place_and_replayed_once(stack: Stack) -> None:
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


def test_every_log_line_of_our_services_is_one_json_object(stack: Stack) -> None:
    for service in ("producer", *CONSUMERS, "migrate"):
        logs = subprocess.run(["docker", "logs", stack.container(service)], capture_output=True, text=True,
                              check=True)
        lines = [line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
        assert lines, service
        for line in lines:
            entry = json.loads(line)  # fails on any line that is not JSON
            assert {"time", "level", "service", "request_id", "event"} <= set(entry), (service, line)
            assert entry["service"] == service, (service, line)
