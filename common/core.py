"""What a message becomes, with no RabbitMQ in it: the consumers' core.

A consumer is a handler of one of two kinds, a `Read` or a `Write`, and the
rules each kind brings are functions here: `parse` (the envelope and the
payload, or `Invalid`), `expired` (a read nobody waits for any more),
`answer` (one message's reply, a refusal undone to its savepoint) and
`transaction` (a batch of messages against the request ledger: done once per
request id, a repeat answered as the first time). They take a database cursor
and give replies; the run loop in `common/consumer.py` is the transport around
them (prefetch, the commit and its retries, replies, acknowledgements, dead
letters), and `common/testing.py` runs them in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from common.db import Cursor, LedgerEntry, Together, ledger_entries, ledger_erase, ledger_record, page_rows
from common.messages import (
    CONTENT_TYPE,
    REQUEST_ID_PATTERN,
    Invalid,
    Refused,
    decode,
    error_reply,
    fingerprint,
    ok_reply,
    page_message,
    page_reply,
)


@dataclass(frozen=True)
class Message:
    request_id: str
    payload: dict[str, Any]


Parse = Callable[[dict[str, Any]], dict[str, Any]]
Handle = Callable[[Message, Any], Any]
# Messages of one transaction: (request id, cleaned payload).
Work = list[tuple[str, dict[str, Any]]]

# The answer to a message that a bug kept from being carried out or answered.
INTERNAL_ERROR = error_reply("internal_error", "The request could not be processed.")


@dataclass(frozen=True)
class Read:
    """A handler that answers from what is there and changes nothing.

    `parse` validates a payload (raising `Invalid`) and returns the cleaned
    one; `handle(message, db)` returns the reply's result or raises `Refused`.
    `db` is a cursor in a transaction of its own (None when not `uses_db`).
    Nothing is recorded, and a message older than REQUEST_TIMEOUT_S has nobody
    waiting for it: it expires unanswered.
    """

    routing_key: str
    parse: Parse
    handle: Handle
    uses_db: bool = True

    ledger: ClassVar[bool] = False
    expires: ClassVar[bool] = True
    batch: ClassVar[bool] = False
    savepoint: ClassVar[bool] = False
    subject: ClassVar[str | None] = None
    erases: ClassVar[bool] = False
    writes_only: ClassVar[bool] = False


def paged_read(routing_key: str, table: str, columns: str, key: str, *, field: str, by: str,
               row: Callable[..., dict[str, Any]]) -> Read:
    """A Read of one table a page at a time: {"limit", "after"} in, rows after `after` in
    `key` order out (keyset paging: no OFFSET to skip past), each made by `row` from the
    `columns`, under `field`, with `next_after` (the last row's `by`) while more follow."""
    def parse(payload: dict[str, Any]) -> dict[str, Any]:
        return page_message(payload, by=by)

    def handle(message: Message, db: Cursor) -> dict[str, Any]:
        limit, after = message.payload["limit"], message.payload["after"]
        found = page_rows(db, columns, table, key, after, limit)
        return page_reply(field, [row(*values) for values in found], limit, by)

    return Read(routing_key, parse, handle)


@dataclass(frozen=True)
class Write:
    """A handler that changes the database: done once per request id, whatever the retries.

    `handle(message, db)` works in the transaction that the loop commits
    before it acknowledges, with the request's answer recorded in the ledger
    in that same transaction (a redelivered or retried request gets its first
    answer again). It never expires: a write that RabbitMQ confirmed is carried out.
    """

    routing_key: str
    parse: Parse
    handle: Handle
    # Commit the messages already delivered together, in one transaction, and ack them
    # together after it: a commit per message is the write path's ceiling.
    batch: bool = False
    # A handler that may refuse after it has written something: a savepoint per message
    # undoes that part (the ledger entry and the rest of a batch still commit). False for
    # a handler whose refusal leaves nothing written (it refuses before its writes, or its
    # one statement is what fails): a round trip to MySQL saved per message.
    savepoint: bool = True
    # The payload field naming whose personal data the answer holds (a student's SRN):
    # the ledger keeps it beside the answer, so that erasing that person finds it.
    subject: str | None = None
    # The request erases its subject (a delete): every answer stored earlier for the same
    # subject loses its data, in the same transaction. Its own answer is kept, for a retry.
    erases: bool = False
    # `handle` only writes: it reads nothing back (no row, no row count), and what may refuse
    # is a unique key. Then a batch's statements, its ledger entries and the COMMIT go to
    # MySQL together (db.Together): one round trip per batch. A refusal or a repeat fails
    # that round trip, and the batch is carried out again statement by statement, ledger first.
    writes_only: bool = False

    ledger: ClassVar[bool] = True
    expires: ClassVar[bool] = False
    uses_db: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.writes_only and (self.erases or self.savepoint):
            raise ValueError(f"{self.routing_key}: a write that erases or undoes to a savepoint reads "
                             "or may refuse after writing: it cannot be writes_only")


# What one consumer does with the messages of one routing key: a read or a write.
Handler = Read | Write


def parse(handler: Handler, request_id: str, content_type: str | None, body: bytes) -> dict[str, Any]:
    """A delivered message's cleaned payload (with its `sent_at`), or `Invalid`."""
    if content_type != CONTENT_TYPE:
        raise Invalid("invalid_message", f"content_type must be {CONTENT_TYPE}.")
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise Invalid("invalid_message", "message_id must be a valid request id.")
    payload = decode(body)
    sent_at = payload.pop("sent_at", None)
    cleaned = handler.parse(payload)
    if sent_at is not None:
        cleaned["sent_at"] = sent_at
    return cleaned


def expired(handler: Handler, payload: dict[str, Any], timeout_s: float, now: float | None = None) -> bool:
    """A read sent more than `timeout_s` ago: nobody waits for its answer any more."""
    sent_at = payload.get("sent_at")
    return handler.expires and isinstance(sent_at, (int, float)) and (
        (time.time() if now is None else now) - sent_at > timeout_s)


def answer(handler: Handler, request_id: str, payload: dict[str, Any],
           cursor: Cursor | Together | None) -> dict[str, Any]:
    """One message's reply: the handler's result, or its refusal."""
    work = {k: v for k, v in payload.items() if k != "sent_at"}
    # A write that refuses keeps nothing of what it did before refusing, even though the
    # transaction (its ledger entry, the rest of its batch) commits: a savepoint per message.
    undo = cursor if handler.ledger and handler.savepoint else None
    if undo is not None:
        undo.execute("SAVEPOINT message")  # a new one replaces the last: no release needed
    try:
        result = handler.handle(Message(request_id, work), cursor)
        if handler.erases and handler.subject and cursor is not None and not isinstance(cursor, Together):
            ledger_erase(cursor, work[handler.subject])
        return ok_reply(result)
    except Refused as exc:
        if undo is not None:
            undo.execute("ROLLBACK TO SAVEPOINT message")
        return error_reply(exc.code, exc.message)


def transaction(handler: Handler, cursor: Cursor | None, work: Work, look_up: bool = True,
                replayed: Callable[[str], object] = lambda _request_id: None) -> list[dict[str, Any]]:
    """The replies for messages carried out in one transaction. For a write, the request
    ledger is read once for all of them before (when `look_up`) and written once after:
    that write raises LedgerConflict when a request has an entry already. A repeat (a
    retry, a redelivery) gets its first answer, and `replayed` is told its id."""
    if not handler.ledger or cursor is None:
        return [answer(handler, request_id, payload, cursor) for request_id, payload in work]
    if handler.writes_only and not look_up:
        together = Together(cursor)
        replies = _against_ledger(handler, together, work, {}, replayed)
        together.send()
        return replies
    done = ledger_entries(cursor, [request_id for request_id, _ in work]) if look_up else {}
    return _against_ledger(handler, cursor, work, done, replayed)


def _against_ledger(handler: Handler, cursor: Cursor | Together, work: Work, done: dict[str, LedgerEntry],
                    replayed: Callable[[str], object]) -> list[dict[str, Any]]:
    """The replies, each request looked up in `done` (the ledger's entries read before), and
    the new entries recorded in one statement."""
    key = handler.routing_key
    new: dict[str, LedgerEntry] = {}
    replies = []
    for request_id, payload in work:
        asked = fingerprint(key, payload)
        entry = done.get(request_id)
        if entry is None:
            reply = answer(handler, request_id, payload, cursor)
            subject = payload.get(handler.subject) if handler.subject else None
            # The same request again later in this batch (a client's retry) is a replay.
            new[request_id] = done[request_id] = LedgerEntry(key, asked, reply, subject)
        elif entry.fingerprint != asked:
            reply = error_reply("request_id_conflict",
                                "This X-Request-ID was already used for a different request.")
        else:
            replayed(request_id)
            reply = entry.reply
        replies.append(reply)
    ledger_record(cursor, new)
    return replies
