"""The producer's Broker matching replies to calls, over a fake channel (no RabbitMQ).

The fake runs the I/O thread's callbacks in the calling thread; the test plays
RabbitMQ: it confirms what was published and answers it, in an order of its choosing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pika.spec import Basic, BasicProperties

from common import logs
from common.config import AmqpSettings
from producer.broker import Broker, BrokerUnavailable, RequestIdConflict

SETTINGS = AmqpSettings.from_env({"RABBITMQ_HOST": "h", "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "p"})


class FakeChannel:
    is_open = True

    def __init__(self) -> None:
        self.published: list[tuple[str, BasicProperties, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties,
                      mandatory: bool) -> None:
        with self.lock:
            self.published.append((routing_key, properties, json.loads(body)))


class FakeLoop:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.lock = threading.Lock()

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        with self.lock:  # one I/O thread: its callbacks never overlap
            callback()


class FakeConnection:
    def __init__(self, broker: Broker) -> None:
        self.ioloop = FakeLoop(broker)


class Shared(logging.Handler):
    """Sets `joined` when a call logs that it shares the write in flight with its request id:
    it is waiting on that one's outcome then, and has published nothing of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.joined = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "request_shared":
            self.joined.set()


@pytest.fixture
def shared() -> Iterator[Shared]:
    handler, logger = Shared(), logging.getLogger("test")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def broker() -> Broker:
    broker = Broker(SETTINGS, "test", logs.EventLogger(logging.getLogger("test"), {}))
    broker._thread = threading.current_thread()  # start() must not start a real I/O thread
    broker._channel = FakeChannel()
    broker._connection = FakeConnection(broker)
    broker._ready.set()
    return broker


def channel_of(broker: Broker) -> FakeChannel:
    channel = broker._channel
    assert isinstance(channel, FakeChannel)
    return channel


def in_threads(calls: list[Callable[[], Any]]) -> tuple[list[threading.Thread], dict[int, Any]]:
    results: dict[int, Any] = {}

    def run(n: int, call: Callable[[], Any]) -> None:
        try:
            results[n] = call()
        except Exception as exc:  # the test looks at it
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results


def wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def confirm_all(broker: Broker) -> None:
    with broker._connection.ioloop.lock:  # type: ignore[union-attr]
        broker._on_confirm(type("Frame", (), {"method": Basic.Ack(delivery_tag=broker._next_tag,
                                                                  multiple=True)})())


def answer(broker: Broker, props: BasicProperties, reply: dict[str, Any]) -> None:
    """What a consumer sends back: the request's correlation id echoed, its message id."""
    back = BasicProperties(correlation_id=props.correlation_id, message_id=props.message_id)
    broker._on_reply(None, None, back, json.dumps(reply).encode())


def test_calls_sharing_a_request_id_each_get_their_own_reply(broker: Broker) -> None:
    keys = ["health_check", "read_database", "read_items"] * 3
    def asking(key: str) -> Callable[[], Any]:
        return lambda: broker.call(key, {"asked": key}, "same-id", timeout=5)

    threads, results = in_threads([asking(key) for key in keys])
    channel = channel_of(broker)
    wait_for(lambda: len(channel.published) == len(keys))
    confirm_all(broker)
    published = list(channel.published)
    correlation_ids = [props.correlation_id for _, props, _ in published]
    assert len(set(correlation_ids)) == len(keys)  # new for every publish
    assert all(props.message_id == "same-id" for _, props, _ in published)  # the client's id
    assert "same-id" not in correlation_ids
    for key, props, body in reversed(published):  # replies in another order than the requests
        answer(broker, props, {"ok": True, "result": {"key": key, "asked": body["asked"]}})
    for thread in threads:
        thread.join(5)
    for n, key in enumerate(keys):
        assert results[n] == {"ok": True, "result": {"key": key, "asked": key}}


