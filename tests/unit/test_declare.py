"""The topology job's main(): what it retries and what it stops at (no RabbitMQ)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pika.exceptions import ChannelClosedByBroker

from common import declare

ENV = {"RABBITMQ_HOST": "h", "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "p"}
CLUSTER_FORMING = ChannelClosedByBroker(
    541, "INTERNAL_ERROR - Cannot declare a queue 'queue 'insert_record' in vhost '/'' on node "
         "'rabbit@a': cluster_not_formed")


Log = list[dict[str, object]]


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             outcomes: list[Callable[[], list[str]]], wait_s: str = "60") -> tuple[int, Log]:
    """main() with each declare attempt doing the next of `outcomes`; its status and log lines."""
    for name, value in {**ENV, "TOPOLOGY_WAIT_S": wait_s}.items():
        monkeypatch.setenv(name, value)
    attempts = iter(outcomes)
    monkeypatch.setattr(declare, "declare_once", lambda _settings: next(attempts)())
    monkeypatch.setattr("time.sleep", lambda _s: None)
    status = declare.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return status, lines


def refused(exc: Exception) -> Callable[[], list[str]]:
    def attempt() -> list[str]:
        raise exc
    return attempt


def test_a_declare_refused_while_the_cluster_forms_is_tried_again(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = run_main(monkeypatch, capsys, [refused(CLUSTER_FORMING), refused(CLUSTER_FORMING),
                                                   lambda: []])
    assert status == 0
    assert [line["event"] for line in lines] == ["waiting_for_broker", "waiting_for_broker",
                                                 "topology_declared"]


def test_a_refusal_that_outlasts_the_wait_fails_the_job(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = run_main(monkeypatch, capsys, [refused(CLUSTER_FORMING)], wait_s="0")
    assert status == 1
    assert lines[-1]["event"] == "broker_unavailable" and "cluster_not_formed" in str(lines[-1]["error"])


def test_a_conflict_is_not_retried(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    conflict = declare.Conflict("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue "
                                "'insert_record' in vhost '/': received 'quorum' but current is 'classic'")
    status, lines = run_main(monkeypatch, capsys, [refused(conflict)])
    assert status == declare.CONFLICT_EXIT
    assert [line["event"] for line in lines] == ["topology_conflict"]
