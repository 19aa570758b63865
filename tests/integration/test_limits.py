"""Limits: a work queue holds at most QUEUE_MAX_LENGTH ready messages; a full one answers 503 at once."""

from __future__ import annotations

import concurrent.futures
import functools
import json
import time
from collections.abc import Callable

import requests

from common.topology import DEAD_QUEUE_POLICY, WORK_QUEUE_POLICY, work_queue_policy
from scripts.stack import ROOT, parse_env_file
from tests.support import ROUTING_KEYS, SystemCopy, docker, healthy, unique_srn, wait_until

Api = Callable[..., requests.Response]


def policy_of_work_queues(stack: SystemCopy) -> dict[str, object]:
    policies = json.loads(stack.rabbitmqctl("list_policies", "--formatter", "json"))
    [ours] = [p for p in policies if p["name"] == WORK_QUEUE_POLICY]
    return dict(ours)


def set_max_length(stack: SystemCopy, policy: dict[str, object], length: int) -> None:
    definition = {**json.loads(str(policy["definition"])), "max-length": length}
    stack.rabbitmqctl("set_policy", "--apply-to", "queues", WORK_QUEUE_POLICY, str(policy["pattern"]),
                      json.dumps(definition))


def answered(api: Api, location: str) -> bool:
    return api("GET", location).status_code == 201


def test_every_work_queue_is_bounded_and_no_dead_letter_queue_is(stack: SystemCopy) -> None:
    default = stack.values.get("QUEUE_MAX_LENGTH") or parse_env_file(ROOT / ".env.example")[
        "QUEUE_MAX_LENGTH"]
    policy = policy_of_work_queues(stack)
    assert json.loads(str(policy["definition"])) == work_queue_policy(max_length=int(default))
    listed = stack.rabbitmqctl("list_queues", "name", "policy", "--no-table-headers")
    applied = {fields[0]: fields[1:] for fields in (line.split() for line in listed.splitlines()) if fields}
    assert {key: applied[key] for key in ROUTING_KEYS} == {key: [WORK_QUEUE_POLICY] for key in ROUTING_KEYS}
    # The .dead queues: no maximum length (no dead letter is dropped), and no delivery limit.
    assert {f"{key}.dead": applied[f"{key}.dead"] for key in ROUTING_KEYS} == {
        f"{key}.dead": [DEAD_QUEUE_POLICY] for key in ROUTING_KEYS}
    policies = json.loads(stack.rabbitmqctl("list_policies", "--formatter", "json"))
    [dead] = [p for p in policies if p["name"] == DEAD_QUEUE_POLICY]
    assert json.loads(str(dead["definition"])) == {"delivery-limit": -1}


def test_a_full_queue_answers_503_at_once_and_loses_nothing_it_took(stack: SystemCopy, api: Api) -> None:
    """With nobody consuming, inserts are taken (202) until the queue is full; then the next
    is refused at once. A quorum queue notices it is full after the message that fills it,
    so it takes up to one more than its maximum (RabbitMQ's documented overshoot)."""
    policy = policy_of_work_queues(stack)
    consumer = stack.container("consumer_two")
    limit = 2
    srns = [unique_srn("Q") for _ in range(limit + 2)]
    set_max_length(stack, policy, limit)  # as an operator would, on the running queues
    docker("stop", "--time", "10", consumer)
    try:
        def insert(srn: str) -> requests.Response:
            return api("POST", "/insert_record", json={"Name": "Queued", "SRN": srn, "Section": "Q"})

        with concurrent.futures.ThreadPoolExecutor(limit) as pool:  # they wait for a consumer: 202 each
            accepted = list(pool.map(insert, srns[:limit]))
        taken = srns[:limit]
        assert [r.status_code for r in accepted] == [202] * limit, [r.text for r in accepted]
        refused, took = None, 0.0
        for srn in srns[limit:]:
            started = time.monotonic()
            answer = insert(srn)
            took = time.monotonic() - started
            if answer.status_code != 202:
                refused = (srn, answer)
                break
            accepted.append(answer)
            taken.append(srn)
        assert refused is not None, "a full queue took every message"
        srn_refused, full = refused
        assert full.status_code == 503 and full.json()["error"] == "broker_unavailable", full.text
        assert took < 2, took  # at once, not after REQUEST_TIMEOUT_S
        assert len(accepted) <= limit + 1
    finally:
        set_max_length(stack, policy, json.loads(str(policy["definition"]))["max-length"])
        docker("start", consumer)
    wait_until(lambda: healthy(stack, "consumer_two"), timeout=60)
    for location in [r.headers["Location"] for r in accepted]:
        wait_until(functools.partial(answered, api, location), timeout=60)
    stored = stack.sql("SELECT srn FROM students WHERE srn IN ({}) ORDER BY srn".format(
        ", ".join(f"'{srn}'" for srn in srns)))
    assert stored == sorted([srn] for srn in taken)  # every one taken is written, the refused one never
    assert srn_refused not in taken
