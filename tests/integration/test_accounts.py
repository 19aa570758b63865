"""Each service's own accounts: every forbidden operation tried with its own credentials.

RabbitMQ must answer ACCESS_REFUSED (403), MySQL error 1142 (1143 for a column
the account may not change), and root must not be reachable from the network.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest

from common import accounts, topology
from tests.support import SystemCopy, docker

ACCESS_REFUSED = 403
TABLE_DENIED, COLUMN_DENIED, LOGIN_DENIED = 1142, 1143, 1045

# Every account may do none of these.
NOBODY_MAY = {
    "UPDATE requests SET fingerprint = ''": TABLE_DENIED,
    "CREATE TABLE sneaky (id INT)": TABLE_DENIED,
    "DROP TABLE students": TABLE_DENIED,
    "SELECT user FROM mysql.user": TABLE_DENIED,
}
FORBIDDEN_SQL = {
    "consumer_two": {"SELECT srn FROM students": TABLE_DENIED, "DELETE FROM students": TABLE_DENIED,
                     "UPDATE students SET name = 'x'": TABLE_DENIED, "SELECT sku FROM items": TABLE_DENIED},
    # The ledger's keeper: it erases answers (reply, subject) and deletes expired entries,
    # and changes nothing else of an entry.
    "consumer_three": {"INSERT INTO students (srn, name, section) VALUES ('X', 'x', 'x')": TABLE_DENIED,
                       "UPDATE students SET name = 'x'": TABLE_DENIED, "SELECT sku FROM items": TABLE_DENIED,
                       "SELECT order_id FROM orders": TABLE_DENIED,
                       "UPDATE requests SET fingerprint = ''": COLUMN_DENIED,
                       "UPDATE requests SET routing_key = ''": COLUMN_DENIED},
    "consumer_four": {"DELETE FROM students": TABLE_DENIED,
                      "INSERT INTO students (srn, name, section) VALUES ('X', 'x', 'x')": TABLE_DENIED,
                      "UPDATE students SET name = 'x'": TABLE_DENIED,
                      "INSERT INTO requests (request_id) VALUES ('x')": TABLE_DENIED,
                      "SELECT sku FROM items": TABLE_DENIED, "SELECT order_id FROM orders": TABLE_DENIED},
    "consumer_five": {"DELETE FROM students": TABLE_DENIED,
                      "INSERT INTO students (srn, name, section) VALUES ('X', 'x', 'x')": TABLE_DENIED,
                      "UPDATE students SET srn = 'x'": COLUMN_DENIED, "SELECT sku FROM items": TABLE_DENIED},
    "inventory_items": {"SELECT srn FROM students": TABLE_DENIED, "DELETE FROM items": TABLE_DENIED,
                        "UPDATE items SET name = 'x'": COLUMN_DENIED,
                        "SELECT order_id FROM orders": TABLE_DENIED},
    "inventory_orders": {"SELECT srn FROM students": TABLE_DENIED, "DELETE FROM orders": TABLE_DENIED,
                         "UPDATE orders SET quantity = 0": TABLE_DENIED,
                         "INSERT INTO items (sku, name, quantity) VALUES ('X', 'x', 1)": TABLE_DENIED,
                         "UPDATE items SET name = 'x'": COLUMN_DENIED},
}
# Runs inside a service's container, as that service's own MySQL account: each
# statement's error number (0: it was allowed), every change rolled back.
TRY_SQL = """
import json, os, sys, mysql.connector
user = os.environ.get("TRY_AS_USER") or os.environ["MYSQL_USER"]
password = os.environ.get("TRY_AS_PASSWORD") or os.environ["MYSQL_PASSWORD"]
try:
    c = mysql.connector.connect(host="db", user=user, password=password,
                                database=os.environ["MYSQL_DATABASE"])
except mysql.connector.Error as exc:
    print(json.dumps({"login": exc.errno}))
    sys.exit()
codes = {}
for statement in json.loads(sys.argv[1]):
    cursor = c.cursor()
    try:
        cursor.execute(statement)
        if cursor.with_rows:
            cursor.fetchall()
        codes[statement] = 0
    except mysql.connector.Error as exc:
        codes[statement] = exc.errno
    c.rollback()
