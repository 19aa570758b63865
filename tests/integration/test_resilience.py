"""The broker or the database goes away and comes back: nothing to restart by hand.

Each test puts the system back as it found it, so the order of tests does not matter.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.support import SystemCopy, docker, healthy, json_of, restart_counts, unique_srn, wait_until

Api = Callable[..., requests.Response]


@pytest.fixture
def no_restarts(stack: SystemCopy) -> Iterator[None]:
    before = restart_counts(stack)
    yield
    assert restart_counts(stack) == before, "a container was restarted"


@pytest.mark.usefixtures("no_restarts")
def test_broker_down_is_503_at_once_and_everything_reconnects(stack: SystemCopy, api: Api) -> None:
    rabbitmq = stack.values["RABBITMQ_CONTAINER"]
    docker("stop", rabbitmq)
    try:
        for _ in range(3):
            started = time.monotonic()
            response = api("GET", "/health_check", params={"message": "anyone?"})
            assert response.status_code == 503 and json_of(response)["error"] == "broker_unavailable"
            assert time.monotonic() - started < 2
    finally:
        docker("start", rabbitmq)
    wait_until(lambda: api("GET", "/health_check", params={"message": "back"}).status_code == 200, timeout=90)
    srn = unique_srn("R")
    insert = wait_until(lambda: api("POST", "/insert_record", json={"Name": "After", "SRN": srn,
                                                                     "Section": "A"}), timeout=30)
    assert insert.status_code == 201
    for service in ("consumer_two", "consumer_three", "consumer_four"):
        wait_until(functools.partial(healthy, stack, service), timeout=30)
    assert api("GET", "/delete_record", params={"SRN": srn}).status_code == 200


@pytest.mark.usefixtures("no_restarts")
def test_database_away_write_is_accepted_then_done(stack: SystemCopy, api: Api) -> None:
    db = stack.container("db")
    docker("stop", db)
    srn = unique_srn("W")
    try:
        response = api("POST", "/insert_record", json={"Name": "Waited", "SRN": srn, "Section": "A"},
                       headers={"X-Request-ID": f"wait-{srn}"})
        assert response.status_code == 202, response.text
        assert json_of(response) == {"status": "accepted", "request_id": f"wait-{srn}"}
        location = response.headers["Location"]
        assert location.startswith(f"/requests/wait-{srn}?asked=")
    finally:
        docker("start", db)
    wait_until(lambda: stack.sql(f"SELECT srn FROM students WHERE srn = '{srn}'") == [[srn]], timeout=90)
    assert json_of(api("GET", f"/requests/wait-{srn}"))["error"] == "missing_parameter"  # no proof, no answer
    stored = api("GET", location)
    assert stored.status_code == 201
    assert json_of(stored) == {"record": {"Name": "Waited", "SRN": srn, "Section": "A"}}
    unknown = api("GET", f"/requests/never-sent-this-one?asked={'0' * 64}")
    assert unknown.status_code == 404 and json_of(unknown)["error"] == "unknown_request"
    # Not dead-lettered on the way: the consumer kept the message. (Asked by id: a
    # queue's depth is not to be trusted so soon after the previous test's broker restart.)
    assert f"wait-{srn}" not in stack.script("dead-letters", "insert_record")
    wait_until(lambda: healthy(stack, "consumer_two"), timeout=30)


def test_sigterm_stops_a_consumer_cleanly(stack: SystemCopy, api: Api) -> None:
    container = stack.container("consumer_four")
    started = time.monotonic()
    docker("stop", "--time", "10", container)
    assert time.monotonic() - started < 8
    state = json.loads(docker("inspect", container))[0]["State"]
    assert state["ExitCode"] == 0, state  # exited by itself, not killed (137)
    docker("start", container)
    wait_until(lambda: healthy(stack, "consumer_four"), timeout=60)
    assert api("GET", "/read_database").status_code == 200


def test_the_image_s_user_may_only_log_in(stack: SystemCopy) -> None:
    """MYSQL_USER, made by the database image, serves only the health check's login now:
    each service has its own account (tests/integration/test_accounts.py)."""
    def as_probe(statement: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", stack.container("db"), "sh", "-c",
             'MYSQL_PWD="$MYSQL_PASSWORD" mysql -u"$MYSQL_USER" -e "$0"', statement],
            capture_output=True, text=True)

    assert as_probe("SELECT 1").returncode == 0
    database = stack.values["MYSQL_DATABASE"]
    for forbidden in ("SELECT COUNT(*) FROM {db}.students", "UPDATE {db}.students SET srn = 'x'",
                      "DROP TABLE {db}.students", "DELETE FROM {db}.requests",
                      "CREATE TABLE {db}.sneaky (id INT)", "SELECT reply FROM {db}.requests",
                      "DELETE FROM {db}.items", "DELETE FROM {db}.orders"):
        result = as_probe(forbidden.format(db=database))
        assert result.returncode != 0 and "denied" in result.stderr, (forbidden, result.stderr)


def set_wait_timeout(stack: SystemCopy, seconds: int) -> None:
    """The server's idle limit for new connections; consumer_two restarted to take it."""
    stack.sql(f"SET GLOBAL wait_timeout = {seconds}")
    docker("restart", "--time", "10", stack.container("consumer_two"))
    wait_until(lambda: healthy(stack, "consumer_two"), timeout=60)


