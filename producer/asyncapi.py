"""The AsyncAPI 3.0 document of the bus, made from the declarations, served at GET /asyncapi.json.

Every message kind of common/topology.py's KINDS is a channel (its queue, bound
under its routing key), a `send` operation, its request (the payload as its
consumer takes it: `Kind.message_schema()`) and its reply (`Kind.reply`, the
reply's `result`). Nothing here is written per kind, so a new declaration is
documented by itself; the tests hold real messages and replies to it.

    python -m producer.asyncapi      # the document, as JSON
"""

from __future__ import annotations

import json
from typing import Any

from common.messages import CONTENT_TYPE
from common.models import TEXT, obj
from common.topology import DEAD_LETTER_EXCHANGE, EXCHANGE, KINDS, Kind

DESCRIPTION = f"""\
What travels on the bus between the producer and the consumers (docs/contract.md,
"Messages and queues"). Every request is published to the durable direct exchange
`{EXCHANGE}` with its routing key, persistent (delivery_mode 2), content_type
{CONTENT_TYPE}, with publisher confirms and `mandatory`; each key has its own durable
quorum queue, and a message redelivered too often goes to `<key>.dead` through
`{DEAD_LETTER_EXCHANGE}`. The message_id is the request id (the client's X-Request-ID):
the key of the request ledger and of every log line. The correlation_id is the caller's
own, new for every publish (the producer's is 32 hex digits) and never taken from the
client, since clients may send one request id with several requests at once. The
consumer answers on `reply_to` (RabbitMQ's direct reply-to) with a reply that echoes the
request's correlation_id (and carries its message_id), so each call gets its own answer.
A write whose request id is in flight in the producer shares that outcome when it asks the
same, and is refused before publishing (request_id_conflict) when it asks something else;
the ledger does the same for a request id already done."""

QUEUE_BINDING = {"amqp": {
    "is": "routingKey",
    "exchange": {"name": EXCHANGE, "type": "direct", "durable": True, "autoDelete": False, "vhost": "/"},
    "bindingVersion": "0.3.0",
}}
CORRELATION = {"$ref": "#/components/correlationIds/call"}
# A refusal, or a message that breaks the contract: the contract's error code, a sentence, and
# for a body the bad fields (`details`).
ERROR = obj({"ok": {"const": False}, "error": TEXT, "message": TEXT,
             "details": {"type": "object", "additionalProperties": TEXT}},
            required=["ok", "error", "message"])


def name(kind: Kind) -> str:
    """A kind's messages' name: insert_record -> InsertRecord."""
    return "".join(word.capitalize() for word in kind.key.split("_"))


def _message(payload: dict[str, Any], summary: str) -> dict[str, Any]:
    return {"contentType": CONTENT_TYPE, "correlationId": CORRELATION, "summary": summary, "payload": payload}


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {"Error": _message(ERROR, "A refusal or an invalid message")}
    for kind in KINDS:
        request, reply = f"{name(kind)}Request", f"{name(kind)}Reply"
        what = f"{kind.method} {kind.path} ({kind.service}{', a write' if kind.write else ''})"
        messages[request] = _message(kind.message_schema(), f"{what}: the request")
        messages[reply] = _message(obj({"ok": {"const": True}, "result": kind.reply}), f"{what}: its answer")
        channels[kind.key] = {"address": kind.key, "bindings": QUEUE_BINDING,
                              "messages": {"request": {"$ref": f"#/components/messages/{request}"}}}
        operations[name(kind)] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{kind.key}"},
            "messages": [{"$ref": f"#/channels/{kind.key}/messages/request"}],
            "reply": {"channel": {"$ref": "#/channels/reply"},
                      "messages": [{"$ref": f"#/channels/reply/messages/{reply}"},
                                   {"$ref": "#/channels/reply/messages/Error"}]},
        }
    channels["reply"] = {
        "address": "amq.rabbitmq.reply-to",
        "description": ("RabbitMQ's direct reply-to. The producer publishes with reply_to "
                        "amq.rabbitmq.reply-to; the consumer receives it rewritten to the caller's own "
                        "address (amq.rabbitmq.reply-to.<suffix>) and answers there, without `mandatory`."),
        "messages": {message: {"$ref": f"#/components/messages/{message}"}
                     for message in messages if not message.endswith("Request")},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Student records and inventory over RabbitMQ", "version": "1.2.0",
                 "description": DESCRIPTION},
        "servers": {"rabbitmq": {
            "host": "{gateway}:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
            "description": "The gateway IP of the RabbitMQ network (RABBITMQ_HOST) and its published port.",
            "variables": {"gateway": {"description": "docker network inspect rabbitmq_net "
                                                     "-f '{{(index .IPAM.Config 0).Gateway}}'"}},
        }},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "correlationIds": {"call": {
                "description": ("The caller's id of one publish: new for every message (never the request "
                                "id, which travels as the message_id), and echoed by the consumer in its "
                                "reply so the caller matches the reply to its call."),
                "location": "$message.header#/correlation_id",
            }},
        },
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
