"""Hand-picked hostile input at the HTTP edge: stored literally or refused, never a 5xx."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from tests.support import SystemCopy, json_of, unique_srn

Api = Callable[..., requests.Response]
INJECTIONS = ["x'); DROP TABLE students; --", "\" OR \"1\"=\"1", "%' UNION SELECT * FROM requests #",
              "\\'; SHUTDOWN; --"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_sql_text_is_stored_and_read_back_literally(api: Api, text: str) -> None:
    srn = unique_srn("Q")
    created = api("POST", "/insert_record", json={"Name": text, "SRN": srn, "Section": text[:16]})
    assert created.status_code == 201, created.text
    stored = {r["SRN"]: r for r in json_of(api("GET", "/read_database"))["records"]}
    assert stored[srn] == {"Name": text, "SRN": srn, "Section": text[:16].strip()}
    assert api("GET", "/delete_record", params={"SRN": text}).status_code == 400  # not an SRN
    assert api("GET", "/delete_record", params={"SRN": srn}).status_code == 200


def test_unicode_is_kept(api: Api) -> None:
    srn, name = unique_srn("U"), "Zoë Ñúñez 李小龍 🎓"
    assert json_of(api("POST", "/insert_record", json={"Name": name, "SRN": srn, "Section": "Ä"}))["record"][
        "Name"] == name
    assert {"Name": name, "SRN": srn, "Section": "Ä"} in json_of(api("GET", "/read_database"))["records"]


@pytest.mark.parametrize("body", [
    {"Name": {"first": "A"}, "SRN": "S", "Section": "A"},
    {"Name": ["A"], "SRN": "S", "Section": "A"},
    {"Name": None, "SRN": "S", "Section": "A"},
    {"Name": True, "SRN": "S", "Section": "A"},
])
def test_nested_or_typed_values_are_invalid_records(stack: SystemCopy, api: Api,
                                                    body: dict[str, object]) -> None:
    before = stack.snapshot()
    response = api("POST", "/insert_record", json=body)
    assert response.status_code == 400 and json_of(response)["error"] == "invalid_record"
    assert stack.snapshot() == before


def raw_request(stack: SystemCopy, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", int(stack.values["PRODUCER_PORT"])), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_request_id_with_a_line_break_is_never_echoed(stack: SystemCopy) -> None:
    answer = raw_request(stack, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                b"X-Request-ID: abc\rInjected: yes\r\n\r\n")
    status = int(answer.split(b" ", 2)[1])
    assert 200 <= status < 500
    assert b"Injected" not in answer


def test_oversized_header_is_a_4xx(stack: SystemCopy) -> None:
    answer = raw_request(stack, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert 400 <= int(answer.split(b" ", 2)[1]) < 500


def test_long_request_id_is_replaced(api: Api) -> None:
    response = api("GET", "/health_check", params={"message": "hi"}, headers={"X-Request-ID": "a" * 65})
    assert response.status_code == 200 and response.headers["X-Request-ID"] != "a" * 65
