"""common/accounts.py: each service's rights match what its code does, and nothing more."""

from __future__ import annotations

import base64
import importlib
import re

import pytest

from common import accounts, topology
from common.core import Handler
from tests.unit.test_kinds import compose_consumers

# Each consumer service's handler module, as docker-compose.yml runs it.
MODULES = compose_consumers()


@pytest.mark.parametrize("service", sorted(MODULES))
def test_a_consumer_may_read_exactly_the_queues_its_handlers_serve(service: str) -> None:
    module = importlib.import_module(MODULES[service])
    served = {value.routing_key for value in vars(module).values() if isinstance(value, Handler)}
    assert set(topology.keys_of(service)) == served
    configure, write, read = accounts.rabbitmq_permissions(service)
    assert configure == "^$"
    assert [key for key in topology.ROUTING_KEYS if re.fullmatch(read, key)] == \
        [key for key in topology.ROUTING_KEYS if key in served]
    assert not re.fullmatch(read, topology.dead_letter_queue(next(iter(served))))
    assert re.fullmatch(write, accounts.DEFAULT_EXCHANGE) and not re.fullmatch(write, topology.EXCHANGE)


def test_the_producer_may_only_publish_to_the_exchange() -> None:
    configure, write, read = accounts.rabbitmq_permissions(accounts.PRODUCER)
    assert (configure, read) == ("^$", "^$")
    names = [topology.EXCHANGE, topology.DEAD_LETTER_EXCHANGE, accounts.DEFAULT_EXCHANGE,
             *topology.ROUTING_KEYS]
    assert [name for name in names if re.fullmatch(write, name)] == [topology.EXCHANGE]


def test_the_operator_may_touch_the_contract_s_names_only() -> None:
    configure, _, read = accounts.rabbitmq_permissions(accounts.OPERATOR)
    for name in (topology.EXCHANGE, topology.DEAD_LETTER_EXCHANGE, "insert_record", "insert_record.dead"):
        assert re.fullmatch(configure, name) and re.fullmatch(read, name)
    for name in ("sneaky", "amq.default", "insert_record.deadx", "xinsert_record"):
        assert not re.fullmatch(configure, name)


def test_only_the_services_with_a_database_job_have_grants_and_only_one_may_change_the_ledger() -> None:
    assert set(accounts.DATABASE_SERVICES) == {"consumer_two", "consumer_three", "consumer_four",
                                               "consumer_five", "inventory_items", "inventory_orders"}
    for service in accounts.DATABASE_SERVICES:
        for table, grant in accounts.mysql_grants(service, "school"):
            assert grant.endswith(f"ON `school`.`{table}`")
            if table == "requests" and service != "consumer_three":
                assert "DELETE" not in grant and "UPDATE" not in grant
    # consumer_three erases answers and prunes: the answer and its subject, never the fingerprint.
    grants = accounts.mysql_grants("consumer_three", "school")
    [ledger] = [grant for table, grant in grants if table == "requests"]
    assert "UPDATE (reply, subject)" in ledger and "DELETE" in ledger


def test_each_service_s_password_has_its_own_setting() -> None:
    settings = [accounts.password_setting(service) for service in accounts.SERVICES]
    assert len(set(settings)) == len(settings)
    assert accounts.password_setting("consumer_two") == "CONSUMER_TWO_PASSWORD"


def test_a_password_hash_is_the_one_rabbitmq_makes() -> None:
    """What `rabbitmqctl hash_password 'correct horse'` printed on RabbitMQ 4.0: the same salt
    (its first 4 bytes) and password must give the same hash, or no service could log in."""
    made_by_rabbitmq = "deFPgrm0uZTRwN+paTaUpHEgr7qXWcJDCZYhwFEx1JaeyZ6S"
    salt = base64.b64decode(made_by_rabbitmq)[:4]
    assert accounts.rabbitmq_password_hash("correct horse", salt) == made_by_rabbitmq
    hashed_twice = {accounts.rabbitmq_password_hash("correct horse") for _ in range(2)}
    assert len(hashed_twice) == 2, "a salt of its own each time"
