"""The HTTP edge, with a fake broker: validation, error mapping, request ids."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from common import models, topology
from common.config import Settings
from common.messages import error_reply, fingerprint, ok_reply
from common.topology import Kind
from producer import openapi, producer
from producer.broker import BrokerUnavailable, RequestIdConflict
from producer.producer import STATUS_OF_ERROR, ApiError, create_app, declared_view

ENV = {"RABBITMQ_HOST": "broker", "RABBITMQ_USER": "app", "RABBITMQ_PASSWORD": "pw"}
RECORD = {"Name": "Asha", "SRN": "pes1", "Section": "A"}


class FakeBroker:
    """Records what would be published; answers with `reply` (or raises)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], str]] = []
        self.writes: list[bool] = []
        self.reply: dict[str, Any] | Exception | None = ok_reply({"done": True})

    def start(self) -> None: ...

    def ready(self) -> bool:
        return True

    def call(self, routing_key: str, payload: dict[str, Any], request_id: str,
             timeout: float, *, write: bool = False,
             marks: dict[str, float] | None = None) -> dict[str, Any] | None:
        self.published.append((routing_key, payload, request_id))
        self.writes.append(write)
        if marks is not None:
            now = time.time()
            marks.update(published=now, confirmed=now, reply_received=now)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def client(broker: FakeBroker) -> FlaskClient:
    settings = Settings.from_env("producer", needs_db=False, env=ENV)
    return create_app(settings, broker).test_client()  # type: ignore[arg-type]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return dict(body)


