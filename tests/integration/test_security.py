"""What an attacker on the host or the network finds: checked on the running containers."""

from __future__ import annotations

import functools
import json
import secrets
import subprocess
from pathlib import Path

import requests

from scripts.stack import ROOT, SECRETS, amqp_login, parse_env_file
from tests.support import CONSUMERS, SystemCopy, healthy, wait_until

PASSWORD_KEYS = SECRETS  # the administrators', the database's and every service's own
OUR_SERVICES = ("producer", *CONSUMERS)


def inspect(kind: str, name: str) -> dict[str, object]:
    out = subprocess.run(["docker", kind, "inspect", name], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout)[0])


def test_services_run_as_a_user_without_new_privileges(stack: SystemCopy) -> None:
    for service in OUR_SERVICES:
        container = stack.container(service)
        uid = subprocess.run(["docker", "exec", container, "id", "-u"], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert uid != "0", service
    for container in stack.containers():
        host_config = inspect("container", container)["HostConfig"]
        assert "no-new-privileges:true" in (host_config["SecurityOpt"] or []), container  # type: ignore[index]


def test_services_are_hardened_and_bounded(stack: SystemCopy) -> None:
    """Our services and jobs: no capabilities, a read-only root filesystem, memory and process
    limits; the database and every RabbitMQ node bounded too (docs/security.md)."""
    for service in (*OUR_SERVICES, "migrate", "topology"):
        host = inspect("container", stack.container(service))["HostConfig"]
        assert (host["ReadonlyRootfs"], host["CapDrop"]) == (True, ["ALL"]), service  # type: ignore[index]
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, service  # type: ignore[index]
    for container in (stack.container("db"), *(node.container for node in stack.nodes())):
        host = inspect("container", container)["HostConfig"]
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, container  # type: ignore[index]
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), container  # type: ignore[index]


def test_the_guest_account_cannot_log_in(stack: SystemCopy) -> None:
    assert amqp_login("127.0.0.1", stack.amqp_port, "guest", "guest") != ""
    assert amqp_login("127.0.0.1", stack.amqp_port, stack.values["RABBITMQ_USER"],
                      stack.values["RABBITMQ_PASSWORD"]) == ""


def test_only_amqp_is_published_beyond_loopback(stack: SystemCopy) -> None:
    published: dict[str, set[str]] = {}
    containers = [*stack.containers(), stack.values["RABBITMQ_CONTAINER"]]
    for container in containers:
        ports = inspect("container", container)["NetworkSettings"]["Ports"] or {}  # type: ignore[index]
        for port, bindings in ports.items():
            for binding in bindings or []:
                published.setdefault(port, set()).add(binding["HostIp"])
    # On this Linux engine: loopback and the gateway IP of the RabbitMQ network, never 0.0.0.0.
    assert parse_env_file(ROOT / ".env.example")["RABBITMQ_AMQP_BIND"] == "auto"
    assert published.pop("5672/tcp") == {"127.0.0.1", stack.rabbitmq_host()}
    assert published == {"5000/tcp": {"127.0.0.1"}, "15672/tcp": {"127.0.0.1"},  # no MySQL at all
                         "15692/tcp": {"127.0.0.1"}}


def test_no_password_in_images_or_logs(stack: SystemCopy) -> None:
    passwords = [stack.values[key] for key in PASSWORD_KEYS]
    places = []
    for service in OUR_SERVICES:
        image = inspect("container", stack.container(service))["Image"]
        history = subprocess.run(["docker", "history", "--no-trunc", str(image)], capture_output=True,
                                 text=True, check=True).stdout
        places.append((f"{service} image", history + json.dumps(inspect("image", str(image)))))
    places.append(("compose logs", stack.compose("logs", "--no-color")))
    rabbit_logs = subprocess.run(["docker", "logs", stack.values["RABBITMQ_CONTAINER"]],
                                 capture_output=True, text=True)
    places.append(("rabbitmq logs", rabbit_logs.stdout + rabbit_logs.stderr))
    for where, text in places:
        assert not [p for p in passwords if p in text], f"a password appears in the {where}"


def test_no_password_in_git_tracked_files(stack: SystemCopy) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert [name for name in tracked if Path(name).name.startswith(".env")] == [".env.example"]
    example = parse_env_file(ROOT / ".env.example")
    assert {key: example[key] for key in (*PASSWORD_KEYS, "API_TOKEN")} == dict.fromkeys(
        (*PASSWORD_KEYS, "API_TOKEN"), "")
    secrets_in_use = {stack.values[key] for key in PASSWORD_KEYS}
    if (ROOT / ".env").exists():  # a developer's own system, if there is one
        local = parse_env_file(ROOT / ".env")
        secrets_in_use |= {local[key] for key in PASSWORD_KEYS if local.get(key)}
    for name in tracked:
        path = ROOT / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not [s for s in secrets_in_use if s in text], f"a password in use appears in {name}"


def test_api_token_guards_the_running_producer(stack: SystemCopy) -> None:
    token = secrets.token_urlsafe(16)
    url = stack.base_url
    try:
        stack.compose_with({"API_TOKEN": token}, "up", "--detach", "--no-deps", "producer")
        wait_until(lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 200, timeout=60)
        guarded = [("GET", "/health_check?message=x"), ("GET", "/read_database"),
                   ("GET", "/delete_record?SRN=NOPE"), ("GET", "/requests/nope"), ("POST", "/insert_record")]
        for method, path in guarded:
            refused = requests.request(method, url + path, json={}, timeout=15)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized", path
            wrong = requests.request(method, url + path, json={}, timeout=15,
                                     headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401, path
        allowed = requests.get(f"{url}/read_database", timeout=15,
                               headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
        assert requests.get(f"{url}/livez", timeout=5).status_code == 200
    finally:
        stack.compose_with({"API_TOKEN": ""}, "up", "--detach", "--no-deps", "producer")
        wait_until(lambda: requests.get(f"{url}/read_database", timeout=5).status_code == 200, timeout=60)
        wait_until(functools.partial(healthy, stack, "producer"), timeout=60)  # as the next test finds it