def test_a_reply_for_nobody_goes_to_nobody(broker: Broker) -> None:
    threads, results = in_threads([lambda: broker.call("health_check", {}, "rid", timeout=0.5)])
    wait_for(lambda: len(channel_of(broker).published) == 1)
    confirm_all(broker)
    # A reply with the request id but not the call's correlation id (an old echo) answers nothing.
    answer(broker, BasicProperties(correlation_id="rid", message_id="rid"), {"ok": True, "result": {}})
    threads[0].join(5)
    assert results[0] is None  # confirmed, no reply of its own in time


def test_the_same_write_in_flight_shares_one_publish_and_its_answer(broker: Broker, shared: Shared) -> None:
    record = {"Name": "A", "SRN": "S1", "Section": "B"}
    threads, results = in_threads(
        [lambda: broker.call("insert_record", record, "w-1", timeout=5, write=True)])
    wait_for(lambda: len(channel_of(broker).published) == 1)
    more, sharing = in_threads(
        [lambda: broker.call("insert_record", dict(reversed(record.items())), "w-1", timeout=5, write=True)])
    # The second call has either joined the first or published again: wait for whichever it did.
    wait_for(lambda: shared.joined.is_set() or len(channel_of(broker).published) > 1)
    assert len(channel_of(broker).published) == 1  # not published again
    assert shared.joined.is_set()
    confirm_all(broker)
    answer(broker, channel_of(broker).published[0][1], {"ok": True, "result": {"record": record}})
    for thread in threads + more:
        thread.join(5)
    assert results[0] == sharing[0] == {"ok": True, "result": {"record": record}}
    assert broker._awaiting == {} and broker._writes == {}


def test_another_write_with_a_request_id_in_flight_is_a_conflict_before_publishing(broker: Broker) -> None:
    threads, results = in_threads(
        [lambda: broker.call("insert_record", {"SRN": "S1"}, "w-2", timeout=5, write=True)])
    wait_for(lambda: len(channel_of(broker).published) == 1)
    with pytest.raises(RequestIdConflict):
        broker.call("insert_record", {"SRN": "S2"}, "w-2", timeout=5, write=True)
    with pytest.raises(RequestIdConflict):
        broker.call("delete_record", {"SRN": "S1"}, "w-2", timeout=5, write=True)
    # A read with the same id is not a write: it is published and answered on its own.
    reads, read_results = in_threads([lambda: broker.call("read_items", {}, "w-2", timeout=5)])
    wait_for(lambda: len(channel_of(broker).published) == 2)
    assert [key for key, _, _ in channel_of(broker).published] == ["insert_record", "read_items"]
    confirm_all(broker)
    (_, write, _), (_, read, _) = channel_of(broker).published
    answer(broker, read, {"ok": True, "result": {"items": []}})
    answer(broker, write, {"ok": True, "result": {"record": {"SRN": "S1"}}})
    for thread in threads + reads:
        thread.join(5)
    assert results[0] == {"ok": True, "result": {"record": {"SRN": "S1"}}}
    assert read_results[0] == {"ok": True, "result": {"items": []}}
    # Once done, the id is free again here (the consumers' ledger keeps it from then on).
    assert broker._writes == {}


def test_a_lost_connection_releases_shared_calls_too(broker: Broker, shared: Shared) -> None:
    # A deadline far beyond the joins below: a call that returns was released, not timed out.
    threads, results = in_threads(
        [lambda: broker.call("insert_record", {"SRN": "S1"}, "w-3", timeout=60, write=True)])
    wait_for(lambda: len(channel_of(broker).published) == 1)
    more, sharing = in_threads(
        [lambda: broker.call("insert_record", {"SRN": "S1"}, "w-3", timeout=60, write=True)])
    assert shared.joined.wait(5), "the second call did not join the first"
    broker._fail_all("the connection to RabbitMQ was lost")
    for thread in threads + more:
        thread.join(5)
        assert not thread.is_alive()
    assert isinstance(results[0], BrokerUnavailable) and isinstance(sharing[0], BrokerUnavailable)
    assert len(channel_of(broker).published) == 1  # the second one shared the first's outcome


