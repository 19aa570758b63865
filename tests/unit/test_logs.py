"""The JSON log lines, and how they reach stdout: one write a line, or under gevent one write a loop turn."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import logs

ROOT = Path(__file__).resolve().parents[2]


class CountingStream:
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None: ...


class Loop:
    """gevent's loop as the handler uses it: callbacks run at the end of the turn."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def run_callback(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def end_of_turn(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def logger_to(stream: CountingStream, loop: Loop | None) -> tuple[logging.Logger, logs.LineBatchingHandler]:
    handler = logs.LineBatchingHandler(stream)
    handler._loop = loop  # what _gevent_loop finds under gevent, or None
    handler.setFormatter(logs.JsonFormatter("producer"))
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, handler


def events(text: str) -> list[Any]:
    return [json.loads(line)["event"] for line in text.splitlines()]


def test_without_gevent_each_line_is_written_at_once() -> None:
    stream = CountingStream()
    logger, _ = logger_to(stream, None)
    logger.info("one")
    assert events("".join(stream.writes)) == ["one"]
    logger.info("two")
    assert len(stream.writes) == 2 and events("".join(stream.writes)) == ["one", "two"]


def test_under_gevent_the_lines_of_one_loop_turn_go_out_in_one_write_at_its_end() -> None:
    stream, loop = CountingStream(), Loop()
    logger, _ = logger_to(stream, loop)
    for event in ("first", "second", "third"):
        logger.info(event)
    assert stream.writes == [] and len(loop.callbacks) == 1  # one write asked for, not three
    loop.end_of_turn()
    assert len(stream.writes) == 1 and events(stream.writes[0]) == ["first", "second", "third"]
    logger.info("next turn")
    loop.end_of_turn()
    assert len(stream.writes) == 2 and events(stream.writes[1]) == ["next turn"]


def test_what_is_still_waiting_is_written_at_exit() -> None:
    stream, loop = CountingStream(), Loop()
    logger, handler = logger_to(stream, loop)
    logger.info("last words")
    handler.flush()  # what logging.shutdown() does at exit
    assert events("".join(stream.writes)) == ["last words"]
    loop.end_of_turn()  # the turn's own flush finds nothing left
    assert len(stream.writes) == 1


def test_under_real_gevent_every_line_reaches_stdout() -> None:
    """In a process gevent has patched, as gunicorn's gevent worker is: greenlets log, and every
    line is on stdout, in order, by the end of the loop's turn and at exit."""
    script = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import gevent, sys\n"
        "from common import logs\n"
        "log = logs.setup('producer')\n"
        "assert logs._gevent_loop() is not None\n"
        "gevent.joinall([gevent.spawn(log.info, f'line-{n}') for n in range(5)])\n"
        "gevent.sleep(0)\n"
        "log.info('at-exit')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    assert events(done.stdout) == [*(f"line-{n}" for n in range(5)), "at-exit"]
