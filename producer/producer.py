"""The producer: a Flask app that turns HTTP requests into messages on RabbitMQ.

gunicorn loads `create_app()` in each worker after the fork; the worker's
`Broker` (its one RabbitMQ connection) starts there too, never before.
Every input is validated before anything is published, and every error,
ours or a consumer's, becomes the contract's JSON body through one table.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, send_file, stream_with_context
from werkzeug.exceptions import HTTPException

from common import logs
from common.config import Settings
from common.inventory import clean_sku
from common.messages import (
    FINGERPRINT_PATTERN,
    READ_PAGE,
    REQUEST_ID_PATTERN,
    Invalid,
    clean_health_message,
    clean_page,
    clean_srn,
    fingerprint,
    request_id_from,
    stamped,
)
from common.models import STOCK_DELTA, clean_record
from common.topology import (
    ADJUST_STOCK,
    DELETE_RECORD,
    HEALTH_CHECK,
    INSERT_RECORD,
    KIND,
    KINDS,
    READ_DATABASE,
    READ_ITEMS,
    READ_ORDERS,
    REQUEST_STATUS,
    ROUTING_KEYS,
    UPDATE_RECORD,
    Kind,
)
from producer import metrics
from producer.asyncapi import document as asyncapi_document
from producer.broker import Broker, BrokerUnavailable, RequestIdConflict
from producer.openapi import document as openapi_document

SERVICE = "producer"
PAGES = Path(__file__).resolve().parent / "page"
MAX_BODY_BYTES = 16 * 1024

# Every error code of the contract and its HTTP status: the one place they meet.
STATUS_OF_ERROR = {
    "missing_parameter": 400,
    "invalid_parameter": 400,
    "invalid_record": 400,
    "invalid_item": 400,
    "invalid_stock_change": 400,
    "invalid_order": 400,
    "malformed_body": 400,
    "invalid_host": 400,
    "unauthorized": 401,
    "cross_site_request": 403,
    "not_found": 404,
    "unknown_request": 404,
    "method_not_allowed": 405,
    "duplicate_srn": 409,
    "duplicate_sku": 409,
    "insufficient_stock": 409,
    "request_id_conflict": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "internal_error": 500,
    # A consumer could not read what the producer sent it: they disagree, the client is not at fault.
    "invalid_message": 500,
    "broker_unavailable": 503,
    "consumer_timeout": 504,
}

PROBE_PATHS = ("/livez", "/readyz", "/metrics")
# Open even when API_TOKEN is set: health checks, the HTML pages, the API document.
OPEN_PATHS = (*PROBE_PATHS, "/", "/docs", "/openapi.json", "/asyncapi.json")
# The success status of each write, for replaying its stored answer.
SUCCESS_STATUS = {kind.key: kind.status for kind in KINDS if kind.write}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# What browsers say of a request another site's page made (Fetch Metadata): "same-site"
# includes another port of the same host (a dev server on localhost:8080), so it is refused too.
OTHER_SITES = ("cross-site", "same-site")
# The methods counted under their own name in the metrics; any other is "other", so that
# random methods cannot make one Prometheus series each.
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


api = Blueprint("api", __name__)
# The view of each message kind's route, by routing key (see `serves`).
VIEWS: dict[str, Callable[..., Response]] = {}


def serves(key: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Make a view the route of message kind `key`, at the method and path its declaration
    (common/topology.py's KINDS) gives; create_app refuses to start with a kind unserved."""
    kind = KIND[key]

    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        api.add_url_rule(kind.path, endpoint=view.__name__, view_func=view, methods=[kind.method])
        VIEWS[key] = view
        return view
    return register


def _broker() -> Broker:
    broker: Broker = current_app.extensions["broker"]
    return broker


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _one_arg(*names: str) -> str | None:
    """The single value of a query parameter (any of its spellings), or None."""
    values = [v for name in names for v in request.args.getlist(name)]
    if len(values) > 1:
        raise Invalid("invalid_parameter", f"'{names[0]}' must be given once.")
    return values[0] if values else None


