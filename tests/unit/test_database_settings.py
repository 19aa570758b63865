"""make up's checks of the database settings and of the data volume's engine, without Docker."""

from __future__ import annotations

import pytest

from scripts.stack import Engine, database_volume_problem, unsafe_database_settings


def engine(text: str) -> Engine:
    parsed = Engine.parse(text)
    assert parsed is not None
    return parsed


def test_engines_are_read_from_the_servers_own_words_and_from_the_volumes_record() -> None:
    assert Engine.parse("/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 (Debian)") == \
        Engine("mysql", (9, 7, 4))
    assert Engine.parse("mariadbd  Ver 11.8.3-MariaDB-0+deb13u1 for debian-linux-gnu") == \
        Engine("mariadb", (11, 8, 3))
    assert Engine.parse("mysql 8.4.2\n") == Engine("mysql", (8, 4, 2))
    assert Engine.parse("mariadb") == Engine("mariadb", ())  # told by its files, version unknown
    assert Engine.parse("") is None and Engine.parse("cat: no such file") is None


@pytest.mark.parametrize(("volume", "image"), [
    ("mysql 9.7.4", "mysql 9.7.0"),   # the same series
    ("mysql 8.4.2", "mysql 9.7.4"),   # an upgrade, which MySQL does in place
    ("mariadb", "mariadb 11.8.3"),    # a volume from before the record
])
def test_the_same_engine_and_series_or_newer_may_start(volume: str, image: str) -> None:
    assert database_volume_problem(engine(volume), engine(image), "v", "MYSQL_IMAGE=x") == ""


@pytest.mark.parametrize(("volume", "image", "said"), [
    ("mariadb 11.8.3", "mysql 9.7.4", "another engine"),
    ("mysql 9.7.4", "mariadb 11.8.3", "another engine"),
    ("mysql 9.7.4", "mysql 8.4.2", "an older version"),
])
def test_another_engine_or_a_downgrade_is_refused_with_what_to_do(volume: str, image: str, said: str) -> None:
    problem = database_volume_problem(engine(volume), engine(image), "school_db_data", "MYSQL_IMAGE=some:tag")
    assert said in problem and "school_db_data" in problem and "MYSQL_IMAGE" in problem
    assert "Nothing was started or changed" in problem and "docs/troubleshooting.md" in problem


def test_settings_the_entrypoint_would_paste_into_broken_sql_are_named() -> None:
    values = {"MYSQL_PASSWORD": "it's", "MYSQL_ROOT_PASSWORD": "back\\slash", "MYSQL_USER": "app",
              "MYSQL_DATABASE": "sch$ool", "RABBITMQ_PASSWORD": "it's fine here"}
    assert unsafe_database_settings(values) == [
        "MYSQL_PASSWORD contains '", "MYSQL_ROOT_PASSWORD contains \\", "MYSQL_DATABASE contains $"]
    generated = {"MYSQL_PASSWORD": "Zk3_-x9aQ", "MYSQL_ROOT_PASSWORD": "a-b_c", "MYSQL_USER": "app"}
    assert unsafe_database_settings(generated) == []
