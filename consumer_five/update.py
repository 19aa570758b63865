"""consumer_five: changes the name and/or section of one record (the U of CRUD)."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Write
from common.db import Cursor, one
from common.messages import Refused
from common.models import UPDATE
from common.topology import UPDATE_RECORD


def handle(message: Message, db: Cursor) -> dict[str, Any]:
    change = message.payload
    srn = change["SRN"]
    # Lock the row: the answer is the record as this transaction leaves it.
    db.execute("SELECT name, section FROM students WHERE srn = %s FOR UPDATE", (srn,))
    row = one(db)
    if row is None:
        raise Refused("not_found", f"No record with SRN {srn}.")
    name, section = change.get("Name", row[0]), change.get("Section", row[1])
    db.execute("UPDATE students SET name = %s, section = %s WHERE srn = %s", (name, section, srn))
    return {"record": {"Name": name, "SRN": srn, "Section": section}}


# It refuses before it updates: nothing to undo, no savepoint.
HANDLER = Write(UPDATE_RECORD, UPDATE.clean, handle, savepoint=False, subject="SRN")

if __name__ == "__main__":
    run("consumer_five", HANDLER)
