"""The producer's Broker matching replies to calls, with RabbitMQ in memory (producer/testing.py).

The broker's I/O callbacks run in the calling thread; the test plays RabbitMQ:
it confirms what was published and answers it, in an order of its choosing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pika.spec import BasicProperties

from producer.broker import BrokerUnavailable, RequestIdConflict
from producer.testing import InMemoryRabbit


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
def rabbit() -> InMemoryRabbit:
    return InMemoryRabbit()


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


def test_calls_sharing_a_request_id_each_get_their_own_reply(rabbit: InMemoryRabbit) -> None:
    keys = ["health_check", "read_database", "read_items"] * 3
    def asking(key: str) -> Callable[[], Any]:
        return lambda: rabbit.broker.call(key, {"asked": key}, "same-id", timeout=5)

    threads, results = in_threads([asking(key) for key in keys])
    wait_for(lambda: len(rabbit.published) == len(keys))
    rabbit.confirm_all()
    published = list(rabbit.published)
    correlation_ids = [props.correlation_id for _, props, _ in published]
    assert len(set(correlation_ids)) == len(keys)  # new for every publish
    assert all(props.message_id == "same-id" for _, props, _ in published)  # the client's id
    assert "same-id" not in correlation_ids
    for key, props, body in reversed(published):  # replies in another order than the requests
        rabbit.answer(props, {"ok": True, "result": {"key": key, "asked": body["asked"]}})
    for thread in threads:
        thread.join(5)
    for n, key in enumerate(keys):
        assert results[n] == {"ok": True, "result": {"key": key, "asked": key}}


def test_a_reply_for_nobody_goes_to_nobody(rabbit: InMemoryRabbit) -> None:
    threads, results = in_threads([lambda: rabbit.broker.call("health_check", {}, "rid", timeout=0.5)])
    wait_for(lambda: len(rabbit.published) == 1)
    rabbit.confirm_all()
    # A reply with the request id but not the call's correlation id (an old echo) answers nothing.
    rabbit.answer(BasicProperties(correlation_id="rid", message_id="rid"), {"ok": True, "result": {}})
    threads[0].join(5)
    assert results[0] is None  # confirmed, no reply of its own in time


def test_the_same_write_in_flight_shares_one_publish_and_its_answer(rabbit: InMemoryRabbit,
                                                                    shared: Shared) -> None:
    record = {"Name": "A", "SRN": "S1", "Section": "B"}
    threads, results = in_threads(
        [lambda: rabbit.broker.call("insert_record", record, "w-1", timeout=5, write=True)])
    wait_for(lambda: len(rabbit.published) == 1)
    more, sharing = in_threads(
        [lambda: rabbit.broker.call("insert_record", dict(reversed(record.items())), "w-1", timeout=5,
                                    write=True)])
    # The second call has either joined the first or published again: wait for whichever it did.
    wait_for(lambda: shared.joined.is_set() or len(rabbit.published) > 1)
    assert len(rabbit.published) == 1  # not published again
    assert shared.joined.is_set()
    rabbit.confirm_all()
    rabbit.answer(rabbit.published[0][1], {"ok": True, "result": {"record": record}})
    for thread in threads + more:
        thread.join(5)
    assert results[0] == sharing[0] == {"ok": True, "result": {"record": record}}
    assert rabbit.idle()


def test_another_write_with_a_request_id_in_flight_is_a_conflict_before_publishing(
        rabbit: InMemoryRabbit) -> None:
    threads, results = in_threads(
        [lambda: rabbit.broker.call("insert_record", {"SRN": "S1"}, "w-2", timeout=5, write=True)])
    wait_for(lambda: len(rabbit.published) == 1)
    with pytest.raises(RequestIdConflict):
        rabbit.broker.call("insert_record", {"SRN": "S2"}, "w-2", timeout=5, write=True)
    with pytest.raises(RequestIdConflict):
        rabbit.broker.call("delete_record", {"SRN": "S1"}, "w-2", timeout=5, write=True)
    # A read with the same id is not a write: it is published and answered on its own.
    reads, read_results = in_threads([lambda: rabbit.broker.call("read_items", {}, "w-2", timeout=5)])
    wait_for(lambda: len(rabbit.published) == 2)
    assert [key for key, _, _ in rabbit.published] == ["insert_record", "read_items"]
    rabbit.confirm_all()
    (_, write, _), (_, read, _) = rabbit.published
    rabbit.answer(read, {"ok": True, "result": {"items": []}})
    rabbit.answer(write, {"ok": True, "result": {"record": {"SRN": "S1"}}})
    for thread in threads + reads:
        thread.join(5)
    assert results[0] == {"ok": True, "result": {"record": {"SRN": "S1"}}}
    assert read_results[0] == {"ok": True, "result": {"items": []}}
    # Once done, the id is free again here (the consumers' ledger keeps it from then on).
    assert rabbit.idle()


def test_a_lost_connection_releases_shared_calls_too(rabbit: InMemoryRabbit, shared: Shared) -> None:
    # A deadline far beyond the joins below: a call that returns was released, not timed out.
    threads, results = in_threads(
        [lambda: rabbit.broker.call("insert_record", {"SRN": "S1"}, "w-3", timeout=60, write=True)])
    wait_for(lambda: len(rabbit.published) == 1)
    more, sharing = in_threads(
        [lambda: rabbit.broker.call("insert_record", {"SRN": "S1"}, "w-3", timeout=60, write=True)])
    assert shared.joined.wait(5), "the second call did not join the first"
    rabbit.lose_connection()
    for thread in threads + more:
        thread.join(5)
        assert not thread.is_alive()
    assert isinstance(results[0], BrokerUnavailable) and isinstance(sharing[0], BrokerUnavailable)
    assert len(rabbit.published) == 1  # the second one shared the first's outcome


def test_a_shared_write_without_a_connection_fails_fast(rabbit: InMemoryRabbit, shared: Shared) -> None:
    """Like a call of its own: it must not wait out its timeout on a write that cannot be confirmed."""
    threads, results = in_threads(
        [lambda: rabbit.broker.call("insert_record", {"SRN": "S1"}, "w-4", timeout=60, write=True)])
    wait_for(lambda: len(rabbit.published) == 1)  # in flight, not confirmed yet
    with rabbit.disconnected():  # then the connection is gone
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            rabbit.broker.call("insert_record", {"SRN": "S1"}, "w-4", timeout=3, write=True)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"waited {elapsed:.1f} s for a write that could not be confirmed"
    rabbit.lose_connection()
    threads[0].join(5)
    assert isinstance(results[0], BrokerUnavailable)


def test_the_pika_call_that_drops_a_silent_connection_is_still_there() -> None:
    """Broker._probe drops a silent node's connection the way pika's own heartbeat check does,
    through a method pika does not document: an upgrade that removes it must fail here."""
    import pika

    assert callable(getattr(pika.SelectConnection, "_terminate_stream", None))


def test_a_node_silent_past_the_limit_is_dropped_and_not_before() -> None:
    rabbit = InMemoryRabbit(nodes=2)
    rabbit.connect()
    for at in (0.5, 1.0, 1.5, 2.0):
        rabbit.tick(at)
        assert not rabbit.dropped, f"dropped after {at} s of a 2 s limit"
    rabbit.tick(2.5)
    assert len(rabbit.dropped) == 1 and rabbit.probes == 1


def test_a_stall_of_this_process_is_not_the_node_s_silence() -> None:
    rabbit = InMemoryRabbit(nodes=2)
    rabbit.connect()
    rabbit.tick(3.0)  # the loop ran 2.5 s late: the answer may be unread
    assert not rabbit.dropped
    rabbit.probe_answered()  # read right after
    rabbit.tick(3.5)
    assert not rabbit.dropped and rabbit.probes == 2


def test_a_node_still_silent_after_a_stall_is_dropped() -> None:
    rabbit = InMemoryRabbit(nodes=2)
    rabbit.connect()
    rabbit.tick(3.0)
    rabbit.tick(3.5)
    assert len(rabbit.dropped) == 1


def test_with_one_node_there_is_no_probe() -> None:
    rabbit = InMemoryRabbit(nodes=1)
    rabbit.connect()
    assert rabbit.probes == 0
