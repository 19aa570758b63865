"""The consumers' core on its own: what a message becomes, with no RabbitMQ and no loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.core import Message, Read, Write, answer, expired, parse
from common.messages import CONTENT_TYPE, Invalid, Refused

pytestmark = pytest.mark.unit


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return dict(payload)


def refuse(message: Message, cursor: Any) -> Any:
    cursor.execute("INSERT INTO t VALUES (1)")
    raise Refused("not_found", "refused after writing")


class FakeCursor:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, statement: str, params: Any = None) -> None:
        self.statements.append(statement)


READ = Read("read_database", echo, lambda message, cursor: message.payload)
WRITE = Write("insert_record", echo, refuse)


def test_parse_checks_the_envelope_and_keeps_the_send_time() -> None:
    body = json.dumps({"SRN": "S1", "sent_at": 100.5}).encode()
    assert parse(READ, "req-1", CONTENT_TYPE, body) == {"SRN": "S1", "sent_at": 100.5}
    for request_id, content_type, raw in (("req-1", "text/plain", body), ("bad id!", CONTENT_TYPE, body),
                                          ("req-1", CONTENT_TYPE, b"{not json")):
        with pytest.raises(Invalid) as caught:
            parse(READ, request_id, content_type, raw)
        assert caught.value.code == "invalid_message"


def test_only_a_read_expires_and_only_once_nobody_waits() -> None:
    old, fresh = {"sent_at": 1000.0}, {"sent_at": 1009.0}
    assert expired(READ, old, timeout_s=5, now=1010.0)
    assert not expired(READ, fresh, timeout_s=5, now=1010.0)
    assert not expired(WRITE, old, timeout_s=5, now=1010.0)  # a confirmed write is carried out
    assert not expired(READ, {}, timeout_s=5, now=1010.0)  # no send time: not known to be old


def test_a_write_that_refuses_after_writing_is_undone_to_its_savepoint() -> None:
    cursor: Any = FakeCursor()
    reply = answer(WRITE, "req-1", {"SRN": "S1", "sent_at": 1.0}, cursor)
    assert reply == {"ok": False, "error": "not_found", "message": "refused after writing"}
    assert cursor.statements == ["SAVEPOINT message", "INSERT INTO t VALUES (1)",
                                 "ROLLBACK TO SAVEPOINT message"]


def test_a_read_gets_its_payload_without_the_send_time_and_no_savepoint() -> None:
    cursor: Any = FakeCursor()
    reply = answer(READ, "req-1", {"SRN": "S1", "sent_at": 1.0}, cursor)
    assert reply == {"ok": True, "result": {"SRN": "S1"}}
    assert cursor.statements == []
