"""Settings from environment variables, validated once at start-up.

Every variable is listed, with its default, in `.env.example`. Secrets have
no default: a service without them refuses to start with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and why."""


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is not set (see .env.example)")
    return default


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.001) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    value = _number(env, name, default, minimum=minimum)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {value}")
    return int(value)


def _ports(env: Mapping[str, str]) -> tuple[int, ...]:
    """RABBITMQ_PORTS ("5672,5673,5674": one per cluster node), else RABBITMQ_PORT alone."""
    raw = env.get("RABBITMQ_PORTS", "").strip()
    if not raw:
        return (_integer(env, "RABBITMQ_PORT", 5672),)
    problem = ConfigError(f"RABBITMQ_PORTS must be port numbers separated by commas, got {raw!r}")
    try:
        ports = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise problem from None
    if not all(0 < port < 65536 for port in ports):
        raise problem
    return ports


@dataclass(frozen=True)
class AmqpSettings:
    host: str
    # One per RabbitMQ node, all on `host` (the gateway IP): a client that
    # loses its node connects to the next one.
    ports: tuple[int, ...]
    user: str
    password: str
    vhost: str
    heartbeat_s: int
    connect_timeout_s: float
    # The producer leaves a node that has not answered its probe for this long (a node cut
    # off or frozen), when RABBITMQ_PORTS names another one to go to.
    silence_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AmqpSettings:
        return cls(
            host=_text(env, "RABBITMQ_HOST"),
            ports=_ports(env),
            user=_text(env, "RABBITMQ_USER"),
            password=_text(env, "RABBITMQ_PASSWORD"),
            vhost=_text(env, "RABBITMQ_VHOST", "/"),
            heartbeat_s=_integer(env, "RABBITMQ_HEARTBEAT_S", 10),
            connect_timeout_s=_number(env, "RABBITMQ_CONNECT_TIMEOUT_S", 3.0),
            silence_s=_number(env, "RABBITMQ_SILENCE_S", 2.0, minimum=0.2),
        )


@dataclass(frozen=True)
class DbSettings:
    host: str
    port: int
    database: str
    user: str
    password: str
    connect_timeout_s: int
    io_timeout_s: int
    # Set: connect through this Unix socket instead of host and port. root exists only
    # on localhost, which the migrations reach through the db container's shared socket.
    unix_socket: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, admin: bool = False) -> DbSettings:
        """The service's own account, or with `admin` root through the socket (migrate's
        account step only)."""
        user = "root" if admin else _text(env, "MYSQL_USER")
        password = _text(env, "MYSQL_ROOT_PASSWORD" if admin else "MYSQL_PASSWORD")
        return cls(
            host=_text(env, "MYSQL_HOST", "db"),
            port=_integer(env, "MYSQL_PORT", 3306),
            database=_text(env, "MYSQL_DATABASE", "school"),
            user=user,
            password=password,
            connect_timeout_s=_integer(env, "MYSQL_CONNECT_TIMEOUT_S", 5),
            io_timeout_s=_integer(env, "MYSQL_IO_TIMEOUT_S", 15),
            unix_socket=_text(env, "MYSQL_SOCKET", "/var/run/mysqld/mysqld.sock") if admin else "",
        )


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclass(frozen=True)
class Settings:
    service: str
    amqp: AmqpSettings
    db: DbSettings | None
    request_timeout_s: float
    prefetch: int
    log_level: str
    api_token: str
    metrics_port: int
    # The Host names the producer answers to (DNS rebinding): loopback's, and ALLOWED_HOSTS'.
    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    # The request ledger keeps each answer this long (a retry within it is answered from
    # the ledger); the consumer that prunes it looks for expired entries this often.
    ledger_retention_s: float = 24 * 3600.0
    ledger_prune_every_s: float = 60.0

    @classmethod
    def from_env(
        cls, service: str, *, needs_db: bool, env: Mapping[str, str] | None = None
    ) -> Settings:
        env = os.environ if env is None else env
        log_level = _text(env, "LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
        return cls(
            service=service,
            amqp=AmqpSettings.from_env(env),
            db=DbSettings.from_env(env) if needs_db else None,
            request_timeout_s=_number(env, "REQUEST_TIMEOUT_S", 5.0, minimum=0.1),
            prefetch=_integer(env, "CONSUMER_PREFETCH", 32),
            log_level=log_level,
            api_token=env.get("API_TOKEN", "").strip(),
            metrics_port=_integer(env, "CONSUMER_METRICS_PORT", 9100),
            allowed_hosts=LOOPBACK_HOSTS | {
                host.strip().lower() for host in env.get("ALLOWED_HOSTS", "").split(",") if host.strip()},
            ledger_retention_s=_number(env, "LEDGER_RETENTION_H", 24.0) * 3600,
            ledger_prune_every_s=_number(env, "LEDGER_PRUNE_INTERVAL_S", 60.0, minimum=0.1),
        )