def _ask(routing_key: str, payload: dict[str, Any], *, write: bool = False) -> dict[str, Any] | None:
    """Publish and wait for the consumer's reply (None: confirmed, but no answer in time).

    A write whose X-Request-ID is in flight already shares that one's answer, or is
    refused when it asks for something else.
    """
    request_id = g.request_id
    try:
        return _broker().call(routing_key, payload, request_id, _settings().request_timeout_s,
                              write=write, marks=g.marks)
    except RequestIdConflict as exc:
        raise ApiError(
            "request_id_conflict",
            "This X-Request-ID is in use by a different request; use a new one.",
        ) from exc
    except BrokerUnavailable as exc:
        metrics.PUBLISH_FAILURES.labels(routing_key).inc()
        current_app.extensions["log"].warning(
            "broker_unavailable", request_id=request_id, routing_key=routing_key, error=str(exc)
        )
        raise ApiError(
            "broker_unavailable",
            "The message broker is unavailable; retry with the same X-Request-ID.",
        ) from exc


def _dispatch(routing_key: str, payload: dict[str, Any]) -> Response:
    """Publish, wait for the consumer, and turn its reply into the HTTP answer. Whether it
    is a write, and its success status, come from its kind's declaration."""
    write, status = KIND[routing_key].write, KIND[routing_key].status
    if write:
        # Where its answer can be looked up again, by whoever can name what it asked for.
        g.request_status = f"/requests/{g.request_id}?asked={fingerprint(routing_key, payload)}"
    reply = _ask(routing_key, payload, write=write)
    if reply is None:
        if write:
            # Confirmed by RabbitMQ, so it will be carried out: tell the client where to
            # look. `asked` names what this request asked for, so that a lookup never
            # passes off another request's answer under a reused id as this one's.
            request_id = g.request_id
            response = jsonify({"status": "accepted", "request_id": request_id})
            response.status_code = 202
            response.headers["Location"] = g.request_status
            return response
        raise ApiError("consumer_timeout", "No consumer answered in time; try again.")
    return _respond(reply, status)


def _respond(reply: dict[str, Any], status: int) -> Response:
    """A consumer's reply as the HTTP answer: its result, or its error through the table."""
    if not reply.get("ok"):
        raise ApiError(
            str(reply.get("error", "internal_error")),
            str(reply.get("message", "The request failed.")),
            reply.get("details"),
        )
    response = jsonify(reply["result"])
    response.status_code = status
    return response


def _check_size() -> None:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError("body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes.")


def _json_object() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested thousands deep: not a ValueError, so not silenced
        body = None
    if body is None:
        raise ApiError("malformed_body", "The body is not valid JSON.")
    if not isinstance(body, dict):
        raise ApiError("malformed_body", "The body must be a JSON object.")
    return body


def _json_body() -> dict[str, Any]:
    """The body of an inventory request: a JSON object."""
    _check_size()
    if request.mimetype != "application/json":
        raise ApiError("unsupported_media_type", "Send the body as JSON (Content-Type: application/json).")
    return _json_object()


def _record_from_body(*, update: bool = False) -> dict[str, str]:
    """A record from JSON or a form; for an update only the SRN and the fields it changes."""
    _check_size()
    fields: dict[str, list[Any]]
    if request.mimetype == "application/json":
        fields = {key: [value] for key, value in _json_object().items()}
    elif request.mimetype in FORM_TYPES:
        fields = {key: request.form.getlist(key) for key in request.form}
        for key in request.files:  # a file is never a valid field value
            fields.setdefault(key, []).extend(request.files.getlist(key))
    else:
        raise ApiError(
            "unsupported_media_type",
            "Send the record as JSON, application/x-www-form-urlencoded or multipart/form-data.",
        )
    return clean_record(fields, update=update)


@serves(HEALTH_CHECK)
def health_check() -> Response:
    message = clean_health_message(_one_arg("message"))
    return _dispatch(HEALTH_CHECK, stamped({"message": message}))


@serves(INSERT_RECORD)
def insert_record() -> Response:
    return _dispatch(INSERT_RECORD, _record_from_body())


def _read_page(routing_key: str, limit: int, after: Any) -> dict[str, Any]:
    reply = _ask(routing_key, stamped({"limit": limit, "after": after}))
    if reply is None:
        raise ApiError("consumer_timeout", "No consumer answered in time; try again.")
    if not reply.get("ok"):
        _respond(reply, 200)  # raises the consumer's error
    result: dict[str, Any] = reply["result"]
    return result


def _paged(routing_key: str, field: str, by: str) -> Response:
    """One page with ?limit= and/or ?after=; without them, every row.

    Every row is sent as it is read, page by page, so no message on the bus
    nears RabbitMQ's size limit and memory stays flat however large the table.
    """
    limit, after = _one_arg("limit"), _one_arg("after")
    if limit is not None or after is not None:
        page = _read_page(routing_key, *clean_page(READ_PAGE if limit is None else limit, after, by=by))
        return jsonify(page)
    first = _read_page(routing_key, READ_PAGE, None)  # errors before the first byte get their own status
    if first["next_after"] is None:
        return jsonify({field: first[field], "count": first["count"]})
    return Response(stream_with_context(_every_row(routing_key, field, first)), mimetype="application/json")


