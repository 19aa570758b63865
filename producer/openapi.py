"""The OpenAPI 3.1 document of the producer's HTTP API, served at GET /openapi.json.

Written out from docs/contract.md, with every body a client sends made from its
model and every answer from its kind's declared reply (common/models.py,
common/topology.py); tests keep it true (every route of the app is here and
nothing else, and schemathesis checks live answers against it). A declared kind
written out nowhere here (a new one the producer serves from its declaration alone)
gets an operation made from that declaration.
"""

from __future__ import annotations

from typing import Any

from common import models
from common.messages import MESSAGE_MAX, PAGE_MAX, READ_PAGE, REQUEST_ID_PATTERN
from common.topology import (
    ADJUST_STOCK,
    CREATE_ITEM,
    DELETE_RECORD,
    HEALTH_CHECK,
    INSERT_RECORD,
    KIND,
    KINDS,
    PLACE_ORDER,
    UPDATE_RECORD,
    Kind,
)

JSON = "application/json"
REQUEST_ID_HEADER = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "headers": REQUEST_ID_HEADER, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "Bad input (the error code says which)",
        401: "API_TOKEN is set and the token is missing or wrong",
        403: "Sent by another site's page (Sec-Fetch-Site or Origin): cross_site_request",
        404: "Not found", 409: "Conflict", 413: "Body larger than 16 KiB",
        415: "Body of a type the route does not take", 503: "RabbitMQ did not confirm the message",
        504: "No consumer answered within REQUEST_TIMEOUT_S",
    }
    return {str(s): _json(_ref("Error"), descriptions[s]) for s in (*statuses, 401, 403)}


REQUEST_ID = {"name": "X-Request-ID", "in": "header", "required": False,
              "description": (
                  "Kept when 1-64 of [A-Za-z0-9._-], otherwise replaced; always returned. Requests "
                  "sent with one id at the same time each get their own answer. A write's id names "
                  "that write: sent again with the same body, while in flight or after, it gets the "
                  "first one's answer (it is done once); with a different body or another write it is "
                  "409 request_id_conflict, and nothing is done."),
              "schema": {"type": "string"}}
RECORD_INPUT = models.RECORD.sent_schema()
SRN = RECORD_INPUT["properties"]["SRN"]
UPDATE_INPUT = models.UPDATE.sent_schema()
ITEM_INPUT = models.ITEM.sent_schema()
SKU_INPUT = models.SKU.rule.sent
DELTA_INPUT = models.STOCK_DELTA.sent_schema()
ORDER_INPUT = models.ORDER.sent_schema()
ACCEPTED = {"202": {
    "description": "RabbitMQ confirmed the write, the consumer has not answered yet: it will be done",
    "headers": {"Location": {"schema": {"type": "string"}}, **REQUEST_ID_HEADER},
    "content": {JSON: {"schema": _ref("Accepted")}},
}}


