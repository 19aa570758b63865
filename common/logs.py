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


def setup(service: str, level: str = "INFO") -> EventLogger:
    # What the logging HOWTO's "Optimization" names: no line prints the caller's file and
    # line, the thread, the process or its name, so no record looks them up (the producer
    # writes a line per request: this is about a fifth of that line's cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every reconnect attempt at length; our own events say it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL if level != "DEBUG" else logging.DEBUG)
    return EventLogger(logging.getLogger(service), {})


def get(service: str) -> EventLogger:
    return EventLogger(logging.getLogger(service), {})
