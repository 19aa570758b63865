"""consumer_two: inserts student records, those already delivered together in one transaction."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Write
from common.db import Cursor, insert_new
from common.messages import Refused
from common.models import RECORD
from common.topology import INSERT_RECORD


def handle(message: Message, db: Cursor) -> dict[str, Any]:
    record = message.payload
    insert_new(
        db, "INSERT INTO students (srn, name, section, request_id) VALUES (%s, %s, %s, %s)",
        (record["SRN"], record["Name"], record["Section"], message.request_id),
        Refused("duplicate_srn", f"A record with SRN {record['SRN']} already exists."),
    )
    return {"record": record}


# Its one INSERT is what refuses (a duplicate SRN): nothing to undo, no savepoint.
HANDLER = Write(INSERT_RECORD, RECORD.clean, handle, batch=True, savepoint=False, subject="SRN",
                writes_only=True)

if __name__ == "__main__":
    run("consumer_two", HANDLER)
