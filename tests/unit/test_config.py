from __future__ import annotations

import pytest

from common.config import ConfigError, Settings

BASE = {"RABBITMQ_HOST": "broker", "RABBITMQ_USER": "app", "RABBITMQ_PASSWORD": "pw"}


def test_defaults() -> None:
    settings = Settings.from_env("producer", needs_db=False, env=BASE)
    assert settings.amqp.ports == (5672,)
    assert settings.amqp.heartbeat_s == 10
    assert settings.amqp.silence_s == 2.0
    assert (settings.ledger_retention_s, settings.ledger_prune_every_s) == (24 * 3600, 60)
    assert settings.request_timeout_s == 5.0
    assert settings.db is None


def test_consumers_need_the_database_password() -> None:
    with pytest.raises(ConfigError, match="MYSQL_USER"):
        Settings.from_env("consumer_two", needs_db=True, env=BASE)
    settings = Settings.from_env(
        "consumer_two", needs_db=True, env={**BASE, "MYSQL_USER": "app", "MYSQL_PASSWORD": "pw"}
    )
    assert settings.db is not None and settings.db.host == "db"


@pytest.mark.parametrize("missing", ["RABBITMQ_HOST", "RABBITMQ_USER", "RABBITMQ_PASSWORD"])
def test_missing_secret_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env("producer", needs_db=False, env=env)


@pytest.mark.parametrize(("name", "value"), [
    ("RABBITMQ_PORT", "abc"), ("RABBITMQ_PORT", "0"), ("RABBITMQ_PORT", "1.5"),
    ("RABBITMQ_PORTS", "5672,"), ("RABBITMQ_PORTS", "5672;5673"), ("RABBITMQ_PORTS", "0,5672"),
    ("REQUEST_TIMEOUT_S", "-1"), ("LOG_LEVEL", "LOUD"),
])
def test_malformed_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env("producer", needs_db=False, env={**BASE, name: value})


def test_one_port_per_node_when_rabbitmq_ports_is_set() -> None:
    env = {**BASE, "RABBITMQ_PORT": "5672", "RABBITMQ_PORTS": "5672, 5673,5674"}
    assert Settings.from_env("producer", needs_db=False, env=env).amqp.ports == (5672, 5673, 5674)
    env = {**BASE, "RABBITMQ_PORT": "6000", "RABBITMQ_PORTS": ""}
    assert Settings.from_env("producer", needs_db=False, env=env).amqp.ports == (6000,)