@serves(READ_DATABASE)
def read_database() -> Response:
    return _paged(READ_DATABASE, "records", "SRN")


def _every_row(routing_key: str, field: str, page: dict[str, Any]) -> Iterator[str]:
    """The JSON of every row, from the first page on; a later failure cuts the body short.

    An incomplete body is invalid JSON, so no client can take it for the whole table.
    """
    dumps = current_app.json.dumps
    count = 0
    yield f'{{"{field}": ['
    while True:
        if page[field]:
            yield ("," if count else "") + dumps(page[field])[1:-1]
        count += page["count"]
        if page["next_after"] is None:
            break
        try:
            page = _read_page(routing_key, READ_PAGE, page["next_after"])
        except ApiError as exc:
            current_app.extensions["log"].error("read_cut_short", request_id=g.request_id, error=exc.code)
            raise
    yield f'], "count": {count}}}'


@serves(DELETE_RECORD)
def delete_record() -> Response:
    srn = clean_srn(_one_arg("SRN", "srn") or "")
    return _dispatch(DELETE_RECORD, {"SRN": srn})


@serves(UPDATE_RECORD)
def update_record() -> Response:
    return _dispatch(UPDATE_RECORD, _record_from_body(update=True))


@serves(READ_ITEMS)
def read_items() -> Response:
    return _paged(READ_ITEMS, "items", "SKU")


@serves(ADJUST_STOCK)
def adjust_stock(sku: str) -> Response:
    change = {"SKU": clean_sku(sku), **STOCK_DELTA.clean(_json_body())}
    return _dispatch(ADJUST_STOCK, change)


@serves(READ_ORDERS)
def read_orders() -> Response:
    return _paged(READ_ORDERS, "orders", "OrderID")


