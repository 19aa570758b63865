"""gunicorn settings for the producer, each overridable from the environment."""

import os
import shutil
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

bind = "0.0.0.0:5000"
# gevent: each worker is one OS thread, its requests greenlets, and the broker's I/O
# "thread" a greenlet in the same hub (gevent patches `threading` before the app loads),
# so handing a message to it switches no OS thread and contends for no GIL. Measured
# against gthread (2 x 16 threads) at 32 clients: less producer CPU per insert and more
# inserts a second (the figures: docs/performance.md, "What was tried this round").
# GUNICORN_WORKER_CLASS=gthread brings the threads back (GUNICORN_THREADS per worker).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gevent: connections per worker, requests in flight included. A connection that never
# finishes its request holds one: 1,000 keeps a client with a thousand half-open sockets
# from stopping everyone else (measured: docs/security.md#slow-clients). (gthread: open
# connections per worker, of which GUNICORN_THREADS are served at once.)
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
# Requests wait at most REQUEST_TIMEOUT_S for the broker; this only catches a stuck worker.
timeout = 30
# SIGTERM: stop accepting, finish the requests in flight, well inside compose's 10 s grace.
graceful_timeout = 8
keepalive = 5
accesslog = None  # the app logs one JSON line per request, with its request id
# No control socket (gunicornc): nothing manages workers at run time, and the root
# filesystem is read-only (it would go to $HOME/.gunicorn).
control_socket_disable = True


class NoAccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger without its access log, which the app's own line replaces.

    With `logconfig_dict` set, gunicorn would build every request's access-log
    fields even though nothing prints them: about 8 % of a worker's CPU.
    """

    def access(self, *_args: Any, **_kwargs: Any) -> None:
        return None


logger_class = NoAccessLog
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's own lines (start, workers, shutdown) as JSON too, like every other line.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "common.logs.JsonFormatter", "service": "producer"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": loglevel.upper()},
    "loggers": {"gunicorn.error": {"handlers": ["stdout"], "level": loglevel.upper(), "propagate": False}},
}
# Headers beyond these limits get a 4xx from gunicorn, never a 5xx.
limit_request_line = 8190
limit_request_field_size = 8190


def on_starting(server: Any) -> None:
    # prometheus_client's multiprocess mode: every worker writes its figures here.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def post_worker_init(worker: Any) -> None:
    # Connect to RabbitMQ now, in the worker (after the fork), not on the first request.
    worker.wsgi.extensions["broker"].start()


def worker_exit(server: Any, worker: Any) -> None:
    broker = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("broker")
    if broker is not None:
        broker.stop()
