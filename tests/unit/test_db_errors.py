"""What a database error means for the message in hand: retry, wait for a person, or a bug."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mysql.connector
import pytest

from common import amqp, consumer, db
from common.config import Settings
from common.db import Database, DatabaseAway, DatabaseMisconfigured
from common.testing import InMemoryQueue
from common.topology import INSERT_RECORD
from consumer_two import insertion

ENV = {"RABBITMQ_HOST": "h", "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "p",
       "MYSQL_USER": "u", "MYSQL_PASSWORD": "p"}


class FailingCursor:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.error is not None:
            raise self.error

    def nextset(self) -> None:
        return None


class FakeConnection:
    """A connection whose statements raise `error` (or succeed when it is None)."""

    in_transaction = True  # as after any statement: Database.run commits

    def __init__(self, error: Exception | None) -> None:
        self.error, self.closed, self.commits = error, False, 0

    def cursor(self) -> FailingCursor:
        return FailingCursor(self.error)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None: ...

    def close(self) -> None:
        self.closed = True


class Connections(list[FakeConnection]):
    """Each connection `Database` opened, in order; `errors` are those of the next ones."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[Exception | None] = []

    def connect(self, _settings: Any) -> FakeConnection:
        self.append(FakeConnection(self.errors.pop(0) if self.errors else None))
        return self[-1]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    opened = Connections()
    monkeypatch.setattr(db, "connect", opened.connect)
    return opened


def database() -> Database:
    settings = Settings.from_env("consumer_two", needs_db=True, env=ENV)
    assert settings.db is not None
    return Database(settings.db)


def run_once(database: Database) -> None:
    database.run(lambda cursor: cursor.execute("SELECT 1"))


@pytest.mark.parametrize("error", [
    # MySQL closes a connection idle past wait_timeout with 4031, raised as a plain DatabaseError.
    mysql.connector.DatabaseError(msg="The client was disconnected by the server because of inactivity",
                                  errno=4031),
    mysql.connector.OperationalError(msg="Lost connection to MySQL server during query", errno=2013),
    mysql.connector.InterfaceError(msg="MySQL server has gone away", errno=2006),
    # The C extension, connecting while the database's container is stopped.
    mysql.connector.DatabaseError(msg="Unknown MySQL server host 'db' (-2)", errno=2005),
])
def test_a_closed_connection_is_an_outage_and_the_next_run_reconnects(
        connections: Connections, error: Exception) -> None:
    connections.errors.extend([error, None])
    store = database()
    with pytest.raises(DatabaseAway) as caught:
        run_once(store)
    assert not isinstance(caught.value, DatabaseMisconfigured)
    assert connections[0].closed
    run_once(store)
    assert len(connections) == 2 and connections[1].commits == 1


@pytest.mark.parametrize("error", [
    mysql.connector.ProgrammingError(msg="Access denied for user 'app'@'%'", errno=1045),
    mysql.connector.ProgrammingError(msg="INSERT command denied to user 'app'", errno=1142),
    mysql.connector.ProgrammingError(msg="Table 'school.students' doesn't exist", errno=1146),
    mysql.connector.ProgrammingError(msg="Unknown database 'school'", errno=1049),
])
def test_access_denied_and_unknown_tables_are_configuration_faults(
        connections: Connections, error: Exception) -> None:
    connections.errors.append(error)
    with pytest.raises(DatabaseMisconfigured):
        run_once(database())
    assert connections[0].closed  # a fixed grant or password is used on the next connection


def test_a_deadlock_is_retried_on_the_same_connection(connections: Connections) -> None:
    connections.errors.append(mysql.connector.DatabaseError(msg="Deadlock found", errno=1213))
    with pytest.raises(DatabaseAway):
        run_once(database())
    assert not connections[0].closed


def test_other_errors_are_bugs_or_bad_data_and_pass_through(connections: Connections) -> None:
    connections.errors.append(mysql.connector.IntegrityError(msg="Duplicate entry", errno=1062))
    with pytest.raises(mysql.connector.IntegrityError):
        run_once(database())