def test_a_connection_closed_for_idleness_is_reopened_and_nothing_is_dead_lettered(
        stack: SystemCopy, api: Api) -> None:
    """MySQL closes a connection idle past wait_timeout with error 4031 (MariaDB without a
    word): either way the consumer reconnects and the write is done, not set aside."""
    set_wait_timeout(stack, 2)
    try:
        srns = [unique_srn("I"), unique_srn("I")]
        first = api("POST", "/insert_record", json={"Name": "Idle", "SRN": srns[0], "Section": "A"})
        assert first.status_code == 201, first.text
        # The server closes consumer_two's idle connection (its own account's only one): seen, not assumed.
        wait_until(lambda: stack.sql("SELECT COUNT(*) FROM information_schema.processlist "
                                     "WHERE user = 'consumer_two'") == [["0"]], timeout=30)
        second = api("POST", "/insert_record", json={"Name": "Idle", "SRN": srns[1], "Section": "A"},
                     headers={"X-Request-ID": f"idle-{srns[1]}"})
        assert second.status_code == 201, second.text
    finally:
        set_wait_timeout(stack, 28800)
    assert stack.sql(f"SELECT COUNT(*) FROM students WHERE srn IN ('{srns[0]}', '{srns[1]}')") == [["2"]]
    assert f"idle-{srns[1]}" not in stack.script("dead-letters", "insert_record")
    logs = subprocess.run(["docker", "logs", "--since", "30s", stack.container("consumer_two")],
                          capture_output=True, text=True).stdout
    assert "handler_failed" not in logs


def test_access_denied_keeps_the_write_and_reports_unhealthy_until_granted(stack: SystemCopy,
                                                                           api: Api) -> None:
    """A configuration fault is not poison: the message waits, the consumer says it is
    unhealthy, and once the grant is back the write is done as it was asked."""
    user = "consumer_two"  # its own account (common/accounts.py)
    stack.sql(f"REVOKE INSERT ON students FROM '{user}'@'%'")
    srn = unique_srn("G")
    try:
        response = api("POST", "/insert_record", json={"Name": "Granted", "SRN": srn, "Section": "A"},
                       headers={"X-Request-ID": f"grant-{srn}"})
        assert response.status_code == 202, response.text
        wait_until(lambda: not healthy(stack, "consumer_two"), timeout=60)
        logs = subprocess.run(["docker", "logs", "--since", "60s", stack.container("consumer_two")],
                              capture_output=True, text=True).stdout
        assert '"database_misconfigured"' in logs and "denied" in logs
        assert f"grant-{srn}" not in stack.script("dead-letters", "insert_record")
    finally:
        stack.sql(f"GRANT INSERT ON students TO '{user}'@'%'")
    wait_until(lambda: api("GET", response.headers["Location"]).status_code == 201, timeout=60)
    assert stack.sql(f"SELECT name FROM students WHERE srn = '{srn}'") == [["Granted"]]
    wait_until(lambda: healthy(stack, "consumer_two"), timeout=60)
