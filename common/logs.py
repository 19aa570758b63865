"""One JSON object per log line: time, level, service, request_id, event, fields.

    log = logs.setup("consumer_two", "INFO")
    log.info("record_inserted", request_id=rid, srn="PES1")

`docker logs` then shows every line about one request under the same id, in
the producer and in the consumer that handled it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_LINE_SEPARATORS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service
        self._second = -1  # the second `_stamp` formats
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": f"{self._time(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "request_id": getattr(record, "request_id", None),
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = json.dumps(line, default=str, ensure_ascii=False)
        # JSON escapes the control characters; these three line separators it leaves
        # as they are, and a log reader that splits on them would see a forged line.
        return text if text.isascii() else text.translate(_LINE_SEPARATORS)

    def _time(self, second: int) -> str:
        """The line's time to the second, formatted once a second (the producer logs hundreds)."""
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._stamp


class EventLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose keyword arguments become fields of the JSON line."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        std = {k: kwargs.pop(k) for k in ("exc_info", "stack_info", "stacklevel") if k in kwargs}
        return msg, {**std, "extra": kwargs}


class LineBatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that, under gevent (the producer's gunicorn worker), writes every line of
    one turn of the event loop with one write, at the end of that turn; elsewhere one write a
    line, as StreamHandler does.

    A write to stdout is a system call into Docker's log pipe, and the producer writes a line
    per request: batching the lines of the requests answered together took about a tenth off
    the producer's CPU per insert (docs/performance.md). A line waits at most until the loop's turn ends
    (no request is answered any later for it), and at exit logging.shutdown() writes the rest.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop = _gevent_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self._loop is None:
            super().emit(record)
            return
        try:
            line = self.format(record) + self.terminator
        except Exception:  # what StreamHandler does with a line it cannot format
            self.handleError(record)
            return
        self._pending.append(line)
        if len(self._pending) == 1:
            self._loop.run_callback(self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = self._pending, []
            if lines:
                self.stream.write("".join(lines))
        super().flush()


def _gevent_loop() -> Any:
    """The gevent loop of this thread when gevent has patched threading (gunicorn's gevent worker
    does before it loads the app), otherwise None."""
    if "gevent" not in sys.modules:
        return None
    from gevent import get_hub, monkey  # type: ignore[import-untyped]

    return get_hub().loop if monkey.is_module_patched("threading") else None


def setup(service: str, level: str = "INFO") -> EventLogger:
    # What the logging HOWTO's "Optimization" names: no line prints the caller's file and
    # line, the thread, the process or its name, so no record looks them up (the producer
    # writes a line per request; with the formatter's changes a line costs about 0.6 of before).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineBatchingHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every reconnect attempt at length; our own events say it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL if level != "DEBUG" else logging.DEBUG)
    return EventLogger(logging.getLogger(service), {})


def get(service: str) -> EventLogger:
    return EventLogger(logging.getLogger(service), {})
