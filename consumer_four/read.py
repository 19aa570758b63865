"""consumer_four: reads every record, ordered by SRN."""

from __future__ import annotations

from typing import Any

from common.consumer import Handler, Message, run
from common.db import Cursor, rows
from common.messages import Invalid
from common.topology import READ_DATABASE


def parse(payload: dict[str, Any]) -> dict[str, Any]:
    if payload:
        raise Invalid("invalid_message", "read_database takes no parameters.")
    return {}


def handle(_message: Message, db: Cursor) -> dict[str, Any]:
    db.execute("SELECT name, srn, section FROM students ORDER BY srn")
    records = [{"Name": name, "SRN": srn, "Section": section} for name, srn, section in rows(db)]
    return {"records": records, "count": len(records)}


HANDLER = Handler(READ_DATABASE, parse, handle, expires=True)

if __name__ == "__main__":
    run("consumer_four", HANDLER)
