"""What every service's pika sends: a message's frames in one write (common/amqp.py)."""

from __future__ import annotations

from typing import Any

import pika
import pika.connection
import pika.spec

from common import amqp  # noqa: F401  (joins pika's frames on import)


class Transport:
    """What pika's connection hands its transport, write by write."""

    _body_max_length = 131072
    bytes_sent = frames_sent = 0
    _output_marshaled_frames = pika.connection.Connection._output_marshaled_frames

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def _adapter_emit_data(self, data: bytes) -> None:
        self.writes.append(data)


def test_a_message_s_method_header_and_body_go_out_in_one_write() -> None:
    transport: Any = Transport()
    publish = pika.spec.Basic.Publish(exchange="", routing_key="insert_record")
    body = b'{"SRN": "S1"}'
    pika.connection.Connection._send_message(transport, 1, publish, (pika.BasicProperties(), body))
    [write] = transport.writes
    assert transport.frames_sent == 3 and transport.bytes_sent == len(write)
    assert write.endswith(body + b"\xce")  # the body frame, then the frame end
