"""consumer_four: reads records a page at a time (ordered by SRN), and the stored answers of finished writes.

A page is at most PAGE_MAX rows, so its reply stays far below RabbitMQ's
message size limit (16 MiB by default) however large the table grows: at
most about 600 bytes of JSON per row makes 6 MB. The producer walks the
pages to answer a plain GET /read_database.
"""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Read, paged_read
from common.db import Cursor, ledger_lookup
from common.messages import (
    FINGERPRINT_PATTERN,
    REQUEST_ID_PATTERN,
    Invalid,
    Refused,
)
from common.topology import READ_DATABASE, REQUEST_STATUS


def record(name: str, srn: str, section: str) -> dict[str, Any]:
    return {"Name": name, "SRN": srn, "Section": section}


def parse_status(payload: dict[str, Any]) -> dict[str, Any]:
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise Invalid("invalid_message", "request_id must be a valid request id.")
    # Required: the stored answer goes only to whoever can name what the request asked for.
    asked = payload.get("asked")
    if not isinstance(asked, str) or not FINGERPRINT_PATTERN.fullmatch(asked):
        raise Invalid("invalid_message", "asked must be a request's fingerprint.")
    return {"request_id": request_id, "asked": asked}


def request_status(message: Message, db: Cursor) -> dict[str, Any]:
    """The reply a finished write was given, as the ledger recorded it."""
    entry = ledger_lookup(db, message.payload["request_id"])
    if entry is None:
        raise Refused("unknown_request", "No finished request has this id (yet).")
    asked = message.payload.get("asked")
    if asked != entry.fingerprint:
        # The id was done for another request first: the one asked about was refused.
        raise Refused("request_id_conflict",
                      "This X-Request-ID was used for a different request first; yours was not carried out.")
    return {"routing_key": entry.routing_key, "reply": entry.reply}


# {"limit": 1..PAGE_MAX (default PAGE_MAX), "after": an SRN or null}: one page, in SRN order.
HANDLER = paged_read(READ_DATABASE, "students", "name, srn, section", "srn", field="records", by="SRN",
                     row=record)
STATUS_HANDLER = Read(REQUEST_STATUS, parse_status, request_status)

if __name__ == "__main__":
    run("consumer_four", HANDLER, STATUS_HANDLER)
