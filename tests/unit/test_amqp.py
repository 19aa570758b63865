"""What every service's pika sends: a message's frames in one write, what waits in its buffer in one
send, and a consumer's reply with the next ack (common/amqp.py)."""

from __future__ import annotations

import collections
from typing import Any

import pika
import pika.adapters.utils.io_services_utils
import pika.connection
import pika.spec

from common import amqp  # joins pika's frames and buffered writes on import


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


class Socket:
    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(data)
        return len(data)


class Buffered:
    """pika's transport as _produce sees it: its buffer, its byte count and its socket."""

    _produce = pika.adapters.utils.io_services_utils._AsyncTransportBase._produce

    def __init__(self, chunks: list[bytes]) -> None:
        self._tx_buffers = collections.deque(chunks)
        self._tx_buffered_byte_count = sum(len(chunk) for chunk in chunks)
        self._sock = Socket()
        self._state = "open"

    @staticmethod
    def _sigint_safe_send(sock: Socket, data: bytes) -> int:
        return sock.send(data)


def test_what_waits_in_the_buffer_goes_out_in_one_send() -> None:
    transport: Any = Buffered([b"reply-1", b"reply-2", b"ack"])
    transport._produce()
    assert transport._sock.sends == [b"reply-1reply-2ack"]
    assert transport._tx_buffered_byte_count == 0 and not transport._tx_buffers


def test_a_reply_waits_for_the_next_flushing_call_of_a_blocking_channel() -> None:
    class Impl:
        def __init__(self) -> None:
            self.published: list[str] = []

        def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
            self.published.append(routing_key)

    class Channel:  # a BlockingChannel's basic_publish would flush: never called here
        _impl = Impl()

        def basic_publish(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("flushed at once")

    channel: Any = Channel()
    amqp.publish_with_next_flush(channel, "", "amq.rabbitmq.reply-to.x", b"{}", pika.BasicProperties())
    assert channel._impl.published == ["amq.rabbitmq.reply-to.x"]
