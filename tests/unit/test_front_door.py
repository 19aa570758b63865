"""The front door: what a browser on another site's page, a rebinding DNS name, or a
hostile body can do, with the headers real browsers send (Fetch Metadata and Origin)."""

from __future__ import annotations

import json
import logging

import pytest
from flask.testing import FlaskClient

from common import logs
from common.config import Settings
from common.messages import Invalid, decode, ok_reply
from producer import metrics
from producer.producer import create_app
from tests.unit.test_producer import ENV, RECORD, FakeBroker, assert_error

# What Chromium sends for <img src="http://localhost:5000/delete_record?SRN=..."> on another site.
CROSS_SITE_IMAGE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image",
                    "Referer": "https://evil.example/"}
# ... and for an auto-submitted <form method=post action="http://localhost:5000/insert_record">.
CROSS_SITE_FORM = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
                   "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
# The project's own page, served from the same origin, calling the API with fetch().
SAME_ORIGIN_FETCH = {"Host": "localhost:5000", "Origin": "http://localhost:5000",
                     "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


def client_with(broker: FakeBroker, **env: str) -> FlaskClient:
    settings = Settings.from_env("producer", needs_db=False, env={**ENV, **env})
    return create_app(settings, broker).test_client()  # type: ignore[arg-type]


@pytest.fixture
def client(broker: FakeBroker) -> FlaskClient:
    return client_with(broker)


def test_a_cross_site_image_cannot_delete(client: FlaskClient, broker: FakeBroker) -> None:
    response = client.get("/delete_record?SRN=PES1", headers=CROSS_SITE_IMAGE)
    assert_error(response, 403, "cross_site_request")
    assert broker.published == []


def test_a_cross_site_form_cannot_insert(client: FlaskClient, broker: FakeBroker) -> None:
    response = client.post("/insert_record", data=RECORD, headers=CROSS_SITE_FORM)
    assert_error(response, 403, "cross_site_request")
    assert broker.published == []


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},  # a browser without Fetch Metadata (older Safari)
    {"Origin": "null"},  # a sandboxed iframe or a file:// page
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:8080"},  # another port of this host
])
def test_other_origins_cannot_read_or_write(client: FlaskClient, broker: FakeBroker,
                                            headers: dict[str, str]) -> None:
    assert_error(client.get("/read_database", headers=headers), 403, "cross_site_request")
    assert_error(client.post("/insert_record", json=RECORD, headers=headers), 403, "cross_site_request")
    assert broker.published == []


def test_a_rebinding_host_is_refused_everywhere(client: FlaskClient, broker: FakeBroker) -> None:
    for path in ("/read_database", "/", "/docs"):
        assert_error(client.get(path, headers={"Host": "evil.example:5000"}), 400, "invalid_host")
    assert broker.published == []


def test_the_page_its_own_requests_curl_and_a_typed_url_still_work(client: FlaskClient,
                                                                 broker: FakeBroker) -> None:
    broker.reply = ok_reply({"record": RECORD})
    assert client.post("/insert_record", json=RECORD, headers=SAME_ORIGIN_FETCH).status_code == 201
    assert client.post("/insert_record", json=RECORD).status_code == 201  # curl, Postman: no browser headers
    navigated = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}  # typed into the address bar
    assert client.get("/delete_record?SRN=PES1", headers=navigated).status_code == 200
    # The page itself may be linked to from anywhere: it only reads, through same-origin requests.
    assert client.get("/", headers=CROSS_SITE_FORM | {"Host": "127.0.0.1:5000"}).status_code == 200
    assert len(broker.published) == 3


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "LOCALHOST"])
def test_loopback_names_are_allowed(client: FlaskClient, host: str) -> None:
    assert client.get("/livez", headers={"Host": host}).status_code == 200


def test_allowed_hosts_adds_names(broker: FakeBroker) -> None:
    client = client_with(broker, ALLOWED_HOSTS="api.school.test, 192.0.2.7")
    for host in ("api.school.test:5000", "192.0.2.7", "localhost"):
        assert client.get("/livez", headers={"Host": host}).status_code == 200
    assert_error(client.get("/livez", headers={"Host": "school.test"}), 400, "invalid_host")


def test_json_nested_thousands_deep_is_a_malformed_body(client: FlaskClient, broker: FakeBroker) -> None:
    deep = "[" * 7000 + "]" * 7000  # 14 KB: under the size limit, far over Python's recursion limit
    response = client.post("/insert_record", data=deep, content_type="application/json")
    assert_error(response, 400, "malformed_body")
    assert_error(client.post("/items", data=deep, content_type="application/json"), 400, "malformed_body")
    assert broker.published == []


def test_a_consumer_reads_deep_nesting_as_an_invalid_message() -> None:
    with pytest.raises(Invalid) as refused:
        decode(("[" * 15000 + "]" * 15000).encode())
    assert refused.value.code == "invalid_message"


def test_methods_become_metric_labels_from_a_fixed_set(client: FlaskClient) -> None:
    for method in ("FOO1", "FOO2", "FOO3"):
        client.open("/livez", method=method)
    exposed = metrics.exposition()[0].decode()
    assert 'method="other"' in exposed
    assert "FOO" not in exposed


@pytest.mark.parametrize("separator", ["\u0085", "\u2028", "\u2029"])
def test_log_lines_escape_every_line_separator(separator: str) -> None:
    record = logging.makeLogRecord({"msg": "http_request", "levelname": "INFO",
                                    "path": f"/x{separator}forged"})
    line = logs.JsonFormatter("producer").format(record)
    assert line.splitlines() == [line]  # one line, whatever splits lines
    assert json.loads(line)["path"] == f"/x{separator}forged"  # and the value is kept


def test_gunicorn_bounds_slow_clients_and_opens_no_control_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/security.md#slow-clients: 1,000 connections per gevent worker kept /livez at 2 ms beside
    1,500 half-open sockets (100 let 1,000 of them slow it to 4 s); no gunicornc control socket."""
    import runpy
    from pathlib import Path

    monkeypatch.delenv("GUNICORN_WORKER_CONNECTIONS", raising=False)
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "producer" / "gunicorn.conf.py"))
    assert (conf["worker_class"], conf["worker_connections"]) == ("gevent", 1000)
    assert conf["control_socket_disable"] is True
