"""Apply the numbered migrations in db/migrations, then every account and its grants.

Runs as the one-shot `migrate` service of docker-compose.yml, before any other
service starts. root (on localhost only, through the db container's socket)
makes the accounts of common/accounts.py; the migrations themselves run as
their own account, `migrate`. Each file runs once, in the order of its number,
and is recorded in `schema_migrations`, so a later schema change reaches a
database whose volume already exists.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import mysql.connector

from common import accounts, logs
from common.config import ConfigError, DbSettings
from common.db import DatabaseAway, connect, rows

HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE / "migrations"
GRANTS = HERE / "grants.sql"
NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")
IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,64}")


def statements(sql: str) -> list[str]:
    """The statements of a file: comments dropped, split at each closing ';'."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def pending(applied: set[int]) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = NAME.fullmatch(path.name)
        if match is None:
            raise SystemExit(f"migration file name must look like 001_name.sql: {path.name}")
        found.append((int(match.group(1)), path))
    numbers = [n for n, _ in found]
    if len(set(numbers)) != len(numbers):
        raise SystemExit("two migration files share a number")
    return [(n, p) for n, p in found if n not in applied]


MIGRATION_IO_TIMEOUT_S = 3600


def main() -> None:
    log = logs.setup("migrate")
    try:
        admin = DbSettings.from_env(os.environ, admin=True)
        # The image's MYSQL_USER: only its name, to narrow it to the health check's login.
        probe_user = os.environ.get("MYSQL_USER", "app")
    except ConfigError as exc:
        sys.exit(f"migrate: configuration error: {exc}")
    for name in (probe_user, admin.database):
        if not IDENTIFIER.fullmatch(name):
            sys.exit(f"migrate: {name!r} is not a plain MySQL identifier")
    missing = [accounts.password_setting(s) for s in (accounts.MIGRATOR, *accounts.DATABASE_SERVICES)
               if not os.environ.get(accounts.password_setting(s))]
    if missing:
        sys.exit(f"migrate: configuration error: {', '.join(missing)} not set (make up generates them)")

    deadline = time.monotonic() + 120
    while True:
        try:
            root = connect(admin)
            break
        except mysql.connector.Error as exc:
            if time.monotonic() > deadline:
                raise DatabaseAway(str(exc)) from exc
            log.info("waiting_for_database", error=str(exc))
            time.sleep(2)

    # root (localhost, through the socket) makes the accounts; the migrations run as their own.
    cursor = root.cursor()
    migrator_password = os.environ[accounts.password_setting(accounts.MIGRATOR)]
    for statement, values in account(accounts.MIGRATOR, migrator_password,
                                     [accounts.MIGRATOR_GRANT.format(db=admin.database)]):
        cursor.execute(statement, values)
    root.commit()
    # A migration rewrites whole tables: it may take minutes on a large ledger, where a
    # service's query never takes seconds (MYSQL_IO_TIMEOUT_S).
    migrator = dataclasses.replace(admin, user=accounts.MIGRATOR, password=migrator_password, unix_socket="",
                                   io_timeout_s=MIGRATION_IO_TIMEOUT_S)
    applied = migrate(connect(migrator), log)

    grants = GRANTS.read_text(encoding="utf-8").format(user=probe_user, database=admin.database)
    for statement in statements(grants):
        cursor.execute(statement)
    cursor.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
                   (admin.database,))
    columns = {(str(table), str(column)) for table, column in rows(cursor)}
    tables = {table for table, _ in columns}
    for service in accounts.DATABASE_SERVICES:
        # A grant on a table or a column no migration has made yet waits for the run that makes it.
        grants_of = [grant for table, grant in accounts.mysql_grants(service, admin.database)
                     if table in tables and {(table, c) for c in granted_columns(grant)} <= columns]
        for statement, values in account(service, os.environ[accounts.password_setting(service)], grants_of):
            cursor.execute(statement, values)
    root.commit()
    log.info("schema_ready", versions=sorted(applied), migrations_by=accounts.MIGRATOR,
             probe_user=probe_user, service_users=list(accounts.DATABASE_SERVICES))
    root.close()


def granted_columns(grant: str) -> set[str]:
    """The columns a GRANT names ("UPDATE (name, section)" names two)."""
    return {column.strip() for listed in re.findall(r"\(([^)]*)\)", grant) for column in listed.split(",")}


def migrate(conn: Any, log: logs.EventLogger) -> set[int]:
    """The numbered migrations the database has not seen yet, in order; the versions applied."""
    cursor = conn.cursor()
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INT NOT NULL PRIMARY KEY,"
        " name VARCHAR(255) NOT NULL,"
        " applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
    )
    cursor.execute("SELECT version FROM schema_migrations")
    applied = {int(str(version)) for (version,) in rows(cursor)}
    for number, path in pending(applied):
        # MySQL commits DDL implicitly, so a migration is written to be re-runnable
        # (IF NOT EXISTS) and recorded only once all its statements succeeded.
        for statement in statements(path.read_text(encoding="utf-8")):
            cursor.execute(statement)
        cursor.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (number, path.name)
        )
        conn.commit()
        applied.add(number)
        log.info("migration_applied", version=number, file=path.name)
    conn.close()
    return applied

def account(user: str, password: str, grants: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The statements that give `user` its own account, its password from .env, and only
    `grants`: whatever it held before is revoked first, so a narrowed grant takes effect."""
    # The host is a parameter too: a literal '%' beside parameters is not taken for one
    # the same way by every driver (the C extension kept '%%').
    name = (user, "%")
    return [
        ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (*name, password)),
        ("ALTER USER %s@%s IDENTIFIED BY %s", (*name, password)),
        ("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", name),
        *((f"{grant} TO %s@%s", name) for grant in grants),
    ]

if __name__ == "__main__":
    main()
