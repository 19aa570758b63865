"""consumer_four: reads every record (ordered by SRN), and the stored answers of finished writes."""

from __future__ import annotations

from typing import Any

from common.consumer import Handler, Message, run
from common.db import Cursor, ledger_lookup, rows
from common.messages import REQUEST_ID_PATTERN, Invalid, Refused
from common.topology import READ_DATABASE, REQUEST_STATUS


def parse(payload: dict[str, Any]) -> dict[str, Any]:
    if payload:
        raise Invalid("invalid_message", "read_database takes no parameters.")
    return {}


def handle(_message: Message, db: Cursor) -> dict[str, Any]:
    db.execute("SELECT name, srn, section FROM students ORDER BY srn")
    records = [{"Name": name, "SRN": srn, "Section": section} for name, srn, section in rows(db)]
    return {"records": records, "count": len(records)}


def parse_status(payload: dict[str, Any]) -> dict[str, Any]:
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise Invalid("invalid_message", "request_id must be a valid request id.")
    return {"request_id": request_id}


def request_status(message: Message, db: Cursor) -> dict[str, Any]:
    """The reply a finished write was given, as the ledger recorded it."""
    entry = ledger_lookup(db, message.payload["request_id"])
    if entry is None:
        raise Refused("unknown_request", "No finished request has this id (yet).")
    return {"routing_key": entry.routing_key, "reply": entry.reply}


HANDLER = Handler(READ_DATABASE, parse, handle, expires=True)
STATUS_HANDLER = Handler(REQUEST_STATUS, parse_status, request_status, expires=True)

if __name__ == "__main__":
    run("consumer_four", HANDLER, STATUS_HANDLER)
