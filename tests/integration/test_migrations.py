"""Schema changes reach a database that already exists: `make up` on a volume of the previous schema."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scripts.stack import Stack as Script
from tests.support import ARTIFACTS, PROJECT, ROOT, SystemCopy, stack_values, wait_until

# The grants as they were when 001 was the newest migration: what a database
# made then carries. (db/grants.sql grows with the schema; this must not.)
VERSION_1_GRANTS = """
REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{user}'@'%';
GRANT SELECT, INSERT, DELETE ON `{database}`.`students` TO '{user}'@'%';
GRANT SELECT, INSERT ON `{database}`.`requests` TO '{user}'@'%';
"""
OLD_ROWS = [["OLD001", "Old One", "A"], ["OLD002", "Old Two", "B"]]


@pytest.fixture
def other_copy() -> Iterator[SystemCopy]:
    """A second copy of the system, with its own project, ports and volumes."""
    env_file = ARTIFACTS / "migration.env"
    values = stack_values(ARTIFACTS / "does-not-exist", project=f"{PROJECT}mig")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    copy = SystemCopy(env_file, values)
    copy.run_script("clean", check=False)
    try:
        yield copy
    finally:
        copy.run_script("clean", check=False)
        env_file.unlink(missing_ok=True)


def readable_copy(files: list[Path], folder: Path) -> Path:
    """`files` in a folder the services' unprivileged user can read once mounted."""
    folder.mkdir(mode=0o755)
    for path in files:
        shutil.copy(path, folder)
        (folder / path.name).chmod(0o644)
    return folder


def test_make_up_migrates_a_database_of_the_previous_schema(other_copy: SystemCopy, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    # The images `make up` would choose for this copy: its settings, then the shell's
    # (CI's MariaDB run sets MYSQL_IMAGE), as the script reads them.
    script = Script(other_copy.env_file)
    script.load()
    images = script.resolve_images()
    # The database as version 1 of the schema left it: the real migrate service,
    # shown only the first migration and the grants of that time.
    old_migrations = readable_copy(sorted((ROOT / "db" / "migrations").glob("001_*.sql")), tmp_path / "m")
    grants = tmp_path / "grants.sql"
    grants.write_text(VERSION_1_GRANTS)
    grants.chmod(0o644)
    other_copy.compose_with(images, "up", "--detach", "db")
    wait_until(lambda: other_copy.compose_with(images, "ps", "db").count("(healthy)") == 1, timeout=180)
    other_copy.compose_with(images, "run", "--rm", "--no-deps",
                            "-v", f"{old_migrations}:/app/db/migrations:ro",
                            "-v", f"{grants}:/app/db/grants.sql:ro", "migrate")
    assert other_copy.sql("SELECT version FROM schema_migrations") == [["1"]]
    assert {t for [t] in other_copy.sql("SHOW TABLES")} == {"schema_migrations", "students", "requests"}
    for srn, name, section in OLD_ROWS:
        other_copy.sql(f"INSERT INTO students (srn, name, section, request_id) "
                       f"VALUES ('{srn}', '{name}', '{section}', 'old-{srn}')")

    other_copy.run_script("up")  # what a user runs after pulling the new version

    every = sorted(int(path.name[:3]) for path in (ROOT / "db" / "migrations").glob("*.sql"))
    assert other_copy.sql("SELECT version FROM schema_migrations ORDER BY version") == [
        [str(number)] for number in every]
    assert {"items", "orders"} <= {t for [t] in other_copy.sql("SHOW TABLES")}
    assert other_copy.sql("SELECT srn, name, section FROM students ORDER BY srn") == OLD_ROWS
    base = other_copy.base_url
    records = requests.get(f"{base}/read_database", timeout=15).json()["records"]
    assert records == [{"SRN": srn, "Name": name, "Section": section} for srn, name, section in OLD_ROWS]
    item = requests.post(f"{base}/items", json={"SKU": "NEW1", "Name": "New", "Quantity": 1}, timeout=15)
    assert item.status_code == 201, item.text
    order = requests.post(f"{base}/orders", json={"SKU": "NEW1", "Quantity": 1}, timeout=15)
    assert order.status_code == 201, order.text
    update = requests.post(f"{base}/update_record", json={"SRN": "OLD001", "Section": "C"}, timeout=15)
    assert update.status_code == 200, update.text
