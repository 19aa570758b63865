"""Apply the numbered migrations in db/migrations, then the grants.

Runs as the one-shot `migrate` service of docker-compose.yml, with the
administrative account, before any other service starts. Each file runs
once, in the order of its number, and is recorded in `schema_migrations`,
so a later schema change reaches a database whose volume already exists.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import mysql.connector

from common import logs
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


def main() -> None:
    log = logs.setup("migrate")
    try:
        admin = DbSettings.from_env(os.environ, admin=True)
        app = DbSettings.from_env(os.environ)
    except ConfigError as exc:
        sys.exit(f"migrate: configuration error: {exc}")
    for name in (app.user, app.database):
        if not IDENTIFIER.fullmatch(name):
            sys.exit(f"migrate: {name!r} is not a plain MySQL identifier")

    deadline = time.monotonic() + 120
    while True:
        try:
            conn = connect(admin)
            break
        except mysql.connector.Error as exc:
            if time.monotonic() > deadline:
                raise DatabaseAway(str(exc)) from exc
            log.info("waiting_for_database", error=str(exc))
            time.sleep(2)

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

    grants = GRANTS.read_text(encoding="utf-8").format(user=app.user, database=app.database)
    for statement in statements(grants):
        cursor.execute(statement)
    conn.commit()
    log.info("schema_ready", versions=sorted(applied), user=app.user)
    conn.close()


if __name__ == "__main__":
    main()