def _json_write(summary: str, schema: dict[str, Any], success: str, answer: dict[str, Any], description: str,
                *errors: int, parameters: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """An inventory write: a JSON body, its answer, 202 while it is on its way, and errors."""
    return {"post": {
        "summary": summary, "parameters": [REQUEST_ID, *parameters],
        "requestBody": {"required": True, "content": {JSON: {"schema": schema}}},
        "responses": {success: _json(answer, description), **ACCEPTED,
                      **_errors(400, *errors, 413, 415, 503)},
    }}


def _paged(summary: str, name: str, row: dict[str, Any], key: str,
           key_schema: dict[str, Any]) -> dict[str, Any]:
    """A read of a whole table, or one page of it (keyset paging on `key`)."""
    rows = {"type": "array", "items": row}
    return {"get": {
        "summary": summary,
        "description": (
            "Without `limit` and `after`: every row, sent as it is read, page by page, so "
            "the answer has no size limit. With either: one page, and `next_after` to pass as "
            "`after` for the next one (null on the last page). A plain answer that fails "
            "after its first page is cut short: the body is then not valid JSON."),
        "parameters": [
            REQUEST_ID,
            {"name": "limit", "in": "query", "required": False,
             "description": f"Rows in the page, 1-{PAGE_MAX} (default {READ_PAGE})",
             "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}},
            {"name": "after", "in": "query", "required": False,
             "description": f"The page starts after this {key}: the previous page's `next_after`",
             "schema": key_schema},
        ],
        "responses": {"200": _json({"oneOf": [
            models.obj({name: rows, "count": {"type": "integer", "minimum": 0}}),
            models.obj({name: rows,
                     "count": {"type": "integer", "minimum": 0, "description": "Rows in this page"},
                     "next_after": {"oneOf": [key_schema, {"type": "null"}]}}),
        ]}, f"All {name}, or one page of them"),
                      **_errors(400, 503, 504)},
    }}


def _declared(kind: Kind) -> dict[str, Any]:
    """The operation of a kind written out nowhere below, made from its declaration alone:
    what the producer's declared_view serves (a JSON write of its model, or a read that
    takes no parameters). Its answer is any JSON object, until the kind is written out."""
    summary = f"{kind.key} ({kind.service})"
    if kind.body is not None:
        operation: dict[str, Any] = _json_write(summary, kind.body.sent_schema(), str(kind.status),
                                                kind.reply, "Done", 409)["post"]
        return operation
    return {"summary": summary, "parameters": [REQUEST_ID],
            "responses": {str(kind.status): _json(kind.reply, "The consumer's answer"),
                          **_errors(400, 503, 504)}}


def document() -> dict[str, Any]:
    described = _described()
    for kind in KINDS:
        path = kind.path.replace("<", "{").replace(">", "}")
        if kind.method.lower() not in described["paths"].get(path, {}):
            described["paths"].setdefault(path, {})[kind.method.lower()] = _declared(kind)
    return described


def _stored(status: int) -> dict[str, Any]:
    """The answers GET /requests/<id> replays with `status`: those of the writes that succeed with it."""
    return {"anyOf": [kind.reply for kind in KINDS if kind.write and kind.status == status]}


def _described() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Student records and inventory over RabbitMQ", "version": "1.1.0",
                 "description": "The producer's HTTP API; see docs/contract.md in the repository."},
        "paths": {
            "/": {"get": {"summary": "The HTML page", "responses": {"200": {
                "description": "A page with forms for every route", "headers": REQUEST_ID_HEADER,
                "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/docs": {"get": {"summary": "This document, rendered for a person", "responses": {"200": {
                "description": "An HTML page", "headers": REQUEST_ID_HEADER,
                "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/health_check": {"get": {
                "summary": "Round trip through RabbitMQ to consumer_one",
                "parameters": [REQUEST_ID, {"name": "message", "in": "query", "required": True,
                                            "schema": {"type": "string", "minLength": 1,
                                                       "maxLength": MESSAGE_MAX}}],
                "responses": {"200": _json(KIND[HEALTH_CHECK].reply, "consumer_one acknowledged it"),
                    **_errors(400, 503, 504)},
            }},
            "/insert_record": {"post": {
                "summary": "Insert a record (consumer_two)",
                "parameters": [REQUEST_ID],
                "requestBody": {"required": True, "content": {
                    JSON: {"schema": RECORD_INPUT},
                    "application/x-www-form-urlencoded": {"schema": RECORD_INPUT},
                    "multipart/form-data": {"schema": RECORD_INPUT}}},
                "responses": {"201": _json(KIND[INSERT_RECORD].reply,
                                           "The row is committed (a retry after the record was "
                                           "deleted: erased)"),
                              **ACCEPTED, **_errors(400, 409, 413, 415, 503)},
            }},
            "/read_database": _paged("Every record, or one page of them, ordered by SRN (consumer_four)",
                                     "records", models.RECORD_ROW, "SRN", SRN),
            "/delete_record": {"get": {
                "summary": "Delete the record of one SRN (consumer_three)",
                "parameters": [REQUEST_ID, {"name": "SRN", "in": "query", "required": True, "schema": SRN}],
                "responses": {"200": _json(KIND[DELETE_RECORD].reply, "The row is gone"),
                              **ACCEPTED, **_errors(400, 404, 409, 503)},
            }},
            "/update_record": {"post": {
                "summary": "Change the Name and/or Section of one record (consumer_five)",
                "parameters": [REQUEST_ID],
                "requestBody": {"required": True, "content": {
                    JSON: {"schema": UPDATE_INPUT},
                    "application/x-www-form-urlencoded": {"schema": UPDATE_INPUT},
                    "multipart/form-data": {"schema": UPDATE_INPUT}}},
                "responses": {"200": _json(KIND[UPDATE_RECORD].reply,
                                           "The stored record (a retry after the record was deleted: "
                                           "erased)"),
                              **ACCEPTED, **_errors(400, 404, 409, 413, 415, 503)},
            }},
            "/items": {
                **_json_write("Create an item (inventory_items)", ITEM_INPUT, "201",
                              KIND[CREATE_ITEM].reply, "The item is stored", 409),
                **_paged("Every item with its stock, or one page of them, ordered by SKU (inventory_items)",
                         "items", models.ITEM_ROW, "SKU", SKU_INPUT),
            },
            "/items/{sku}/stock": _json_write(
                "Add to (Delta > 0) or take from (Delta < 0) an item's stock (inventory_items)",
                DELTA_INPUT, "200", KIND[ADJUST_STOCK].reply, "The item with its new Quantity",
                404, 409, parameters=({"name": "sku", "in": "path", "required": True, "schema": SKU_INPUT},)),
            "/orders": {
                **_json_write("Place an order; its stock is taken in the same transaction (inventory_orders)",
                              ORDER_INPUT, "201", KIND[PLACE_ORDER].reply, "The order is placed",
                              404, 409),
                **_paged("Every order, or one page of them, oldest first (inventory_orders)",
                         "orders", models.ORDER_ROW, "OrderID", models.ORDER_ID),
            },
            "/requests/{request_id}": {"get": {
                "summary": "The stored answer of a finished write",
                "parameters": [REQUEST_ID, {"name": "request_id", "in": "path", "required": True,
                                            "schema": {"type": "string"}},
                               {"name": "asked", "in": "query", "required": True,
                                "description": "As given in a 202's Location or a write answer's "
                                               "Content-Location: what that request asked for. Required: "
                                               "the stored answer goes only to a caller that can name it. "
                                               "Another request's answer under the same id is "
                                               "409 request_id_conflict, never passed off as this one's.",
                                "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
                "responses": {
                    "200": _json(_stored(200), "A finished delete, update or stock change"),
                    "201": _json(_stored(201), "A finished insert, item creation or order"),
                    **_errors(400, 404, 409, 503, 504)},
            }},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json({"type": "object"}, "The OpenAPI 3.1 document")}}},
            "/asyncapi.json": {"get": {"summary": "The AsyncAPI 3.0 document of the messages on the bus",
                                       "responses": {"200": _json({"type": "object"}, "AsyncAPI 3.0")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of the producer", "responses": {"200": {
                "description": "Prometheus text format", "headers": REQUEST_ID_HEADER,
                "content": {"text/plain": {"schema": {"type": "string"}}}}, **_errors()}}},
            "/livez": {"get": {"summary": "The process runs", "responses": {
                "200": _json(models.obj({"status": {"const": "alive"}}), "Alive")}}},
            "/readyz": {"get": {"summary": "Connected to RabbitMQ", "responses": {
                "200": _json(models.obj({"status": {"const": "ready"}}), "Ready"), **_errors(503)}}},
        },
        "components": {
            "headers": {"RequestId": {"schema": {"type": "string",
                                                 "pattern": f"^{REQUEST_ID_PATTERN.pattern}$"}}},
            "schemas": {
                "Accepted": models.obj({"status": {"const": "accepted"}, "request_id": {"type": "string"}}),
                "Error": models.obj({"error": {"type": "string"}, "message": {"type": "string"},
                                  "request_id": {"type": "string"},
                                  "details": {"type": "object", "additionalProperties": {"type": "string"}}},
                                 ["error", "message", "request_id"]),
            },
        },
    }
