"""MySQL access: one connection, explicit transactions, and the request ledger.

A consumer never gives a message back because the database is away: it
keeps the message and calls `Database.run` again until the work commits.
`DatabaseAway` is the one error that means "try again later" (its subclass
`DatabaseMisconfigured`: later, once a person has fixed the setup); any
other error is a bug or bad data and is not retried.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import mysql.connector
from mysql.connector import errorcode
from mysql.connector.abstracts import MySQLConnectionAbstract, MySQLCursorAbstract
from mysql.connector.pooling import PooledMySQLConnection

from common.config import DbSettings
from common.messages import Refused, encode, erased_reply

T = TypeVar("T")
Cursor = MySQLCursorAbstract

# Set by every client, since MySQL 8's default collation name does not exist
# on MariaDB and the two servers' defaults differ.
CHARSET = "utf8mb4"
COLLATION = "utf8mb4_unicode_ci"


# Transient by nature: the same transaction succeeds when run again. (ER_CHECKREAD
# is MariaDB's "record has changed since last read" under snapshot isolation.)
RETRYABLE_ERRNOS = frozenset({errorcode.ER_LOCK_DEADLOCK, errorcode.ER_LOCK_WAIT_TIMEOUT,
                              errorcode.ER_CHECKREAD})
# The server closed the connection: MySQL says why first (4031, an idle
# connection past wait_timeout), which the connector raises as a plain
# DatabaseError rather than as a lost connection.
CONNECTION_LOST_ERRNOS = frozenset({errorcode.ER_CLIENT_INTERACTION_TIMEOUT})
# The client library's own errors (CR_*: no route, unknown host, lost
# connection ...) are about the connection, never the data; the C extension
# raises some as a plain DatabaseError too (2005 while the server's host is gone).
CLIENT_ERRNOS = range(2000, 3000)
# The database answers, but not as this service needs: wrong password or
# grants, a missing schema or table. Every message would fail the same way,
# so none of them is poison: they wait for a person to fix the setup.
MISCONFIGURED_ERRNOS = frozenset({
    errorcode.ER_ACCESS_DENIED_ERROR, errorcode.ER_DBACCESS_DENIED_ERROR,
    errorcode.ER_TABLEACCESS_DENIED_ERROR, errorcode.ER_COLUMNACCESS_DENIED_ERROR,
    errorcode.ER_SPECIFIC_ACCESS_DENIED_ERROR, errorcode.ER_BAD_DB_ERROR,
    errorcode.ER_NO_SUCH_TABLE, errorcode.ER_BAD_FIELD_ERROR,
})


def _c_extension_errors() -> tuple[type[Exception], ...]:
    """The C extension's own error type, which a few of its calls (rollback() on a lost
    connection) raise untranslated; none where it is not built for the platform."""
    try:
        from _mysql_connector import MySQLInterfaceError  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return ()
    return (MySQLInterfaceError,)


C_EXTENSION_ERRORS = _c_extension_errors()
# The pure-Python protocol only where the C extension cannot load (a host's older OpenSSL).
USE_PURE = not C_EXTENSION_ERRORS
DRIVER_ERRORS: tuple[type[Exception], ...] = (mysql.connector.Error, *C_EXTENSION_ERRORS)


class DatabaseAway(Exception):
    """The database cannot be reached, dropped the connection, or asked for a retry."""


class DatabaseMisconfigured(DatabaseAway):
    """The database refuses this service (access denied, unknown table ...): a person must act."""


def connect(settings: DbSettings) -> MySQLConnectionAbstract | PooledMySQLConnection:
    where: dict[str, Any] = ({"unix_socket": settings.unix_socket} if settings.unix_socket
                             else {"host": settings.host, "port": settings.port})
    conn = mysql.connector.connect(
        **where,
        user=settings.user,
        password=settings.password,
        database=settings.database,
        charset=CHARSET,
        collation=COLLATION,
        autocommit=False,
        # The C extension where it is built (every service image): a raw
        # MySQLInterfaceError it lets out of rollback() is mapped in Database.run.
        use_pure=USE_PURE,
        connection_timeout=settings.connect_timeout_s,
        read_timeout=settings.io_timeout_s,
        write_timeout=settings.io_timeout_s,
    )
    # Every transaction is short and its locking reads (SELECT ... FOR UPDATE)
    # must see the latest committed row: READ COMMITTED gives that on MySQL
    # and on MariaDB alike (MariaDB's default snapshot isolation refuses a
    # locking read of a row changed since the transaction's first read).
    cursor = conn.cursor()
    cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    cursor.close()
    return conn


class Database:
    def __init__(self, settings: DbSettings):
        self.settings = settings
        self._conn: MySQLConnectionAbstract | PooledMySQLConnection | None = None
        # One cursor for the connection's life: conn.cursor() pings the server each time.
        self._cursor: Cursor | None = None
        # A transaction ended without a commit or a rollback that succeeded.
        self._dirty = False

    def run(self, work: Callable[[Cursor], T]) -> T:
        """Run `work` in one transaction and commit it; roll back if it raises.

        Round trips are the cost of a small transaction, so none is spent on
        what is already known: a rollback only after a transaction that did
        not end cleanly, a new cursor only with a new connection.
        """
        try:
            if self._conn is None:
                self._conn = connect(self.settings)
                self._cursor, self._dirty = None, False
            conn = self._conn
            if self._dirty:
                conn.rollback()  # start clean, whatever an earlier failure left behind
                self._dirty = False
            if self._cursor is None:
                self._cursor = conn.cursor()
            cursor = self._cursor
            self._dirty = True
            try:
                result = work(cursor)
                if conn.in_transaction:  # not when `work` sent its COMMIT itself (Together)
                    conn.commit()
            except BaseException:
                conn.rollback()
                self._dirty = False
                raise
            self._dirty = False
            return result
        except DRIVER_ERRORS as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: Exception) -> Exception:
        """What a connector error means for the message in hand."""
        if not isinstance(exc, mysql.connector.Error):  # the C extension's raw error: the connection broke
            self.close()
            return DatabaseAway(str(exc))
        if exc.errno in MISCONFIGURED_ERRNOS:
            self.close()  # a fixed password or grant takes effect on the next connection
            return DatabaseMisconfigured(str(exc))
        if (isinstance(exc, (mysql.connector.InterfaceError, mysql.connector.OperationalError))
                or exc.errno in CONNECTION_LOST_ERRNOS or (exc.errno or 0) in CLIENT_ERRNOS):
            self.close()
            return DatabaseAway(str(exc))
        if exc.errno in RETRYABLE_ERRNOS:
            return DatabaseAway(str(exc))
        return exc

    def close(self) -> None:
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(mysql.connector.Error):
                conn.close()


class Together:
    """A cursor for a transaction that reads nothing back: it keeps the statements it is
    given and `send` sends them with the COMMIT as one multi-statement, one round trip
    to MySQL for the whole transaction instead of one per statement and the commit.

    Nothing fails before `send`: an error of any statement (a duplicate key) is raised
    there, as the connector's error, and the statements after it are not run; the
    caller rolls back. Only INSERTs may be given to `executemany` (one multi-row INSERT,
    as the connector itself makes of it).
    """

    def __init__(self, cursor: Cursor):
        self.cursor = cursor
        self.statements: list[str] = []
        self.params: list[Any] = []

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        self.statements.append(statement)
        self.params.extend(params)

    def executemany(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        head, values = statement.split(" VALUES ", 1)
        if not head.startswith("INSERT INTO ") or not rows:
            raise ValueError("Together.executemany takes an INSERT ... VALUES (...) and rows")
        self.statements.append(f"{head} VALUES {', '.join([values] * len(rows))}")
        for row in rows:
            self.params.extend(row)

    def send(self) -> None:
        """The statements and the COMMIT, in one round trip; every result read."""
        if not self.statements:
            return
        try:
            # Parameters are escaped and quoted by the client, as for any statement.
            self.cursor.execute("; ".join([*self.statements, "COMMIT"]), tuple(self.params))
            while self.cursor.nextset():
                pass
        except C_EXTENSION_ERRORS as exc:  # a later statement's error comes raw from the C extension
            errno, msg, sqlstate = (getattr(exc, name, None) for name in ("errno", "msg", "sqlstate"))
            raise mysql.connector.errors.get_mysql_exception(
                errno or errorcode.CR_SERVER_LOST, msg or str(exc), sqlstate) from exc
        finally:
            self.statements, self.params = [], []


def rows(cursor: Cursor) -> list[tuple[Any, ...]]:
    """The remaining rows of a query, as tuples (the cursor's default)."""
    return [tuple(row) for row in cursor.fetchall()]


def page_rows(cursor: Cursor, columns: str, table: str, key: str, after: Any,
              limit: int) -> list[tuple[Any, ...]]:
    """The rows after `after` in `key` order, `limit` of them and one more, which says
    whether another page follows (keyset paging: no OFFSET to skip past). Column and
    table names are the caller's constants; the values travel as parameters."""
    if after is None:
        cursor.execute(f"SELECT {columns} FROM {table} ORDER BY {key} LIMIT %s", (limit + 1,))
    else:
        cursor.execute(f"SELECT {columns} FROM {table} WHERE {key} > %s ORDER BY {key} LIMIT %s",
                       (after, limit + 1))
    return rows(cursor)


def one(cursor: Cursor) -> tuple[Any, ...] | None:
    """The next row of a query as a tuple, or None."""
    row = cursor.fetchone()
    return None if row is None else tuple(row)


def is_duplicate_key(exc: BaseException) -> bool:
    return isinstance(exc, mysql.connector.IntegrityError) and exc.errno == errorcode.ER_DUP_ENTRY


def insert_new(cursor: Cursor, statement: str, params: tuple[Any, ...], exists: Refused) -> None:
    """Insert a row whose key must be new; `exists` is the answer when it is not."""
    try:
        cursor.execute(statement, params)
    except mysql.connector.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise exists from exc
        raise


class LedgerConflict(Exception):
    """Another consumer recorded the same request id in the meantime."""


class LedgerEntry(NamedTuple):
    routing_key: str
    fingerprint: str
    reply: dict[str, Any]
    # Whose personal data the reply holds (a student's SRN): erased with their record.
    subject: str | None = None


def ledger_lookup(cursor: Cursor, request_id: str) -> LedgerEntry | None:
    """What the ledger recorded for a request id, if that request is done."""
    return ledger_entries(cursor, [request_id]).get(request_id)


def ledger_entries(cursor: Cursor, request_ids: list[str]) -> dict[str, LedgerEntry]:
    """The ledger's entries for these request ids (those that are done), in one query."""
    marks = ", ".join(["%s"] * len(request_ids))  # placeholders only: the ids travel as parameters
    cursor.execute(
        f"SELECT request_id, routing_key, fingerprint, reply FROM requests WHERE request_id IN ({marks})",
        tuple(request_ids),
    )
    return {str(request_id): LedgerEntry(str(routing_key), str(fingerprint), json.loads(str(reply)))
            for request_id, routing_key, fingerprint, reply in rows(cursor)}


def ledger_record(cursor: Cursor | Together, entries: dict[str, LedgerEntry]) -> None:
    """Record the entries of done requests (by request id), in one multi-row INSERT."""
    if not entries:
        return
    try:
        # mysql-connector turns executemany of an INSERT into one multi-row statement.
        cursor.executemany(
            "INSERT INTO requests (request_id, routing_key, fingerprint, reply, subject)"
            " VALUES (%s, %s, %s, %s, %s)",
            # Encoded as the reply is sent (a DECIMAL, a DATETIME): a retry gets what the first got.
            [(request_id, entry.routing_key, entry.fingerprint, encode(entry.reply).decode(), entry.subject)
             for request_id, entry in entries.items()],
        )
    except mysql.connector.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise LedgerConflict(", ".join(entries)) from exc
        raise


def ledger_erase(cursor: Cursor, subject: str) -> int:
    """Erase a subject's personal data from the answers the ledger keeps: each keeps that
    its request happened, its status and its error code, not the data. Returns how many."""
    cursor.execute("SELECT request_id, reply FROM requests WHERE subject = %s FOR UPDATE", (subject,))
    found = rows(cursor)
    if found:
        # One UPDATE per entry (the connector sends executemany of an UPDATE one by one):
        # a subject has a few entries, the writes of its record.
        cursor.executemany(
            "UPDATE requests SET reply = %s, subject = NULL WHERE request_id = %s",
            [(encode(erased_reply(json.loads(str(reply)))).decode(), request_id)
             for request_id, reply in found],
        )
    return len(found)


def ledger_prune(cursor: Cursor, retention_s: float, batch: int) -> int:
    """Delete up to `batch` ledger entries older than `retention_s` (the oldest first), by the
    database's clock; returns how many. Small batches on the created_at index, under READ
    COMMITTED (the connection's level: no gap locks), so new entries are never waited on."""
    cursor.execute(
        "DELETE FROM requests WHERE created_at < CURRENT_TIMESTAMP(3) - INTERVAL %s SECOND"
        " ORDER BY created_at LIMIT %s",
        (int(retention_s), batch),
    )
    return int(cursor.rowcount)
