"""The payloads' models: one declaration per body, its validation and its JSON Schemas.

A `Model` is a list of `Field`s, each with its `Rule`: what a value must be
(the words a client reads in `details` when it is not) and the JSON Schema
that says the same. The producer cleans every body with a model before it
publishes, each consumer cleans again what it takes off its queue, and the
OpenAPI document (the bodies a client sends) and the AsyncAPI document (the
payloads on the bus, as cleaned) are made from or checked against the same
models (tests/unit/test_models.py, tests/unit/test_kinds.py). One scheme for the records and the
inventory alike: an unknown field, a field given twice (a form may repeat one)
and a missing one are said the same way everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.messages import PAGE_MAX, SRN_PATTERN, Invalid


@dataclass(frozen=True)
class Rule:
    """`check(value)` returns the cleaned value or raises ValueError(what a client reads);
    `sent` is the JSON Schema of what a client may send, `cleaned` of what goes on the bus."""

    check: Callable[[Any], Any]
    sent: dict[str, Any]
    cleaned: dict[str, Any]


def _text_of(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value.strip()


def text(limit: int) -> Rule:
    """Text, trimmed: 1 to `limit` characters."""
    def check(value: Any) -> str:
        cleaned = _text_of(value)
        if not cleaned:
            raise ValueError("must not be empty")
        if len(cleaned) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return cleaned
    schema = {"type": "string", "minLength": 1, "maxLength": limit}
    return Rule(check, schema, schema)


def key(*, say_length: bool) -> Rule:
    """An SRN or a SKU: 1-32 of [A-Za-z0-9_-] once trimmed, stored upper-case. A record's SRN
    says an empty or long one apart (`say_length=False`); a SKU says its rule in one sentence."""
    def check(value: Any) -> str:
        cleaned = _text_of(value)
        if not say_length:
            if not cleaned:
                raise ValueError("must not be empty")
            if len(cleaned) > 32:
                raise ValueError("must be at most 32 characters")
            if not SRN_PATTERN.fullmatch(cleaned):
                raise ValueError("must be letters, digits, '-' or '_'")
        elif not SRN_PATTERN.fullmatch(cleaned):
            raise ValueError("must be 1-32 letters, digits, '-' or '_'")
        return cleaned.upper()
    sent = {"type": "string", "minLength": 1, "maxLength": 32, "pattern": f"^\\s*{SRN_PATTERN.pattern}\\s*$",
            "description": "Stored upper-case"}
    return Rule(check, sent, {"type": "string", "pattern": "^[A-Z0-9_-]{1,32}$"})


def whole(low: int, high: int, *, zero: bool = True) -> Rule:
    """A whole number from `low` to `high` (and not 0, unless `zero`)."""
    def check(value: Any) -> int:
        # bool is an int to Python, never to a client.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        if value == 0 and not zero:
            raise ValueError("must not be 0")
        return value
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if not zero:
        schema["not"] = {"const": 0}
    return Rule(check, schema, schema)


REQUIRED = object()  # a field with no default
OPTIONAL = object()  # a field that may be left out, and is then left out


@dataclass(frozen=True)
class Field:
    name: str  # as the contract spells it; its lower-case spelling is accepted too
    rule: Rule
    default: Any = REQUIRED


@dataclass(frozen=True)
class Model:
    """A body: `code` and `what` make its error (`invalid_record`, "The record is not valid.")."""

    code: str
    what: str
    fields: tuple[Field, ...]
    # At least one of these must be given (an update changes something).
    one_of: tuple[str, ...] = field(default=())

    @functools.cached_property
    def _spellings(self) -> dict[str, Field]:
        return {spelling: f for f in self.fields for spelling in (f.name, f.name.lower())}

    def clean(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON body, cleaned; `Invalid(code)` whose details name every bad field."""
        return self.clean_fields({name: (value,) for name, value in body.items()})

    def clean_fields(self, given: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        """Fields each with every value they were given (a form, a query string), cleaned."""
        details: dict[str, str] = {}
        values: dict[str, list[Any]] = {}
        for name, each in given.items():
            known = self._spellings.get(name)
            if known is None:
                details[name] = "unknown field"
            else:
                values.setdefault(known.name, []).extend(each)
        cleaned: dict[str, Any] = {}
        for f in self.fields:
            vals = values.get(f.name)
            if not vals:
                if f.default is REQUIRED:
                    details[f.name] = "required"
                elif f.default is not OPTIONAL:
                    cleaned[f.name] = f.default
            elif len(vals) > 1:
                details[f.name] = "given more than once"
            else:
                try:
                    cleaned[f.name] = f.rule.check(vals[0])
                except ValueError as exc:
                    details[f.name] = str(exc)
        if self.one_of and not details and not any(name in cleaned for name in self.one_of):
            details = dict.fromkeys(self.one_of, f"give {', '.join(self.one_of)} or both")
        if details:
            raise Invalid(self.code, f"The {self.what} is not valid.", details)
        return cleaned

    def sent_schema(self) -> dict[str, Any]:
        """The JSON Schema of a body a client may send (the OpenAPI document's)."""
        properties = {}
        for f in self.fields:
            schema = dict(f.rule.sent)
            if f.default not in (REQUIRED, OPTIONAL):
                schema["default"] = f.default
            properties[f.name] = schema
        return self._object(properties, [f.name for f in self.fields if f.default is REQUIRED])

    def cleaned_schema(self) -> dict[str, Any]:
        """The JSON Schema of the payload on the bus, as cleaned (the AsyncAPI document's)."""
        return self._object({f.name: f.rule.cleaned for f in self.fields},
                            [f.name for f in self.fields if f.default is not OPTIONAL])

    def _object(self, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        schema = {"type": "object", "properties": properties, "required": required,
                  "additionalProperties": False}
        if self.one_of:
            schema["minProperties"] = len(required) + 1
        return schema


# A student's record: what insert_record takes, and update_record (the SRN and what changes).
RECORD = Model("invalid_record", "record", (
    Field("Name", text(100)),
    Field("SRN", key(say_length=False)),
    Field("Section", text(16)),
))
UPDATE = Model("invalid_record", "record", (
    Field("Name", text(100), OPTIONAL),
    Field("SRN", key(say_length=False)),
    Field("Section", text(16), OPTIONAL),
), one_of=("Name", "Section"))


# The inventory: an item, a change of its stock, an order that takes from it.
NAME_MAX = 100
# Far above any real stock, and far below the column's range, so no sum overflows.
QUANTITY_MAX = 1_000_000_000

SKU = Field("SKU", key(say_length=True))
DELTA = Field("Delta", whole(-QUANTITY_MAX, QUANTITY_MAX, zero=False))
ITEM = Model("invalid_item", "item", (
    SKU, Field("Name", text(NAME_MAX)), Field("Quantity", whole(0, QUANTITY_MAX), default=0)))
# POST /items/<sku>/stock takes the Delta; the SKU is in the path. On the bus, both.
STOCK_DELTA = Model("invalid_stock_change", "stock change", (DELTA,))
STOCK_CHANGE = Model("invalid_stock_change", "stock change", (SKU, DELTA))
ORDER = Model("invalid_order", "order", (SKU, Field("Quantity", whole(1, QUANTITY_MAX))))


def clean_record(fields: Mapping[str, list[Any]], *, update: bool = False) -> dict[str, Any]:
    """A record from a form's or a query string's fields (each with every value it was given)."""
    return (UPDATE if update else RECORD).clean_fields(fields)


# The replies: what each kind's consumer answers as its `result` (a write's is also the body
# of its HTTP success), as JSON Schemas. Declared with the kind (common/topology.py); the
# AsyncAPI document is made from them, the OpenAPI document's answers too, and the unit
# harness (common/testing.py) and the integration tests hold every real reply to them.
def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A JSON object of exactly these properties (all required unless `required` says)."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, "additionalProperties": False}


TEXT: dict[str, Any] = {"type": "string"}
STORED_KEY = key(say_length=False).cleaned  # an SRN or a SKU as stored: upper-case
ORDER_ID: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
RECORD_ROW = obj({"Name": TEXT, "SRN": STORED_KEY, "Section": TEXT})
ITEM_ROW = obj({"SKU": STORED_KEY, "Name": TEXT, "Quantity": {"type": "integer", "minimum": 0}})
ORDER_ROW = obj({"OrderID": ORDER_ID, "SKU": STORED_KEY, "Quantity": {"type": "integer", "minimum": 1},
                 "Status": {"const": "placed"}})
# A stored answer about a student since deleted: its outcome kept, its data erased.
ERASED = obj({"erased": {"const": True}, "message": TEXT})


def or_erased(reply: dict[str, Any]) -> dict[str, Any]:
    """The answer of a write about a student: erased once the student is deleted."""
    return {"anyOf": [reply, ERASED]}


def page_request(after: dict[str, Any]) -> dict[str, Any]:
    """A read's message: one page of at most `limit` rows after the key `after` (from the start: null)."""
    return obj({"limit": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
                "after": {"oneOf": [after, {"type": "null"}]}}, required=[])


def page_reply(name: str, row: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One page of rows, and the key to ask the next one after (null on the last page)."""
    return obj({name: {"type": "array", "items": row}, "count": {"type": "integer", "minimum": 0},
                "next_after": {"oneOf": [after, {"type": "null"}]}})