def test_a_misconfigured_database_keeps_the_message_and_reports_unhealthy(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Access denied twice, then fixed: the message is answered, never dead-lettered, and the
    health file is gone while the consumer waits for a person."""
    alive = tmp_path / "alive"
    monkeypatch.setattr(consumer, "ALIVE_FILE", alive)
    monkeypatch.setattr(amqp, "backoff", lambda attempt: 0.01)
    health_while_waiting: list[bool] = []
    events: list[str] = []
    logged: list[str] = []

    class Sleeper:
        def sleep(self, _seconds: float) -> None:
            health_while_waiting.append(alive.exists())

    class RefusingThenFixed:
        failures = 2

        def run(self, work: Callable[[Any], Any]) -> Any:
            if self.failures:
                self.failures -= 1
                raise DatabaseMisconfigured("Access denied for user 'app'@'%'")
            events.append("commit")
            return [{"ok": True, "result": {"record": {"Name": "A", "SRN": "S1", "Section": "B"}}}]

        def close(self) -> None: ...

    alive.touch()
    queue = InMemoryQueue(insertion.HANDLER, database=RefusingThenFixed(), connection=Sleeper(), waits=True)
    monkeypatch.setattr(queue.worker.log, "error", lambda event, **_: logged.append(event))
    reply = queue.call(INSERT_RECORD, {"Name": "A", "SRN": "S1", "Section": "B"}, request_id="req-1")
    assert reply == {"ok": True, "result": {"record": {"Name": "A", "SRN": "S1", "Section": "B"}}}
    assert events == ["commit"]
    assert queue.log[-1] == ("ack", 1, False)  # answered, never dead-lettered
    assert logged == ["database_misconfigured", "database_misconfigured"]
    assert health_while_waiting and not any(health_while_waiting)


def test_the_c_extensions_raw_error_is_a_lost_connection(connections: Connections,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The C extension lets its own MySQLInterfaceError out of rollback() on a broken
    connection: an outage like any other, never a handler failure."""

    class MySQLInterfaceError(Exception):
        pass

    monkeypatch.setattr(db, "DRIVER_ERRORS", (mysql.connector.Error, MySQLInterfaceError))
    connections.errors.extend([MySQLInterfaceError("Lost connection to MySQL server"), None])
    store = database()
    with pytest.raises(DatabaseAway):
        run_once(store)
    assert connections[0].closed
    run_once(store)
    assert connections[1].commits == 1


class SendingCursor:
    """What a Together sends: each execute (one round trip), and a later statement's error."""

    def __init__(self, error_on_next_set: Exception | None = None) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.error_on_next_set = error_on_next_set

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.sent.append((sql, params))

    def nextset(self) -> None:
        if self.error_on_next_set is not None:
            raise self.error_on_next_set


def test_together_sends_its_statements_and_the_commit_in_one_round_trip() -> None:
    cursor = SendingCursor()
    together = db.Together(cursor)  # type: ignore[arg-type]
    together.execute("INSERT INTO students (srn, name) VALUES (%s, %s)", ("S1", "A"))
    together.executemany("INSERT INTO requests (request_id, reply) VALUES (%s, %s)",
                         [("r1", "{}"), ("r2", "{}")])
    assert cursor.sent == []  # nothing before send
    together.send()
    assert cursor.sent == [("INSERT INTO students (srn, name) VALUES (%s, %s); "
                            "INSERT INTO requests (request_id, reply) VALUES (%s, %s), (%s, %s); COMMIT",
                            ("S1", "A", "r1", "{}", "r2", "{}"))]
    with pytest.raises(ValueError):  # an UPDATE's rows would need one statement each
        together.executemany("UPDATE requests SET reply = %s WHERE request_id = %s", [("{}", "r1")])


def test_a_later_statements_raw_c_extension_error_is_the_connectors_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The C extension raises a later statement's error (a duplicate key) raw from nextset():
    it must stay a duplicate key, never look like a lost connection."""

    class MySQLInterfaceError(Exception):
        def __init__(self, msg: str, errno: int, sqlstate: str) -> None:
            super().__init__(msg)
            self.msg, self.errno, self.sqlstate = msg, errno, sqlstate

    monkeypatch.setattr(db, "C_EXTENSION_ERRORS", (MySQLInterfaceError,))
    raw = MySQLInterfaceError("Duplicate entry", 1062, "23000")
    together = db.Together(SendingCursor(raw))  # type: ignore[arg-type]
    together.execute("INSERT INTO students (srn) VALUES (%s)", ("S1",))
    with pytest.raises(mysql.connector.IntegrityError) as caught:
        together.send()
    assert caught.value.errno == 1062 and db.is_duplicate_key(caught.value)


def test_a_transaction_that_sent_its_own_commit_is_not_committed_again(connections: Connections) -> None:
    store = database()
    run_once(store)
    assert connections[0].commits == 1
    connections[0].in_transaction = False  # as after Together's COMMIT
    run_once(store)
    assert connections[0].commits == 1