@serves(REQUEST_STATUS)
def request_status(request_id: str) -> Response:
    """The stored answer of a finished write: the same status and body it would have had."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise ApiError("unknown_request", "No finished request has this id.")
    # The stored answer (a student's record, say) goes only to a caller that can name what the
    # request asked for: the `asked` of the 202's Location or of the answer's Content-Location.
    asked = _one_arg("asked")
    if asked is None:
        raise ApiError("missing_parameter", "asked is required: the value in the Location of the 202, "
                                            "or the Content-Location of the answer.")
    if not FINGERPRINT_PATTERN.fullmatch(asked):
        raise ApiError("invalid_parameter", "asked must be the value given in the 202's Location.")
    reply = _ask(REQUEST_STATUS, stamped({"request_id": request_id, "asked": asked}))
    if reply is None:
        raise ApiError("consumer_timeout", "No consumer answered in time; try again.")
    if not reply.get("ok"):
        return _respond(reply, 200)
    entry = reply["result"]
    return _respond(entry["reply"], SUCCESS_STATUS.get(entry["routing_key"], 200))


def declared_view(kind: Kind) -> Callable[[], Response] | None:
    """The view a declaration alone makes, for a kind no view of its own serves: a POST whose
    JSON body is the kind's model (`body=`), or a read (GET) that takes no parameters. None
    for any other kind (a path parameter, a form, a query): that one needs its @serves view."""
    if "<" in kind.path:
        return None
    model = kind.body
    if kind.method == "POST" and model is not None:
        def view() -> Response:
            return _dispatch(kind.key, model.clean(_json_body()))
    elif kind.method == "GET" and model is None and not kind.write:
        def view() -> Response:
            if request.args:
                raise Invalid("invalid_parameter", f"{kind.path} takes no query parameters.")
            return _dispatch(kind.key, stamped({}))
    else:
        return None
    view.__name__ = kind.key
    return view


# Every declared kind without a view of its own is served by its declaration (create_item and
# place_order among them): after the @serves views above, so that those come first.
for _kind in KINDS:
    if _kind.key not in VIEWS and (_view := declared_view(_kind)) is not None:
        serves(_kind.key)(_view)


@api.get("/")
def page() -> Response:
    """The HTML page: forms for every route and the table of records."""
    return send_file(PAGES / "index.html", mimetype="text/html")


@api.get("/docs")
def docs() -> Response:
    """The API reference, rendered in the browser from /openapi.json."""
    return send_file(PAGES / "docs.html", mimetype="text/html")


@api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@api.get("/asyncapi.json")
def asyncapi() -> Response:
    """The AsyncAPI document of the bus, made from the declarations as /openapi.json is."""
    return jsonify(asyncapi_document())


@api.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus' text format: with the HTML pages, the answers that are not JSON."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@api.get("/livez")
def livez() -> Response:
    return jsonify({"status": "alive"})


@api.get("/readyz")
def readyz() -> Response:
    if not _broker().ready():
        raise ApiError("broker_unavailable", "Not connected to RabbitMQ yet.")
    return jsonify({"status": "ready"})


def _error_response(code: str, message: str, details: dict[str, str] | None = None,
                    status: int | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message, "request_id": g.get("request_id")}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status or STATUS_OF_ERROR.get(code, 500)
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _has_port(host: str) -> bool:
    """Whether a Host header ends in a port ("[::1]:5000" does, "[::1]" does not)."""
    return ":" in host.rpartition("]")[2]


def create_app(settings: Settings | None = None, broker: Broker | None = None) -> Flask:
    settings = settings or Settings.from_env(SERVICE, needs_db=False)
    log = logs.setup(SERVICE, settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["settings"] = settings
    app.extensions["log"] = log
    app.extensions["broker"] = broker or Broker(settings.amqp, f"{SERVICE}", log)
    unserved = [key for key in ROUTING_KEYS if key not in VIEWS]
    if unserved:  # a kind declared with no route: a programming error, found before serving
        raise RuntimeError(f"no route serves {', '.join(unserved)}: its declaration alone makes none "
                           "(see declared_view), so add a view with @serves(<its key>)")
    app.register_blueprint(api)

    @app.before_request
    def take_request_id() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.monotonic()
        # Wall-clock times of the request's steps, logged with it (`at`): the bench's latency breakdown.
        g.marks = {"http_received": time.time()}

    @app.before_request
    def refuse_other_sites() -> None:
        """Only this machine's names, and no other site's page, may use the API.

        A Host outside the allow-list is a DNS-rebinding page (or a misdirected request);
        Sec-Fetch-Site (or, from older browsers, Origin) says another site's page sent it:
        an <img> that deletes, a form that inserts. curl and Postman send neither header.
        """
        host = request.host.lower().rpartition(":")[0] if _has_port(request.host) else request.host.lower()
        if host not in settings.allowed_hosts:
            raise ApiError("invalid_host",
                           "This server answers to localhost and the names in ALLOWED_HOSTS only.")
        if request.path in OPEN_PATHS:
            return  # the page itself may be linked to from anywhere; it only reads
        origin = request.headers.get("Origin")
        if request.headers.get("Sec-Fetch-Site") in OTHER_SITES or (
                origin is not None and origin != f"{request.scheme}://{request.host}"):
            raise ApiError("cross_site_request", "Another site's page may not use this API.")

    @app.before_request
    def check_token() -> None:
        if not settings.api_token or request.path in OPEN_PATHS:
            return
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {settings.api_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError("unauthorized", "Send 'Authorization: Bearer <API_TOKEN>'.")

    @app.after_request
    def log_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if g.get("request_status") and "Location" not in response.headers:
            # A write's answer (its result or its refusal) can be looked up again there.
            response.headers["Content-Location"] = g.request_status
        seconds = time.monotonic() - g.get("started", time.monotonic())
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in COUNTED_METHODS else "other"
        metrics.REQUESTS.labels(route, method, str(response.status_code)).inc()
        metrics.DURATION.labels(route).observe(seconds)
        # Container health probes come every few seconds: keep them out of INFO.
        level = logging.DEBUG if request.path in PROBE_PATHS else logging.INFO
        marks = g.get("marks") or {}
        marks["http_answered"] = time.time()
        log.log(
            level, "http_request", request_id=g.get("request_id"), method=request.method,
            path=request.path, status=response.status_code,
            ms=round(seconds * 1000, 1), at={name: round(at, 6) for name, at in marks.items()},
        )
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return _error_response(exc.code, exc.message, exc.details)

    @app.errorhandler(Invalid)
    def invalid(exc: Invalid) -> Response:
        return _error_response(exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.code or 500, (exc.name or "error").lower().replace(" ", "_")
        )
        return _error_response(code, exc.description or exc.name, status=exc.code)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected_error", request_id=g.get("request_id"))
        return _error_response("internal_error", "Something went wrong on our side.")

    return app
