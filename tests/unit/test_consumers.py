"""Each consumer's handler, and the shared loop's ledger, over an in-memory table."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import mysql.connector
import pika.exceptions
import pytest
from prometheus_client import REGISTRY

from common import logs
from common.config import Settings
from common.consumer import LEDGER_CONFLICT_RETRIES, Delivery, Worker
from common.core import Handler, Message
from common.db import DatabaseAway, LedgerConflict
from common.messages import ERASED, Invalid, Refused, fingerprint
from common.testing import InMemoryQueue, RecordingChannel
from common.topology import DELETE_RECORD, INSERT_RECORD
from consumer_five import update
from consumer_four import read
from consumer_one import healthcheck
from consumer_three import deletion
from consumer_two import insertion
from inventory_items import items
from inventory_orders import orders


class FakeCursor:
    """Understands exactly the statements the consumers and the ledger run."""

    def __init__(self, students: dict[str, tuple[str, str, str]] | None = None) -> None:
        self.students = students if students is not None else {}
        self.requests: dict[str, tuple[str, str, str]] = {}
        self.subjects: dict[str, str | None] = {}  # request id -> the SRN its answer is about
        self.result: list[tuple[Any, ...]] = []
        self.ledger_writes = 0
        self.savepoint: dict[str, tuple[str, str, str]] = {}
        self.statements: list[str] = []  # every statement run, in order: the round trips
        self.commits = 0  # COMMITs sent with the statements (db.Together)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.statements.append(sql)
        if "; " in sql:  # one round trip of several statements (db.Together): each in turn
            for statement in sql.split("; "):
                count = statement.count("%s")
                self.run(statement, tuple(params[:count]))
                params = params[count:]
            return
        self.run(sql, params)

    def nextset(self) -> None:
        return None

    def run(self, sql: str, params: tuple[Any, ...]) -> None:
        verb = " ".join(sql.split()[:4])
        if sql == "COMMIT":
            self.commits += 1
        elif sql.startswith("INSERT INTO requests"):  # a multi-row INSERT: five values a row
            self.executemany(sql, [params[i:i + 5] for i in range(0, len(params), 5)], recorded=True)
        elif sql.startswith("INSERT INTO students"):
            srn, name, section, _rid = params
            if srn in self.students:
                raise mysql.connector.IntegrityError(msg="dup", errno=1062)
            self.students[srn] = (name, srn, section)
        elif sql.startswith("SELECT name, srn, section FROM students WHERE srn > %s ORDER BY srn LIMIT %s"):
            after, limit = params
            self.result = [self.students[k] for k in sorted(self.students) if k > after][:limit]
        elif sql.startswith("SELECT name, srn, section FROM students WHERE"):
            row = self.students.get(params[0])
            self.result = [row] if row else []
        elif sql.startswith("SELECT name, srn, section FROM students ORDER BY srn LIMIT %s"):
            self.result = [self.students[k] for k in sorted(self.students)][: params[0]]
        elif sql.startswith("DELETE FROM students"):
            self.students.pop(params[0], None)
        elif sql == "SAVEPOINT message":
            self.savepoint = dict(self.students)
        elif sql == "ROLLBACK TO SAVEPOINT message":
            self.students = dict(self.savepoint)
        elif sql.startswith("SELECT request_id, routing_key, fingerprint, reply FROM requests"):
            assert sql.count("%s") == len(params)
            found = [rid for rid in dict.fromkeys(params) if rid in self.requests]
            self.result = [(rid, *self.requests[rid]) for rid in found]
        elif sql == "SELECT request_id, reply FROM requests WHERE subject = %s FOR UPDATE":
            self.result = [(rid, self.requests[rid][2])
                           for rid, srn in self.subjects.items() if srn == params[0]]
        else:
            raise AssertionError(f"unexpected SQL: {verb}")

    def executemany(self, sql: str, rows: list[tuple[Any, ...]], recorded: bool = False) -> None:
        if not recorded:
            self.statements.append(sql)
        if sql == "UPDATE requests SET reply = %s, subject = NULL WHERE request_id = %s":
            for reply, rid in rows:
                self.requests[rid] = (*self.requests[rid][:2], reply)
                self.subjects[rid] = None
            return
        assert sql.startswith("INSERT INTO requests")
        self.ledger_writes += 1
        ids = [row[0] for row in rows]
        if len(set(ids)) < len(ids) or set(ids) & set(self.requests):  # one statement: all or nothing
            raise mysql.connector.IntegrityError(msg="dup", errno=1062)
        self.requests.update({rid: (key, fingerprint, reply) for rid, key, fingerprint, reply, _ in rows})
        self.subjects.update({row[0]: row[4] for row in rows})

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.result.pop(0) if self.result else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self.result = self.result, []
        return rows


def fake_db(students: dict[str, tuple[str, str, str]] | None = None) -> Any:
    return FakeCursor(students)


def ledger_reads(db: FakeCursor) -> int:
    return sum(sql.startswith("SELECT request_id") for sql in db.statements)


def test_health_check_echoes_the_message() -> None:
    payload = healthcheck.parse({"message": "ping"})
    assert healthcheck.handle(Message("r1", payload), None) == {
        "status": "ok", "message": "ping", "consumer": "consumer_one",
    }
    with pytest.raises(Invalid):
        healthcheck.parse({})


def test_insert_then_duplicate() -> None:
    db = fake_db()
    record = insertion.HANDLER.parse({"Name": "A", "SRN": "s1", "Section": "B"})
    expected = {"record": {"Name": "A", "SRN": "S1", "Section": "B"}}
    assert insertion.handle(Message("r1", record), db) == expected
    with pytest.raises(Refused) as caught:
        insertion.handle(Message("r2", record), db)
    assert caught.value.code == "duplicate_srn"


def test_insert_rejects_an_invalid_message() -> None:
    with pytest.raises(Invalid):
        insertion.HANDLER.parse({"Name": "A", "SRN": ["not", "text"], "Section": "B"})


def test_delete_answers_with_the_deleted_record() -> None:
    db = fake_db({"S1": ("A", "S1", "B")})
    assert deletion.handle(Message("r1", deletion.parse({"SRN": "s1"})), db) == {
        "deleted": {"Name": "A", "SRN": "S1", "Section": "B"}
    }
    assert db.students == {}
    with pytest.raises(Refused) as caught:
        deletion.handle(Message("r2", {"SRN": "S1"}), db)
    assert caught.value.code == "not_found"


def test_read_orders_by_srn() -> None:
    db = fake_db({"B": ("n2", "B", "x"), "A": ("n1", "A", "y")})
    result = read.HANDLER.handle(Message("r1", read.HANDLER.parse({})), db)
    assert [r["SRN"] for r in result["records"]] == ["A", "B"] and result["count"] == 2
    assert result["next_after"] is None
    with pytest.raises(Invalid):
        read.HANDLER.parse({"unexpected": 1})


def test_read_pages_walk_every_row_once_in_order() -> None:
    students = {f"S{i:03d}": (f"n{i}", f"S{i:03d}", "x") for i in range(7)}
    db, seen, after = fake_db(students), [], None
    while True:
        page = read.HANDLER.handle(Message("p", read.HANDLER.parse({"limit": 3, "after": after})), db)
        assert page["count"] == len(page["records"]) <= 3
        seen += [r["SRN"] for r in page["records"]]
        after = page["next_after"]
        if after is None:
            break
        assert after == seen[-1]
    assert seen == sorted(students)


@pytest.mark.parametrize("payload", [{"limit": 0}, {"limit": 10_001}, {"limit": "3"}, {"limit": True},
                                     {"after": "bad srn"}, {"after": 5}])
def test_read_refuses_a_bad_page(payload: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as caught:
        read.HANDLER.parse(payload)
    assert caught.value.code == "invalid_message"


def over(*handlers: Handler, students: dict[str, tuple[str, str, str]] | None = None) -> tuple[
        InMemoryQueue, Any]:
    """The handlers' queues in memory, over a FakeCursor's tables; both, for the test to look at."""
    database = FakeDatabase(Events())
    database.cursor.students.update(students or {})
    queue = InMemoryQueue(*handlers, database=database)
    database.events.log = queue.log  # one log: the commits among the replies and acknowledgements
    return queue, database.cursor


RECORD = {"Name": "A", "SRN": "S1", "Section": "B"}
# A key no kind declares, for a handler whose answer is its test's own (the harness holds a
# declared kind's answers to its declared reply).
TOTALS = "totals"


def test_ledger_answers_a_repeat_with_the_first_answer() -> None:
    queue, db = over(insertion.HANDLER)
    first = queue.call(INSERT_RECORD, RECORD, request_id="req-1")
    again = queue.call(INSERT_RECORD, RECORD, request_id="req-1")
    assert first == again == {"ok": True, "result": {"record": RECORD}}
    assert len(db.students) == 1 and len(db.requests) == 1


def test_a_write_s_answer_with_a_decimal_and_a_date_is_stored_and_replayed_as_it_was_sent() -> None:
    """A row's DECIMAL or DATETIME in a write's answer (an order's total, its time) goes into the
    ledger as the reply has it, not as an error: the ledger encodes as the reply does."""
    def handle(message: Message, cursor: Any) -> Any:
        insertion.handle(message, cursor)
        return {"total": Decimal("2.50"), "at": datetime(2026, 12, 2, 18, 0)}

    # A kind of its own: its answer is not insert_record's declared reply.
    queue, db = over(dataclasses.replace(insertion.HANDLER, routing_key=TOTALS, handle=handle))
    first = queue.call(TOTALS, RECORD, request_id="req-1")
    again = queue.call(TOTALS, RECORD, request_id="req-1")
    assert first == again == {"ok": True, "result": {"total": 2.5, "at": "2026-12-02T18:00:00"}}
    assert len(db.students) == 1


def test_a_delete_erases_the_student_s_data_from_earlier_answers_and_keeps_its_own() -> None:
    queue, db = over(insertion.HANDLER, deletion.HANDLER)
    record, other = {"Name": "Ada", "SRN": "S1", "Section": "B"}, {"Name": "Bob", "SRN": "S2", "Section": "C"}
    queue.calls(INSERT_RECORD, [("ins-1", record), ("ins-2", other)])
    queue.call(INSERT_RECORD, record, request_id="ins-3")  # refused: duplicate_srn
    deleted = queue.call(DELETE_RECORD, {"SRN": "S1"}, request_id="del-1")
    assert deleted == {"ok": True, "result": {"deleted": record}}
    erased = {"ok": True, "result": {"erased": True, "message": ERASED}}
    # A retry of the insert gets its status back, not the data; the refusal keeps its code.
    assert queue.call(INSERT_RECORD, record, request_id="ins-1") == erased
    assert queue.call(INSERT_RECORD, record, request_id="ins-3") == {
        "ok": False, "error": "duplicate_srn", "message": ERASED}
    stored = json.dumps(db.requests)
    assert "Ada" not in stored.replace(json.dumps(db.requests["del-1"]), "")
    # The delete's own answer is kept, so that its retry gets it; another student's is untouched.
    assert queue.call(DELETE_RECORD, {"SRN": "S1"}, request_id="del-1") == deleted
    assert "Bob" in db.requests["ins-2"][2] and db.subjects["ins-2"] == "S2"


def test_ledger_keeps_refusals_too() -> None:
    queue, db = over(insertion.HANDLER, students={"S1": ("old", "S1", "B")})
    first = queue.call(INSERT_RECORD, RECORD, request_id="req-2")
    assert first["error"] == "duplicate_srn"
    db.students.clear()  # even if the row goes away, the retried request keeps its answer
    assert queue.call(INSERT_RECORD, RECORD, request_id="req-2") == first


def test_same_request_id_for_another_request_is_a_conflict() -> None:
    queue, db = over(insertion.HANDLER)
    queue.call(INSERT_RECORD, RECORD, request_id="req-3")
    other = queue.call(INSERT_RECORD, {"Name": "Z", "SRN": "S2", "Section": "B"}, request_id="req-3")
    assert other["error"] == "request_id_conflict"
    assert set(db.students) == {"S1"}


def test_a_batch_reads_and_writes_the_ledger_once_and_replays_a_repeat_within_it() -> None:
    queue, db = over(insertion.HANDLER)
    one, two = RECORD, {"Name": "B", "SRN": "S2", "Section": "B"}
    replies = queue.calls(INSERT_RECORD, [("req-4", one), ("req-5", two), ("req-4", one)])
    assert replies[0] == replies[2] == {"ok": True, "result": {"record": one}}
    assert replies[1] == {"ok": True, "result": {"record": two}}
    assert set(db.students) == {"S1", "S2"} and set(db.requests) == {"req-4", "req-5"}
    assert db.ledger_writes == 1 and ledger_reads(db) == 0  # new requests: no read at all
    # A batch with a request done before is rolled back, then reads the ledger once for all of it.
    three = {"Name": "C", "SRN": "S3", "Section": "B"}
    assert queue.calls(INSERT_RECORD, [("req-5", two), ("req-6", three)]) == [
        {"ok": True, "result": {"record": two}}, {"ok": True, "result": {"record": three}}]
    assert ledger_reads(db) == 1 and set(db.requests) == {"req-4", "req-5", "req-6"}


def test_a_new_request_is_one_round_trip_with_its_ledger_entry_and_the_commit() -> None:
    queue, db = over(insertion.HANDLER)
    reply = queue.call(INSERT_RECORD, RECORD, request_id="req-30")
    assert reply == {"ok": True, "result": {"record": RECORD}}
    # The insert, the ledger entry (its unique key, not a read before, says whether the request
    # is new) and the COMMIT: one statement sent, no savepoint.
    [sent] = db.statements
    assert [" ".join(part.split()[:3]) for part in sent.split("; ")] == [
        "INSERT INTO students", "INSERT INTO requests", "COMMIT"]
    assert db.commits == 1 and set(db.requests) == {"req-30"}


def test_a_batch_of_new_inserts_is_one_round_trip() -> None:
    queue, db = over(insertion.HANDLER)
    replies = queue.calls(INSERT_RECORD, [(f"req-4{n}", {"Name": "A", "SRN": f"T{n}", "Section": "S"})
                                          for n in range(3)])
    assert [r["ok"] for r in replies] == [True] * 3
    [sent] = db.statements
    assert sent.count("INSERT INTO students") == 3 and sent.count("INSERT INTO requests") == 1
    assert set(db.requests) == {"req-40", "req-41", "req-42"} and set(db.students) == {"T0", "T1", "T2"}


def test_a_request_done_before_is_rolled_back_and_answered_from_the_ledger() -> None:
    queue, db = over(insertion.HANDLER)
    first = queue.call(INSERT_RECORD, RECORD, request_id="req-31")
    db.students.clear()  # the row went away since: carried out again, the insert would succeed
    db.statements.clear()
    again = queue.call(INSERT_RECORD, RECORD, request_id="req-31")
    assert again == first
    assert db.students == {} and set(db.requests) == {"req-31"}  # the second insert was rolled back
    assert ledger_reads(db) == 1


def test_a_request_done_before_that_fails_on_a_key_of_its_own_gets_its_first_answer() -> None:
    """Like an order, whose request id is a unique key of its table: carried out again, it fails
    there, before its ledger entry can say it is done."""
    def handle(message: Message, cursor: Any) -> Any:
        record = message.payload
        cursor.execute("INSERT INTO students (srn, name, section, request_id) VALUES (%s, %s, %s, %s)",
                       (record["SRN"], record["Name"], record["Section"], message.request_id))
        return {"record": record}

    queue, db = over(dataclasses.replace(insertion.HANDLER, handle=handle, batch=False))
    first = queue.call(INSERT_RECORD, RECORD, request_id="req-34")
    again = queue.call(INSERT_RECORD, RECORD, request_id="req-34")
    assert first == again == {"ok": True, "result": {"record": RECORD}}
    assert set(db.students) == {"S1"} and set(db.requests) == {"req-34"}


def test_a_redelivered_message_reads_the_ledger_first() -> None:
    queue, db = over(insertion.HANDLER)
    queue.call(INSERT_RECORD, RECORD, request_id="req-32", redelivered=True)
    assert db.statements[0].startswith("SELECT request_id") and ledger_reads(db) == 1


def test_a_refused_delete_wrote_nothing_so_needs_no_savepoint() -> None:
    queue, db = over(deletion.HANDLER, students={"S1": ("A", "S1", "B")})
    reply = queue.call(DELETE_RECORD, {"SRN": "S9"}, request_id="req-33")
    assert reply["error"] == "not_found"
    assert db.students == {"S1": ("A", "S1", "B")} and "SAVEPOINT message" not in db.statements


def test_request_status_reads_the_ledger() -> None:
    queue, db = over(insertion.HANDLER)
    record = RECORD
    reply = queue.call(INSERT_RECORD, record, request_id="req-9")
    asked = fingerprint("insert_record", record)
    status = read.request_status(
        Message("ask-1", read.parse_status({"request_id": "req-9", "asked": asked})), db)
    assert status == {"routing_key": "insert_record", "reply": reply}
    with pytest.raises(Refused) as caught:  # the id was used for something else than asked
        read.request_status(Message("ask-3", {"request_id": "req-9", "asked": "0" * 64}), db)
    assert caught.value.code == "request_id_conflict"
    with pytest.raises(Refused) as caught:
        read.request_status(Message("ask-2", {"request_id": "unknown", "asked": asked}), db)
    assert caught.value.code == "unknown_request"
    for payload in ({"request_id": "bad id", "asked": asked}, {"request_id": "req-9"}):
        with pytest.raises(Invalid):  # no answer without the proof of what was asked
            read.parse_status(payload)


class Events:
    """What the channel and the database did, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.reply_ids: list[str] = []  # the message_id (the client's request id) of each reply


class FakeDatabase:
    """Transactions over a FakeCursor: all of the work is kept on commit, none of it on an error."""

    def __init__(self, events: Events) -> None:
        self.cursor, self.events = FakeCursor(), events

    def run(self, work: Any) -> Any:
        saved = (dict(self.cursor.students), dict(self.cursor.requests))
        try:
            result = work(self.cursor)
        except BaseException:
            self.cursor.students, self.cursor.requests = saved
            self.events.log.append(("rollback",))
            raise
        self.events.log.append(("commit",))
        return result

    def close(self) -> None: ...


def delivery(handler: Any, tag: int, body: Any, *, redelivered: bool = False) -> Delivery:
    from pika.spec import Basic, BasicProperties

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    props = BasicProperties(content_type="application/json", message_id=f"m{tag}", correlation_id=f"m{tag}",
                            reply_to="caller")
    return Delivery(handler, Basic.Deliver(delivery_tag=tag, redelivered=redelivered), props, raw)


def test_a_batch_is_one_commit_then_replies_then_one_ack() -> None:
    queue, db = over(insertion.HANDLER)
    for body in ({"Name": "A", "SRN": "B1", "Section": "S"}, {"Name": "B", "SRN": "B2", "Section": "S"},
                 {"Name": "C", "SRN": "B1", "Section": "S"}):
        queue.publish(INSERT_RECORD, body)
    replies = queue.deliver()
    # The batch's one round trip fails on the duplicate and is rolled back; carried out again
    # statement by statement, it commits once. Nothing acknowledged before the commit.
    assert [e[0] for e in queue.log] == ["rollback", "commit", "reply", "reply", "reply", "ack"]
    assert queue.log[-1] == ("ack", 3, True)
    assert [r["ok"] for r in replies] == [True, True, False] and replies[2]["error"] == "duplicate_srn"
    assert set(db.students) == {"B1", "B2"} and set(db.requests) == {"m1", "m2", "m3"}


def test_a_bad_message_in_a_batch_does_not_take_the_others() -> None:
    def handle(message: Message, cursor: Any) -> Any:
        if message.payload["SRN"] == "BUG":
            raise RuntimeError("a bug in the handler")
        return insertion.handle(message, cursor)

    queue, db = over(dataclasses.replace(insertion.HANDLER, handle=handle))
    for body in ({"Name": "A", "SRN": "G1", "Section": "S"}, b"not json",
                 {"Name": "B", "SRN": "BUG", "Section": "S"}, {"Name": "C", "SRN": "G2", "Section": "S"}):
        queue.publish(INSERT_RECORD, body)
    queue.deliver()
    assert set(db.students) == {"G1", "G2"} and set(db.requests) == {"m1", "m4"}
    settled = {e[1]: e for e in queue.log if e[0] in {"ack", "reject"}}
    assert settled[2] == ("reject", 2, False) and settled[3] == ("reject", 3, False)
    assert settled[1][0] == settled[4][0] == "ack"
    # Every ack comes after a commit that holds its message.
    assert queue.log.index(settled[4]) > queue.log.index(("commit",))


def test_redelivered_messages_are_carried_out_alone() -> None:
    queue, _ = over(insertion.HANDLER)
    for n in (1, 2):
        queue.publish(INSERT_RECORD, {"Name": "A", "SRN": f"R{n}", "Section": "S"}, redelivered=True)
    queue.deliver()
    assert [e[0] for e in queue.log] == ["commit", "reply", "ack", "commit", "reply", "ack"]
    assert ("ack", 1, False) in queue.log and ("ack", 2, False) in queue.log


def test_a_reply_echoes_the_requests_correlation_id_not_its_request_id() -> None:
    queue, db = over(insertion.HANDLER)
    # The caller's own correlation id, not the client's request id (m1).
    queue.publish(INSERT_RECORD, {"Name": "A", "SRN": "C1", "Section": "S"}, correlation_id="call-7f3a")
    queue.deliver()
    [reply] = [e for e in queue.log if e[0] == "reply"]
    assert reply[1] == "call-7f3a"
    assert set(db.requests) == {"m1"}  # the ledger is keyed by the request id


def test_a_write_that_refuses_after_writing_keeps_nothing_even_in_a_batch() -> None:
    def handle(message: Message, cursor: Any) -> Any:
        result = insertion.handle(message, cursor)
        if message.payload["SRN"] == "NO":
            raise Refused("not_found", "refused after its insert")
        return result

    # It writes, then refuses: it needs its savepoint.
    queue, db = over(dataclasses.replace(insertion.HANDLER, handle=handle, savepoint=True, writes_only=False))
    for srn in ("K1", "NO", "K2"):
        queue.publish(INSERT_RECORD, {"Name": "A", "SRN": srn, "Section": "S"})
    replies = queue.deliver()
    assert [e[0] for e in queue.log] == ["commit", "reply", "reply", "reply", "ack"]  # one batch
    assert [r["ok"] for r in replies] == [True, False, True]
    assert set(db.students) == {"K1", "K2"}  # the refused one's insert was undone
    assert set(db.requests) == {"m1", "m2", "m3"}  # and its refusal recorded


class DroppingConnection:
    """A broker connection that is lost while the consumer waits out the database."""

    def sleep(self, seconds: float) -> None:
        raise pika.exceptions.StreamLostError("lost")


def test_a_broker_error_while_the_database_is_away_is_a_broker_error() -> None:
    database = FakeDatabase(Events())

    def away(work: Any) -> Any:
        raise DatabaseAway("gone")

    database.run = away  # type: ignore[method-assign]
    queue = InMemoryQueue(insertion.HANDLER, database=database, connection=DroppingConnection())
    for srns in (["D1"], ["D2", "D3"]):  # alone, and a batch
        for srn in srns:
            queue.publish(INSERT_RECORD, {"Name": "A", "SRN": srn, "Section": "S"})
        with pytest.raises(pika.exceptions.AMQPError):  # up to serve_forever: reconnect
            queue.deliver()
    assert queue.log == []  # nothing replied, rejected or acknowledged: RabbitMQ redelivers it


def test_a_ledger_conflict_is_retried_with_backoff_then_given_back() -> None:
    database = FakeDatabase(Events())
    attempts: list[int] = []

    def conflict(work: Any) -> Any:
        attempts.append(1)
        raise LedgerConflict("m1")

    database.run = conflict  # type: ignore[method-assign]
    queue = InMemoryQueue(insertion.HANDLER, database=database)
    queue.publish(INSERT_RECORD, {"Name": "A", "SRN": "L1", "Section": "S"})
    queue.deliver()
    # The first conflict sends it to the ledger at once (done before?); then the bounded backoff.
    assert len(attempts) == LEDGER_CONFLICT_RETRIES + 2 and len(queue.sleeps) == LEDGER_CONFLICT_RETRIES
    assert all(s > 0 for s in queue.sleeps)
    assert queue.log == [("reject", 1, True)]  # back to the queue, not dropped; its delivery limit bounds it


def test_a_ledger_conflict_that_settles_gets_the_recorded_answer() -> None:
    database = FakeDatabase(Events())
    real_run, calls = database.run, []

    def first_conflicts(work: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise LedgerConflict("m1")
        return real_run(work)

    database.run = first_conflicts  # type: ignore[method-assign]
    queue = InMemoryQueue(insertion.HANDLER, database=database)
    database.events.log = queue.log
    queue.publish(INSERT_RECORD, {"Name": "A", "SRN": "L2", "Section": "S"})
    queue.deliver()
    assert [e[0] for e in queue.log] == ["commit", "reply", "ack"]


def test_a_lookup_names_what_it_asked_and_never_gets_another_requests_answer() -> None:
    """A 202's Location carries its request's fingerprint: a reused id's earlier answer is a
    conflict for it, never passed off as its own."""
    queue, db = over(insertion.HANDLER)
    first = RECORD
    reply = queue.call(INSERT_RECORD, first, request_id="req-20")
    mine = read.parse_status({"request_id": "req-20", "asked": fingerprint("insert_record", first)})
    assert read.request_status(Message("ask-1", mine), db) == {"routing_key": "insert_record", "reply": reply}
    other = {"Name": "Z", "SRN": "S2", "Section": "B"}
    theirs = read.parse_status({"request_id": "req-20", "asked": fingerprint("insert_record", other)})
    with pytest.raises(Refused) as caught:
        read.request_status(Message("ask-2", theirs), db)
    assert caught.value.code == "request_id_conflict"
    with pytest.raises(Invalid):
        read.parse_status({"request_id": "req-20", "asked": "not-a-fingerprint"})


@pytest.mark.parametrize(("handler", "payload"), [
    (insertion.HANDLER, {"Name": " Ann ", "SRN": "s1", "Section": "A"}),
    (deletion.HANDLER, {"SRN": "S1"}),
    (update.HANDLER, {"SRN": "S1", "Section": "C"}),
    (items.CREATE, {"SKU": "K1", "Name": "Pen", "Quantity": 3}),
    (items.ADJUST, {"SKU": "K1", "Delta": -2}),
    (orders.PLACE, {"SKU": "K1", "Quantity": 1}),
])
def test_the_producer_and_the_consumer_fingerprint_a_write_alike(handler: Any,
                                                                 payload: dict[str, Any]) -> None:
    """The producer fingerprints what it publishes (already cleaned); the ledger what the
    consumer parsed from it: the same, or a 202's lookup would never find its own answer."""
    published = handler.parse(dict(payload))
    assert fingerprint(handler.routing_key, handler.parse(dict(published))) == \
        fingerprint(handler.routing_key, published)


INTERNAL_ERROR = {"ok": False, "error": "internal_error", "message": "The request could not be processed."}


def failed(queue: str) -> float:
    """consumer_messages_total{outcome="failed"} of a queue (the counters are process-wide)."""
    return REGISTRY.get_sample_value("consumer_messages_total", {"queue": queue, "outcome": "failed"}) or 0.0


def test_a_read_answers_decimals_and_datetimes_as_json() -> None:
    """MySQL gives SUM() and DECIMAL columns as Decimal, DATETIME as datetime: json.dumps alone
    cannot encode them, and the reply is encoded after the transaction."""
    def handle(message: Message, cursor: Any) -> Any:
        return {"total": Decimal("12.50"), "count": Decimal("3"), "day": date(2024, 5, 1),
                "at": datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC)}

    queue, _ = over(dataclasses.replace(read.HANDLER, routing_key=TOTALS, handle=handle))
    queue.publish(TOTALS, {})
    queue.deliver()
    result = {"total": 12.5, "count": 3, "day": "2024-05-01", "at": "2024-05-01T12:30:05+00:00"}
    assert queue.log == [("commit",), ("reply", "m1", {"ok": True, "result": result}), ("ack", 1, False)]


def test_a_batch_sets_aside_a_bad_parse_and_a_reply_with_no_json_and_answers_the_rest() -> None:
    """A parser's bug (not Invalid) and a result that has no JSON form, in a batch of writes: each
    of them is answered internal_error and dead-lettered, alone, with nothing of it written (a
    write's answer goes into the ledger in its transaction, so one that cannot be stored rolls
    the write back); the others are committed, answered and acknowledged, and no acknowledgement
    names a rejected delivery."""
    def parse(payload: dict[str, Any]) -> dict[str, Any]:
        return {"SRN": payload["SRN"], "Name": payload["Name"], "Section": payload["Section"]}  # KeyError

    def handle(message: Message, cursor: Any) -> Any:
        result = insertion.handle(message, cursor)
        return {"rows": {1, 2}} if message.payload["SRN"].startswith("SET") else result  # a set: no JSON

    queue, db = over(dataclasses.replace(insertion.HANDLER, parse=parse, handle=handle))
    for body in ({"Name": "A", "SRN": "G1", "Section": "S"}, {"SRN": "NO-NAME"},
                 {"Name": "B", "SRN": "SET1", "Section": "S"}, {"Name": "C", "SRN": "G2", "Section": "S"},
                 {"Name": "D", "SRN": "SET2", "Section": "S"}):
        queue.publish(INSERT_RECORD, body)
    queue.deliver()
    def ok(srn: str, name: str) -> dict[str, Any]:
        return {"ok": True, "result": {"record": {"SRN": srn, "Name": name, "Section": "S"}}}

    failed = [("rollback",), ("rollback",)]  # new, then with the ledger read first: a real failure
    assert queue.log == [
        ("reply", "m2", INTERNAL_ERROR), ("reject", 2, False),  # alone, before the batch
        *failed,  # the batch: rolled back whole, then each message alone
        ("commit",), ("reply", "m1", ok("G1", "A")), ("ack", 1, False),
        *failed, ("reply", "m3", INTERNAL_ERROR), ("reject", 3, False),
        ("commit",), ("reply", "m4", ok("G2", "C")), ("ack", 4, False),
        *failed, ("reply", "m5", INTERNAL_ERROR), ("reject", 5, False),
    ]
    assert set(db.students) == {"G1", "G2"}
    assert set(db.requests) == {"m1", "m4"}


class FakeBlockingConnection:
    """pika.BlockingConnection for serve_forever: delivers everything on its first poll, then SIGTERM."""

    def __init__(self, worker: Worker, events: Events, deliveries: list[Any]) -> None:
        self.worker, self.deliveries, self.is_open = worker, deliveries, True
        self.consumers: dict[str, Any] = {}
        self.chan = RecordingChannel(events.log, events.reply_ids)
        self.chan.basic_qos = lambda prefetch_count: None  # type: ignore[attr-defined]
        self.chan.basic_cancel = lambda tag: None  # type: ignore[attr-defined]
        self.chan.basic_consume = self.consume  # type: ignore[attr-defined]

    def consume(self, queue: str, on_message_callback: Any) -> str:
        self.consumers[queue] = on_message_callback
        return queue

    def channel(self) -> RecordingChannel:
        return self.chan

    def process_data_events(self, time_limit: float) -> None:
        for handler, method, props, body in self.deliveries:
            self.consumers[handler.routing_key](self.chan, method, props, body)
        self.deliveries = []
        self.worker.stopping = True

    def close(self) -> None:
        self.is_open = False


class NoFile:
    """The health check's file, neither touched nor removed."""

    def touch(self) -> None: ...

    def unlink(self, missing_ok: bool = False) -> None: ...


def test_a_bug_in_a_parser_a_handler_or_a_reply_never_stops_the_consumer(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """serve_forever catches only broker and OS errors: anything else that escaped a message
    would end the process, and the message, redelivered, would end the next one too."""
    def no_parse(payload: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("message")

    def no_json(message: Message, cursor: Any) -> Any:
        return {"took": object()}

    handlers: list[Handler] = [dataclasses.replace(healthcheck.HANDLER, parse=no_parse),  # health_check
                dataclasses.replace(read.HANDLER, handle=no_json),  # read_database
                insertion.HANDLER]
    env = {"RABBITMQ_HOST": "h", "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "p",
           "MYSQL_USER": "u", "MYSQL_PASSWORD": "p"}
    worker = Worker(Settings.from_env("consumer_test", needs_db=True, env=env), handlers,
                    logs.EventLogger(logging.getLogger("test"), {}))
    events = Events()
    worker.db = FakeDatabase(events)  # type: ignore[assignment]
    inbox = [delivery(handler, n, body) for n, (handler, body) in enumerate(
        [(handlers[0], {"message": "hi"}), (handlers[1], {}),
         (handlers[2], {"Name": "A", "SRN": "F1", "Section": "S"})], start=1)]
    monkeypatch.setattr("pika.BlockingConnection",
                        lambda params: FakeBlockingConnection(worker, events, inbox))
    monkeypatch.setattr("common.consumer.ALIVE_FILE", NoFile())
    before = failed("health_check"), failed("read_database")
    with caplog.at_level(logging.INFO, logger="test"):
        worker.serve_forever()  # returns: stopped, not crashed
    assert events.log == [
        ("reply", "m1", INTERNAL_ERROR), ("reject", 1, False),  # dead-lettered, not requeued
        ("commit",), ("reply", "m2", INTERNAL_ERROR), ("reject", 2, False),
        ("commit",), ("reply", "m3", {"ok": True, "result": {"record": {"Name": "A", "SRN": "F1",
                                                                         "Section": "S"}}}),
        ("ack", 3, False),  # the next message is served
    ]
    assert events.reply_ids == ["m1", "m2", "m3"]  # each reply carries its request id
    assert (failed("health_check"), failed("read_database")) == (before[0] + 1, before[1] + 1)
    logged = [(r.getMessage(), getattr(r, "request_id", None), r.levelname, getattr(r, "step", None))
              for r in caplog.records if r.getMessage() == "handler_failed"]
    assert logged == [("handler_failed", "m1", "ERROR", "parse"), ("handler_failed", "m2", "ERROR", "reply")]
    assert all(r.exc_info for r in caplog.records if r.getMessage() == "handler_failed")
    assert not [r for r in caplog.records if r.getMessage() == "broker_unavailable"]


def test_the_dockerfile_health_check_reads_the_file_the_loop_touches() -> None:
    """The path is written twice (Python, and the image's sh one-liner): they must agree."""
    from pathlib import Path

    from common.probe import ALIVE_FILE
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text(encoding="utf-8")
    assert f"f={ALIVE_FILE};" in dockerfile
