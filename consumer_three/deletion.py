"""consumer_three: deletes the record of one SRN."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Write
from common.db import Cursor
from common.messages import Refused, clean_srn
from common.topology import DELETE_RECORD


def parse(payload: dict[str, Any]) -> dict[str, Any]:
    return {"SRN": clean_srn(payload.get("SRN"))}


def handle(message: Message, db: Cursor) -> dict[str, Any]:
    srn = message.payload["SRN"]
    # Lock the row, so the record we answer with is the one we delete.
    db.execute("SELECT name, srn, section FROM students WHERE srn = %s FOR UPDATE", (srn,))
    row = db.fetchone()
    if row is None:
        raise Refused("not_found", f"No record with SRN {srn}.")
    db.execute("DELETE FROM students WHERE srn = %s", (srn,))
    name, stored_srn, section = row
    return {"deleted": {"Name": name, "SRN": stored_srn, "Section": section}}


# It refuses before it deletes: nothing to undo, no savepoint. Deleting a student erases
# their data from the answers the ledger kept (their insert's, their updates').
HANDLER = Write(DELETE_RECORD, parse, handle, savepoint=False, subject="SRN", erases=True)

if __name__ == "__main__":
    # The service that erases also prunes: the ledger's expired entries, between messages.
    run("consumer_three", HANDLER, prunes_ledger=True)
