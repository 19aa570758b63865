"""consumer_one: answers health checks, proving the producer -> RabbitMQ -> consumer path."""

from __future__ import annotations

from typing import Any

from common.consumer import run
from common.core import Message, Read
from common.messages import clean_health_message
from common.topology import HEALTH_CHECK

SERVICE = "consumer_one"


def parse(payload: dict[str, Any]) -> dict[str, Any]:
    return {"message": clean_health_message(payload.get("message"))}


def handle(message: Message, _db: None) -> dict[str, Any]:
    return {"status": "ok", "message": message.payload["message"], "consumer": SERVICE}


HANDLER = Read(HEALTH_CHECK, parse, handle, uses_db=False)

if __name__ == "__main__":
    run(SERVICE, HANDLER)