def test_insert_json_publishes_the_clean_record(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = ok_reply({"record": {"Name": "Asha", "SRN": "PES1", "Section": "A"}})
    response = client.post("/insert_record", json=RECORD, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 201
    assert response.get_json() == {"record": {"Name": "Asha", "SRN": "PES1", "Section": "A"}}
    assert broker.published == [("insert_record", {"Name": "Asha", "SRN": "PES1", "Section": "A"}, "req-1")]
    assert response.headers["X-Request-ID"] == "req-1"


def test_the_request_log_line_has_the_times_of_its_steps(client: FlaskClient, broker: FakeBroker) -> None:
    """`at`: wall-clock times of each step, in order, for the bench's latency breakdown."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        assert client.post("/insert_record", json=RECORD).status_code == 201
    finally:
        logging.getLogger().removeHandler(keep)
    [line] = [record for record in seen if record.getMessage() == "http_request"]
    at = line.__dict__["at"]
    steps = ["http_received", "published", "confirmed", "reply_received", "http_answered"]
    assert set(at) == set(steps)
    assert [at[step] for step in steps] == sorted(at[step] for step in steps)


def test_insert_form_and_multipart(client: FlaskClient, broker: FakeBroker) -> None:
    assert client.post("/insert_record", data=RECORD).status_code == 201
    multipart = client.post("/insert_record", data=RECORD, content_type="multipart/form-data")
    assert multipart.status_code == 201
    assert [p[1]["SRN"] for p in broker.published] == ["PES1", "PES1"]


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"json": {"Name": "A", "SRN": "S"}}, 400, "invalid_record"),
    ({"json": {**RECORD, "Extra": "x"}}, 400, "invalid_record"),
    ({"json": {**RECORD, "SRN": 12}}, 400, "invalid_record"),
    ({"json": [RECORD]}, 400, "malformed_body"),
    ({"data": "{not json", "content_type": "application/json"}, 400, "malformed_body"),
    ({"data": "", "content_type": "application/json"}, 400, "malformed_body"),
    ({"data": "Name=a&Name=b&SRN=s&Section=x", "content_type": "application/x-www-form-urlencoded"},
     400, "invalid_record"),
    ({"data": {**RECORD, "Name": (io.BytesIO(b"x"), "n.txt")}, "content_type": "multipart/form-data"},
     400, "invalid_record"),
    ({"data": "Name=a", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ({}, 415, "unsupported_media_type"),
    ({"data": "x" * (16 * 1024 + 1), "content_type": "text/plain"}, 413, "body_too_large"),
    ({"data": '{"Name": "' + "x" * 16 * 1024 + '"}', "content_type": "application/json"},
     413, "body_too_large"),
])
def test_bad_inserts_are_refused_before_publishing(
    client: FlaskClient, broker: FakeBroker, kwargs: dict[str, Any], status: int, code: str
) -> None:
    assert_error(client.post("/insert_record", **kwargs), status, code)
    assert broker.published == []


def test_invalid_record_lists_each_field(client: FlaskClient) -> None:
    body = assert_error(client.post("/insert_record", json={"Name": "", "Nmae": "x"}), 400, "invalid_record")
    assert set(body["details"]) == {"Name", "Nmae", "SRN", "Section"}


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/health_check", 400, "missing_parameter"),
    ("/health_check?message=", 400, "missing_parameter"),
    ("/health_check?message=a&message=b", 400, "invalid_parameter"),
    ("/health_check?message=" + "x" * 257, 400, "invalid_parameter"),
    ("/delete_record", 400, "missing_parameter"),
    ("/delete_record?SRN=", 400, "missing_parameter"),
    ("/delete_record?SRN=a%20b", 400, "invalid_parameter"),
    ("/delete_record?SRN=a&srn=b", 400, "invalid_parameter"),
    ("/no_such_route", 404, "not_found"),
])
def test_bad_queries(client: FlaskClient, broker: FakeBroker, path: str, status: int, code: str) -> None:
    assert_error(client.get(path), status, code)
    assert broker.published == []


def test_wrong_method_is_json(client: FlaskClient) -> None:
    assert_error(client.get("/insert_record"), 405, "method_not_allowed")


def test_health_check_carries_its_send_time(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = ok_reply({"status": "ok", "message": "hi", "consumer": "consumer_one"})
    response = client.get("/health_check?message=hi")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "message": "hi", "consumer": "consumer_one"}
    routing_key, payload, _ = broker.published[0]
    assert routing_key == "health_check" and payload["message"] == "hi" and "sent_at" in payload


def test_delete_upper_cases_the_srn(client: FlaskClient, broker: FakeBroker) -> None:
    client.get("/delete_record?srn=pes1")
    assert broker.published[0][:2] == ("delete_record", {"SRN": "PES1"})


# docs/contract.md's Errors table, written out here: a status the code gets wrong fails the test.
CONTRACT_STATUS = {
    "missing_parameter": 400, "invalid_parameter": 400, "invalid_record": 400, "malformed_body": 400,
    "invalid_item": 400, "invalid_stock_change": 400, "invalid_order": 400, "invalid_host": 400,
    "unauthorized": 401,
    "cross_site_request": 403,
    "not_found": 404, "unknown_request": 404,
    "method_not_allowed": 405,
    "duplicate_srn": 409, "duplicate_sku": 409, "insufficient_stock": 409, "request_id_conflict": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    # invalid_message: a consumer could not read what the producer sent; the server's fault.
    "internal_error": 500, "invalid_message": 500,
    "broker_unavailable": 503,
    "consumer_timeout": 504,
}


def test_every_error_code_has_the_contracts_status() -> None:
    assert set(STATUS_OF_ERROR) == set(CONTRACT_STATUS)


@pytest.mark.parametrize(("code", "status"), sorted(CONTRACT_STATUS.items()))
def test_consumer_errors_map_through_the_table(
    client: FlaskClient, broker: FakeBroker, code: str, status: int
) -> None:
    broker.reply = error_reply(code, "said the consumer")
    body = assert_error(client.post("/insert_record", json=RECORD), status, code)
    assert body["message"] == "said the consumer"


def test_broker_down_is_503(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = BrokerUnavailable("down")
    assert_error(client.get("/read_database"), 503, "broker_unavailable")


def test_write_without_answer_is_202_with_location(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = None
    response = client.get("/delete_record?SRN=S1", headers={"X-Request-ID": "late-1"})
    assert response.status_code == 202
    assert response.get_json() == {"status": "accepted", "request_id": "late-1"}
    # The Location names what was asked, so the lookup answers for this request only.
    asked = fingerprint("delete_record", {"SRN": "S1"})
    assert response.headers["Location"] == f"/requests/late-1?asked={asked}"
    broker.reply = {"ok": False, "error": "request_id_conflict", "message": "used for another request"}
    assert_error(client.get(response.headers["Location"]), 409, "request_id_conflict")
    assert broker.published[-1][0:2] == ("request_status", {"request_id": "late-1", "asked": asked,
                                                            "sent_at": broker.published[-1][1]["sent_at"]})
    assert_error(client.get("/requests/late-1?asked=nope"), 400, "invalid_parameter")


def test_read_without_answer_is_504(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = None
    assert_error(client.get("/read_database"), 504, "consumer_timeout")


def test_unexpected_failure_hides_the_details(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = RuntimeError("secret host db:3306 password=hunter2")
    body = assert_error(client.get("/read_database"), 500, "internal_error")
    assert "hunter2" not in str(body) and "Traceback" not in str(body)


@pytest.mark.parametrize("header", ["bad id with spaces", "x" * 65, "semi;colon"])
def test_malformed_request_id_is_replaced(client: FlaskClient, broker: FakeBroker, header: str) -> None:
    response = client.get("/health_check?message=a", headers={"X-Request-ID": header})
    assert response.headers["X-Request-ID"] != header
    assert broker.published[0][2] == response.headers["X-Request-ID"]


def test_liveness_and_readiness(client: FlaskClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_stored_answer_of_a_finished_write(client: FlaskClient, broker: FakeBroker) -> None:
    record = {"Name": "A", "SRN": "S1", "Section": "B"}
    broker.reply = ok_reply({"routing_key": "insert_record", "reply": ok_reply({"record": record})})
    asked = fingerprint("insert_record", record)
    response = client.get(f"/requests/late-1?asked={asked}")
    assert response.status_code == 201 and response.get_json() == {"record": record}
    routing_key, payload, _ = broker.published[0]
    assert routing_key == "request_status" and (payload["request_id"], payload["asked"]) == ("late-1", asked)

    broker.reply = ok_reply({"routing_key": "delete_record", "reply": error_reply("not_found", "gone")})
    assert_error(client.get(f"/requests/late-2?asked={asked}"), 404, "not_found")


def test_a_stored_answer_needs_the_proof_of_what_was_asked(client: FlaskClient, broker: FakeBroker) -> None:
    assert_error(client.get("/requests/late-1"), 400, "missing_parameter")
    assert_error(client.get("/requests/late-1?asked=nope"), 400, "invalid_parameter")
    assert broker.published == []


def test_every_write_answer_says_where_it_can_be_looked_up(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = ok_reply({"record": RECORD})
    created = client.post("/insert_record", json=RECORD, headers={"X-Request-ID": "w-9"})
    asked = fingerprint("insert_record", {"Name": "Asha", "SRN": "PES1", "Section": "A"})
    assert created.headers["Content-Location"] == f"/requests/w-9?asked={asked}"
    broker.reply = error_reply("duplicate_srn", "exists")
    refused = client.post("/insert_record", json=RECORD, headers={"X-Request-ID": "w-10"})
    assert refused.headers["Content-Location"] == f"/requests/w-10?asked={asked}"
    assert "Content-Location" not in client.get("/read_database").headers  # a read is not stored


def test_unknown_or_malformed_request_id(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = error_reply("unknown_request", "not done")
    assert_error(client.get(f"/requests/never-seen?asked={'0' * 64}"), 404, "unknown_request")
    assert_error(client.get("/requests/" + "x" * 65), 404, "unknown_request")
    assert len(broker.published) == 1


def test_api_token_guards_every_route_but_the_probes(broker: FakeBroker) -> None:
    settings = Settings.from_env("producer", needs_db=False, env={**ENV, "API_TOKEN": "s3cret"})
    client = create_app(settings, broker).test_client()  # type: ignore[arg-type]
    for path in ("/health_check?message=a", "/read_database", "/delete_record?SRN=A", "/requests/x"):
        response = client.get(path)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert_error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert_error(client.post("/insert_record", json=RECORD), 401, "unauthorized")
    assert broker.published == []
    broker.reply = ok_reply({"records": [], "count": 0, "next_after": None})
    assert client.get("/read_database", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/livez").status_code == 200 and client.get("/readyz").status_code == 200


def test_openapi_document_lists_exactly_the_app_routes(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    app_routes = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in client.application.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or () if method not in {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == app_routes


def test_openapi_documents_every_status_a_route_can_answer(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    insert = set(paths["/insert_record"]["post"]["responses"])
    assert {"201", "202", "400", "401", "409", "413", "415", "503"} <= insert
    assert {"200", "202", "400", "404", "503"} <= set(paths["/delete_record"]["get"]["responses"])
    assert {"200", "503", "504"} <= set(paths["/read_database"]["get"]["responses"])


def test_the_page_is_html_and_self_contained(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<form" in page and "/insert_record" in page and "/read_database" in page
    assert "http://" not in page and "https://" not in page  # no CDN, no font, no tracker


def test_the_broker_thread_moves_to_the_next_node_after_each_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import pika.exceptions

    from common import logs
    from common.config import AmqpSettings
    from producer import broker as broker_module

    settings = AmqpSettings.from_env({"RABBITMQ_HOST": "rabbitmq.invalid", "RABBITMQ_USER": "app",
                                      "RABBITMQ_PASSWORD": "pw", "RABBITMQ_PORTS": "5672,5673,5674"})
    tried: list[int] = []
    broker = broker_module.Broker(settings, "producer", logs.get("producer"))

    def refuse(params: Any, **callbacks: Any) -> None:
        tried.append(params.port)
        if len(tried) == 5:
            broker.stop()
        raise pika.exceptions.AMQPConnectionError("refused")

    monkeypatch.setattr("pika.SelectConnection", refuse)
    monkeypatch.setattr("common.amqp.backoff", lambda attempt: 0.0)
    broker.start()  # its I/O thread tries the nodes in turn until the fifth try stops it
    deadline = time.monotonic() + 5
    while len(tried) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # a sixth try, should stop() not end the thread, would show here
    assert tried == [5672, 5673, 5674, 5672, 5673]


class PagingBroker(FakeBroker):
    """Answers read_database a page at a time from `table`, as consumer_four does."""

    def __init__(self, table: list[dict[str, str]], fail_after: int | None = None) -> None:
        super().__init__()
        self.table, self.fail_after = table, fail_after

    def call(self, routing_key: str, payload: dict[str, Any], request_id: str,
             timeout: float, *, write: bool = False,
             marks: dict[str, float] | None = None) -> dict[str, Any] | None:
        self.published.append((routing_key, payload, request_id))
        if self.fail_after is not None and len(self.published) > self.fail_after:
            return None
        after, limit = payload["after"], payload["limit"]
        rows = [r for r in self.table if after is None or r["SRN"] > after]
        page = rows[:limit]
        cursor = page[-1]["SRN"] if len(rows) > limit else None
        return ok_reply({"records": page, "count": len(page), "next_after": cursor})


TABLE = [{"Name": f"n{i}", "SRN": f"S{i:05d}", "Section": "A"} for i in range(12_001)]


def paging_client(broker: FakeBroker) -> FlaskClient:
    settings = Settings.from_env("producer", needs_db=False, env=ENV)
    return create_app(settings, broker).test_client()  # type: ignore[arg-type]


def test_plain_read_returns_every_page_as_one_answer() -> None:
    broker = PagingBroker(TABLE)
    response = paging_client(broker).get("/read_database")
    assert response.status_code == 200
    assert response.get_json() == {"records": TABLE, "count": len(TABLE)}
    assert len(broker.published) == 3  # 12,001 rows in pages of 5,000
    assert all(p["limit"] <= 10_000 and "sent_at" in p for _, p, _ in broker.published)


def test_plain_read_cut_short_is_never_valid_json() -> None:
    response = paging_client(PagingBroker(TABLE, fail_after=1)).get("/read_database", buffered=False)
    assert response.status_code == 200  # sent before the second page was asked for
    sent: list[bytes] = []
    with pytest.raises(ApiError):  # gunicorn closes the connection on it
        for chunk in response.response:
            sent.append(chunk if isinstance(chunk, bytes) else chunk.encode())
    assert sent[0].startswith(b'{"records": [')
    with pytest.raises(ValueError):
        json.loads(b"".join(sent))


def test_one_page_with_its_cursor() -> None:
    broker = PagingBroker(TABLE)
    client = paging_client(broker)
    body = client.get("/read_database?limit=2&after=s00003").get_json()
    assert body == {"records": TABLE[4:6], "count": 2, "next_after": "S00005"}
    assert broker.published[0][1]["after"] == "S00003"
    last = client.get("/read_database?after=S11999").get_json()
    assert last == {"records": TABLE[12_000:], "count": 1, "next_after": None}


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "limit=", "limit=-1", "limit=1.5",
                                   "after=", "after=bad%20srn", "limit=1&limit=2", "after=A&after=B"])
def test_bad_paging_is_400_and_publishes_nothing(client: FlaskClient, broker: FakeBroker, query: str) -> None:
    assert_error(client.get(f"/read_database?{query}"), 400, "invalid_parameter")
    assert broker.published == []


def test_writes_are_marked_as_writes_and_reads_are_not(client: FlaskClient, broker: FakeBroker) -> None:
    client.get("/health_check?message=hi")
    client.get("/items")
    client.post("/insert_record", json=RECORD)
    client.post("/items", json={"SKU": "K1", "Name": "Kit"})
    client.post("/orders", json={"SKU": "K1", "Quantity": 1})
    assert broker.writes == [False, False, True, True, True]


def test_a_request_id_in_flight_for_another_write_is_409(client: FlaskClient, broker: FakeBroker) -> None:
    broker.reply = RequestIdConflict("req-7")
    response = client.post("/insert_record", json=RECORD, headers={"X-Request-ID": "req-7"})
    body = assert_error(response, 409, "request_id_conflict")
    assert body["request_id"] == "req-7"


class TablesBroker(FakeBroker):
    """Answers read_items and read_orders a page at a time, as the inventory consumers do."""

    def __init__(self) -> None:
        super().__init__()
        self.ITEMS = [{"SKU": f"K{i:05d}", "Name": "n", "Quantity": i} for i in range(10_001)]
        self.ORDERS = [{"OrderID": i, "SKU": "K", "Quantity": 1, "Status": "-"} for i in range(1, 10_002)]

    def call(self, routing_key: str, payload: dict[str, Any], request_id: str,
             timeout: float, *, write: bool = False,
             marks: dict[str, float] | None = None) -> dict[str, Any] | None:
        self.published.append((routing_key, payload, request_id))
        field, by, table = {"read_items": ("items", "SKU", self.ITEMS),
                            "read_orders": ("orders", "OrderID", self.ORDERS)}[routing_key]
        after, limit = payload["after"], payload["limit"]
        rows = [r for r in table if after is None or r[by] > after]
        return ok_reply({field: rows[:limit], "count": len(rows[:limit]),
                         "next_after": rows[limit - 1][by] if len(rows) > limit else None})


@pytest.mark.parametrize(("path", "field"), [("/items", "items"), ("/orders", "orders")])
def test_items_and_orders_come_page_by_page(path: str, field: str) -> None:
    broker = TablesBroker()
    table = broker.ITEMS if field == "items" else broker.ORDERS
    assert paging_client(broker).get(path).get_json() == {field: table, "count": len(table)}
    assert len(broker.published) == 3  # pages of 5,000
    assert all(p["limit"] <= 10_000 and "sent_at" in p for _, p, _ in broker.published)


def test_one_page_of_items_or_orders_with_its_cursor() -> None:
    broker = TablesBroker()
    client = paging_client(broker)
    assert client.get("/items?limit=2&after=k00003").get_json() == {
        "items": broker.ITEMS[4:6], "count": 2, "next_after": "K00005"}
    assert client.get("/orders?limit=2&after=3").get_json() == {
        "orders": broker.ORDERS[3:5], "count": 2, "next_after": 5}
    assert [p[1]["after"] for p in broker.published] == ["K00003", 3]


@pytest.mark.parametrize("query", ["/items?limit=0", "/items?after=bad%20sku", "/items?limit=1&limit=2",
                                   "/orders?after=x", "/orders?after=-1", "/orders?after=1.5",
                                   "/orders?limit="])
def test_bad_item_or_order_paging_is_400_and_publishes_nothing(client: FlaskClient, broker: FakeBroker,
                                                                query: str) -> None:
    assert_error(client.get(query), 400, "invalid_parameter")
    assert broker.published == []


COUNT = Kind("count_things", "GET", "/count_things", "consumer_six")


def test_a_read_its_declaration_alone_serves_and_documents(broker: FakeBroker,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that takes no parameters needs no view and no OpenAPI entry of its own."""
    monkeypatch.setitem(topology.KIND, COUNT.key, COUNT)
    monkeypatch.setattr(openapi, "KINDS", (*topology.KINDS, COUNT))
    app = create_app(Settings.from_env("producer", needs_db=False, env=ENV), broker)  # type: ignore[arg-type]
    view = declared_view(COUNT)
    assert view is not None
    app.add_url_rule(COUNT.path, endpoint=COUNT.key, view_func=view, methods=[COUNT.method])
    client = app.test_client()
    broker.reply = ok_reply({"count": 3})
    response = client.get("/count_things", headers={"X-Request-ID": "c-1"})
    assert (response.status_code, response.get_json()) == (200, {"count": 3})
    [(key, payload, request_id)] = broker.published
    assert (key, set(payload), request_id) == ("count_things", {"sent_at"}, "c-1")
    assert broker.writes == [False]
    assert_error(client.get("/count_things?limit=1"), 400, "invalid_parameter")
    assert len(broker.published) == 1
    operation = client.get("/openapi.json").get_json()["paths"]["/count_things"]["get"]
    assert {"200", "503", "504"} <= set(operation["responses"])


@pytest.mark.parametrize("kind", [
    Kind("k", "GET", "/things/<sku>", "s"),                    # a path parameter
    Kind("k", "GET", "/things", "s", body=models.ITEM),         # a GET with a body
    Kind("k", "GET", "/things", "s", write=True),               # a write sent by GET
    Kind("k", "POST", "/things", "s", write=True),              # a POST with no model of its body
])
def test_a_kind_that_needs_its_own_view_gets_none_from_its_declaration(kind: Kind) -> None:
    assert declared_view(kind) is None


def test_writes_with_a_model_are_served_from_their_declaration() -> None:
    """create_item and place_order have no view of their own: their model cleans the body."""
    assert producer.VIEWS[topology.CREATE_ITEM].__name__ == topology.CREATE_ITEM
    assert producer.VIEWS[topology.PLACE_ORDER].__name__ == topology.PLACE_ORDER
    assert not hasattr(producer, "create_item") and not hasattr(producer, "place_order")
