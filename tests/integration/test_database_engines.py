"""A data volume stays with the database engine that made it: `make up` refuses another one on it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from scripts.stack import ENGINE_FILE, Engine
from scripts.stack import Stack as Script
from tests.support import ARTIFACTS, PROJECT, ROOT, SystemCopy, docker, stack_values


@pytest.fixture
def fresh_settings() -> Iterator[Script]:
    """Settings of a copy that was never started, and its database volume, created empty."""
    env_file = ARTIFACTS / "engines.env"
    values = stack_values(ARTIFACTS / "does-not-exist", project=f"{PROJECT}eng")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    script = Script(env_file)
    script.load()
    docker("volume", "create", script.db_volume)
    try:
        yield script
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", script.db_volume], capture_output=True, check=False)
        env_file.unlink(missing_ok=True)


def image_engine(image: str) -> Engine:
    engine = Engine.parse(docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                                 "mariadbd --version 2>/dev/null || mysqld --version"))
    assert engine is not None and engine.version
    return engine


def in_volume(script: Script, image: str, command: str) -> str:
    return docker("run", "--rm", "--volume", f"{script.db_volume}:/var/lib/mysql", "--entrypoint", "sh",
                  image, "-c", command)


@pytest.mark.parametrize("volume_from", ["the other engine", "a newer version",
                                         "the other engine, unrecorded"])
def test_make_up_refuses_a_volume_of_another_engine_and_changes_nothing(
        fresh_settings: Script, volume_from: str) -> None:
    image = fresh_settings.resolve_images()["MYSQL_IMAGE"]
    engine = image_engine(image)
    other = "mysql" if engine.name == "mariadb" else "mariadb"
    if volume_from == "the other engine":
        in_volume(fresh_settings, image, f"echo '{other} 1.0.0' > {ENGINE_FILE}")
        expected = f"made by {Engine(other, (1, 0, 0))}"
    elif volume_from == "a newer version":
        newer = (engine.version[0] + 1, 0, 0)
        in_volume(fresh_settings, image, f"echo '{engine.name} {'.'.join(map(str, newer))}' > {ENGINE_FILE}")
        expected = f"made by {Engine(engine.name, newer)}"
    else:  # a volume from before the record: told by the files each engine keeps
        marker = "aria_log_control" if other == "mariadb" else "mysql.ibd"
        in_volume(fresh_settings, image, f"touch /var/lib/mysql/{marker}")
        expected = f"made by {Engine(other, ())}"
    contents = f"ls -a /var/lib/mysql; cat {ENGINE_FILE} || true"
    before = in_volume(fresh_settings, image, contents)

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "stack.py"), "--env-file",
                             str(fresh_settings.env_file), "up"], capture_output=True, text=True, timeout=300)

    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "MYSQL_IMAGE" in result.stderr, result.stderr
    assert "docs/troubleshooting.md" in result.stderr
    # Refused before anything ran: no RabbitMQ, no compose container, the data as it was.
    assert subprocess.run(["docker", "container", "inspect", fresh_settings.get("RABBITMQ_CONTAINER")],
                          capture_output=True).returncode != 0
    assert not docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={fresh_settings.project}")
    assert in_volume(fresh_settings, image, contents) == before


def test_make_up_refuses_a_password_the_database_image_would_paste_into_broken_sql() -> None:
    env_file = ARTIFACTS / "unsafe.env"
    values = stack_values(ARTIFACTS / "does-not-exist", project=f"{PROJECT}unsafe")
    values["MYSQL_PASSWORD"] = "it's-a-secret"  # noqa: S105 (a test value, refused)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    try:
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "stack.py"), "--env-file",
                                 str(env_file), "up"], capture_output=True, text=True, timeout=60)
    finally:
        env_file.unlink(missing_ok=True)
    assert result.returncode == 1
    assert "MYSQL_PASSWORD contains '" in result.stderr and "without escaping" in result.stderr
    assert "it's-a-secret" not in result.stdout + result.stderr  # a refusal never prints the secret


def test_the_database_keeps_no_binary_log_by_default(stack: SystemCopy) -> None:
    """MYSQL_SERVER_OPTION's default: a second fsync per commit only for backups nobody makes."""
    assert stack.sql("SELECT @@log_bin") == [["0"]]