def test_a_shared_write_without_a_connection_fails_fast(broker: Broker, shared: Shared) -> None:
    """Like a call of its own: it must not wait out its timeout on a write that cannot be confirmed."""
    threads, results = in_threads(
        [lambda: broker.call("insert_record", {"SRN": "S1"}, "w-4", timeout=60, write=True)])
    wait_for(lambda: len(channel_of(broker).published) == 1)  # in flight, not confirmed yet
    connection, broker._connection = broker._connection, None  # then the connection is gone
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        broker.call("insert_record", {"SRN": "S1"}, "w-4", timeout=3, write=True)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"waited {elapsed:.1f} s for a write that could not be confirmed"
    broker._connection = connection
    broker._fail_all("the connection to RabbitMQ was lost")
    threads[0].join(5)
    assert isinstance(results[0], BrokerUnavailable)


def test_the_pika_call_that_drops_a_silent_connection_is_still_there() -> None:
    """Broker._probe drops a silent node's connection the way pika's own heartbeat check does,
    through a method pika does not document: an upgrade that removes it must fail here."""
    import pika

    assert callable(getattr(pika.SelectConnection, "_terminate_stream", None))


class ProbedConnection:
    """A connection whose I/O loop the test runs by hand: the probe's timers and its drop are recorded."""

    def __init__(self) -> None:
        self.ioloop = self
        self.later: list[Callable[[], None]] = []
        self.dropped: list[BaseException] = []

    def call_later(self, _delay: float, callback: Callable[[], None]) -> None:
        self.later.append(callback)

    def _terminate_stream(self, error: BaseException) -> None:
        self.dropped.append(error)


class ProbedChannel:
    is_open = True

    def __init__(self) -> None:
        self.probes = 0

    def basic_qos(self, prefetch_count: int, callback: Callable[[Any], None]) -> None:
        self.probes += 1


def probing(monkeypatch: pytest.MonkeyPatch) -> tuple[Broker, ProbedConnection, ProbedChannel, list[float]]:
    """A broker of two nodes, connected, its probe started at time 0 of a clock the test sets."""
    import producer.broker as module

    clock = [0.0]
    monkeypatch.setattr(module, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0]),
                                                           "time": staticmethod(time.time)}))
    settings = AmqpSettings.from_env({"RABBITMQ_HOST": "h", "RABBITMQ_PORTS": "5672,5673",
                                      "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "p"})
    broker = Broker(settings, "test", logs.EventLogger(logging.getLogger("test"), {}))
    connection, channel = ProbedConnection(), ProbedChannel()
    broker._connection, broker._channel = connection, channel
    broker._on_consuming(None)
    return broker, connection, channel, clock


def tick(connection: ProbedConnection, clock: list[float], at: float) -> None:
    """The loop runs the probe's timer at `at`."""
    clock[0] = at
    callback = connection.later.pop()
    callback()


def test_a_node_silent_past_the_limit_is_dropped_and_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    _broker, connection, channel, clock = probing(monkeypatch)
    for at in (0.5, 1.0, 1.5, 2.0):
        tick(connection, clock, at)
        assert not connection.dropped, f"dropped after {at} s of a 2 s limit"
    tick(connection, clock, 2.5)
    assert len(connection.dropped) == 1 and channel.probes == 1


def test_a_stall_of_this_process_is_not_the_node_s_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    broker, connection, channel, clock = probing(monkeypatch)
    tick(connection, clock, 3.0)  # the loop ran 2.5 s late: the answer may be unread
    assert not connection.dropped
    broker._on_probe_answered(None)  # read right after
    tick(connection, clock, 3.5)
    assert not connection.dropped and channel.probes == 2


def test_a_node_still_silent_after_a_stall_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    _broker, connection, _channel, clock = probing(monkeypatch)
    tick(connection, clock, 3.0)
    tick(connection, clock, 3.5)
    assert len(connection.dropped) == 1