print(json.dumps(codes))
"""


def try_sql(stack: SystemCopy, service: str, statements: list[str], *,
            env: dict[str, str] | None = None) -> Any:
    names = [arg for key in (env or {}) for arg in ("--env", key)]  # values from this process, not argv
    out = subprocess.run(["docker", "exec", *names, stack.container(service), "python", "-c", TRY_SQL,
                          json.dumps(statements)], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    return json.loads(out)


# Only consumer_three may change or delete the ledger's entries.
LEDGER_CHANGES = {"DELETE FROM requests": TABLE_DENIED, "UPDATE requests SET reply = ''": TABLE_DENIED}


@pytest.mark.parametrize("service", sorted(FORBIDDEN_SQL))
def test_each_database_account_is_refused_everything_beyond_its_job(stack: SystemCopy, service: str) -> None:
    ledger = {} if service == "consumer_three" else LEDGER_CHANGES
    forbidden = {**NOBODY_MAY, **ledger, **FORBIDDEN_SQL[service]}
    assert try_sql(stack, service, list(forbidden)) == forbidden


def test_every_database_service_has_its_own_account(stack: SystemCopy) -> None:
    seen = {}
    for service in (*accounts.DATABASE_SERVICES, accounts.PRODUCER, "consumer_one"):
        env = dict(line.split("=", 1) for line in json.loads(
            docker("inspect", "-f", "{{json .Config.Env}}", stack.container(service))))
        seen[service] = (env.get("MYSQL_USER"), env.get("RABBITMQ_USER"))
    assert seen == {s: (s if s in accounts.DATABASE_SERVICES else None, s) for s in seen}
    assert stack.values["RABBITMQ_USER"] not in {rabbit for _, rabbit in seen.values()}
    names = ", ".join(f"'{service}'" for service in accounts.DATABASE_SERVICES)
    assert stack.sql(f"SELECT user, host FROM mysql.user WHERE user IN ({names}) ORDER BY user") == \
        sorted([service, "%"] for service in accounts.DATABASE_SERVICES)


def test_root_cannot_log_in_from_the_network(stack: SystemCopy) -> None:
    tried = try_sql(stack, "consumer_four", ["SELECT 1"], env={
        "TRY_AS_USER": "root", "TRY_AS_PASSWORD": stack.values["MYSQL_ROOT_PASSWORD"]})
    assert tried == {"login": LOGIN_DENIED}
    assert stack.sql("SELECT host FROM mysql.user WHERE user = 'root'") == [["localhost"]]


# ---- RabbitMQ --------------------------------------------------------------------

def refused(stack: SystemCopy, service: str, operation: Callable[[Any], Any]) -> int:
    """The reply code of `operation` on a fresh channel of `service`'s own connection (0: allowed)."""
    credentials = pika.PlainCredentials(service, stack.values[accounts.password_setting(service)])
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", stack.amqp_port,
                                                                   credentials=credentials))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            operation(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            return int(exc.reply_code)
        return 0
    finally:
        if connection.is_open:
            connection.close()


def consume(queue: str) -> Callable[[Any], Any]:
    return lambda channel: channel.basic_consume(queue, lambda *args: None)


def publish(exchange: str, routing_key: str) -> Callable[[Any], Any]:
    return lambda channel: channel.basic_publish(exchange, routing_key, b"{}")


AMQP_FORBIDDEN_TO_ALL = {
    "declare a queue": lambda channel: channel.queue_declare("sneaky", durable=True),
    "delete a work queue": lambda channel: channel.queue_delete(topology.INSERT_RECORD),
    "read a .dead queue": consume(topology.dead_letter_queue(topology.INSERT_RECORD)),
    "publish a dead letter": publish(topology.DEAD_LETTER_EXCHANGE, topology.INSERT_RECORD),
    "delete the exchange": lambda channel: channel.exchange_delete(topology.EXCHANGE),
}


@pytest.mark.parametrize("service", [s for s in accounts.SERVICES if s != accounts.OPERATOR])
def test_each_broker_account_is_refused_everything_beyond_its_job(stack: SystemCopy, service: str) -> None:
    forbidden = dict(AMQP_FORBIDDEN_TO_ALL)
    queues = topology.keys_of(service)
    others = [key for key in topology.ROUTING_KEYS if key not in queues]
    forbidden[f"read another's queue ({others[0]})"] = consume(others[0])
    forbidden[f"purge another's queue ({others[0]})"] = lambda channel: channel.queue_purge(others[0])
    if service == accounts.PRODUCER:
        # It may publish requests; it may neither read them nor forge a consumer's reply.
        forbidden["forge a reply"] = publish("", "amq.rabbitmq.reply-to.forged")
    else:
        forbidden["publish a request"] = publish(topology.EXCHANGE, topology.INSERT_RECORD)
    codes = {what: refused(stack, service, operation) for what, operation in forbidden.items()}
    assert codes == dict.fromkeys(forbidden, ACCESS_REFUSED)


def test_the_operator_may_touch_only_the_contract_s_names(stack: SystemCopy) -> None:
    codes = {what: refused(stack, accounts.OPERATOR, operation) for what, operation in {
        "declare another queue": lambda channel: channel.queue_declare("sneaky", durable=True),
        "declare another exchange": lambda channel: channel.exchange_declare("sneaky", "direct"),
    }.items()}
    assert codes == dict.fromkeys(codes, ACCESS_REFUSED)


def test_the_migrations_run_as_their_own_account_which_owns_only_the_database(stack: SystemCopy) -> None:
    grantee = "\"'migrate'@'%'\""
    database = stack.values["MYSQL_DATABASE"]
    globally = stack.sql(
        f"SELECT privilege_type FROM information_schema.user_privileges WHERE grantee = {grantee}")
    assert globally == [["USAGE"]]  # nothing global: no CREATE USER, no GRANT, no other database
    on = {schema for [schema] in stack.sql(
        f"SELECT DISTINCT table_schema FROM information_schema.schema_privileges WHERE grantee = {grantee}")}
    assert on == {database}
    assert try_sql(stack, "consumer_four", ["SELECT 1"], env={
        "TRY_AS_USER": "migrate", "TRY_AS_PASSWORD": stack.values["MIGRATE_PASSWORD"]}) == {"SELECT 1": 0}
    logs = docker("logs", stack.container("migrate"))
    assert '"migrations_by": "migrate"' in logs
