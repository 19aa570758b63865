"""What travels on the bus: request ids, validated payloads and replies.

The producer validates every input with these functions before it publishes,
and each consumer validates again what it takes off its queue, so a message
published by anyone else is held to the same rules.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# What `fingerprint` gives: a 202's Location carries it, to look up that request only.
FINGERPRINT_PATTERN = re.compile(r"[0-9a-f]{64}")
SRN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
MESSAGE_MAX = 256
# The most rows in one page of read_database (and so in one reply on the bus).
PAGE_MAX = 10_000
# Rows per page when the producer walks the table for a plain GET /read_database,
# and the page size of ?after= without ?limit=.
READ_PAGE = 5000

CONTENT_TYPE = "application/json"


class Invalid(Exception):
    """Input that breaks the contract; `code` is the contract's error code."""

    def __init__(self, code: str, message: str, details: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class Refused(Exception):
    """A valid request the database says no to (duplicate, not found, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is well formed, otherwise a new one."""
    if header is not None and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return uuid.uuid4().hex


def clean_srn(value: Any, *, field: str = "SRN") -> str:
    """An SRN as stored: trimmed, upper-case, 1-32 of [A-Za-z0-9_-]."""
    if not isinstance(value, str):
        raise Invalid("invalid_parameter", f"{field} must be text.")
    srn = value.strip()
    if not srn:
        raise Invalid("missing_parameter", f"{field} is required.")
    if not SRN_PATTERN.fullmatch(srn):
        raise Invalid(
            "invalid_parameter", f"{field} must be 1-32 letters, digits, '-' or '_'."
        )
    return srn.upper()


def clean_page(limit: Any, after: Any, *, by: str = "SRN") -> tuple[int, Any]:
    """A page of a read: `limit` 1..PAGE_MAX rows after the key `after` (None: from the start).

    `by` is the key the rows are ordered by: an SRN or a SKU (text, stored upper-case) or an
    OrderID (a whole number). Takes the query string's text or the message's JSON values.
    """
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
        raise Invalid("invalid_parameter", f"'limit' must be a whole number from 1 to {PAGE_MAX}.")
    if after is None:
        return limit, None
    if by == "OrderID":
        if isinstance(after, str) and after.strip().isdigit():
            after = int(after)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
            raise Invalid("invalid_parameter", "'after' must be an OrderID: a whole number.")
        return limit, after
    if not isinstance(after, str) or not SRN_PATTERN.fullmatch(after.strip()):
        what = "an SRN" if by == "SRN" else f"a {by}"
        raise Invalid("invalid_parameter", f"'after' must be {what}: 1-32 letters, digits, '-' or '_'.")
    return limit, after.strip().upper()


def page_message(payload: Mapping[str, Any], *, by: str = "SRN") -> dict[str, Any]:
    """A page request on the bus: {"limit": 1..PAGE_MAX (default PAGE_MAX), "after": a key or null}."""
    extra = set(payload) - {"limit", "after"}
    if extra:
        raise Invalid("invalid_message", f"A page takes only limit and after, not {sorted(extra)}.")
    limit, after = payload.get("limit", PAGE_MAX), payload.get("after")
    # clean_page takes the query string's text too; a message has numbers.
    if not isinstance(limit, int) or (by == "OrderID" and after is not None and not isinstance(after, int)):
        raise Invalid("invalid_message", "limit (and an OrderID after) must be numbers.")
    try:
        limit, after = clean_page(limit, after, by=by)
    except Invalid as exc:
        raise Invalid("invalid_message", exc.message) from None
    return {"limit": limit, "after": after}


def page_reply(field: str, rows: list[dict[str, Any]], limit: int, by: str) -> dict[str, Any]:
    """A page of `rows`, fetched with LIMIT limit + 1: the extra row only says another page follows."""
    page = rows[:limit]
    more = len(rows) > limit
    return {field: page, "count": len(page), "next_after": page[-1][by] if more else None}


def clean_health_message(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("missing_parameter", "The 'message' parameter is required.")
    if len(value) > MESSAGE_MAX:
        raise Invalid("invalid_parameter", f"'message' must be at most {MESSAGE_MAX} characters.")
    return value


def no_parameters(payload: Mapping[str, Any]) -> dict[str, Any]:
    """For messages that carry nothing but their request id (the reads)."""
    if payload:
        raise Invalid("invalid_message", "This message takes no parameters.")
    return {}


def _json_value(value: Any) -> Any:
    """What a database row may hold besides JSON's own types, as JSON (json.dumps' `default`).

    A DECIMAL (MySQL's SUM() too) is a JSON number: a whole one exactly, any other as
    the nearest float, which prints the same digits up to 15 significant ones. A
    DATETIME, DATE or TIME is ISO 8601 text. Anything else stays a TypeError.
    """
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_value).encode()


def decode(body: bytes) -> dict[str, Any]:
    """A message body as a JSON object, or `Invalid("invalid_message")`."""
    try:
        payload = json.loads(body.decode("utf-8"))
    # RecursionError: JSON nested thousands deep (not a ValueError).
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Invalid("invalid_message", "The message body is not UTF-8 JSON.") from None
    if not isinstance(payload, dict):
        raise Invalid("invalid_message", "The message body is not a JSON object.")
    return payload


def fingerprint(routing_key: str, payload: Mapping[str, Any]) -> str:
    """Identifies what a request asked for, so a reused request id can be told apart."""
    work = {k: v for k, v in payload.items() if k != "sent_at"}
    canonical = json.dumps([routing_key, work], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stamped(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the time it is sent, for messages that expire."""
    return {**payload, "sent_at": time.time()}


def ok_reply(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error_reply(code: str, message: str, details: dict[str, str] | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False, "error": code, "message": message}
    if details:
        reply["details"] = details
    return reply


ERASED = "The record this answer was about has been deleted; its data is not kept."


def erased_reply(reply: dict[str, Any]) -> dict[str, Any]:
    """A stored answer without the personal data it held: its outcome and error code only."""
    if reply.get("ok"):
        return ok_reply({"erased": True, "message": ERASED})
    return error_reply(str(reply.get("error", "internal_error")), ERASED)
